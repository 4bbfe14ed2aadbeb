import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/onnx_models.py

import tvmq  # noqa: E402
from tvmq.cli import main as cli_main  # noqa: E402


@pytest.fixture(scope="session")
def aarch64_runner():
    """The C++ runner cross-compiled for aarch64 (run under qemu), or a skip saying what is missing."""
    from tvmq.runtime.cpp_runner import build_runner, toolchain
    from tvmq.runtime.runtime_libs import RuntimeUnavailable, runtime_for

    missing = toolchain("aarch64").missing()
    if missing:
        pytest.skip(f"cannot emulate aarch64: {missing}")
    try:
        runtime_for("aarch64")
    except RuntimeUnavailable as err:
        pytest.skip(str(err))
    return build_runner("aarch64")


@pytest.fixture
def compile_and_load(tmp_path):
    """Import a model, compile it for a target into tmp_path and load the package."""

    def build(model, target="host", name="pkg", **load_args):
        imported = tvmq.load_model(model, **load_args)
        tvmq.compile_model(imported, target, tmp_path / name)
        return imported, tvmq.load_package(tmp_path / name)

    return build


def assert_matches_reference(imported, package, seed=0, rtol=1e-4, atol=1e-5):
    """The package's outputs equal the original framework's on random inputs."""
    inputs = package.random_inputs(seed)
    expected = imported.reference(inputs)
    actual = package.run(inputs)
    assert list(actual) == [spec.name for spec in imported.outputs]
    for got, want in zip(actual.values(), expected):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


class CliResult:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys):
    """Run `tvmq ARGS...` in-process; returns exit code, stdout and stderr."""

    def run(*args):
        code = cli_main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def tree_snapshot(path: Path) -> dict:
    """Every file under `path` with its bytes, to prove a failed command changed nothing."""
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
