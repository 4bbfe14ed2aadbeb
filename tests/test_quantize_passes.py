"""The quantization passes one by one, on small TVMScript modules: Before -> Expected."""

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tvmq.quantize.prepare import FoldChannelAffine, FoldPadIntoConv
from tvmq.quantize.realize import FoldQuantizeDequantize, RealizeSharedScale


def _module(func) -> tvm.IRModule:
    return tvm.IRModule({"main": func})


def test_per_channel_scale_after_a_dense_layer_folds_into_its_weights():
    weight = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2), "float32")):
            with R.dataflow():
                y = R.matmul(x, R.const(weight))
                z = R.multiply(y, R.const(np.array([[10.0, 100.0]], np.float32)))
                R.output(z)
            return z

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2), "float32")):
            with R.dataflow():
                z = R.matmul(x, R.const(np.array([[10.0, 200.0], [30.0, 400.0]], np.float32)))
                R.output(z)
            return z

    tvm.ir.assert_structural_equal(relax.transform.Normalize()(FoldChannelAffine()(Before)), Expected)


def test_batch_norm_after_a_biased_conv_folds_into_weights_and_bias():
    """conv + b, then (x - mean) / std * gamma + beta per channel: one conv with new weights
    and bias computing the same thing."""
    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((2, 1, 1, 1)).astype(np.float32), np.array([0.5, -1.0], np.float32)
    mean, std = np.array([1.0, 2.0], np.float32), np.array([2.0, 4.0], np.float32)
    gamma, beta = np.array([3.0, 5.0], np.float32), np.array([0.25, 0.75], np.float32)

    def channel(v):
        return R.const(v.reshape(1, 2, 1, 1))

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 1, 2, 2), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(weight))
                b = R.add(c, channel(bias))
                m = R.subtract(b, channel(mean))
                s = R.divide(m, channel(std))
                g = R.multiply(s, channel(gamma))
                y = R.add(g, channel(beta))
                R.output(y)
            return y

    scale = gamma / std
    new_weight = weight * scale.reshape(2, 1, 1, 1)
    new_bias = (bias - mean) * scale + beta

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 1, 2, 2), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(new_weight))
                y = R.add(c, channel(new_bias))
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(relax.transform.Normalize()(FoldChannelAffine()(Before)), Expected)


def test_a_scale_whose_layer_output_is_used_twice_is_not_folded():
    """Folding would need the unscaled output for the other user too: nothing changes."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2), "float32")):
            with R.dataflow():
                y = R.matmul(x, R.const(np.ones((2, 2), np.float32)))
                z = R.multiply(y, R.const(np.array([[2.0, 3.0]], np.float32)))
                w = R.add(y, z)
                R.output(w)
            return w

    Expected = Before
    tvm.ir.assert_structural_equal(FoldChannelAffine()(Before), Expected)


def test_zero_padding_before_a_convolution_becomes_its_padding():
    weight = np.ones((2, 3, 3, 3), np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                p = R.nn.pad(x, pad_width=[0, 0, 0, 0, 0, 1, 0, 1], pad_value=0.0)
                y = R.nn.conv2d(p, R.const(weight), strides=[2, 2], padding=[1, 1, 0, 0])
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                y = R.nn.conv2d(x, R.const(weight), strides=[2, 2], padding=[1, 1, 1, 1])
                R.output(y)
            return y

    after = relax.transform.DeadCodeElimination()(FoldPadIntoConv()(Before))
    tvm.ir.assert_structural_equal(after, Expected)


def test_padding_with_another_value_stays_a_pad():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                p = R.nn.pad(x, pad_width=[0, 0, 0, 0, 1, 1, 1, 1], pad_value=-1.0)
                y = R.nn.conv2d(p, R.const(np.ones((2, 3, 3, 3), np.float32)))
                R.output(y)
            return y

    Expected = Before
    tvm.ir.assert_structural_equal(FoldPadIntoConv()(Before), Expected)


def test_max_pool_between_equal_quantization_parameters_runs_on_the_integers():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 1, 4, 4), "uint8")):
            with R.dataflow():
                f = R.dequantize(x, R.const(0.5, "float32"), R.const(3, "int32"))
                p = R.nn.max_pool2d(f, pool_size=[2, 2], strides=[2, 2])
                q = R.quantize(p, R.const(0.5, "float32"), R.const(3, "int32"), out_dtype="uint8")
                R.output(q)
            return q

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 1, 4, 4), "uint8")):
            with R.dataflow():
                q = R.nn.max_pool2d(x, pool_size=[2, 2], strides=[2, 2])
                R.output(q)
            return q

    after = relax.transform.DeadCodeElimination()(_module(RealizeSharedScale()(Before["main"])))
    tvm.ir.assert_structural_equal(after, Expected)


def test_dequantize_quantize_with_equal_parameters_is_the_identity():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((4,), "int8")):
            with R.dataflow():
                f = R.dequantize(x, R.const(0.25, "float32"), R.const(0, "int32"))
                q = R.quantize(f, R.const(0.25, "float32"), R.const(0, "int32"), out_dtype="int8")
                R.output(q)
            return q

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((4,), "int8")):
            with R.dataflow():
                q = x
                R.output(q)
            return q

    after = relax.transform.DeadCodeElimination()(_module(FoldQuantizeDequantize()(Before["main"])))
    tvm.ir.assert_structural_equal(
        relax.transform.CanonicalizeBindings()(after), relax.transform.CanonicalizeBindings()(Expected)
    )


def test_rescaling_between_different_parameters_matches_the_float_computation():
    """quantize(dequantize(x)) with another scale becomes a fixed-point rescale; its integers
    equal numpy's float round trip, rounding ties aside."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((256,), "uint8")):
            with R.dataflow():
                f = R.dequantize(x, R.const(0.1, "float32"), R.const(128, "int32"))
                q = R.quantize(f, R.const(0.37, "float32"), R.const(10, "int32"), out_dtype="int8")
                R.output(q)
            return q

    after = _module(FoldQuantizeDequantize()(Before["main"]))
    assert "quantize" not in after.script()
    vm = relax.VirtualMachine(tvm.compile(after, target=tvm.target.Target({"kind": "llvm"})), tvm.cpu())
    x = np.arange(256, dtype=np.uint8)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    expected = np.clip(np.round((x.astype(np.float64) - 128) * 0.1 / 0.37) + 10, -128, 127)
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert (got == expected).mean() > 0.99


def test_bias_correction_undoes_the_mean_shift_of_rounded_depthwise_weights():
    """A depthwise channel whose 9 weights all round up shifts every output by
    sum(W_q - W) * E[x]; weight_rounding_shift computes exactly that per output channel."""
    from tvmq.quantize.annotate import Layer
    from tvmq.quantize.qdq import weight_qparams, weight_rounding_shift

    rng = np.random.default_rng(0)
    weight = rng.normal(0, 1, (4, 1, 3, 3)).astype(np.float32)  # groups = 4 channels
    layer = Layer(name="conv2d_0", op="conv2d", anchor=None, output=None, inputs=(), weight=weight)
    params = weight_qparams(layer, per_channel=True)
    means = np.array([0.5, 1.0, 2.0, -1.0])
    x = rng.normal(0, 0.1, (1000, 4, 3, 3)) + means.reshape(1, 4, 1, 1)
    rounded = params.dequantize(params.quantize(weight))
    measured = (np.einsum("nchw,chw->nc", x, rounded[:, 0]) - np.einsum("nchw,chw->nc", x, weight[:, 0])).mean(0)
    np.testing.assert_allclose(weight_rounding_shift(layer, params, means), measured, atol=1e-4)


def test_channel_means_are_streamed_along_the_channel_axis():
    from tvmq.quantize.observers import ChannelMeanObserver

    observer = ChannelMeanObserver(axis=1)
    batches = [np.full((2, 3, 4, 4), v, np.float32) * np.array([1, 2, 3]).reshape(1, 3, 1, 1) for v in (1.0, 3.0)]
    for batch in batches:
        observer.observe(batch)
    np.testing.assert_allclose(observer.mean, [2.0, 4.0, 6.0])
    restored = ChannelMeanObserver.from_state(observer.state())
    np.testing.assert_allclose(restored.mean, observer.mean)


def test_reduced_range_weights_use_7_bits_per_channel():
    """reduce_range maps each channel's largest |w| to 63, so any two products of a u8 input
    sum within int16 (see tvmq.tune.int8_kernels), at twice the full range's rounding step."""
    from tvmq.quantize.annotate import Layer
    from tvmq.quantize.qdq import weight_qparams

    weight = np.array([[0.5, -1.0], [2.0, 0.25], [-0.1, 4.0]], np.float32)  # matmul [K, N]: N = 2 channels
    layer = Layer(name="matmul_0", op="matmul", anchor=None, output=None, inputs=(), weight=weight)
    full, reduced = weight_qparams(layer, per_channel=True), weight_qparams(layer, True, reduce_range=True)
    np.testing.assert_allclose(reduced.scale, np.array([2.0, 4.0]) / 63, rtol=1e-6)
    np.testing.assert_array_equal(np.abs(reduced.quantize(weight)).max(axis=0), [63, 63])
    assert np.abs(full.quantize(weight)).max() == 127
