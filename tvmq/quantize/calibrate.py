"""Calibrate: run the float model on representative data and record statistics of every
quantization point, streaming batch by batch into one histogram per point.

The model runs as an `ObservedModel`: compiled once, as tvmq compiles models (default
schedules, all cores: tvmq.codegen.observing_vm), with the tensors to observe as extra outputs;
the quantization error report (tvmq.quantize.report) reuses it. The statistics are cached on
disk, keyed by that module, the data and the histogram settings, so choosing another range
method or percentile later does not run the model again. The model's outputs on the first
samples are kept too (and cached with the statistics): what the compiled quantized model's
outputs are measured against.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from tvmq.codegen import observing_vm
from tvmq.errors import InputError
from tvmq.files import save_npz_atomically
from tvmq.ir import with_main
from tvmq.metrics import OutputProbe
from tvmq.progress import Progress, log
from tvmq.quantize.data import CalibrationData
from tvmq.quantize.observers import ChannelMeanObserver, HistogramObserver
from tvmq.tensors import TensorSpec


def observation_module(mod: tvm.IRModule, points: list[relax.Expr]) -> tvm.IRModule:
    """`mod` with a main that returns the values of `points` (params or bindings of main). Each
    returned binding is an alias of its point, which stays local to main's dataflow block: the
    layout pass then converts only the alias back to the model's layout, and the operators
    reading the point keep theirs (returned itself, the point would be converted where it is
    bound, and its readers with it)."""
    func = mod["main"]
    (block,) = func.body.blocks  # one dataflow block, as the frontends and tvmq's passes leave main
    params = set(func.params)
    bindings, outputs = list(block.bindings), []
    for index, point in enumerate(points):
        if point in params:
            outputs.append(point)
            continue
        alias = relax.Var(f"observed_{index}", point.ty)
        bindings.append(relax.VarBinding(alias, point))
        outputs.append(alias)
    body = relax.SeqExpr([relax.DataflowBlock(bindings)], relax.Tuple(outputs))
    observed = relax.Function(
        func.params, body, ret_ty=relax.TupleType([o.ty for o in outputs]), is_pure=True, attrs=func.attrs
    )
    return relax.transform.Normalize()(with_main(mod, observed))


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
        self._vm, self._axes = None, None

    def compile(self) -> None:
        """Build the module now (else the first `run` does)."""
        if self._vm is None:
            self._vm, self._axes = observing_vm(self.module)

    def run(self, batch: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...]) -> dict[relax.Expr, np.ndarray]:
        """The observed values for one model-shaped batch, by tensor (views in the model's
        layout of the arrays as computed)."""
        self.compile()
        values = self._vm["main"](*[tvm.runtime.tensor(batch[spec.name]) for spec in inputs])
        return {
            tensor: value.numpy() if axes is None else value.numpy().transpose(axes)
            for tensor, value, axes in zip(self._observed, values, self._axes)
        }


def _cache_key(
    module: tvm.IRModule, data: CalibrationData, bins: int, mean_axes: list[int | None], probe_batches: int
) -> str:
    digest = hashlib.sha256()
    digest.update(str(tvm_ffi.structural_hash(module["main"])).encode())
    digest.update(data.digest().encode())
    digest.update(f"bins={bins};means={mean_axes};probe={probe_batches};layout=4".encode())
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


@dataclass(frozen=True)
class Calibration:
    """What running the float model over the calibration data gives."""

    statistics: list[PointStatistics]  # per point
    probe: OutputProbe | None  # the first batches with the model's outputs for them


def _load_cached(path: Path, count: int, batches: list[dict[str, np.ndarray]], outputs: int) -> Calibration | None:
    try:
        with np.load(path, allow_pickle=False) as stored:

            def state(prefix):
                return {k.removeprefix(prefix): stored[k] for k in stored.files if k.startswith(prefix)}

            statistics = [
                PointStatistics(
                    HistogramObserver.from_state(state(f"{i}/histogram/")),
                    ChannelMeanObserver.from_state(means) if (means := state(f"{i}/channel_mean/")) else None,
                )
                for i in range(count)
            ]
            reference = tuple(tuple(stored[f"probe/{b}/{o}"] for o in range(outputs)) for b in range(len(batches)))
    except (OSError, ValueError, KeyError):  # missing, unreadable or of an older layout: recompute
        return None
    return Calibration(statistics, OutputProbe(tuple(batches), reference) if batches else None)


def _store(path: Path, calibration: Calibration) -> None:
    """Written atomically: a concurrent or killed run never leaves a half-written cache."""
    arrays = {}
    for i, point in enumerate(calibration.statistics):
        arrays |= {f"{i}/histogram/{k}": v for k, v in point.histogram.state().items()}
        if point.channel_mean is not None:
            arrays |= {f"{i}/channel_mean/{k}": v for k, v in point.channel_mean.state().items()}
    if calibration.probe is not None:
        for b, outputs in enumerate(calibration.probe.reference):
            arrays |= {f"probe/{b}/{o}": value for o, value in enumerate(outputs)}
    save_npz_atomically(path, arrays)


def collect_statistics(
    model: ObservedModel,
    points: list[relax.Expr],
    mean_axes: list[int | None],
    inputs: tuple[TensorSpec, ...],
    data: CalibrationData,
    bins: int,
    cache_dir: Path | None = None,
    probe_samples: int = 0,
) -> Calibration:
    """Statistics of every point, from running the float model (observing the points) over
    `data` (or from cache): a histogram of each, and the mean of each channel along
    `mean_axes` (per point, None for none); and the model's outputs on the batches of the
    first `probe_samples` samples (at least one batch where asked for any). The batches
    stream: memory holds one batch's values at a time, whatever the number of samples."""
    batch_size = data.batch_size(inputs)
    probe_batches = list(itertools.islice(data.batches(inputs), -(-probe_samples // batch_size)))
    key = _cache_key(model.module, data, bins, mean_axes, len(probe_batches))
    cache = cache_dir / f"{key}.npz" if cache_dir else None
    if cache is not None and (cached := _load_cached(cache, len(points), probe_batches, len(model.outputs))):
        log.info("calibration statistics from %s", cache)
        return cached
    statistics = [
        PointStatistics(HistogramObserver(bins), None if axis is None else ChannelMeanObserver(axis))
        for axis in mean_axes
    ]
    model.compile()
    reference = []
    progress = Progress("calibrating", data.num_batches(inputs) * batch_size, "samples")
    for index, batch in enumerate(data.batches(inputs)):
        values = model.run(batch, inputs)
        if index < len(probe_batches):
            reference.append(tuple(values[output] for output in model.outputs))
        for point, point_statistics in zip(points, statistics):
            try:
                point_statistics.observe(values[point])
            except ValueError as err:
                raise InputError(
                    f"calibration batch {index} (samples from {index * batch_size}): tensor {point.name}: {err}"
                ) from None
        progress.advance(batch_size)
    probe = OutputProbe(tuple(probe_batches), tuple(reference)) if probe_batches else None
    calibration = Calibration(statistics, probe)
    if cache is not None:
        _store(cache, calibration)
    return calibration
