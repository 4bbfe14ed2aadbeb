"""conv2d and matmul with constant weights: the layers that carry weights.

Weights are stored quantized, symmetric int8 per output channel (or per tensor), within 7 bits
for targets whose int8 instruction would overflow with 8; biases as int32 in the accumulator's
units s_x * s_w, corrected for the mean shift that rounding the weights gives each output.
Realized:

    quantize(act(conv2d(dq(x_q), dq(w_q)) + dq(b_i32)))
        -> clip(requantize(conv2d(x_q, w_q, out_dtype=int32) + (b_i32 - z_x * sum w_q)))

with the zero-point correction folded into the bias, one int32 constant per channel; a layer
whose output only float operators read is dequantized straight from its int32 accumulator.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from tvmq.ir import PatternRewrite, constant_value, is_constant, op_name
from tvmq.quantize.channels import channel_axis, per_channel_vector, weight_channel_axis
from tvmq.quantize.integer import (
    activation_clip,
    dequantize_expr,
    dequantize_pattern,
    int_const,
    is_activation_call,
    qparams_of,
    quantize_pattern,
    requantize,
    with_activation,
)
from tvmq.quantize.operators.base import LayerMatch, OperatorQuantizer, fused_activation, is_float_tensor
from tvmq.quantize.qparams import QuantParams, affine_qparams, qrange

LAYER_OPS = {"relax.nn.conv2d": "conv2d", "relax.matmul": "matmul"}


class WeightedLayer(OperatorQuantizer):
    ops = tuple(LAYER_OPS)
    aliases = {"conv": "conv2d", "gemm": "matmul", "dense": "matmul", "linear": "matmul"}

    def match(self, graph, var, quantized):
        call = graph.value[var]
        data, weight = call.args[0], call.args[1]
        if not is_float_tensor(data) or not is_constant(weight):
            return None
        op = LAYER_OPS[op_name(call)]
        if op == "conv2d" and call.attrs["kernel_layout"] != "OIHW":
            return None
        weights = constant_value(weight)
        if op == "matmul" and weights.ndim != 2:
            return None
        output, bias = _bias_add(graph, var, op, call, weights.shape[weight_channel_axis(op, weights.ndim)])
        output, clip = fused_activation(graph, output)
        return LayerMatch(op, inputs=(data,), output=output, weight=weights, bias=bias, clip=clip)

    def weight_params(self, layer, config) -> QuantParams:
        return weight_qparams(layer.op, layer.weight, config.per_channel, config.reduce_range)

    def qdq_value(self, layer, var, value, qdq):
        w_params = qdq.weight_params[layer]
        if var.same_as(layer.anchor):
            quantized = relax.const(w_params.quantize(layer.weight))
            weight = qdq.emit(dequantize_expr(quantized, w_params), f"{layer.name}_w")
            return relax.Call(value.op, [value.args[0], weight], value.attrs, value.ty_args)
        if layer.bias is None or not var.same_as(qdq.graph.only_user(layer.anchor)):
            return value
        bias = layer.bias
        source = qdq.plan.input_as_measured(layer)
        if qdq.config.bias_correction and source in qdq.channel_means:
            bias = bias - weight_rounding_shift(layer.op, layer.weight, w_params, qdq.channel_means[source])
        anchor_call = qdq.graph.value[layer.anchor]
        return relax.op.add(qdq.env[layer.anchor], _bias_expr(bias, anchor_call, qdq.params[layer.inputs[0]], w_params))

    def realize_passes(self):
        return [_RealizeWeightedLayer().as_pass()]

    def realize_to_float_passes(self):
        return [_RealizeWeightedLayerToFloat().as_pass()]


def _bias_add(graph, var, op, call, channels):
    """(the bias add's var, the bias per channel) if `var`'s single user adds a constant that
    varies along the output channels only, else (var, None)."""
    user = graph.only_user(var)
    if user is None or op_name(graph.value[user]) != "relax.add":
        return var, None
    add = graph.value[user]
    other = add.args[1] if add.args[0].same_as(var) else add.args[0]
    if not is_constant(other):
        return var, None
    ndim = len(call.ty.shape)
    vector = per_channel_vector(constant_value(other), ndim, channel_axis(op, ndim), channels)
    return (var, None) if vector is None else (user, vector)


def weight_qparams(op: str, weight: np.ndarray, per_channel: bool, reduce_range: bool = False) -> QuantParams:
    """Symmetric int8 parameters of a layer's weights, per output channel or per tensor, over
    [-127, 127] or, with `reduce_range`, [-63, 63]."""
    axis = weight_channel_axis(op, weight.ndim)
    reduce_axes = tuple(i for i in range(weight.ndim) if i != axis)
    amax = np.abs(weight).max(axis=reduce_axes) if per_channel else np.abs(weight).max()
    params = affine_qparams(-amax, amax, "int8", symmetric=True, axis=axis if per_channel else None)
    if not reduce_range:
        return params
    return QuantParams(params.scale * np.float32(127 / 63), params.zero_point, params.dtype, params.axis)


def quantized_bias(
    bias: np.ndarray, input_params: QuantParams, weight_params: QuantParams
) -> tuple[np.ndarray, np.ndarray]:
    """int32 bias and its scale s_x * s_w (per channel): the accumulator's own units."""
    scale = (input_params.scale.astype(np.float64) * weight_params.scale.astype(np.float64)).reshape(-1)
    scale = np.broadcast_to(scale, bias.shape)
    return np.clip(np.round(bias / scale), *qrange("int32")).astype(np.int32), scale.astype(np.float32)


def weight_rounding_shift(op: str, weight: np.ndarray, w_params: QuantParams, input_means: np.ndarray) -> np.ndarray:
    """E[(W_q - W) x] per output channel: the mean shift that rounding the weights gives each
    output, for inputs with per-channel means E[x] (border padding ignored). Subtracted from
    the bias, it undoes that shift ("bias correction"; it matters most for depthwise
    convolutions, whose 9 weights per channel can all round the same way)."""
    error = w_params.dequantize(w_params.quantize(weight)).astype(np.float64) - weight
    if op == "matmul":  # weight [K, N], input channels along K
        return input_means @ error
    out_channels, group_channels = error.shape[:2]
    groups = len(input_means) // group_channels
    means = input_means.reshape(groups, 1, group_channels, 1, 1)
    per_group = error.reshape(groups, out_channels // groups, group_channels, *error.shape[2:])
    return (per_group * means).sum(axis=(2, 3, 4)).reshape(out_channels)


def _bias_expr(bias: np.ndarray, anchor_call: relax.Call, input_params: QuantParams, w_params: QuantParams):
    """A layer's bias as dequantize(int32 constant) in the accumulator's units."""
    bias_i32, bias_scale = quantized_bias(bias, input_params, w_params)
    ndim = len(anchor_call.ty.shape)
    axis = channel_axis(LAYER_OPS[anchor_call.op.name], ndim)
    shape = [1] * ndim
    shape[axis] = -1
    bias_params = QuantParams(bias_scale, np.zeros(bias_scale.shape, np.int32), "int32", axis=axis)
    return dequantize_expr(relax.const(bias_i32.reshape(shape)), bias_params)


class _RealizeWeightedLayer(PatternRewrite):
    """conv2d / matmul with constant int8 weights (zero point 0), optional int32 bias and
    activation, into an integer layer with fused requantization."""

    def __init__(self):
        self.x_q, self.w_q, self.b_q = wildcard(), is_const(), is_const()
        self.dq_x, self.dq_w, self.dq_b = (dequantize_pattern(p) for p in (self.x_q, self.w_q, self.b_q))
        # Exporters store dense weights as [N, K] and transpose them; biases may be reshaped.
        self.transposed_w = is_op("relax.permute_dims")(self.dq_w)
        weight = self.dq_w | self.transposed_w
        self.layer = is_op("relax.nn.conv2d")(self.dq_x, self.dq_w) | is_op("relax.matmul")(self.dq_x, weight)
        self.biased = is_op("relax.add")(self.layer, self.dq_b | is_op("relax.reshape")(self.dq_b, wildcard()))
        self.activated = with_activation(self.biased | self.layer)
        self.pattern = quantize_pattern(self.activated)

    def rewrite(self, expr, matches):
        out = qparams_of(expr)
        if out is None or out.per_channel:
            return expr
        realized = self.integer_layer(matches)
        if realized is None:
            return expr
        acc, accumulator_scale, axis, ndim = realized
        clip = activation_clip(matches[self.activated])
        return requantize(acc, accumulator_scale / float(out.scale), out, clip, axis, ndim)

    def integer_layer(self, matches):
        """(int32 accumulator with bias and zero-point corrections, its per-channel scale,
        channel axis, rank), or None when the parameters do not allow an integer layer."""
        layer = matches[self.layer]
        op = LAYER_OPS[layer.op.name]
        x_params, w_params = qparams_of(matches[self.dq_x]), qparams_of(matches[self.dq_w])
        if None in (x_params, w_params) or x_params.per_channel:
            return None
        if np.any(w_params.zero_point != 0) or str(matches[self.w_q].ty.dtype) != "int8":
            return None
        if op == "conv2d" and (layer.attrs["data_layout"] != "NCHW" or layer.attrs["kernel_layout"] != "OIHW"):
            return None
        weight = constant_value(matches[self.w_q])
        if self.transposed_w in matches:
            axes = [int(a) for a in matches[self.transposed_w].attrs["axes"]] or list(range(weight.ndim))[::-1]
            weight = weight.transpose(axes)
            if w_params.per_channel:
                w_params = QuantParams(w_params.scale, w_params.zero_point, w_params.dtype, axes.index(w_params.axis))
        channels = weight.shape[weight_channel_axis(op, weight.ndim)]
        if w_params.per_channel and w_params.axis != weight_channel_axis(op, weight.ndim):
            return None
        accumulator_scale = float(x_params.scale) * np.broadcast_to(w_params.scale.astype(np.float64), (channels,))
        bias = np.zeros(channels, np.int64)
        if self.biased in matches:
            bias_params = qparams_of(matches[self.dq_b])
            raw = constant_value(matches[self.b_q]).astype(np.float64).reshape(-1)
            if bias_params is None or raw.size not in (1, channels):
                return None
            real_bias = np.broadcast_to(raw * np.broadcast_to(bias_params.scale, raw.shape), (channels,))
            bias = np.round(real_bias / accumulator_scale).astype(np.int64)
        x_q = matches[self.x_q]
        zero_x = int(x_params.zero_point)
        if op == "conv2d":
            acc, weight_sums = _integer_conv(layer, x_q, weight, zero_x)
        else:
            acc = relax.op.matmul(x_q, relax.const(weight), out_dtype="int32")
            weight_sums = weight.astype(np.int64).sum(axis=0)
        ndim = len(layer.ty.shape)
        axis = channel_axis(op, ndim)
        correction = np.clip(bias - zero_x * weight_sums, *qrange("int32"))
        acc = relax.op.add(acc, int_const(correction, "int32", ndim, axis))
        return acc, accumulator_scale, axis, ndim


def _integer_conv(layer: relax.Call, x_q: relax.Expr, weight: np.ndarray, zero_x: int):
    """Integer conv2d and its weights' sums per output channel. Padding must add real zeros,
    i.e. the zero point: pad explicitly."""
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


class _RealizeWeightedLayerToFloat(_RealizeWeightedLayer):
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
        if is_activation_call(activated):
            result = relax.Call(activated.op, [result, *activated.args[1:]], activated.attrs)
        return result
