"""matmul of two activations (attention's scores and context): both operands quantized,
multiplied as integers minus their zero points with int32 accumulation, then requantized, or
dequantized straight from int32 where only float operators read the product (the scores
before their scaling and softmax)."""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.dpl import is_op

from tvmq.ir import PatternRewrite
from tvmq.quantize.integer import (
    activation_clip,
    dequantize_pattern,
    int_const,
    qparams_of,
    quantize_pattern,
    requantize,
    with_activation,
)
from tvmq.quantize.operators.base import LayerMatch, OperatorQuantizer, fused_activation, is_float_tensor


class ActivationMatmul(OperatorQuantizer):
    ops = ("relax.matmul",)

    def match(self, graph, var, quantized):
        call = graph.value[var]
        if not all(is_float_tensor(arg) for arg in call.args[:2]):
            return None
        output, clip = fused_activation(graph, var)
        return LayerMatch("matmul", inputs=tuple(call.args[:2]), output=output, clip=clip)

    def realize_passes(self):
        return [_RealizeActivationMatmul().as_pass()]

    def realize_to_float_passes(self):
        return [_RealizeActivationMatmulToFloat().as_pass()]


class _RealizeActivationMatmul(PatternRewrite):
    def __init__(self):
        self.dq_a, self.dq_b = dequantize_pattern(), dequantize_pattern()
        self.matmul = is_op("relax.matmul")(self.dq_a, self.dq_b)
        self.activated = with_activation(self.matmul)
        self.pattern = quantize_pattern(self.activated)

    def integer_matmul(self, matches) -> tuple[relax.Expr, float] | None:
        """The int32 product of the centred operands and its scale s_a * s_b."""
        a, b = qparams_of(matches[self.dq_a]), qparams_of(matches[self.dq_b])
        if None in (a, b) or a.per_channel or b.per_channel:
            return None
        operands = [
            relax.op.subtract(relax.op.astype(matches[dq].args[0], "int32"), int_const(p.zero_point, "int32"))
            for dq, p in ((self.dq_a, a), (self.dq_b, b))
        ]
        return relax.op.matmul(*operands, out_dtype="int32"), float(a.scale) * float(b.scale)

    def rewrite(self, expr, matches):
        out, product = qparams_of(expr), self.integer_matmul(matches)
        if out is None or out.per_channel or product is None:
            return expr
        acc, scale = product
        return requantize(acc, scale / float(out.scale), out, activation_clip(matches[self.activated]))


class _RealizeActivationMatmulToFloat(_RealizeActivationMatmul):
    def __init__(self):
        super().__init__()
        self.pattern = self.matmul

    def rewrite(self, expr, matches):
        product = self.integer_matmul(matches)
        if product is None:
            return expr
        acc, scale = product
        return relax.op.dequantize(acc, relax.const(np.float32(scale)), relax.const(np.int32(0)))
