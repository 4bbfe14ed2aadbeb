"""Prepare a float model for quantization: fold what inference does not need to compute.

BatchNorm (and any other per-channel scale or shift by constants right after a convolution or
a dense layer) is folded into that layer's weights and bias, so it quantizes as one layer with
per-channel weights instead of leaving float operations between integer ones. Zero padding
written as a separate Pad joins the convolution it feeds: inside the convolution it is the
zero point of the integer input, while a separate pad would need its own quantized value.
Run before annotation, on the module the frontends produce.
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from tvmq.codegen.lower import FoldConstantsWithNumpy, FoldPadIntoConv
from tvmq.ir import constant_value
from tvmq.quantize.channels import channel_axis, per_channel_vector, weight_channel_axis
from tvmq.quantize.dataflow import DataflowGraph
from tvmq.quantize.operators.weighted import LAYER_OPS


@relax.transform.function_pass(opt_level=0, name="tvmq.FoldChannelAffine")
class FoldChannelAffine:
    """Rewrite `layer(x, W) [+ b] (*|/|+|-) c` with per-channel constant c into
    `layer(x, W') + b'` for layer = conv2d (OIHW weights) or matmul (constant [K, N] weights),
    until no such pattern is left (BatchNorm decomposes into a chain of them)."""

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
        op = LAYER_OPS[layer.op.name]
        if op == "conv2d" and layer.attrs["kernel_layout"] != "OIHW":
            return expr
        intermediates = [matches[self.layer]] + ([matches[self.biased]] if self.biased in matches else [])
        if not all(graph.has_one_use(value) for value in intermediates):
            return expr  # folding would compute the layer twice
        out_ndim = len(layer.ty.shape)
        axis = channel_axis(op, out_ndim)
        weight = constant_value(matches[self.weight])
        channels = weight.shape[weight_channel_axis(op, weight.ndim)]
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
        weight_scale = scale.reshape((-1, 1, 1, 1)) if op == "conv2d" else scale
        new_layer = relax.Call(
            layer.op, [matches[self.data], relax.const((weight * weight_scale).astype(np.float32))], layer.attrs
        )
        bias_shape = [1] * out_ndim
        bias_shape[axis] = channels
        new_bias = (bias * scale + shift).astype(np.float32).reshape(bias_shape)
        if self.bias not in matches and not np.any(new_bias):
            return new_layer
        return relax.op.add(new_layer, relax.const(new_bias))

    def transform_function(self, func: relax.Function, _mod: tvm.IRModule, _ctx) -> relax.Function:
        while True:
            folded = rewrite_call(self.pattern, functools.partial(self._rewrite, DataflowGraph(func)), func)
            if tvm_ffi.structural_equal(folded, func):
                return func
            func = folded


def prepare_pipeline() -> tvm.transform.Pass:
    """Decompose BatchNorm, fold constants, fold zero padding into convolutions and
    per-channel affine ops into weights, then tidy the bindings."""
    return tvm.transform.Sequential(
        [
            relax.transform.DecomposeOpsForInference(),
            FoldConstantsWithNumpy(),
            relax.transform.FoldConstant(),
            FoldPadIntoConv(),
            FoldChannelAffine(),
            relax.transform.CanonicalizeBindings(),
            relax.transform.DeadCodeElimination(),
        ],
        name="tvmq.PrepareForQuantization",
    )
