"""Kernel calls on constants (the weight packing split out of conv and matmul kernels) are
evaluated at compile time, all their kernels compiled together."""

import numpy as np
import tvm_ffi
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from tvmq.codegen.fold import FoldConstantKernels
from tvmq.ir import constant_value, is_constant

WEIGHT = np.arange(24, dtype="float32").reshape(2, 3, 4)


def _module():
    @I.ir_module
    class Module:
        @T.prim_func(private=True, s_tir=True)
        def pack(w: T.Buffer((2, 3, 4), "float32"), packed: T.Buffer((4, 2, 3), "float32")):
            for i, j, k in T.grid(4, 2, 3):
                with T.sblock("pack"):
                    vi, vj, vk = T.axis.remap("SSS", [i, j, k])
                    packed[vi, vj, vk] = w[vj, vk, vi]

        @T.prim_func(private=True, s_tir=True)
        def scale(x: T.Buffer((4, 2, 3), "float32"), y: T.Buffer((4, 2, 3), "float32")):
            for i, j, k in T.grid(4, 2, 3):
                with T.sblock("scale"):
                    vi, vj, vk = T.axis.remap("SSS", [i, j, k])
                    y[vi, vj, vk] = x[vi, vj, vk] * T.float32(2)

        @R.function
        def main(x: R.Tensor((4, 2, 3), "float32")):
            cls = Module
            with R.dataflow():
                packed = R.call_tir(cls.pack, (R.const(WEIGHT),), out_ty=R.Tensor((4, 2, 3), "float32"))
                again = R.call_tir(cls.pack, (R.const(WEIGHT + 1),), out_ty=R.Tensor((4, 2, 3), "float32"))
                y = R.call_tir(cls.scale, (x,), out_ty=R.Tensor((4, 2, 3), "float32"))
                z = R.add(R.add(y, packed), again)
                R.output(z)
            return z

    return Module


def test_calls_on_constants_become_their_results_and_their_kernels_go():
    folded = FoldConstantKernels()(_module())
    values = {b.var.name: b.value for b in folded["main"].body.blocks[0].bindings}
    # the two packings became constants; the kernel on the input x stays a call
    np.testing.assert_array_equal(constant_value(values["packed"]), WEIGHT.transpose(2, 0, 1))
    np.testing.assert_array_equal(constant_value(values["again"]), WEIGHT.transpose(2, 0, 1) + 1)
    assert isinstance(values["y"], relax.Call) and not is_constant(values["y"])
    names = {gv.name_hint for gv in folded.get_global_vars()}
    assert names == {"main", "scale"}


def test_a_module_without_such_calls_is_left_alone():
    module = FoldConstantKernels()(_module())
    assert tvm_ffi.structural_equal(FoldConstantKernels()(module), module)
