"""concat of quantized tensors: one set of parameters for the joined tensor, each input
rescaled to it in integers, then joined."""

from __future__ import annotations

from tvm import relax
from tvm.relax.dpl import is_op, wildcard

from tvmq.ir import PatternRewrite, op_name
from tvmq.quantize.dataflow import DataflowGraph
from tvmq.quantize.integer import qparams_of, quantize_pattern, rescale
from tvmq.quantize.operators.base import LayerMatch, OperatorQuantizer, is_float_tensor


class Concat(OperatorQuantizer):
    ops = ("relax.concat",)

    def match(self, graph, var, quantized):
        tensors = graph.value[var].args[0]
        if not isinstance(tensors, relax.Tuple) or not all(is_float_tensor(t) for t in tensors.fields):
            return None
        return LayerMatch("concat", inputs=tuple(tensors.fields), output=var)

    def realize_passes(self):
        return [_RealizeConcat().as_pass()]


class _RealizeConcat(PatternRewrite):
    def __init__(self):
        self.fields = wildcard()
        self.concat = is_op("relax.concat")(self.fields)
        self.pattern = quantize_pattern(self.concat)

    def transform_function(self, func, mod, ctx):
        self.values = DataflowGraph(func).value
        return super().transform_function(func, mod, ctx)

    def rewrite(self, expr, matches):
        out, fields = qparams_of(expr), matches[self.fields]
        if out is None or out.per_channel or not isinstance(fields, relax.Tuple):
            return expr
        parts = []
        for field in fields.fields:
            source = self.values.get(field, field)
            params = qparams_of(source) if op_name(source) == "relax.dequantize" else None
            if params is None or params.per_channel:
                return expr
            parts.append(rescale(source.args[0], params, out))
        return relax.op.concat(parts, axis=int(matches[self.concat].attrs["axis"]))
