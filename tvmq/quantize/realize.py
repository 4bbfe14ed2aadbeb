"""Realize: rewrite a QDQ module into true integer operators.

Each operator family's rewrites (tvmq.quantize.operators) match its operator between
dequantize inputs and a quantize output and replace the whole group with integer arithmetic
(tvmq.quantize.integer): int8/uint8 inputs, int32 accumulation, requantization by an integer
multiplier and shift with the activation's clip fused in. Because each group's output is the
next group's `dq(x_q)` input, consecutive quantized operators pass integers to each other;
dequantize remains only where a float operator or a model output needs it. Patterns that do
not apply (unsupported parameters) are left as they are, which is the simulated form: correct,
just not integer. The same passes realize pre-quantized QDQ models from the frontends.
"""

from __future__ import annotations

import tvm
from tvm import relax

from tvmq.ir import PatternRewrite
from tvmq.quantize.integer import dequantize_pattern, qparams_of, quantize_pattern, rescale
from tvmq.quantize.operators import FAMILIES


class FoldQuantizeDequantize(PatternRewrite):
    """quantize(dequantize(x_q)) between two quantized operators: rescale the integers."""

    def __init__(self):
        self.dq = dequantize_pattern()
        self.pattern = quantize_pattern(self.dq)

    def rewrite(self, expr, matches):
        source, out = qparams_of(matches[self.dq]), qparams_of(expr)
        if source is None or out is None or source.per_channel or out.per_channel:
            return expr
        return rescale(matches[self.dq].args[0], source, out)


def realize_pipeline() -> tvm.transform.Pass:
    """Every family's integer rewrites (in registry order), then the requantizing folds of the
    Q/DQ pairs left between integer operators, then the rewrites of layers whose output leaves
    to float, and dead code removed."""
    return tvm.transform.Sequential(
        [
            *(p for family in FAMILIES for p in family.realize_passes()),
            FoldQuantizeDequantize().as_pass(),
            *(p for family in FAMILIES for p in family.realize_to_float_passes()),
            relax.transform.DeadCodeElimination(),
        ],
        name="tvmq.Realize",
    )


def realize(mod: tvm.IRModule) -> tvm.IRModule:
    """Rewrite every quantized group of `mod` into integer operators."""
    return realize_pipeline()(mod)
