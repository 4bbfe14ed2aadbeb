"""Small helpers on Relax IR that the graph passes share: reading constants and operator
names, replacing a module's main function, and the pattern-and-rewrite pass they are made of."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import rewrite_call


def with_main(mod: tvm.IRModule, func: relax.Function) -> tvm.IRModule:
    """A copy of `mod` with `main` replaced; the functions `main` calls (call_tir PrimFuncs) stay."""
    functions = {gv: f for gv, f in mod.functions.items() if gv.name_hint != "main"}
    functions[mod.get_global_var("main")] = func
    return tvm.IRModule(functions, attrs=mod.attrs)


def op_name(expr) -> str | None:
    """`relax.nn.conv2d` for a call to that operator, else None."""
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def is_constant(expr) -> bool:
    return isinstance(expr, tvm.ir.expr.GenericConst)


def constant_value(expr) -> np.ndarray:
    return expr.value.numpy()


def scalar_value(expr) -> float | None:
    """The number held by a PrimExpr immediate (clip bounds), else None."""
    return float(expr.value) if isinstance(expr, (tvm.tirx.IntImm, tvm.tirx.FloatImm)) else None


class PatternRewrite:
    """A Relax function pass made of one dataflow pattern, built once, and `rewrite(expr,
    matches)`, which returns the match unchanged where its preconditions do not hold. Use it
    decorated with `relax.transform.function_pass`, or an instance through `as_pass`."""

    pattern = None

    def rewrite(self, expr: relax.Call, matches) -> relax.Expr:
        raise NotImplementedError

    def transform_function(self, func: relax.Function, _mod: tvm.IRModule, _ctx) -> relax.Function:
        return rewrite_call(self.pattern, self.rewrite, func)

    def as_pass(self) -> tvm.transform.Pass:
        """This rewrite as a function pass over every Relax function of a module."""
        return relax.transform.function_pass(
            lambda func, mod, ctx: self.transform_function(func, mod, ctx),
            opt_level=0,
            name=f"tvmq.{type(self).__name__.lstrip('_')}",
        )
