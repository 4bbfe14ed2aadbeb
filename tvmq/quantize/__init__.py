"""Quantize: float model -> QDQ model (calibrated) -> integer operators (at build time).

    prepare    fold BatchNorm, per-channel affine ops and zero pads into the layers (prepare.py)
    annotate   choose the layers to run in int8 and their quantization points      (annotate.py)
    calibrate  run the float model on data, one histogram per point               (calibrate.py)
    ranges     minmax / percentile / entropy / mse range per point                (observers.py)
    QDQ        insert quantize/dequantize pairs: the simulated model               (qdq.py)
    realize    QDQ groups -> integer operators with fused requantize               (realize.py)

How each operator family is matched, simulated and realized lives in one class per family
(operators/); the integer arithmetic they share in integer.py. `quantize_model` does the first
five; `tvmq.compiler.compile_model` realizes (unless simulating), which is also how
pre-quantized QDQ ONNX models become integer models.

The error report (`error_report`): "quick" keeps the float model's outputs on the first
calibration samples, and compiling measures the compiled model's outputs against them (no
extra model is built or run); "full" also measures the simulated model layer by layer
(report.py), which builds and runs it; "none" measures nothing.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import tvm

from tvmq.errors import QuantizationError
from tvmq.frontend.imported import ImportedModel
from tvmq.ir import op_name, with_main
from tvmq.progress import step
from tvmq.quantize.annotate import QuantPlan, annotate
from tvmq.quantize.calibrate import ObservedModel, collect_statistics
from tvmq.quantize.config import ERROR_REPORTS, QConfig
from tvmq.quantize.data import CalibrationData, load_calibration_data
from tvmq.quantize.observers import compute_range
from tvmq.quantize.prepare import prepare_pipeline
from tvmq.quantize.qdq import insert_qdq
from tvmq.quantize.qparams import affine_qparams, qrange
from tvmq.quantize.realize import realize
from tvmq.quantize.report import quantization_error
from tvmq.target import TargetPreset, load_target

__all__ = ["ERROR_REPORTS", "QConfig", "QuantizationError", "for_codegen", "has_qdq", "quantize_model", "realize"]


# Calibration samples on which the error is measured: enough for stable SQNR figures of every
# layer (full) and of the outputs.
REPORT_SAMPLES = 16


def _levels_per_side(config: QConfig, observer) -> int:
    """Integer steps between 0 and the range's end on each side of zero, what the entropy and
    mse searches trade clipping against: all of them for non-negative data under an
    asymmetric grid, half of them when the grid spans both signs."""
    qmin, qmax = qrange(config.activation_dtype)
    if config.symmetric_activations or observer.min < 0:
        return (qmax - qmin) // 2
    return qmax - qmin


def activation_params(statistics, points, config: QConfig) -> dict:
    """Quantization parameters of every point from its statistics and the chosen method."""
    params = {}
    for point, point_statistics in zip(points, statistics):
        observer = point_statistics.histogram
        if observer.count == 0:
            raise QuantizationError(f"calibration saw no values of tensor {point.name}")
        levels = _levels_per_side(config, observer)
        lo, hi = compute_range(observer, config.method, percentile=config.percentile, levels=levels)
        params[point] = affine_qparams(lo, hi, config.activation_dtype, config.symmetric_activations)
    return params


def quantize_model(
    model: ImportedModel,
    calibration_data: str | os.PathLike | dict | CalibrationData,
    config: QConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    target: TargetPreset | str | dict | None = None,
    error_report: str = "quick",
) -> ImportedModel:
    """The QDQ (calibrated, simulated) form of `model`. `calibration_data` is an `.npz` file,
    a folder of them, or a dict of arrays keyed by input name (first axis = samples).
    Statistics are cached in `cache_dir` when given. `target`, the preset the model will be
    compiled for, settles what the config leaves open (7-bit weights on x86 without VNNI, int8
    activations on ARM). `error_report` is one of ERROR_REPORTS (see the module's docstring)."""
    if error_report not in ERROR_REPORTS:
        raise ValueError(f"error report must be one of {', '.join(ERROR_REPORTS)}, got {error_report!r}")
    config = (config or QConfig()).for_target(load_target(target).tvm_target() if target is not None else None)
    with step("preparing the model for quantization"):
        mod = prepare_pipeline()(model.mod)
        func = mod["main"]
        plan = annotate(func, config)
    data = (
        calibration_data
        if isinstance(calibration_data, CalibrationData)
        else load_calibration_data(calibration_data, model.inputs, config.num_samples)
    )
    points, mean_axes = plan.points, plan.mean_channel_axes()
    # Shared-scale layers only pass their input's error on: the report measures the computing ones.
    measured = [layer for layer in plan.layers if not layer.shares_input_scale] if error_report == "full" else []
    float_model = ObservedModel(mod, [*points, *(layer.output for layer in measured)])
    calibration = collect_statistics(
        float_model,
        points,
        [mean_axes.get(point) for point in points],
        model.inputs,
        data,
        config.bins,
        Path(cache_dir) if cache_dir else None,
        probe_samples=REPORT_SAMPLES,  # kept whatever the report: one cache entry serves all of them
    )
    statistics = calibration.statistics
    params = activation_params(statistics, points, config)
    channel_means = {point: s.channel_mean.mean for point, s in zip(points, statistics) if s.channel_mean is not None}
    with step(f"inserting quantize/dequantize around {len(plan.layers)} layers"):
        qdq, layer_outputs = insert_qdq(func, plan, params, config, channel_means)
        quantized_mod = with_main(mod, qdq)
    error = None
    if error_report != "none":
        error = {"report": error_report, "samples": calibration.probe.samples, "layers": []}
    if error_report == "full":
        with step("measuring the quantization error per layer"):
            simulated = dict(zip(plan.layers, layer_outputs))
            quantized_outputs = [simulated[layer] for layer in measured]
            error |= quantization_error(
                float_model,
                [layer.output for layer in measured],
                ObservedModel(quantized_mod, quantized_outputs),
                quantized_outputs,
                [layer.title for layer in measured],
                model.inputs,
                calibration.probe,
            )
            error["outputs_of"] = "simulated model"
    summary = {
        "mode": "int8",
        "config": config.to_json(),
        "calibration": {"source": data.source, "samples": data.num_samples},
        "layers": [layer.title for layer in plan.layers],
        "float_ops": plan.float_ops,
        "weights": _weight_bytes(plan),
        "error": error,
    }
    probe = None if error_report == "none" else calibration.probe
    return dataclasses.replace(model, mod=quantized_mod, quantization=summary, error_probe=probe)


def _weight_bytes(plan: QuantPlan) -> dict:
    """Bytes of the quantized layers' weights in float32 and as stored (int8 + int32 bias)."""
    weighted = [layer for layer in plan.layers if layer.weighted]
    float_bytes = sum(
        layer.weight.size * 4 + (layer.bias.size * 4 if layer.bias is not None else 0) for layer in weighted
    )
    stored = sum(layer.weight.size + (layer.bias.size * 4 if layer.bias is not None else 0) for layer in weighted)
    return {"float32": float_bytes, "quantized": stored}


def for_codegen(mod: tvm.IRModule, simulate: bool = False) -> tvm.IRModule:
    """A quantized model realized into integer operators (unless simulating), a float model as
    it is: the first step of tvmq.compiler.codegen_module."""
    return realize(mod) if has_qdq(mod) and not simulate else mod


def has_qdq(mod: tvm.IRModule) -> bool:
    """True if the module holds quantize/dequantize operators (a quantized model)."""
    found = []
    tvm.relax.analysis.post_order_visit(
        mod["main"], lambda expr: found.append(op_name(expr) in ("relax.quantize", "relax.dequantize"))
    )
    return any(found)
