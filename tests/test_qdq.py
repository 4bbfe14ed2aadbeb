"""insert_qdq and the families' Q/DQ placement: a planned float model -> its QDQ (simulated)
form, Before -> Expected; and how weights and biases are stored quantized."""

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tvmq.quantize.annotate import QuantPlan, annotate
from tvmq.quantize.config import QConfig
from tvmq.quantize.operators.weighted import weight_qparams, weight_rounding_shift
from tvmq.quantize.qdq import insert_qdq
from tvmq.quantize.qparams import QuantParams

# Dense weights [K, N] whose largest |w| is 31.75: per tensor, scale 31.75 / 127 = 0.25.
WEIGHT = np.array([[0.25, -0.5], [31.75, 1.0]], np.float32)
CONFIG = QConfig(per_channel=False, reduce_range=False, activation_dtype="uint8")


@I.ir_module
class Dense:
    @R.function
    def main(x: R.Tensor((1, 2), "float32")):
        with R.dataflow():
            y = R.matmul(x, R.const(WEIGHT, "float32"))
            z = R.add(y, R.const(np.array([1.0, -0.5]), "float32"))
            r = R.nn.relu(z)
            R.output(r)
        return r


def _canonical(func) -> tvm.IRModule:
    """insert_qdq binds the function's output once more; canonical bindings drop that copy."""
    return relax.transform.CanonicalizeBindings()(tvm.IRModule({"main": func}))


def test_a_dense_layer_reads_its_input_quantized_and_stores_weights_and_bias_as_integers():
    """x quantized with its calibrated parameters (scale 0.5); weights as int8 at scale 0.25;
    the bias as int32 in the accumulator's units s_x s_w = 0.125, so [1, -0.5] -> [8, -4].
    The output feeds nothing quantized: it is not a quantization point."""
    func = Dense["main"]
    plan = annotate(func, CONFIG)
    (x,) = plan.points
    qdq, _ = insert_qdq(func, plan, {x: QuantParams(np.float32(0.5), np.int32(0), "uint8")}, CONFIG)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2), "float32")):
            with R.dataflow():
                x_q = R.quantize(x, R.const(0.5, "float32"), R.const(0, "int32"), out_dtype="uint8", axis=-1)
                x_dq = R.dequantize(x_q, R.const(0.5, "float32"), R.const(0, "int32"), axis=-1)
                w = R.dequantize(
                    R.const(np.array([[1, -2], [127, 4]]), "int8"),
                    R.const(0.25, "float32"),
                    R.const(0, "int32"),
                    axis=-1,
                )
                y = R.matmul(x_dq, w)
                b = R.dequantize(
                    R.const(np.array([[8, -4]]), "int32"),
                    R.const(np.array([0.125, 0.125]), "float32"),
                    R.const(np.zeros(2), "int32"),
                    axis=1,
                )
                z = R.add(y, b)
                r = R.nn.relu(z)
                R.output(r)
            return r

    tvm.ir.assert_structural_equal(_canonical(qdq), Expected)


def test_an_empty_plan_inserts_nothing():
    func = Dense["main"]
    qdq, outputs = insert_qdq(func, QuantPlan(), {}, CONFIG)
    tvm.ir.assert_structural_equal(_canonical(qdq), Dense)
    assert outputs == []


def test_bias_correction_undoes_the_mean_shift_of_rounded_depthwise_weights():
    """A depthwise channel whose 9 weights all round up shifts every output by
    sum(W_q - W) * E[x]; weight_rounding_shift computes exactly that per output channel."""
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 1, (4, 1, 3, 3)).astype(np.float32)  # groups = 4 channels
    params = weight_qparams("conv2d", weight, per_channel=True)
    means = np.array([0.5, 1.0, 2.0, -1.0])
    x = rng.normal(0, 0.1, (1000, 4, 3, 3)) + means.reshape(1, 4, 1, 1)
    rounded = params.dequantize(params.quantize(weight))
    measured = (np.einsum("nchw,chw->nc", x, rounded[:, 0]) - np.einsum("nchw,chw->nc", x, weight[:, 0])).mean(0)
    np.testing.assert_allclose(weight_rounding_shift("conv2d", weight, params, means), measured, atol=1e-4)


def test_reduced_range_weights_use_7_bits_per_channel():
    """reduce_range maps each channel's largest |w| to 63, so any two products of a u8 input
    sum within int16 (see tvmq.kernels.intrinsics), at twice the full range's rounding step."""
    weight = np.array([[0.5, -1.0], [2.0, 0.25], [-0.1, 4.0]], np.float32)  # matmul [K, N]: N = 2 channels
    full, reduced = weight_qparams("matmul", weight, True), weight_qparams("matmul", weight, True, reduce_range=True)
    np.testing.assert_allclose(reduced.scale, np.array([2.0, 4.0]) / 63, rtol=1e-6)
    np.testing.assert_array_equal(np.abs(reduced.quantize(weight)).max(axis=0), [63, 63])
    assert np.abs(full.quantize(weight)).max() == 127
