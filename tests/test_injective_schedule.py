"""The default schedule of kernels without a reduction (tvmq.kernels.injective_schedule): a
fused chain of elementwise operators and a transpose becomes one parallel, vectorized pass
instead of one serial loop nest per stage, and computes the same numbers."""

import re

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tvmq.codegen.pipeline import build_executable
from tvmq.kernels.injective_schedule import schedule_injective_kernel
from tvmq.target import load_target


def _model():
    @I.ir_module
    class Model:
        @R.function
        def main(x: R.Tensor((1, 64, 16, 16), "float32"), scale: R.Tensor((64, 1, 1), "float32")):
            with R.dataflow():
                y = R.nn.relu(R.add(R.multiply(x, scale), R.const(0.5, "float32")))
                z = R.permute_dims(y, [0, 2, 3, 1])
                R.output(z)
            return z

    return Model


def _fused_kernel(mod):
    mod = relax.transform.LegalizeOps()(mod)
    mod = relax.transform.AnnotateTIROpPattern()(mod)
    mod = relax.transform.FuseTIR()(relax.transform.FuseOps()(mod))
    (kernel,) = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    return kernel


def _stages(script: str) -> int:
    return len(re.findall(r"^\s*with T\.sblock\(", script, re.M))


def test_a_fused_elementwise_chain_becomes_one_parallel_vectorized_loop():
    kernel = _fused_kernel(_model())
    assert _stages(kernel.script()) == 4  # multiply, add, relu, transpose
    scheduled = schedule_injective_kernel(kernel, vector_bits=256).script()
    assert _stages(scheduled) == 1
    assert "in T.parallel(" in scheduled and "in T.vectorized(T.int64(8))" in scheduled


def test_a_kernel_with_a_reduction_is_left_to_the_other_schedules():
    @I.ir_module
    class Sum:
        @R.function
        def main(x: R.Tensor((64, 64), "float32")):
            with R.dataflow():
                y = R.sum(R.exp(x), axis=1)
                R.output(y)
            return y

    assert schedule_injective_kernel(_fused_kernel(Sum), vector_bits=256) is None


def test_the_scheduled_model_computes_what_numpy_does():
    rng = np.random.default_rng(0)
    x, scale = rng.standard_normal((1, 64, 16, 16), np.float32), rng.standard_normal((64, 1, 1), np.float32)
    preset = load_target("host")
    vm = relax.VirtualMachine(build_executable(_model(), preset), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(scale)).numpy()
    np.testing.assert_allclose(got, np.maximum(x * scale + 0.5, 0).transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)


def test_compiling_names_the_kernels_left_to_tvms_serial_loops(caplog):
    """A strided channels-first convolution (tvmq's lowering makes convolutions channels-last;
    this module skips the lowering) is a kernel no default schedule covers: its output's
    innermost axis reads its input two apart. The build says so, by name; the elementwise
    kernel after it is scheduled and not named."""

    @I.ir_module
    class ChannelsFirst:
        @R.function
        def main(x: R.Tensor((1, 8, 8, 8), "float32"), w: R.Tensor((8, 8, 3, 3), "float32")):
            with R.dataflow():
                y = R.nn.conv2d(x, w, strides=2, padding=1)
                z = R.permute_dims(R.nn.relu(y), [0, 2, 3, 1])
                R.output(z)
            return z

    with caplog.at_level("WARNING", logger="tvmq"):
        build_executable(ChannelsFirst, load_target("host"))
    (warning,) = [r.getMessage() for r in caplog.records if "serial loops" in r.getMessage()]
    assert "1 kernel is" in warning and "conv2d" in warning and "transpose" not in warning
