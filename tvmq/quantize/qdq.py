"""Insert quantize/dequantize pairs: the annotated plan plus calibrated parameters become a
QDQ module, the common form of every quantized model in tvmq.

Compiled as it is, a QDQ module is the simulated (fake-quant) model: every quantized tensor is
rounded to its integer grid, every operator still computes in float. `realize` turns the same
module into true integer operators. Weights are stored quantized (int8, symmetric, per output
channel by default) and biases as int32 with scale s_input * s_weight.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvmq.quantize.annotate import Layer, QuantPlan
from tvmq.quantize.config import QConfig
from tvmq.quantize.dataflow import DataflowGraph
from tvmq.quantize.prepare import channel_axis
from tvmq.quantize.qparams import QuantParams, affine_qparams, qrange


def weight_qparams(layer: Layer, per_channel: bool, reduce_range: bool = False) -> QuantParams:
    """Symmetric int8 parameters of a layer's weights, per output channel or per tensor, over
    [-127, 127] or, with `reduce_range`, [-63, 63]."""
    weight = layer.weight
    axis = 0 if layer.op == "conv2d" else weight.ndim - 1
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


def quantize_expr(expr: relax.Expr, params: QuantParams) -> relax.Expr:
    return relax.op.quantize(
        expr, relax.const(params.scale), relax.const(params.zero_point), axis=_axis(params), out_dtype=params.dtype
    )


def dequantize_expr(expr: relax.Expr, params: QuantParams) -> relax.Expr:
    return relax.op.dequantize(expr, relax.const(params.scale), relax.const(params.zero_point), axis=_axis(params))


def _axis(params: QuantParams) -> int:
    return params.axis if params.per_channel else -1


def _substitute(expr: relax.Expr, mapping: dict) -> relax.Expr:
    """`expr` with the variables in `mapping` replaced (binding values are shallow)."""
    if isinstance(expr, relax.Var):
        return mapping.get(expr, expr)
    if isinstance(expr, relax.Call):
        return relax.Call(expr.op, [_substitute(a, mapping) for a in expr.args], expr.attrs, expr.ty_args)
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([_substitute(f, mapping) for f in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(_substitute(expr.tuple_value, mapping), expr.index)
    return expr


def weight_rounding_shift(layer: Layer, w_params: QuantParams, input_means: np.ndarray) -> np.ndarray:
    """E[(W_q - W) x] per output channel: the mean shift that rounding the weights gives each
    output, for inputs with per-channel means E[x] (border padding ignored). Subtracted from
    the bias, it undoes that shift ("bias correction"; it matters most for depthwise
    convolutions, whose 9 weights per channel can all round the same way)."""
    error = w_params.dequantize(w_params.quantize(layer.weight)).astype(np.float64) - layer.weight
    if layer.op == "matmul":  # weight [K, N], input channels along K
        return input_means @ error
    out_channels, group_channels = error.shape[:2]
    groups = len(input_means) // group_channels
    means = input_means.reshape(groups, 1, group_channels, 1, 1)
    per_group = error.reshape(groups, out_channels // groups, group_channels, *error.shape[2:])
    return (per_group * means).sum(axis=(2, 3, 4)).reshape(out_channels)


def insert_qdq(
    func: relax.Function, plan: QuantPlan, point_params: dict, config: QConfig, channel_means: dict | None = None
) -> tuple[relax.Function, list]:
    """The QDQ form of `func` for `plan`, with activation parameters `point_params` (by point),
    and each layer's output as the QDQ function computes it (for measuring the error).

    Values made by quantized layers are seen dequantized by every user (an integer model has no
    float version of them); float values feeding quantized layers are quantized for those
    layers only, so float users keep full precision. With `config.bias_correction` and the
    points' `channel_means`, biases absorb the mean shift of weight rounding.
    """
    graph = DataflowGraph(func)
    params = {tensor: point_params[plan.alias_of(tensor)] for tensor in plan.quantized_tensors()}
    made_by_layers = {layer.output for layer in plan.layers}
    anchors = {layer.anchor: layer for layer in plan.layers}
    bias_adds = {graph.only_user(layer.anchor): layer for layer in plan.layers if layer.bias is not None}
    weight_params = {
        layer: weight_qparams(layer, config.per_channel, config.reduce_range) for layer in plan.layers if layer.weighted
    }

    builder = relax.BlockBuilder()
    env, seen_by_all, seen_by_layers = {}, {}, {}

    def emit_point(point, value):
        q = builder.emit(quantize_expr(value, params[point]), name_hint=f"{point.name}_q")
        dq = builder.emit(dequantize_expr(q, params[point]), name_hint=f"{point.name}_dq")
        (seen_by_all if point in made_by_layers else seen_by_layers)[point] = dq

    with builder.function("main", list(func.params), attrs=dict(func.attrs) if func.attrs else None):
        with builder.dataflow():
            for param in func.params:
                if param in params:
                    emit_point(param, param)
            for binding in graph.bindings:
                var, value = binding.var, binding.value
                layer = anchors.get(var)
                new_value = _substitute(value, {**env, **seen_by_all, **(seen_by_layers if layer else {})})
                if layer is not None and layer.weighted:
                    w_params = weight_params[layer]
                    weight = builder.emit(
                        dequantize_expr(relax.const(w_params.quantize(layer.weight)), w_params),
                        name_hint=f"{layer.name}_w",
                    )
                    new_value = relax.Call(
                        new_value.op, [new_value.args[0], weight], new_value.attrs, new_value.ty_args
                    )
                elif var in bias_adds:
                    biased = bias_adds[var]
                    produced = env[biased.anchor]
                    float_bias = biased.bias
                    source = plan.alias_of(biased.inputs[0])
                    # Means are per channel of the measured tensor: usable when the layer reads
                    # it as it is, not through a reshape.
                    if config.bias_correction and channel_means and _same_shape(source, biased.inputs[0]):
                        input_means = channel_means[source]
                        float_bias = float_bias - weight_rounding_shift(biased, weight_params[biased], input_means)
                    bias = _bias_expr(
                        float_bias, graph.value[biased.anchor], params[biased.inputs[0]], weight_params[biased]
                    )
                    new_value = relax.op.add(produced, bias)
                env[var] = builder.emit(new_value, name_hint=var.name)
                if var in params:
                    emit_point(var, env[var])
            output = builder.emit_output(_substitute(func.body.body, {**env, **seen_by_all}))
        builder.emit_func_output(output)
    layer_outputs = [seen_by_all.get(layer.output, env[layer.output]) for layer in plan.layers]
    return builder.get()["main"], layer_outputs


def _same_shape(a: relax.Expr, b: relax.Expr) -> bool:
    return [int(d) for d in a.ty.shape] == [int(d) for d in b.ty.shape]


def _bias_expr(
    bias: np.ndarray, anchor_call: relax.Call, input_params: QuantParams, w_params: QuantParams
) -> relax.Expr:
    """A layer's bias as dequantize(int32 constant) in the accumulator's units."""
    bias_i32, bias_scale = quantized_bias(bias, input_params, w_params)
    axis = channel_axis(anchor_call)
    shape = [1] * len(anchor_call.ty.shape)
    shape[axis] = -1
    bias_params = QuantParams(bias_scale, np.zeros(bias_scale.shape, np.int32), "int32", axis=axis)
    return dequantize_expr(relax.const(bias_i32.reshape(shape)), bias_params)
