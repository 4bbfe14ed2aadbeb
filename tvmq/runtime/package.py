"""Loading a package, running it on named numpy inputs, benchmarking it."""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.errors import InputError, PackageError
from tvmq.metadata import PackageMetadata, read_metadata
from tvmq.runtime.devices import cannot_run_here, device_for
from tvmq.runtime.profile import Profile, profile_kernels
from tvmq.runtime.threads import num_threads, set_num_threads
from tvmq.target import TargetPreset
from tvmq.tensors import TensorSpec


@dataclass(frozen=True)
class BenchmarkResult:
    """Latency of one inference over `repeat` measurements, each the mean of as many runs as
    fill `min_repeat_ms`."""

    median_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    std_ms: float
    repeat: int
    min_repeat_ms: int
    threads: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


def check_inputs(specs: tuple[TensorSpec, ...], inputs: Mapping[str, np.ndarray]) -> None:
    """Raise InputError naming every missing, unknown or mis-shaped/typed input."""
    expected = {spec.name: spec for spec in specs}
    problems = [f"unknown input {name!r}" for name in inputs if name not in expected]
    problems += [f"missing input {spec}" for spec in specs if spec.name not in inputs]
    for name, value in inputs.items():
        spec = expected.get(name)
        if spec is None:
            continue
        value = np.asarray(value)
        if value.shape != spec.shape:
            problems.append(f"input {name!r} has shape {list(value.shape)}, expected {list(spec.shape)}")
        if str(value.dtype) != spec.dtype:
            problems.append(f"input {name!r} has dtype {value.dtype}, expected {spec.dtype}")
    if problems:
        signature = ", ".join(str(spec) for spec in specs)
        raise InputError("; ".join(problems) + f" (the model takes {signature})")


def flatten_outputs(result) -> list[np.ndarray]:
    """The VM's result (a tensor or nested tuple of tensors) as a flat list of numpy arrays."""
    if hasattr(result, "numpy"):
        return [result.numpy()]
    return [leaf for item in result for leaf in flatten_outputs(item)]


def read_verified_library(path: Path, metadata: PackageMetadata) -> bytes:
    """The library's bytes, after checking that their sha256 matches the metadata.

    Callers load or upload exactly these bytes (from a private copy), never the file again:
    nothing can swap it between check and use.
    """
    library = path / metadata.library.file
    try:
        data = library.read_bytes()
    except OSError as err:
        raise PackageError(f"{path}: cannot read the library {metadata.library.file}: {err.strerror or err}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != metadata.library.sha256:
        raise PackageError(
            f"{library} does not match its package metadata (sha256 {actual[:16]}..., "
            f"expected {metadata.library.sha256[:16]}...): it was modified or corrupted; "
            "refusing to load it"
        )
    return data


def _load_verified_library(path: Path, metadata: PackageMetadata):
    """Load the checked library bytes from a private copy named by their hash: the dynamic
    loader cannot hand back an earlier library loaded from the same path before a rebuild."""
    import tvm

    data = read_verified_library(path, metadata)
    with tempfile.TemporaryDirectory(prefix="tvmq-lib-") as private:
        copy = Path(private) / f"{metadata.library.sha256}.so"
        copy.write_bytes(data)
        try:
            return tvm.runtime.load_module(str(copy))
        except Exception as err:
            raise PackageError(f"cannot load {path / metadata.library.file}: {err}") from err


def random_inputs(specs: tuple[TensorSpec, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """Reproducible random inputs for `specs`, by name."""
    rng = np.random.default_rng(seed)
    return {spec.name: spec.random(rng) for spec in specs}


class Package:
    """A deployable package loaded for running on this machine."""

    def __init__(self, path: Path, metadata: PackageMetadata, library, device):
        from tvm.runtime.vm import VirtualMachine  # the runtime's, so TVM_USE_RUNTIME_LIB=1 works

        self.path = path
        self.metadata = metadata
        self._library = library
        self._vm = VirtualMachine(library, device)
        self._device = device

    @classmethod
    def load(cls, path: str | os.PathLike) -> Package:
        """Load the package at `path` after checking the library's sha256 and that this machine
        can run its target."""
        path = Path(path)
        metadata = read_metadata(path)
        preset = TargetPreset.from_json(metadata.target)
        reason = cannot_run_here(preset)
        if reason:
            raise PackageError(f"cannot run {path} on this machine: {reason}")
        return cls(path, metadata, _load_verified_library(path, metadata), device_for(preset))

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.metadata.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.metadata.outputs

    def _device_args(self, inputs: Mapping[str, np.ndarray]) -> list:
        import tvm

        check_inputs(self.inputs, inputs)
        return [tvm.runtime.tensor(np.ascontiguousarray(inputs[s.name]), self._device) for s in self.inputs]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns the outputs by name, in the model's output order."""
        result = self._vm["main"](*self._device_args(inputs))
        return dict(zip((spec.name for spec in self.outputs), flatten_outputs(result)))

    def random_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        return random_inputs(self.inputs, seed)

    def _use_threads(self, threads: int | None) -> int:
        """Set the thread pool size for the runs (None: leave it); returns the size used."""
        return set_num_threads(threads) if threads is not None else num_threads()

    def benchmark(
        self,
        inputs: Mapping[str, np.ndarray] | None = None,
        repeat: int = 20,
        threads: int | None = None,
        min_repeat_ms: int = 20,
    ) -> BenchmarkResult:
        """Time inference with TVM's time_evaluator: `repeat` measurements, each averaging as
        many runs as fill `min_repeat_ms`. Random inputs unless `inputs` are given."""
        if repeat < 1:
            raise PackageError(f"repeat must be >= 1, got {repeat}")
        args = self._device_args(inputs if inputs is not None else self.random_inputs())
        used_threads = self._use_threads(threads)
        self._vm["main"](*args)  # warm-up: first-run allocations and lazy initialization
        timer = self._vm.time_evaluator("main", self._device, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
        report = timer(*args)
        times_ms = [t * 1e3 for t in report.results]
        return BenchmarkResult(
            median_ms=statistics.median(times_ms),
            min_ms=min(times_ms),
            max_ms=max(times_ms),
            mean_ms=statistics.fmean(times_ms),
            std_ms=statistics.pstdev(times_ms),
            repeat=repeat,
            min_repeat_ms=min_repeat_ms,
            threads=used_threads,
        )

    def profile(self, inputs: Mapping[str, np.ndarray] | None = None, threads: int | None = None) -> Profile:
        """Each kernel's time per call and per inference, the most first, beside the median of
        whole inferences (tvmq.runtime.profile). Random inputs unless `inputs` are given."""
        inputs = inputs if inputs is not None else self.random_inputs()
        whole = self.benchmark(inputs, repeat=10, threads=threads)
        kernels = profile_kernels(
            self._vm, self._library, self._device, self._device_args(inputs), self.metadata.kernels or {}
        )
        return Profile(tuple(kernels), whole.median_ms, whole.threads)
