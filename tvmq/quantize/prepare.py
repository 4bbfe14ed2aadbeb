"""Prepare a float model for quantization: fold what inference does not need to compute.

BatchNorm (and any other per-channel scale or shift by constants right after a convolution or
a dense layer) is folded into that layer's weights and bias, so it quantizes as one layer with
per-channel weights instead of leaving float operations between integer ones. Zero padding
written as a separate Pad joins the convolution it feeds.
Run before annotation, on the module the frontends produce.
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from tvmq.ir import constant_value, with_main
from tvmq.quantize.dataflow import DataflowGraph


def channel_axis(layer: relax.Call) -> int:
    """The output-channel axis of a conv2d (NCHW) or matmul (last) result."""
    return 1 if layer.op.name == "relax.nn.conv2d" else len(layer.ty.shape) - 1


def per_channel_vector(constant: np.ndarray, out_ndim: int, axis: int, channels: int) -> np.ndarray | None:
    """`constant` as a [channels] vector if it broadcasts against the layer output along the
    channel axis only, else None."""
    if constant.ndim > out_ndim:
        return None
    aligned = constant.reshape((1,) * (out_ndim - constant.ndim) + constant.shape)
    if any(size != 1 for i, size in enumerate(aligned.shape) if i != axis):
        return None
    if aligned.shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(aligned.reshape(-1), (channels,)).astype(np.float32)


class FoldChannelAffine:
    """Rewrite `layer(x, W) [+ b] (*|/|+|-) c` with per-channel constant c into
    `layer(x, W') + b'` for layer = conv2d (OIHW weights) or matmul (constant [K, N] weights)."""

    def __init__(self):
        self.data = wildcard()
        self.weight = is_const()
        self.layer = is_op("relax.nn.conv2d")(self.data, self.weight) | is_op("relax.matmul")(self.data, self.weight)
        self.bias = is_const()
        self.biased = is_op("relax.add")(self.layer, self.bias)
        self.operand = is_const()
        self.pattern = (
            is_op("relax.multiply")(self.biased | self.layer, self.operand)
            | is_op("relax.divide")(self.biased | self.layer, self.operand)
            | is_op("relax.add")(self.biased, self.operand)
            | is_op("relax.subtract")(self.biased | self.layer, self.operand)
        )

    def _rewrite(self, graph: DataflowGraph, expr: relax.Call, matches) -> relax.Expr:
        layer = matches[self.layer]
        if layer.op.name == "relax.nn.conv2d" and layer.attrs["kernel_layout"] != "OIHW":
            return expr
        intermediates = [matches[self.layer]] + ([matches[self.biased]] if self.biased in matches else [])
        if not all(graph.has_one_use(value) for value in intermediates):
            return expr  # folding would compute the layer twice
        axis, out_ndim = channel_axis(layer), len(layer.ty.shape)
        weight = constant_value(matches[self.weight])
        channels = weight.shape[0] if layer.op.name == "relax.nn.conv2d" else weight.shape[-1]
        operand = per_channel_vector(constant_value(matches[self.operand]), out_ndim, axis, channels)
        bias = np.zeros(channels, np.float32)
        if self.bias in matches:
            bias = per_channel_vector(constant_value(matches[self.bias]), out_ndim, axis, channels)
        if operand is None or bias is None:
            return expr
        scale = np.ones(channels, np.float32)
        kind = expr.op.name
        if kind == "relax.multiply":
            scale = operand
        elif kind == "relax.divide":
            scale = 1.0 / operand
        shift = {"relax.add": operand, "relax.subtract": -operand}.get(kind, np.zeros(channels, np.float32))
        weight_scale = scale.reshape((-1, 1, 1, 1)) if layer.op.name == "relax.nn.conv2d" else scale
        new_layer = relax.Call(
            layer.op, [matches[self.data], relax.const((weight * weight_scale).astype(np.float32))], layer.attrs
        )
        bias_shape = [1] * out_ndim
        bias_shape[axis] = channels
        new_bias = (bias * scale + shift).astype(np.float32).reshape(bias_shape)
        if self.bias not in matches and not np.any(new_bias):
            return new_layer
        return relax.op.add(new_layer, relax.const(new_bias))

    def __call__(self, mod: tvm.IRModule) -> tvm.IRModule:
        func = mod["main"]
        while True:
            folded = rewrite_call(self.pattern, functools.partial(self._rewrite, DataflowGraph(func)), func)
            if tvm_ffi.structural_equal(folded, func):
                break
            func = folded
        return with_main(mod, func)


class FoldPadIntoConv:
    """Rewrite conv2d(pad(x, zeros on H and W), W) into one conv2d with the padding added.

    Exporters write "same" padding as a separate Pad; inside the convolution it is the zero
    point of the integer input, while a separate pad would need its own quantized value."""

    def __init__(self):
        self.data = wildcard()
        self.pad = is_op("relax.nn.pad")(self.data)
        self.pattern = is_op("relax.nn.conv2d")(self.pad, wildcard())

    def _rewrite(self, expr: relax.Call, matches) -> relax.Expr:
        pad, attrs = matches[self.pad].attrs, expr.attrs
        width = [int(w) for w in pad.pad_width]
        if pad.pad_mode != "constant" or float(pad.pad_value) != 0.0 or attrs["data_layout"] != "NCHW":
            return expr
        if len(width) != 8 or any(width[:4]):
            return expr
        top, bottom, left, right = width[4:]
        padding = [int(p) for p in attrs["padding"]]
        padding = [padding[0] + top, padding[1] + left, padding[2] + bottom, padding[3] + right]
        return relax.op.nn.conv2d(
            matches[self.data],
            expr.args[1],
            strides=attrs["strides"],
            padding=padding,
            dilation=attrs["dilation"],
            groups=int(attrs["groups"]),
            data_layout="NCHW",
            kernel_layout=attrs["kernel_layout"],
            out_layout=attrs["out_layout"],
            out_dtype=attrs["out_dtype"],
        )

    def __call__(self, mod: tvm.IRModule) -> tvm.IRModule:
        return with_main(mod, rewrite_call(self.pattern, self._rewrite, mod["main"]))


def prepare_for_quantization(mod: tvm.IRModule) -> tvm.IRModule:
    """Decompose BatchNorm, fold constants, fold zero padding into convolutions and
    per-channel affine ops into weights."""
    mod = relax.transform.DecomposeOpsForInference()(mod)
    mod = relax.transform.FoldConstant()(mod)
    mod = FoldPadIntoConv()(mod)
    mod = FoldChannelAffine()(mod)
    mod = relax.transform.CanonicalizeBindings()(mod)
    return relax.transform.DeadCodeElimination()(mod)
