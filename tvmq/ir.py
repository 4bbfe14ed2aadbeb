"""Small helpers on Relax IR that the graph passes share: reading constants and operator
names, replacing a module's main function."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


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
