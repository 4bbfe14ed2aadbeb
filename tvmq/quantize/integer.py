"""The Relax that quantized operators are built from: quantize/dequantize expressions (the
simulated model), the patterns the realize rewrites match, and the integer arithmetic they
replace them with.

Every realize rewrite (one per operator family, tvmq.quantize.operators) matches an operator
between dequantize inputs and a quantize output and replaces the group with integer Relax:
int32 accumulators requantized by a fixed-point multiplier and shift, clipped to the output's
range and its fused activation's, in int64 so nothing overflows.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from tvmq.ir import constant_value, is_constant, op_name, scalar_value
from tvmq.quantize.qparams import QuantParams, fixed_point_multiplier, qrange, with_common_shift


def quantize_expr(expr: relax.Expr, params: QuantParams) -> relax.Expr:
    return relax.op.quantize(
        expr, relax.const(params.scale), relax.const(params.zero_point), axis=_axis(params), out_dtype=params.dtype
    )


def dequantize_expr(expr: relax.Expr, params: QuantParams) -> relax.Expr:
    return relax.op.dequantize(expr, relax.const(params.scale), relax.const(params.zero_point), axis=_axis(params))


def _axis(params: QuantParams) -> int:
    return params.axis if params.per_channel else -1


def qparams_of(call: relax.Call) -> QuantParams | None:
    """The parameters of a quantize/dequantize call with constant scale and zero point."""
    scale, zero_point = call.args[1], call.args[2]
    if not (is_constant(scale) and is_constant(zero_point)):
        return None
    scale, zero_point = constant_value(scale).astype(np.float32), constant_value(zero_point).astype(np.int32)
    dtype = str(call.attrs["out_dtype"]) if call.op.name == "relax.quantize" else str(call.args[0].ty.dtype)
    per_channel = scale.ndim == 1 and scale.size > 1
    scale = scale if per_channel else scale.reshape(())
    zero_point = np.broadcast_to(zero_point, scale.shape).copy() if per_channel else zero_point.reshape(())
    axis = int(call.attrs["axis"]) if per_channel else None
    if axis is not None and axis < 0:
        axis += len(call.args[0].ty.shape)
    return QuantParams(scale, zero_point, dtype, axis)


def int_const(values, dtype: str, ndim: int = 0, axis: int | None = None) -> relax.Expr:
    """A constant shaped to broadcast along `axis` of an ndim-D tensor (scalar without axis)."""
    values = np.asarray(values).astype(dtype)
    if axis is not None and values.ndim == 1 and values.size > 1:
        shape = [1] * ndim
        shape[axis] = -1
        values = values.reshape(shape)
    return relax.const(values.reshape(values.shape or ()), dtype)


def requantize(
    acc: relax.Expr,
    real_multiplier,
    out: QuantParams,
    clip: tuple[float, float] | None = None,
    axis: int | None = None,
    ndim: int = 0,
) -> relax.Expr:
    """int32 `acc` (in units of real_multiplier * s_out) -> `out` integers:
    clip(((acc * m + 2^(n-1)) >> n) + z_out), in int64 so nothing overflows. Per-channel
    multipliers lie along `axis` of the ndim-D accumulator."""
    multiplier, shift = with_common_shift(*fixed_point_multiplier(real_multiplier))
    scaled = relax.op.multiply(relax.op.astype(acc, "int64"), int_const(multiplier, "int64", ndim, axis))
    return round_shift_clip(scaled, shift, out, clip)


def round_shift_clip(scaled: relax.Expr, shift: int, out: QuantParams, clip) -> relax.Expr:
    """(scaled + 2^(shift-1)) >> shift + z_out, clipped to `out`'s (and the activation's) range."""
    rounded = relax.op.add(scaled, int_const(np.int64(1) << (shift - 1), "int64"))
    shifted = relax.op.right_shift(rounded, int_const(shift, "int64"))
    lo, hi = quantized_clip(out, clip)
    result = relax.op.clip(relax.op.add(shifted, int_const(out.zero_point, "int64")), lo, hi)
    return relax.op.astype(result, out.dtype)


def quantized_clip(out: QuantParams, clip: tuple[float, float] | None) -> tuple[int, int]:
    """The integer range of `out`, narrowed by a fused activation's real bounds."""
    lo, hi = qrange(out.dtype)
    if clip is not None:
        scale, zero_point = float(out.scale), int(out.zero_point)
        if np.isfinite(clip[0]):
            lo = max(lo, zero_point + int(np.round(clip[0] / scale)))
        if np.isfinite(clip[1]):
            hi = min(hi, zero_point + int(np.round(clip[1] / scale)))
    return lo, hi


def rescale(x_q: relax.Expr, source: QuantParams, out: QuantParams) -> relax.Expr:
    """Integers of `source` re-expressed in `out` (identity when the parameters agree)."""
    if _same(source, out):
        return x_q
    centred = relax.op.subtract(relax.op.astype(x_q, "int32"), int_const(source.zero_point, "int32"))
    return requantize(centred, float(source.scale) / float(out.scale), out)


def _same(a: QuantParams, b: QuantParams) -> bool:
    return (
        a.dtype == b.dtype
        and a.scale.shape == b.scale.shape
        and np.array_equal(a.scale, b.scale)
        and np.array_equal(a.zero_point, b.zero_point)
    )


def dequantize_pattern(data=None):
    """dequantize(data or anything, constant scale, constant zero point)."""
    return is_op("relax.dequantize")(data if data is not None else wildcard(), is_const(), is_const())


def quantize_pattern(inner):
    """quantize(inner, constant scale, constant zero point)."""
    return is_op("relax.quantize")(inner, is_const(), is_const())


def with_activation(inner):
    """`inner`, optionally followed by ReLU or clip."""
    return is_op("relax.nn.relu")(inner) | is_op("relax.clip")(inner, wildcard(), wildcard()) | inner


def activation_clip(expr: relax.Expr) -> tuple[float, float] | None:
    """The real bounds of a matched `with_activation`: those of its ReLU or clip, None without one
    (or for a clip with bounds that are not numbers)."""
    name = op_name(expr)
    if name == "relax.nn.relu":
        return (0.0, float("inf"))
    if name != "relax.clip":
        return None
    lo, hi = scalar_value(expr.args[1]), scalar_value(expr.args[2])
    return None if lo is None or hi is None else (lo, hi)


def is_activation_call(expr: relax.Expr) -> bool:
    """Whether a matched `with_activation` includes its ReLU or clip."""
    return op_name(expr) in ("relax.nn.relu", "relax.clip")
