"""Running a CPU package with the C++ runner (tvmq/runtime/cpp/) instead of Python: natively, or
under qemu user-mode emulation for a package built for another CPU (an ARM board's).

This is how tvmq proves an ARM build runs and gives the x86 build's answers without a board:
the runner is cross-compiled against the aarch64 TVM runtime (see runtime_libs) and run with
`qemu-aarch64 -L /usr/aarch64-linux-gnu`. Emulated timings say nothing about a board's speed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.errors import PackageError, TvmqError
from tvmq.metadata import read_metadata
from tvmq.progress import step
from tvmq.runtime.package import check_inputs, random_inputs, read_verified_library
from tvmq.runtime.runtime_libs import DEFAULT_CACHE, runtime_for, versions
from tvmq.target import TargetPreset, this_machine

RUNNER_SOURCE = Path(__file__).parent / "cpp"
RUNNER_FILES = ("tvmq_runner.cc", "build.sh", "README.md")


class EmulationError(TvmqError):
    """The C++ runner cannot be built or run for a package's architecture on this machine."""


@dataclass(frozen=True)
class Toolchain:
    """What builds and runs programs for one CPU architecture on this machine."""

    compiler: str
    emulator: tuple[str, ...]  # command prefix that runs the architecture's programs; () natively
    install: str  # what provides the tools

    def missing(self) -> str | None:
        """Which tool is not installed (and how to get it), or None when all are."""
        for tool in (self.compiler, *self.emulator[:1]):
            if shutil.which(tool) is None:
                return f"{tool} is not installed ({self.install})"
        sysroot = self.emulator[2:3]
        if sysroot and not Path(sysroot[0]).is_dir():
            return f"{sysroot[0]} (the aarch64 C library) is missing ({self.install})"
        return None


def toolchain(arch: str) -> Toolchain:
    if arch == this_machine():
        return Toolchain("g++", (), "apt-get install g++")
    if arch == "aarch64":
        return Toolchain(
            "aarch64-linux-gnu-g++",
            ("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"),
            "apt-get install g++-aarch64-linux-gnu qemu-user",
        )
    raise EmulationError(f"tvmq cannot build or emulate programs for {arch} here (it knows aarch64)")


def copy_runner_source(destination: Path) -> None:
    """Put the runner's source and build recipe into `destination` (a package's runner/)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in RUNNER_FILES:
        shutil.copy2(RUNNER_SOURCE / name, destination / name)


def build_runner(arch: str, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The runner executable for `arch`, compiled on first use and cached by the hash of its
    source, compiler and TVM runtime."""
    tools = toolchain(arch)
    reason = tools.missing()
    if reason:
        raise EmulationError(f"cannot build the C++ runner for {arch}: {reason}")
    runtime = runtime_for(arch, Path(cache_dir))
    digest = hashlib.sha256(f"{tools.compiler} {runtime} {versions()}".encode())
    for name in RUNNER_FILES[:2]:
        digest.update((RUNNER_SOURCE / name).read_bytes())
    executable = Path(cache_dir) / "runners" / f"{arch}-{digest.hexdigest()[:16]}" / "tvmq_runner"
    if executable.is_file():
        return executable
    executable.parent.mkdir(parents=True, exist_ok=True)
    staging = executable.with_name(f".tvmq_runner.{os.getpid()}.partial")
    env = {**os.environ, "CXX": tools.compiler, "RUNTIME": str(runtime), "OUT": str(staging)}
    with step(f"compiling the C++ runner for {arch} with {tools.compiler}"):
        result = subprocess.run(["sh", str(RUNNER_SOURCE / "build.sh")], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        staging.unlink(missing_ok=True)
        raise EmulationError(f"compiling the C++ runner for {arch} failed:\n{result.stderr.strip()[-2000:]}")
    os.replace(staging, executable)
    return executable


@dataclass(frozen=True)
class RunnerOutput:
    outputs: dict[str, np.ndarray]  # by output name, in the model's order
    median_ms: float | None  # of `repeat` timed runs; None when not timed
    emulated: bool


class RunnerPackage:
    """A CPU package run by the C++ runner: natively when built for this machine's CPU, under
    qemu when built for another (`emulated`). Offers `run` and `random_inputs` like Package."""

    def __init__(self, path: str | os.PathLike, cache_dir: Path = DEFAULT_CACHE):
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        preset = TargetPreset.from_json(self.metadata.target)
        if preset.kind != "llvm":
            raise EmulationError(f"the C++ runner runs CPU packages; {self.path} is built for {preset.kind}")
        self.arch = preset.arch
        self.emulated = self.arch != this_machine()
        self._toolchain = toolchain(self.arch)
        self._cache_dir = Path(cache_dir)

    @property
    def inputs(self):
        return self.metadata.inputs

    @property
    def outputs(self):
        return self.metadata.outputs

    def random_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        return random_inputs(self.inputs, seed)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_timed(inputs).outputs

    def run_timed(self, inputs: Mapping[str, np.ndarray], repeat: int = 0) -> RunnerOutput:
        """Run once and save the outputs; with `repeat`, also time that many more runs."""
        check_inputs(self.inputs, inputs)
        runner = build_runner(self.arch, self._cache_dir)
        with tempfile.TemporaryDirectory(prefix="tvmq-runner-") as work:
            work = Path(work)
            library = work / "model.so"
            library.write_bytes(read_verified_library(self.path, self.metadata))
            files = []
            for index, spec in enumerate(self.inputs):
                files.append(work / f"input_{index}.npy")
                np.save(files[-1], np.ascontiguousarray(inputs[spec.name]))
            command = [*self._toolchain.emulator, str(runner), str(library), str(work), *map(str, files)]
            how = "under " + self._toolchain.emulator[0] if self.emulated else "natively"
            with step(f"running {self.path} with the C++ runner {how}"):
                result = subprocess.run([*command, "--repeat", str(repeat)], capture_output=True, text=True)
            if result.returncode != 0:
                raise PackageError(f"the C++ runner failed on {self.path}: {result.stderr.strip()[-2000:]}")
            files = [work / f"output_{i}.npy" for i in range(len(self.outputs))]
            if not all(file.is_file() for file in files):
                raise PackageError(f"the C++ runner wrote fewer outputs than {self.path} declares: {result.stdout}")
            outputs = {spec.name: np.load(file) for spec, file in zip(self.outputs, files)}
        timed = re.search(r"median ([0-9.eE+-]+) ms", result.stdout)
        return RunnerOutput(outputs, float(timed.group(1)) if timed else None, self.emulated)
