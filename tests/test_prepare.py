"""Preparing a float model for quantization, pass by pass on small TVMScript modules:
Before -> Expected, and a case each where the pass must change nothing."""

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tvmq.codegen.lower import FoldPadIntoConv
from tvmq.quantize.prepare import FoldChannelAffine, prepare_pipeline


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


def test_a_batch_norm_folds_into_the_convolution_before_it_in_the_whole_pipeline():
    """BatchNorm decomposes into per-channel scale and shift ops, which fold away: one conv
    and one bias add remain."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2, 4, 4), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(np.ones((2, 2, 1, 1)), "float32"))
                bn = R.nn.batch_norm(
                    c,
                    R.const(np.array([1.0, 2.0]), "float32"),
                    R.const(np.array([0.5, 0.0]), "float32"),
                    R.const(np.array([0.1, 0.2]), "float32"),
                    R.const(np.array([1.0, 4.0]), "float32"),
                    axis=1,
                    epsilon=0.0,
                )
                y = bn[0]
                R.output(y)
            return y

    after = prepare_pipeline()(Before)
    ops = [b.value.op.name for b in after["main"].body.blocks[0].bindings if isinstance(b.value, relax.Call)]
    assert ops == ["relax.nn.conv2d", "relax.add"]
