"""add of two quantized activations (the residual adds of CNNs): each operand minus its zero
point, scaled by its own fixed-point multiplier over a common shift, summed in int64.

Only between tensors that are integer already: where one side is float, as the residual
stream around a transformer's LayerNorm, quantizing it would clip that stream's outlier
channels (accuracy collapses on MiniLM) and save no float work."""

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
    round_shift_clip,
    with_activation,
)
from tvmq.quantize.operators.base import LayerMatch, OperatorQuantizer, fused_activation, is_float_tensor
from tvmq.quantize.qparams import fixed_point_multiplier, with_common_shift


class Add(OperatorQuantizer):
    ops = ("relax.add",)

    def match(self, graph, var, quantized):
        call = graph.value[var]
        a, b = call.args
        if not (is_float_tensor(a) and is_float_tensor(b)) or a.ty.shape is None:
            return None
        if list(a.ty.shape) != list(b.ty.shape) or not (a in quantized and b in quantized):
            return None
        output, clip = fused_activation(graph, var)
        return LayerMatch("add", inputs=(a, b), output=output, clip=clip)

    def realize_passes(self):
        return [_RealizeAdd().as_pass()]


class _RealizeAdd(PatternRewrite):
    def __init__(self):
        self.dq_a, self.dq_b = dequantize_pattern(), dequantize_pattern()
        self.add = is_op("relax.add")(self.dq_a, self.dq_b)
        self.activated = with_activation(self.add)
        self.pattern = quantize_pattern(self.activated)

    def rewrite(self, expr, matches):
        a, b, out = qparams_of(matches[self.dq_a]), qparams_of(matches[self.dq_b]), qparams_of(expr)
        if None in (a, b, out) or a.per_channel or b.per_channel or out.per_channel:
            return expr
        ratios = np.array([float(a.scale), float(b.scale)]) / float(out.scale)
        multipliers, shift = with_common_shift(*fixed_point_multiplier(ratios))
        terms = [
            relax.op.multiply(
                relax.op.subtract(relax.op.astype(matches[dq].args[0], "int64"), int_const(p.zero_point, "int64")),
                int_const(m, "int64"),
            )
            for dq, p, m in ((self.dq_a, a, multipliers[0]), (self.dq_b, b, multipliers[1]))
        ]
        clip = activation_clip(matches[self.activated])
        return round_shift_clip(relax.op.add(terms[0], terms[1]), shift, out, clip)
