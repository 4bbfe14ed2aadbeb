"""Kernel calls on constants evaluated at compile time, all their kernels compiled as one module.

After the weight packing of the int8 and float kernels is split out of them, every conv and
matmul layer holds a call of a small packing kernel on its constant weights. TVM's
FoldConstant compiles each distinct kernel on its own before running it (one LLVM module, one
JIT per kernel: about 20 ms each, seconds for a ResNet-50); this pass compiles them together,
once, runs each call, and puts the results in as constants.
"""

from __future__ import annotations

import tvm
from tvm import relax

from tvmq.ir import is_constant, with_main

__all__ = ["FoldConstantKernels"]


def _constant_call(call: relax.Expr) -> tuple[relax.GlobalVar, list[tvm.ir.expr.GenericConst]] | None:
    """(kernel, constant arguments) of a call_tir on constants with one static output, or None."""
    if not isinstance(call, relax.Call) or call.op != tvm.ir.Op.get("relax.call_tir"):
        return None
    kernel, args = call.args[0], call.args[1]
    if len(call.args) != 2 or not isinstance(args, relax.Tuple):
        return None
    if not all(is_constant(arg) for arg in args.fields):
        return None
    output = call.ty
    if not isinstance(output, relax.TensorType) or output.shape is None:
        return None
    if not all(isinstance(dim, tvm.tirx.IntImm) for dim in output.shape):
        return None
    return kernel, list(args.fields)


@tvm.transform.module_pass(opt_level=0, name="tvmq.FoldConstantKernels")
class FoldConstantKernels:
    """Replace every call of a TIR kernel on constant arguments in main by its result."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        main = mod["main"]
        calls = []  # (call, kernel, constant arguments)

        def collect(expr):
            found = _constant_call(expr)
            if found is not None:
                calls.append((expr, *found))

        relax.analysis.post_order_visit(main, collect)
        if not calls:
            return mod
        kernels = {kernel.name_hint: mod[kernel].with_attr("global_symbol", kernel.name_hint) for _, kernel, _ in calls}
        library = tvm.tirx.build(tvm.IRModule(kernels), target=tvm.target.Target({"kind": "llvm"}))
        results = {}
        for call, kernel, args in calls:
            shape = [int(dim) for dim in call.ty.shape]
            result = tvm.runtime.empty(shape, call.ty.dtype, tvm.cpu())
            library[kernel.name_hint](*[arg.value for arg in args], result)
            results[call] = relax.const(result)

        @relax.expr_functor.mutator
        class Replace(relax.PyExprMutator):
            def visit_call_(self, call):
                folded = results.get(call)
                return folded if folded is not None else super().visit_call_(call)

        replaced = with_main(mod, Replace(mod).visit_expr(main))
        return relax.transform.DeadCodeElimination(["main"])(replaced)
