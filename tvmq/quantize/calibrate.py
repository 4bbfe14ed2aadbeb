"""Calibrate: run the float model on representative data and record statistics of every
quantization point, streaming batch by batch into one histogram per point.

The model runs as an `ObservedModel`: compiled once, as tvmq compiles models (default
schedules, all cores: tvmq.codegen.host_vm), with the tensors to observe as extra outputs;
the quantization error report (tvmq.quantize.report) reuses it. The statistics are cached on
disk, keyed by that module, the data and the histogram settings, so choosing another range
method or percentile later does not run the model again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from tvmq.codegen import host_vm
from tvmq.errors import InputError
from tvmq.files import save_npz_atomically
from tvmq.ir import with_main
from tvmq.progress import Progress, log
from tvmq.quantize.data import CalibrationData
from tvmq.quantize.observers import ChannelMeanObserver, HistogramObserver
from tvmq.tensors import TensorSpec


def observation_module(mod: tvm.IRModule, points: list[relax.Expr]) -> tvm.IRModule:
    """`mod` with a main that returns the values of `points` (params or bindings of main), its
    bindings again one dataflow block (the layout and fusion passes work on those)."""
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
    observed = relax.Function(
        params, body, ret_ty=relax.TupleType([o.ty for o in outputs]), is_pure=True, attrs=func.attrs
    )
    return relax.transform.ConvertToDataflow()(relax.transform.Normalize()(with_main(mod, observed)))


def model_outputs(func: relax.Function) -> list[relax.Expr]:
    """The expressions `func` returns, one per model output."""
    body = func.body.body
    bindings = {b.var: b.value for b in func.body.blocks[0].bindings}
    value = bindings.get(body, body)
    while isinstance(value, relax.Var) and value in bindings:
        value = bindings[value]
    if isinstance(value, relax.Tuple):
        return list(value.fields)
    return [body]


class ObservedModel:
    """`mod` compiled, on first use, to return for a batch the values of `tensors` (params or
    bindings of main) and of the model's outputs."""

    def __init__(self, mod: tvm.IRModule, tensors: list[relax.Expr]):
        self.outputs = model_outputs(mod["main"])
        self._observed = list(dict.fromkeys([*tensors, *self.outputs]))
        self.module = observation_module(mod, self._observed)
        self._vm = None

    def run(self, batch: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...]) -> dict[relax.Expr, np.ndarray]:
        """The observed values for one model-shaped batch, by tensor."""
        if self._vm is None:
            self._vm = host_vm(self.module)
        values = self._vm["main"](*[tvm.runtime.tensor(batch[spec.name]) for spec in inputs])
        return {tensor: value.numpy() for tensor, value in zip(self._observed, values)}


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
    model: ObservedModel,
    points: list[relax.Expr],
    mean_axes: list[int | None],
    inputs: tuple[TensorSpec, ...],
    data: CalibrationData,
    bins: int,
    cache_dir: Path | None = None,
) -> list[PointStatistics]:
    """Statistics of every point, from running the float model (observing the points) over
    `data` (or from cache): a histogram of each, and the mean of each channel along
    `mean_axes` (per point, None for none)."""
    cache = cache_dir / f"{_cache_key(model.module, data, bins, mean_axes)}.npz" if cache_dir else None
    if cache is not None and (cached := _load_cached(cache, len(points))) is not None:
        log.info("calibration statistics from %s", cache)
        return cached
    statistics = [
        PointStatistics(HistogramObserver(bins), None if axis is None else ChannelMeanObserver(axis))
        for axis in mean_axes
    ]
    batches = list(data.batches(inputs))
    progress = Progress("calibrating", len(batches) * inputs[0].shape[0], "samples")
    for index, batch in enumerate(batches):
        values = model.run(batch, inputs)
        for point, point_statistics in zip(points, statistics):
            try:
                point_statistics.observe(values[point])
            except ValueError as err:
                raise InputError(
                    f"calibration batch {index} (samples from {index * inputs[0].shape[0]}): tensor {point.name}: {err}"
                ) from None
        progress.advance(inputs[0].shape[0])
    if cache is not None:
        _store(cache, statistics)
    return statistics
