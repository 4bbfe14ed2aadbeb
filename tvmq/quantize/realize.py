"""Realize: rewrite a QDQ module into true integer operators.

Each pass matches an operator between dequantize inputs and a quantize output and replaces the
whole group with integer arithmetic:

    quantize(act(conv2d(dq(x_q), dq(w_q)) + dq(b_i32)))
        -> clip(requantize(conv2d(x_q, w_q, out_dtype=int32) + (b_i32 - z_x * sum w_q)))

int8/uint8 inputs, int32 accumulation, bias and zero-point corrections folded into one int32
constant per channel, requantization by an integer multiplier and shift with the activation's
clip fused in. Because each group's output is the next group's `dq(x_q)` input, consecutive
quantized operators pass integers to each other; dequantize remains only where a float operator
or a model output needs it. Patterns that do not apply (unsupported parameters) are left as
they are, which is the simulated form: correct, just not integer.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from tvmq.ir import constant_value, scalar_value, with_main
from tvmq.quantize.dataflow import DataflowGraph
from tvmq.quantize.qparams import QuantParams, fixed_point_multiplier, qrange, with_common_shift


def _params(call: relax.Call) -> QuantParams | None:
    """The parameters of a quantize/dequantize call with constant scale and zero point."""
    scale, zero_point = call.args[1], call.args[2]
    if not (isinstance(scale, tvm.ir.expr.GenericConst) and isinstance(zero_point, tvm.ir.expr.GenericConst)):
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


def _const(values, dtype: str, ndim: int = 0, axis: int | None = None) -> relax.Expr:
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
    scaled = relax.op.multiply(relax.op.astype(acc, "int64"), _const(multiplier, "int64", ndim, axis))
    return _round_shift_clip(scaled, shift, out, clip)


def _round_shift_clip(scaled: relax.Expr, shift: int, out: QuantParams, clip) -> relax.Expr:
    """(scaled + 2^(shift-1)) >> shift + z_out, clipped to `out`'s (and the activation's) range."""
    rounded = relax.op.add(scaled, _const(np.int64(1) << (shift - 1), "int64"))
    shifted = relax.op.right_shift(rounded, _const(shift, "int64"))
    lo, hi = quantized_clip(out, clip)
    result = relax.op.clip(relax.op.add(shifted, _const(out.zero_point, "int64")), lo, hi)
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
    centred = relax.op.subtract(relax.op.astype(x_q, "int32"), _const(source.zero_point, "int32"))
    return requantize(centred, float(source.scale) / float(out.scale), out)


def _same(a: QuantParams, b: QuantParams) -> bool:
    return (
        a.dtype == b.dtype
        and a.scale.shape == b.scale.shape
        and np.array_equal(a.scale, b.scale)
        and np.array_equal(a.zero_point, b.zero_point)
    )


def _activation_bounds(expr: relax.Call) -> tuple[float, float] | None:
    if expr.op.name == "relax.nn.relu":
        return (0.0, float("inf"))
    lo, hi = scalar_value(expr.args[1]), scalar_value(expr.args[2])
    return None if lo is None or hi is None else (lo, hi)


class _Pass:
    """A pattern rooted at a quantize call and a rewrite of what it matched."""

    def rewrite(self, expr: relax.Call, matches) -> relax.Expr:
        raise NotImplementedError

    def __call__(self, func: relax.Function) -> relax.Function:
        return rewrite_call(self.pattern, self.rewrite, func)


def _dequantize(data=None):
    return is_op("relax.dequantize")(data if data is not None else wildcard(), is_const(), is_const())


def _with_activation(inner):
    """`inner`, optionally followed by ReLU or clip."""
    return is_op("relax.nn.relu")(inner) | is_op("relax.clip")(inner, wildcard(), wildcard()) | inner


class RealizeWeightedLayer(_Pass):
    """conv2d / matmul with constant int8 weights (zero point 0), optional int32 bias and
    activation, into an integer layer with fused requantization."""

    def __init__(self):
        self.x_q, self.w_q, self.b_q = wildcard(), is_const(), is_const()
        self.dq_x, self.dq_w, self.dq_b = _dequantize(self.x_q), _dequantize(self.w_q), _dequantize(self.b_q)
        # Exporters store dense weights as [N, K] and transpose them; biases may be reshaped.
        self.transposed_w = is_op("relax.permute_dims")(self.dq_w)
        weight = self.dq_w | self.transposed_w
        self.layer = is_op("relax.nn.conv2d")(self.dq_x, self.dq_w) | is_op("relax.matmul")(self.dq_x, weight)
        self.biased = is_op("relax.add")(self.layer, self.dq_b | is_op("relax.reshape")(self.dq_b, wildcard()))
        self.activated = _with_activation(self.biased | self.layer)
        self.pattern = is_op("relax.quantize")(self.activated, is_const(), is_const())

    def rewrite(self, expr, matches):
        out = _params(expr)
        if out is None or out.per_channel:
            return expr
        realized = self.integer_layer(matches)
        if realized is None:
            return expr
        acc, accumulator_scale, axis, ndim = realized
        clip = _activation_bounds(matches[self.activated]) if _is_activation(matches[self.activated]) else None
        return requantize(acc, accumulator_scale / float(out.scale), out, clip, axis, ndim)

    def integer_layer(self, matches):
        """(int32 accumulator with bias and zero-point corrections, its per-channel scale,
        channel axis, rank), or None when the parameters do not allow an integer layer."""
        layer = matches[self.layer]
        x_params, w_params = _params(matches[self.dq_x]), _params(matches[self.dq_w])
        if None in (x_params, w_params) or x_params.per_channel:
            return None
        if np.any(w_params.zero_point != 0) or str(matches[self.w_q].ty.dtype) != "int8":
            return None
        is_conv = layer.op.name == "relax.nn.conv2d"
        if is_conv and (layer.attrs["data_layout"] != "NCHW" or layer.attrs["kernel_layout"] != "OIHW"):
            return None
        weight = constant_value(matches[self.w_q])
        if self.transposed_w in matches:
            axes = [int(a) for a in matches[self.transposed_w].attrs["axes"]] or list(range(weight.ndim))[::-1]
            weight = weight.transpose(axes)
            if w_params.per_channel:
                w_params = QuantParams(w_params.scale, w_params.zero_point, w_params.dtype, axes.index(w_params.axis))
        channels = weight.shape[0] if is_conv else weight.shape[-1]
        if w_params.per_channel and w_params.axis != (0 if is_conv else weight.ndim - 1):
            return None
        accumulator_scale = float(x_params.scale) * np.broadcast_to(w_params.scale.astype(np.float64), (channels,))
        bias = np.zeros(channels, np.int64)
        if self.biased in matches:
            bias_params = _params(matches[self.dq_b])
            raw = constant_value(matches[self.b_q]).astype(np.float64).reshape(-1)
            if bias_params is None or raw.size not in (1, channels):
                return None
            real_bias = np.broadcast_to(raw * np.broadcast_to(bias_params.scale, raw.shape), (channels,))
            bias = np.round(real_bias / accumulator_scale).astype(np.int64)
        x_q = matches[self.x_q]
        zero_x = int(x_params.zero_point)
        if is_conv:
            acc, weight_sums = self._conv(layer, x_q, weight, zero_x)
        else:
            acc = relax.op.matmul(x_q, relax.const(weight), out_dtype="int32")
            weight_sums = weight.astype(np.int64).sum(axis=0)
        axis = 1 if is_conv else len(layer.ty.shape) - 1
        correction = np.clip(bias - zero_x * weight_sums, *qrange("int32"))
        acc = relax.op.add(acc, _const(correction, "int32", len(layer.ty.shape), axis))
        return acc, accumulator_scale, axis, len(layer.ty.shape)

    @staticmethod
    def _conv(layer, x_q, weight, zero_x):
        """Integer conv2d. Padding must add real zeros, i.e. the zero point: pad explicitly."""
        attrs = layer.attrs
        padding = [int(p) for p in attrs["padding"]]
        if zero_x != 0 and any(padding):
            top, left, bottom, right = padding
            x_q = relax.op.nn.pad(x_q, [0, 0, 0, 0, top, bottom, left, right], pad_value=float(zero_x))
            padding = [0, 0, 0, 0]
        acc = relax.op.nn.conv2d(
            x_q,
            relax.const(weight),
            strides=attrs["strides"],
            padding=padding,
            dilation=attrs["dilation"],
            groups=int(attrs["groups"]),
            data_layout="NCHW",
            kernel_layout="OIHW",
            out_dtype="int32",
        )
        return acc, weight.astype(np.int64).sum(axis=(1, 2, 3))


class RealizeWeightedLayerToFloat(RealizeWeightedLayer):
    """A quantized-input layer whose output only float operators read: integer accumulation,
    then the int32 accumulator dequantized directly (no 8-bit rounding of the output)."""

    def __init__(self):
        super().__init__()
        self.pattern = self.activated

    def rewrite(self, expr, matches):
        realized = self.integer_layer(matches)
        if realized is None:
            return expr
        acc, accumulator_scale, axis, ndim = realized
        params = QuantParams(
            accumulator_scale.astype(np.float32), np.zeros(len(accumulator_scale), np.int32), "int32", axis
        )
        result = relax.op.dequantize(acc, relax.const(params.scale), relax.const(params.zero_point), axis=axis)
        activated = matches[self.activated]
        if _is_activation(activated):
            result = relax.Call(activated.op, [result, *activated.args[1:]], activated.attrs)
        return result


def _is_activation(expr) -> bool:
    return isinstance(expr, relax.Call) and expr.op.name in ("relax.nn.relu", "relax.clip")


class RealizeActivationMatmul(_Pass):
    """matmul of two quantized activations (attention scores, context): integers minus their
    zero points, multiplied with int32 accumulation, requantized."""

    def __init__(self):
        self.dq_a, self.dq_b = _dequantize(), _dequantize()
        self.matmul = is_op("relax.matmul")(self.dq_a, self.dq_b)
        self.activated = _with_activation(self.matmul)
        self.pattern = is_op("relax.quantize")(self.activated, is_const(), is_const())

    def integer_matmul(self, matches) -> tuple[relax.Expr, float] | None:
        """The int32 product of the centred operands and its scale s_a * s_b."""
        a, b = _params(matches[self.dq_a]), _params(matches[self.dq_b])
        if None in (a, b) or a.per_channel or b.per_channel:
            return None
        operands = [
            relax.op.subtract(relax.op.astype(matches[dq].args[0], "int32"), _const(p.zero_point, "int32"))
            for dq, p in ((self.dq_a, a), (self.dq_b, b))
        ]
        return relax.op.matmul(*operands, out_dtype="int32"), float(a.scale) * float(b.scale)

    def rewrite(self, expr, matches):
        out, product = _params(expr), self.integer_matmul(matches)
        if out is None or out.per_channel or product is None:
            return expr
        acc, scale = product
        clip = _activation_bounds(matches[self.activated]) if _is_activation(matches[self.activated]) else None
        return requantize(acc, scale / float(out.scale), out, clip)


class RealizeActivationMatmulToFloat(RealizeActivationMatmul):
    """An activation matmul whose output only float operators read (attention scores before
    their scaling and softmax): int32 product, dequantized straight from the accumulator."""

    def __init__(self):
        super().__init__()
        self.pattern = self.matmul

    def rewrite(self, expr, matches):
        product = self.integer_matmul(matches)
        if product is None:
            return expr
        acc, scale = product
        return relax.op.dequantize(acc, relax.const(np.float32(scale)), relax.const(np.int32(0)))


class RealizeAdd(_Pass):
    """add of two quantized activations: each operand minus its zero point, scaled by its own
    fixed-point multiplier over a common shift, summed in int64."""

    def __init__(self):
        self.dq_a, self.dq_b = _dequantize(), _dequantize()
        self.add = is_op("relax.add")(self.dq_a, self.dq_b)
        self.activated = _with_activation(self.add)
        self.pattern = is_op("relax.quantize")(self.activated, is_const(), is_const())

    def rewrite(self, expr, matches):
        a, b, out = _params(matches[self.dq_a]), _params(matches[self.dq_b]), _params(expr)
        if None in (a, b, out) or a.per_channel or b.per_channel or out.per_channel:
            return expr
        ratios = np.array([float(a.scale), float(b.scale)]) / float(out.scale)
        multipliers, shift = with_common_shift(*fixed_point_multiplier(ratios))
        terms = [
            relax.op.multiply(
                relax.op.subtract(relax.op.astype(matches[dq].args[0], "int64"), _const(p.zero_point, "int64")),
                _const(m, "int64"),
            )
            for dq, p, m in ((self.dq_a, a, multipliers[0]), (self.dq_b, b, multipliers[1]))
        ]
        clip = _activation_bounds(matches[self.activated]) if _is_activation(matches[self.activated]) else None
        return _round_shift_clip(relax.op.add(terms[0], terms[1]), shift, out, clip)


class RealizeConcat(_Pass):
    """concat of quantized tensors: each rescaled to the output's parameters, then joined."""

    def __init__(self):
        self.fields = wildcard()
        self.concat = is_op("relax.concat")(self.fields)
        self.pattern = is_op("relax.quantize")(self.concat, is_const(), is_const())

    def rewrite(self, expr, matches):
        out, fields = _params(expr), matches[self.fields]
        if out is None or out.per_channel or not isinstance(fields, relax.Tuple):
            return expr
        parts = []
        for field in fields.fields:
            source = self.values.get(field, field)
            if not (isinstance(source, relax.Call) and source.op.name == "relax.dequantize"):
                return expr
            params = _params(source)
            if params is None or params.per_channel:
                return expr
            parts.append(rescale(source.args[0], params, out))
        return relax.op.concat(parts, axis=int(matches[self.concat].attrs["axis"]))

    def __call__(self, func):
        self.values = DataflowGraph(func).value
        return super().__call__(func)


# Operators that only move or select values: on integers they compute the same thing.
_MOVING_OPS = ("relax.nn.max_pool2d", "relax.reshape", "relax.permute_dims", "relax.squeeze", "relax.expand_dims")
# Operators that average. They run on the integers converted to float32 and rounded back:
# the mean of integers, rounded half to even exactly as the simulated model rounds it.
_AVERAGING_OPS = ("relax.nn.avg_pool2d", "relax.nn.adaptive_avg_pool2d", "relax.mean")


class RealizeSharedScale(_Pass):
    """Data movement and averaging between a dequantize and a quantize run on the integers."""

    def __init__(self):
        self.dq = _dequantize()
        self.op = wildcard()
        self.pattern = is_op("relax.quantize")(self.op, is_const(), is_const())

    def rewrite(self, expr, matches):
        op = matches[self.op]
        if not isinstance(op, relax.Call) or not isinstance(op.op, tvm.ir.Op):
            return expr
        name = op.op.name
        if name not in _MOVING_OPS + _AVERAGING_OPS or not op.args:
            return expr
        source = self.values.get(op.args[0], op.args[0])
        if not (
            isinstance(source, relax.Call) and isinstance(source.op, tvm.ir.Op) and source.op.name == "relax.dequantize"
        ):
            return expr
        params, out = _params(source), _params(expr)
        if params is None or out is None or params.per_channel or out.per_channel:
            return expr
        x_q = source.args[0]
        if name in _AVERAGING_OPS:
            averaged = relax.Call(op.op, [relax.op.astype(x_q, "float32"), *op.args[1:]], op.attrs, op.ty_args)
            moved = relax.op.astype(relax.op.round(averaged), params.dtype)
        else:
            moved = relax.Call(op.op, [x_q, *op.args[1:]], op.attrs, op.ty_args)
        return rescale(moved, params, out)

    def __call__(self, func):
        self.values = DataflowGraph(func).value
        return super().__call__(func)


class FoldQuantizeDequantize(_Pass):
    """quantize(dequantize(x_q)) between two quantized operators: rescale the integers."""

    def __init__(self):
        self.dq = _dequantize()
        self.pattern = is_op("relax.quantize")(self.dq, is_const(), is_const())

    def rewrite(self, expr, matches):
        source, out = _params(matches[self.dq]), _params(expr)
        if source is None or out is None or source.per_channel or out.per_channel:
            return expr
        return rescale(matches[self.dq].args[0], source, out)


REALIZE_PASSES = (
    RealizeWeightedLayer,
    RealizeActivationMatmul,
    RealizeAdd,
    RealizeConcat,
    RealizeSharedScale,
    FoldQuantizeDequantize,
    RealizeWeightedLayerToFloat,
    RealizeActivationMatmulToFloat,
)


def realize(mod: tvm.IRModule) -> tvm.IRModule:
    """Rewrite every quantized group of `mod["main"]` into integer operators."""
    func = mod["main"]
    for realize_pass in REALIZE_PASSES:
        func = realize_pass()(func)
    return relax.transform.DeadCodeElimination()(with_main(mod, func))
