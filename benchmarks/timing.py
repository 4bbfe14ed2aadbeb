"""Timing shared by the benchmarks: one timer per system, each a callable returning the median
milliseconds of `runs` inferences, and rounds that interleave the systems so that drift on a
busy machine hits all of them alike. Also what every benchmark records beside its figures: the
machine, the tvmq revision measured, tvmq's progress log, and the results files."""

from __future__ import annotations

import json
import logging
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

import tvmq
from tvmq.compiler import compile_model
from tvmq.files import write_atomically
from tvmq.runtime import load_package
from tvmq.target import available_cores

from .peers import onnxruntime_session

Timer = Callable[[], float]  # one round: the median ms of its runs
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# --- timers ---------------------------------------------------------------------


def median_of_runs(run: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def onnxruntime_timer(path: Path, inputs: dict[str, np.ndarray], threads: int | None, runs: int) -> Timer:
    """onnxruntime at `threads` intra-op threads (None: its default), warmed up by one run."""
    session = onnxruntime_session(path, threads)
    session.run(None, inputs)
    return lambda: median_of_runs(lambda: session.run(None, inputs), runs)


def package_timer(package_dir: Path, inputs: dict[str, np.ndarray], threads: int, runs: int) -> Timer:
    package = load_package(package_dir)
    return lambda: package.benchmark(inputs, repeat=runs, threads=threads, min_repeat_ms=0).median_ms


def torch_timer(module, inputs: dict[str, np.ndarray], threads: int, runs: int) -> Timer:
    """PyTorch eager; the thread count is process-wide in torch, so each round sets it again."""
    import torch

    tensors = [torch.from_numpy(array) for array in inputs.values()]

    def run() -> None:
        with torch.no_grad():
            module(*tensors)

    def median_ms() -> float:
        torch.set_num_threads(threads)
        return median_of_runs(run, runs)

    torch.set_num_threads(threads)
    run()  # warm-up
    return median_ms


def interleaved_rounds(timers: Mapping[str, Timer], rounds: int) -> dict[str, list[float]]:
    """Each timer's round medians, the systems taking turns within every round."""
    medians: dict[str, list[float]] = {system: [] for system in timers}
    for _ in range(rounds):
        for system, timer in timers.items():
            medians[system].append(timer())
    return medians


def spread(round_medians: list[float]) -> dict:
    """A cell of the benchmark: the median of the round medians and their range."""
    return {
        "median_ms": statistics.median(round_medians),
        "min_ms": min(round_medians),
        "max_ms": max(round_medians),
        "rounds_ms": round_medians,
    }


def timed_compile(model, target: str, output: Path, tuning_log: Path | None) -> tuple[Path, float, dict | None]:
    """Compile `model` into `output`: the package, the seconds it took and the log's coverage."""
    start = time.perf_counter()
    metadata = compile_model(model, target, output, tuning_log=tuning_log)
    return output, time.perf_counter() - start, metadata.tuning


# --- the machine and the results ----------------------------------------------------


def setup_logging() -> None:
    """Show tvmq's progress (tuning, quantization, compilation) on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def machine(**extra) -> dict:
    """The machine a benchmark ran on: host name, CPU model, cores this process may use, and `extra`."""
    return {"host": platform.node(), "cpu": cpu_name(), "cores": available_cores(), **extra}


def source_revision() -> str:
    """The commit of the tvmq source measured (quantization defaults change between commits)."""
    repo = Path(tvmq.__file__).resolve().parent.parent
    describe = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return describe.stdout.strip() or f"{tvmq.__version__} (not a git checkout)"


def write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda file: file.write(text.encode()))


def write_results(output: Path, record: dict, table: str | None = None) -> None:
    """`record` as JSON into `output` and, where given, the markdown `table` beside it (.md)."""
    write_text(output, json.dumps(record, indent=2) + "\n")
    if table is not None:
        write_text(output.with_suffix(".md"), table)
