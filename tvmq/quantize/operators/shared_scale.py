"""Operators whose output keeps their input's quantization parameters: they move, select or
average values without widening their range, so the integers pass through them. Data
movement (max pooling, reshapes, transposes) runs on the integers as it is; averaging runs on
them converted to float32 and rounded back, half to even, exactly as the simulated model
rounds it."""

from __future__ import annotations

from tvm import relax
from tvm.relax.dpl import wildcard

from tvmq.ir import PatternRewrite, op_name
from tvmq.quantize.dataflow import DataflowGraph
from tvmq.quantize.integer import qparams_of, quantize_pattern, rescale
from tvmq.quantize.operators.base import LayerMatch, OperatorQuantizer

MOVING = {
    "relax.nn.max_pool2d": "max_pool2d",
    "relax.reshape": "reshape",
    "relax.permute_dims": "permute_dims",
    "relax.squeeze": "squeeze",
    "relax.expand_dims": "expand_dims",
}
AVERAGING = {
    "relax.nn.avg_pool2d": "avg_pool2d",
    "relax.nn.adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "relax.mean": "mean",
}


class SharedScale(OperatorQuantizer):
    ops = (*MOVING, *AVERAGING)
    aliases = {
        "maxpool": "max_pool2d",
        "averagepool": "avg_pool2d",
        "globalaveragepool": "mean",
        "reducemean": "mean",
        "flatten": "reshape",
        "transpose": "permute_dims",
    }

    def match(self, graph, var, quantized):
        call = graph.value[var]
        if not call.args or call.args[0] not in quantized:
            return None
        op = {**MOVING, **AVERAGING}[op_name(call)]
        return LayerMatch(op, inputs=(call.args[0],), output=var, shares_input_scale=True)

    def realize_passes(self):
        return [_RealizeSharedScale().as_pass()]


class _RealizeSharedScale(PatternRewrite):
    def __init__(self):
        self.op = wildcard()
        self.pattern = quantize_pattern(self.op)

    def transform_function(self, func, mod, ctx):
        self.values = DataflowGraph(func).value
        return super().transform_function(func, mod, ctx)

    def rewrite(self, expr, matches):
        op = matches[self.op]
        name = op_name(op)
        if (name not in MOVING and name not in AVERAGING) or not op.args:
            return expr
        source = self.values.get(op.args[0], op.args[0])
        if op_name(source) != "relax.dequantize":
            return expr
        params, out = qparams_of(source), qparams_of(expr)
        if params is None or out is None or params.per_channel or out.per_channel:
            return expr
        x_q = source.args[0]
        if name in AVERAGING:
            averaged = relax.Call(op.op, [relax.op.astype(x_q, "float32"), *op.args[1:]], op.attrs, op.ty_args)
            moved = relax.op.astype(relax.op.round(averaged), params.dtype)
        else:
            moved = relax.Call(op.op, [x_q, *op.args[1:]], op.attrs, op.ty_args)
        return rescale(moved, params, out)
