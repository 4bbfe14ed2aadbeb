"""The realize rewrites one by one, on small TVMScript modules: Before -> Expected, and a case
each where the rewrite must leave the module as it is. Scales are powers of two, so the
fixed-point multipliers are exact: m = 2^30 for every ratio, and the shift says the power."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tvmq.quantize.operators import ActivationMatmul, Add, Concat, SharedScale, WeightedLayer
from tvmq.quantize.realize import FoldQuantizeDequantize, realize

W = np.array([[1, -2], [3, 4]], np.int8)  # matmul weights [K, N]: column sums 4 and 2


def _integer(passes, mod):
    """`mod` after `passes`, with the float groups they replaced removed."""
    return tvm.transform.Sequential([*passes, relax.transform.DeadCodeElimination()])(mod)


def test_a_weighted_layer_becomes_an_integer_matmul_with_its_corrections_in_the_bias():
    """uint8 x (zero point 3) @ int8 W + int32 bias, ReLU, requantized to uint8: the bias in
    accumulator units (s_x s_w = 1/8) loses z_x * (column sums of W) = 3 * [4, 2]; the
    multiplier 1/8 is 2^30 / 2^33."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2), "uint8")):
            with R.dataflow():
                f = R.dequantize(x, R.const(0.5, "float32"), R.const(3, "int32"))
                w = R.dequantize(R.const(W, "int8"), R.const(0.25, "float32"), R.const(0, "int32"))
                y = R.matmul(f, w)
                b = R.dequantize(R.const(np.array([[8, -4]]), "int32"), R.const(0.125, "float32"), R.const(0, "int32"))
                z = R.add(y, b)
                r = R.nn.relu(z)
                q = R.quantize(r, R.const(1.0, "float32"), R.const(0, "int32"), out_dtype="uint8")
                R.output(q)
            return q

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2), "uint8")):
            with R.dataflow():
                acc = R.matmul(x, R.const(W, "int8"), out_dtype="int32")
                biased = R.add(acc, R.const(np.array([[8 - 3 * 4, -4 - 3 * 2]]), "int32"))
                wide = R.astype(biased, "int64")
                scaled = R.multiply(wide, R.const(np.array([[2**30, 2**30]]), "int64"))
                rounded = R.add(scaled, R.const(2**32, "int64"))
                shifted = R.right_shift(rounded, R.const(33, "int64"))
                centred = R.add(shifted, R.const(0, "int64"))
                clipped = R.clip(centred, 0, 255)
                q = R.astype(clipped, "uint8")
                R.output(q)
            return q

    tvm.ir.assert_structural_equal(_integer(WeightedLayer().realize_passes(), Before), Expected)


def test_a_convolution_read_as_float_accumulates_in_int32_and_pads_with_the_zero_point():
    """Its output feeds no quantized operator: int32 accumulator, dequantized per channel.
    The input's zero point 3 is what padding must add, so the padding becomes an explicit pad."""
    weight = np.arange(18, dtype=np.int8).reshape(2, 1, 3, 3) - 9

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 1, 4, 4), "uint8")):
            with R.dataflow():
                f = R.dequantize(x, R.const(0.5, "float32"), R.const(3, "int32"))
                w = R.dequantize(R.const(weight, "int8"), R.const(0.25, "float32"), R.const(0, "int32"))
                y = R.nn.conv2d(f, w, padding=[1, 1, 1, 1])
                R.output(y)
            return y

    sums = weight.astype(np.int32).sum(axis=(1, 2, 3))

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 1, 4, 4), "uint8")):
            with R.dataflow():
                padded = R.nn.pad(x, pad_width=[0, 0, 0, 0, 1, 1, 1, 1], pad_value=3.0)
                acc = R.nn.conv2d(padded, R.const(weight, "int8"), padding=[0, 0, 0, 0], out_dtype="int32")
                corrected = R.add(acc, R.const((-3 * sums).reshape(1, 2, 1, 1), "int32"))
                y = R.dequantize(
                    corrected, R.const(np.full(2, 0.125), "float32"), R.const(np.zeros(2), "int32"), axis=1
                )
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(_integer(WeightedLayer().realize_to_float_passes(), Before), Expected)


def test_weights_with_a_zero_point_stay_simulated():
    """Integer layers take symmetric weights only: nothing changes."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2), "uint8")):
            with R.dataflow():
                f = R.dequantize(x, R.const(0.5, "float32"), R.const(3, "int32"))
                w = R.dequantize(R.const(W, "int8"), R.const(0.25, "float32"), R.const(1, "int32"))
                y = R.matmul(f, w)
                q = R.quantize(y, R.const(1.0, "float32"), R.const(0, "int32"), out_dtype="uint8")
                R.output(q)
            return q

    family = WeightedLayer()
    tvm.ir.assert_structural_equal(_integer(family.realize_passes() + family.realize_to_float_passes(), Before), Before)


def test_two_quantized_activations_multiply_as_integers_minus_their_zero_points():
    """Attention's scores: s_a s_b / s_out = 0.5 * 0.25 / 0.125 = 1 = 2^30 / 2^30."""

    @I.ir_module
    class Before:
        @R.function
        def main(a: R.Tensor((2, 3), "uint8"), b: R.Tensor((3, 2), "uint8")):
            with R.dataflow():
                fa = R.dequantize(a, R.const(0.5, "float32"), R.const(1, "int32"))
                fb = R.dequantize(b, R.const(0.25, "float32"), R.const(2, "int32"))
                m = R.matmul(fa, fb)
                q = R.quantize(m, R.const(0.125, "float32"), R.const(5, "int32"), out_dtype="uint8")
                R.output(q)
            return q

    @I.ir_module
    class Expected:
        @R.function
        def main(a: R.Tensor((2, 3), "uint8"), b: R.Tensor((3, 2), "uint8")):
            with R.dataflow():
                a32 = R.astype(a, "int32")
                ca = R.subtract(a32, R.const(1, "int32"))
                b32 = R.astype(b, "int32")
                cb = R.subtract(b32, R.const(2, "int32"))
                acc = R.matmul(ca, cb, out_dtype="int32")
                wide = R.astype(acc, "int64")
                scaled = R.multiply(wide, R.const(2**30, "int64"))
                rounded = R.add(scaled, R.const(2**29, "int64"))
                shifted = R.right_shift(rounded, R.const(30, "int64"))
                offset = R.add(shifted, R.const(5, "int64"))
                clipped = R.clip(offset, 0, 255)
                q = R.astype(clipped, "uint8")
                R.output(q)
            return q

    tvm.ir.assert_structural_equal(_integer(ActivationMatmul().realize_passes(), Before), Expected)


def test_an_activation_matmul_with_a_per_channel_operand_stays_simulated():
    @I.ir_module
    class Before:
        @R.function
        def main(a: R.Tensor((2, 3), "uint8"), b: R.Tensor((3, 2), "uint8")):
            with R.dataflow():
                fa = R.dequantize(a, R.const(np.array([0.5, 0.25, 1.0]), "float32"), R.const(np.zeros(3), "int32"))
                fb = R.dequantize(b, R.const(0.25, "float32"), R.const(2, "int32"))
                m = R.matmul(fa, fb)
                q = R.quantize(m, R.const(0.125, "float32"), R.const(5, "int32"), out_dtype="uint8")
                R.output(q)
            return q

    family = ActivationMatmul()
    tvm.ir.assert_structural_equal(_integer(family.realize_passes() + family.realize_to_float_passes(), Before), Before)


def _residual_add(out_scale):
    @I.ir_module
    class Residual:
        @R.function
        def main(a: R.Tensor((4,), "uint8"), b: R.Tensor((4,), "uint8")):
            with R.dataflow():
                fa = R.dequantize(a, R.const(0.5, "float32"), R.const(2, "int32"))
                fb = R.dequantize(b, R.const(0.25, "float32"), R.const(4, "int32"))
                s = R.add(fa, fb)
                q = R.quantize(s, R.const(out_scale), R.const(np.int32(1)), out_dtype="uint8")
                R.output(q)
            return q

    return Residual


def test_an_add_of_two_integer_tensors_scales_each_over_a_common_shift():
    """Ratios 0.5 / 0.5 = 2^30 / 2^30 and 0.25 / 0.5 = 2^29 / 2^30, summed in int64."""

    @I.ir_module
    class Expected:
        @R.function
        def main(a: R.Tensor((4,), "uint8"), b: R.Tensor((4,), "uint8")):
            with R.dataflow():
                a64 = R.astype(a, "int64")
                ca = R.subtract(a64, R.const(2, "int64"))
                ta = R.multiply(ca, R.const(2**30, "int64"))
                b64 = R.astype(b, "int64")
                cb = R.subtract(b64, R.const(4, "int64"))
                tb = R.multiply(cb, R.const(2**29, "int64"))
                total = R.add(ta, tb)
                rounded = R.add(total, R.const(2**29, "int64"))
                shifted = R.right_shift(rounded, R.const(30, "int64"))
                offset = R.add(shifted, R.const(1, "int64"))
                clipped = R.clip(offset, 0, 255)
                q = R.astype(clipped, "uint8")
                R.output(q)
            return q

    tvm.ir.assert_structural_equal(_integer(Add().realize_passes(), _residual_add(np.float32(0.5))), Expected)


def test_an_add_with_per_channel_output_parameters_stays_simulated():
    before = _residual_add(np.array([0.5, 0.5, 0.25, 0.25], np.float32))
    tvm.ir.assert_structural_equal(_integer(Add().realize_passes(), before), before)


def test_a_concat_rescales_only_the_inputs_whose_parameters_differ_from_its_output():
    """a already has the output's scale 0.5; b's 0.25 is rescaled by 2^30 / 2^31."""

    @I.ir_module
    class Before:
        @R.function
        def main(a: R.Tensor((1, 2), "uint8"), b: R.Tensor((1, 2), "uint8")):
            with R.dataflow():
                fa = R.dequantize(a, R.const(0.5, "float32"), R.const(0, "int32"))
                fb = R.dequantize(b, R.const(0.25, "float32"), R.const(0, "int32"))
                c = R.concat((fa, fb), axis=1)
                q = R.quantize(c, R.const(0.5, "float32"), R.const(0, "int32"), out_dtype="uint8")
                R.output(q)
            return q

    @I.ir_module
    class Expected:
        @R.function
        def main(a: R.Tensor((1, 2), "uint8"), b: R.Tensor((1, 2), "uint8")):
            with R.dataflow():
                b32 = R.astype(b, "int32")
                cb = R.subtract(b32, R.const(0, "int32"))
                wide = R.astype(cb, "int64")
                scaled = R.multiply(wide, R.const(2**30, "int64"))
                rounded = R.add(scaled, R.const(2**30, "int64"))
                shifted = R.right_shift(rounded, R.const(31, "int64"))
                offset = R.add(shifted, R.const(0, "int64"))
                clipped = R.clip(offset, 0, 255)
                rb = R.astype(clipped, "uint8")
                q = R.concat((a, rb), axis=1)
                R.output(q)
            return q

    tvm.ir.assert_structural_equal(_integer(Concat().realize_passes(), Before), Expected)


def test_a_concat_with_a_float_input_stays_simulated():
    @I.ir_module
    class Before:
        @R.function
        def main(a: R.Tensor((1, 2), "uint8"), b: R.Tensor((1, 2), "float32")):
            with R.dataflow():
                fa = R.dequantize(a, R.const(0.5, "float32"), R.const(0, "int32"))
                c = R.concat((fa, b), axis=1)
                q = R.quantize(c, R.const(0.5, "float32"), R.const(0, "int32"), out_dtype="uint8")
                R.output(q)
            return q

    tvm.ir.assert_structural_equal(_integer(Concat().realize_passes(), Before), Before)


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

    tvm.ir.assert_structural_equal(_integer(SharedScale().realize_passes(), Before), Expected)


def test_an_average_runs_on_the_integers_as_float32_rounded_half_to_even():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2, 2, 2), "uint8")):
            with R.dataflow():
                f = R.dequantize(x, R.const(0.5, "float32"), R.const(3, "int32"))
                m = R.mean(f, axis=[2, 3], keepdims=True)
                q = R.quantize(m, R.const(0.5, "float32"), R.const(3, "int32"), out_dtype="uint8")
                R.output(q)
            return q

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2, 2, 2), "uint8")):
            with R.dataflow():
                as_float = R.astype(x, "float32")
                m = R.mean(as_float, axis=[2, 3], keepdims=True)
                rounded = R.round(m)
                q = R.astype(rounded, "uint8")
                R.output(q)
            return q

    tvm.ir.assert_structural_equal(_integer(SharedScale().realize_passes(), Before), Expected)


def test_a_softmax_between_quantize_and_dequantize_is_no_family_s_and_stays_float():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4), "uint8")):
            with R.dataflow():
                f = R.dequantize(x, R.const(0.5, "float32"), R.const(3, "int32"))
                s = R.nn.softmax(f)
                q = R.quantize(s, R.const(0.5, "float32"), R.const(3, "int32"), out_dtype="uint8")
                R.output(q)
            return q

    tvm.ir.assert_structural_equal(_integer(SharedScale().realize_passes(), Before), Before)


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

    after = _integer([FoldQuantizeDequantize().as_pass()], Before)
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

    after = realize(Before)
    assert "quantize" not in after.script()
    vm = relax.VirtualMachine(tvm.compile(after, target=tvm.target.Target({"kind": "llvm"})), tvm.cpu())
    x = np.arange(256, dtype=np.uint8)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    expected = np.clip(np.round((x.astype(np.float64) - 128) * 0.1 / 0.37) + 10, -128, 127)
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert (got == expected).mean() > 0.99


@pytest.mark.parametrize("family", [WeightedLayer(), ActivationMatmul(), Add(), Concat(), SharedScale()])
def test_a_float_module_has_nothing_to_realize(family):
    @I.ir_module
    class Float:
        @R.function
        def main(x: R.Tensor((2, 2), "float32")):
            with R.dataflow():
                y = R.matmul(x, R.const(np.eye(2, dtype=np.float32)))
                z = R.add(y, x)
                R.output(z)
            return z

    passes = family.realize_passes() + family.realize_to_float_passes()
    tvm.ir.assert_structural_equal(_integer(passes, Float), Float)
