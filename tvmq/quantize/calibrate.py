"""Calibrate: run the float model on representative data and record statistics of every
quantization point, streaming batch by batch into one histogram per point.

The model is compiled once with the points as extra outputs (an observation module). The
statistics are cached on disk, keyed by that module, the data and the histogram resolution,
so choosing another range method or percentile later does not run the model again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from tvmq.errors import InputError
from tvmq.files import save_npz_atomically
from tvmq.ir import with_main
from tvmq.progress import Progress, log
from tvmq.quantize.data import CalibrationData
from tvmq.quantize.observers import ChannelMeanObserver, HistogramObserver
from tvmq.tensors import TensorSpec


def observation_module(mod: tvm.IRModule, points: list[relax.Expr]) -> tvm.IRModule:
    """`mod` with a main that returns the values of `points` (params or bindings of main)."""
    func = mod["main"]
    bindings = list(func.body.blocks[0].bindings)
    position = {b.var: i for i, b in enumerate(bindings)}
    mod = relax.transform.ToNonDataflow()(mod)
    block = mod["main"].body.blocks[0]
    params = list(mod["main"].params)
    param_index = {p: i for i, p in enumerate(func.params)}
    outputs = [
        params[param_index[point]] if point in param_index else block.bindings[position[point]].var for point in points
    ]
    body = relax.SeqExpr([block], relax.Tuple(outputs))
    observed = relax.Function(params, body, ret_ty=relax.TupleType([o.ty for o in outputs]), is_pure=True)
    return relax.transform.Normalize()(with_main(mod, observed))


def _cache_key(module: tvm.IRModule, data: CalibrationData, bins: int, mean_axes: list[int | None]) -> str:
    digest = hashlib.sha256()
    digest.update(str(tvm_ffi.structural_hash(module["main"])).encode())
    digest.update(data.digest().encode())
    digest.update(f"bins={bins};means={mean_axes};layout=3".encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class PointStatistics:
    """What calibration records of one quantization point."""

    histogram: HistogramObserver  # picks the point's range
    channel_mean: ChannelMeanObserver | None  # E[x] per channel, where bias correction needs it

    def observe(self, value: np.ndarray) -> None:
        self.histogram.observe(value)
        if self.channel_mean is not None:
            self.channel_mean.observe(value)


def _load_cached(path: Path, count: int) -> list[PointStatistics] | None:
    try:
        with np.load(path, allow_pickle=False) as stored:

            def state(prefix):
                return {k.removeprefix(prefix): stored[k] for k in stored.files if k.startswith(prefix)}

            return [
                PointStatistics(
                    HistogramObserver.from_state(state(f"{i}/histogram/")),
                    ChannelMeanObserver.from_state(means) if (means := state(f"{i}/channel_mean/")) else None,
                )
                for i in range(count)
            ]
    except (OSError, ValueError, KeyError):  # missing, unreadable or of an older layout: recompute
        return None


def _store(path: Path, statistics: list[PointStatistics]) -> None:
    """Written atomically: a concurrent or killed run never leaves a half-written cache."""
    arrays = {}
    for i, point in enumerate(statistics):
        arrays |= {f"{i}/histogram/{k}": v for k, v in point.histogram.state().items()}
        if point.channel_mean is not None:
            arrays |= {f"{i}/channel_mean/{k}": v for k, v in point.channel_mean.state().items()}
    save_npz_atomically(path, arrays)


def collect_statistics(
    mod: tvm.IRModule,
    points: list[relax.Expr],
    mean_axes: list[int | None],
    inputs: tuple[TensorSpec, ...],
    data: CalibrationData,
    bins: int,
    cache_dir: Path | None = None,
) -> list[PointStatistics]:
    """Statistics of every point, from running the float model over `data` (or from cache):
    a histogram of each, and the mean of each channel along `mean_axes` (per point, None for
    none)."""
    module = observation_module(mod, points)
    cache = cache_dir / f"{_cache_key(module, data, bins, mean_axes)}.npz" if cache_dir else None
    if cache is not None and (cached := _load_cached(cache, len(points))) is not None:
        log.info("calibration statistics from %s", cache)
        return cached
    from tvmq.target import load_target

    executable = tvm.compile(module, target=load_target("host").tvm_target())
    vm = relax.VirtualMachine(executable, tvm.cpu())
    statistics = [
        PointStatistics(HistogramObserver(bins), None if axis is None else ChannelMeanObserver(axis))
        for axis in mean_axes
    ]
    batches = list(data.batches(inputs))
    progress = Progress("calibrating", len(batches) * inputs[0].shape[0], "samples")
    for index, batch in enumerate(batches):
        values = vm["main"](*[tvm.runtime.tensor(batch[spec.name]) for spec in inputs])
        for point, point_statistics, value in zip(points, statistics, values):
            try:
                point_statistics.observe(value.numpy())
            except ValueError as err:
                raise InputError(
                    f"calibration batch {index} (samples from {index * inputs[0].shape[0]}): tensor {point.name}: {err}"
                ) from None
        progress.advance(inputs[0].shape[0])
    if cache is not None:
        _store(cache, statistics)
    return statistics
