"""Timing shared by the benchmark scripts: one timer per system, each a callable returning the
median milliseconds of `runs` inferences, and rounds that interleave the systems so that drift
on a busy machine hits all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from tvmq.compiler import compile_model
from tvmq.runtime import load_package

Timer = Callable[[], float]  # one round: the median ms of its runs


def _median_of_runs(run: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def onnxruntime_timer(path: Path, inputs: dict[str, np.ndarray], threads: int, runs: int) -> Timer:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, inputs)
    return lambda: _median_of_runs(lambda: session.run(None, inputs), runs)


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
        return _median_of_runs(run, runs)

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
    start = time.perf_counter()
    metadata = compile_model(model, target, output, tuning_log=tuning_log)
    return output, time.perf_counter() - start, metadata.tuning
