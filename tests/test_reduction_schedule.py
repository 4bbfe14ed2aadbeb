"""The default schedule of reductions that are not products (tvmq.kernels.reduction_schedule):
softmax and layer norm run row by row in parallel with their reductions in vectors, pooling and
means over channels-last tensors accumulate whole vectors of channels; both compute what
numpy does, including rows that are no whole number of vectors."""

import numpy as np
import pytest
import tvm
from relax_models import matmul
from tvm import relax

from tvmq.codegen.pipeline import build_executable
from tvmq.kernels.reduction_schedule import schedule_reduction_kernel
from tvmq.target import load_target

VECTOR_BITS = 512


def _kernel(mod) -> tvm.tirx.PrimFunc:
    mod = relax.transform.AnnotateTIROpPattern()(relax.transform.LegalizeOps()(mod))
    mod = relax.transform.FuseTIR()(relax.transform.FuseOps()(mod))
    (kernel,) = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    return kernel


def _run(mod, *inputs):
    vm = relax.VirtualMachine(build_executable(mod, load_target("host")), tvm.cpu())
    return vm["main"](*(tvm.runtime.tensor(x) for x in inputs)).numpy()


def _model(shapes: list[tuple[int, ...]], op) -> tvm.IRModule:
    """main(float32 inputs of `shapes`) = op(*inputs)."""
    builder = relax.BlockBuilder()
    inputs = [relax.Var(f"x{i}", relax.TensorType(shape, "float32")) for i, shape in enumerate(shapes)]
    with builder.function("main", inputs):
        with builder.dataflow():
            out = builder.emit_output(builder.emit(op(*inputs)))
        builder.emit_func_output(out)
    return builder.get()


def _softmax(rows: int, width: int):
    return _model([(rows, width)], lambda x: relax.op.nn.softmax(x, axis=-1))


def _layer_norm(rows: int, width: int):
    beta = relax.const(np.full(width, 0.5, "float32"))
    return _model([(rows, width), (width,)], lambda x, gamma: relax.op.nn.layer_norm(x, gamma, beta, axes=[-1]))


@pytest.mark.parametrize("width", [96, 197])
def test_softmax_runs_row_by_row_with_its_sums_in_vectors(width):
    """96 = 6 vectors of 16: the max and the sum are 16 partial results per row (rfactor, *_rf);
    197 (ViT's patches + 1) is no whole number of vectors: the exponentials and divisions run
    192 in vectors and 5 in a loop of their own, the reductions stay scalar. Both in parallel."""
    scheduled = schedule_reduction_kernel(_kernel(_softmax(64, width)), VECTOR_BITS).script()
    assert "T.parallel(" in scheduled and "T.vectorized(T.int64(16))" in scheduled
    assert ("_rf" in scheduled) == (width % 16 == 0)
    x = 4 * np.random.default_rng(width).standard_normal((64, width), np.float32)
    expected = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(_run(_softmax(64, width), x), expected / expected.sum(-1, keepdims=True), rtol=1e-5)


def test_layer_norm_equals_numpy():
    rng = np.random.default_rng(0)
    x, gamma = 3 * rng.standard_normal((40, 192), np.float32) + 1, rng.standard_normal(192, np.float32)
    scheduled = schedule_reduction_kernel(_kernel(_layer_norm(40, 192)), VECTOR_BITS).script()
    assert scheduled.count("_rf") >= 2  # the mean's sum and the variance's
    centred = x - x.mean(-1, keepdims=True)
    expected = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-5) * gamma + 0.5
    np.testing.assert_allclose(_run(_layer_norm(40, 192), x, gamma), expected, rtol=1e-4, atol=1e-4)


def test_channels_last_pooling_and_mean_accumulate_vectors_of_channels():
    """A 3x3 stride-2 max pool (its padding computed inside it) and a global mean: each output
    vector of 16 channels reduces its window in a register, the vectors in parallel."""

    def pools(x):
        y = relax.op.nn.max_pool2d(x, pool_size=[3, 3], strides=[2, 2], padding=[1, 1, 1, 1], layout="NHWC")
        return relax.Tuple([y, relax.op.mean(y, axis=[1, 2], keepdims=True)])

    Pools = _model([(1, 28, 28, 64)], pools)
    mod = relax.transform.AnnotateTIROpPattern()(relax.transform.LegalizeOps()(Pools))
    kernels = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    for kernel in kernels:
        scheduled = schedule_reduction_kernel(kernel, VECTOR_BITS).script()
        assert "T.parallel(" in scheduled and "T.vectorized(T.int64(16))" in scheduled
    x = np.random.default_rng(1).standard_normal((1, 28, 28, 64), np.float32)
    vm = relax.VirtualMachine(build_executable(Pools, load_target("host")), tvm.cpu())
    pooled, mean = (t.numpy() for t in vm["main"](tvm.runtime.tensor(x)))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))[:, ::2, ::2]
    np.testing.assert_array_equal(pooled, windows.max(axis=(-2, -1)))
    np.testing.assert_allclose(mean, pooled.mean(axis=(1, 2), keepdims=True), rtol=1e-5)


def test_a_product_reduction_is_left_to_the_matmul_and_convolution_schedules():
    assert schedule_reduction_kernel(_kernel(matmul("float32", np.ones((8, 8), "float32"), 4)), VECTOR_BITS) is None
