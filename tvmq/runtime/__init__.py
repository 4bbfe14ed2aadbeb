"""Runtime: load a deployable package, run it on named numpy inputs, benchmark it."""

from tvmq.runtime.package import BenchmarkResult, Package, check_inputs
from tvmq.runtime.threads import set_num_threads

__all__ = ["BenchmarkResult", "Package", "check_inputs", "load_package", "set_num_threads"]


def load_package(path) -> Package:
    """Load the package directory at `path` (see Package.load)."""
    return Package.load(path)
