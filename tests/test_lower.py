"""What code is generated from: channels-last convolutions on CPUs, and integer kernels that do
not depend on calibration (so one tuning log serves every calibration of a model)."""

import math

import numpy as np
import pytest
import tvm
from bundled_example import EXAMPLE
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tvmq.codegen.lower import (
    CalibrationConstantsAsParameters,
    CIdentifiers,
    ClipAsMinMax,
    FoldConstantsWithNumpy,
    FoldPadIntoConv,
    GroupedConvAsDense,
    PadInt8ConvChannels,
    transcendentals_as_polynomials,
)
from tvmq.compiler import codegen_module
from tvmq.frontend import load_model
from tvmq.kernels.tasks import extract_tasks, tuning_target
from tvmq.quantize import QConfig, for_codegen, quantize_model
from tvmq.target import load_target


def test_clip_becomes_a_maximum_and_a_minimum_of_the_same_type():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4), "int64")):
            with R.dataflow():
                y = R.clip(x, 0, 255)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 4), "int64")):
            with R.dataflow():
                low = R.maximum(x, R.const(0, "int64"))
                y = R.minimum(low, R.const(255, "int64"))
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(relax.transform.Normalize()(ClipAsMinMax()(Before)), Expected)


def _padded_conv(pad_value: float, dtype: str, second_axes=(0, 2, 3, 1)) -> tvm.IRModule:
    """NHWC data transposed to NCHW, padded at the bottom and right, transposed by
    `second_axes`, then a stride-2 3x3 channels-last convolution: EfficientNet's explicit
    "same" Pad after the layout change."""
    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 6, 6, 8), dtype))
    w = relax.Var("w", relax.TensorType((3, 3, 8, 4), dtype))
    with builder.function("main", [x, w]):
        with builder.dataflow():
            nchw = builder.emit(relax.op.permute_dims(x, [0, 3, 1, 2]))
            padded = builder.emit(relax.op.nn.pad(nchw, [0, 0, 0, 0, 0, 1, 0, 1], pad_value=pad_value))
            nhwc = builder.emit(relax.op.permute_dims(padded, second_axes))
            conv = relax.op.nn.conv2d(
                nhwc, w, strides=2, padding=[1, 0, 0, 0], data_layout="NHWC", kernel_layout="HWIO"
            )
            y = builder.emit_output(builder.emit(conv))
        builder.emit_func_output(y)
    return builder.get()


def test_a_zero_pad_before_a_float_convolution_becomes_its_padding():
    """Through the transposes around it: the bottom and right rows add to the convolution's
    own (top, left, bottom, right) padding."""

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 8), "float32"), w: R.Tensor((3, 3, 8, 4), "float32")):
            with R.dataflow():
                y = R.nn.conv2d(x, w, strides=2, padding=[1, 0, 1, 1], data_layout="NHWC", kernel_layout="HWIO")
                R.output(y)
            return y

    folded = relax.transform.DeadCodeElimination()(FoldPadIntoConv()(_padded_conv(0.0, "float32")))
    tvm.ir.assert_structural_equal(folded, Expected, map_free_vars=True)


@pytest.mark.parametrize(
    "pad_value, dtype, second_axes",
    [
        pytest.param(1.0, "float32", (0, 2, 3, 1), id="non-zero"),
        pytest.param(0.0, "int8", (0, 2, 3, 1), id="integer (pads with a zero point)"),
        pytest.param(0.0, "float32", (0, 3, 2, 1), id="transposes that do not cancel"),
    ],
)
def test_other_pads_stay(pad_value, dtype, second_axes):
    before = _padded_conv(pad_value, dtype, second_axes)
    tvm.ir.assert_structural_equal(FoldPadIntoConv()(before), before)


def test_shape_changes_and_arithmetic_on_constants_fold_and_the_inputs_work_stays():
    """The layout change transposes weights and batch norm decomposes into arithmetic on its
    statistics; both are folded at compile time with numpy (not a kernel built for each),
    while a transpose of the model's input is real work."""
    weight = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    variance = np.linspace(0.5, 2.0, 4, dtype=np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3, 4), "float32")):
            with R.dataflow():
                w = R.permute_dims(R.const(weight, "float32"), axes=[2, 0, 1])
                s = R.expand_dims(R.sqrt(R.add(R.const(variance, "float32"), R.const(1e-5, "float32"))), [1, 2])
                t = R.permute_dims(x, axes=[2, 0, 1])
                y = R.divide(R.add(t, w), s)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3, 4), "float32")):
            with R.dataflow():
                w = R.const(weight.transpose(2, 0, 1), "float32")
                s = R.const(np.sqrt(variance + np.float32(1e-5)).reshape(4, 1, 1), "float32")
                t = R.permute_dims(x, axes=[2, 0, 1])
                y = R.divide(R.add(t, w), s)
                R.output(y)
            return y

    folded = relax.transform.DeadCodeElimination()(FoldConstantsWithNumpy()(Before))
    tvm.ir.assert_structural_equal(folded, Expected)


def test_gpu_code_names_every_variable_as_a_c_identifier():
    """ONNX tensor names become kernel parameter names in CUDA C source: "/0/Conv" must be
    spelled "_0_Conv", "1x" "v1x"; names that are identifiers already stay."""
    x = relax.Var("/input", relax.TensorType((2,), "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x]):
        with builder.dataflow():
            y = builder.emit(relax.op.add(x, x), name_hint="/0/Conv")
            z = builder.emit(relax.op.multiply(y, y), name_hint="1x")
            out = builder.emit_output(relax.op.negative(z), name_hint="ok_name")
        builder.emit_func_output(out)
    renamed = CIdentifiers()(builder.get())["main"]
    names = [renamed.params[0].name] + [b.var.name for b in renamed.body.blocks[0].bindings]
    assert names == ["_input", "_0_Conv", "v1x", "ok_name"]
    tvm.ir.assert_structural_equal(renamed, builder.get()["main"], map_free_vars=True)


@pytest.mark.parametrize(
    "op, exact, low, high, rtol, atol",
    [
        (relax.op.erf, np.vectorize(math.erf), -6, 6, 0, 4e-7),
        (relax.op.exp, np.exp, -20, 0, 1.1e-6, 0),
        (relax.op.tanh, np.tanh, -8, 8, 0, 4e-7),
        (lambda x: relax.op.nn.softmax(x, axis=-1), None, -20, 20, 2e-6, 0),
    ],
    ids=["erf", "exp", "tanh", "softmax"],
)
def test_float_transcendentals_become_polynomials_within_their_bounds(op, exact, low, high, rtol, atol):
    """GELU's erf, exp, tanh and softmax's exponentials compile to a C library call per
    element; TOPI's approximations vectorize, and stay within these bounds of the exact values
    (exp: on softmax's inputs, x - max <= 0)."""
    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 1000), "float32"))
    with builder.function("main", [x]):
        with builder.dataflow():
            y = builder.emit_output(builder.emit(op(x)))
        builder.emit_func_output(y)
    rewritten = transcendentals_as_polynomials(builder.get())
    assert "fast_" in rewritten.script() and "fast_" not in builder.get().script()

    values = np.linspace(low, high, 4000, dtype=np.float32).reshape(4, 1000)
    vm = relax.VirtualMachine(relax.build(rewritten, "llvm"), tvm.cpu())
    wide = values.astype(np.float64)
    if exact is None:  # softmax
        expected = np.exp(wide - wide.max(-1, keepdims=True))
        expected /= expected.sum(-1, keepdims=True)
    else:
        expected = exact(wide)
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(values)).numpy(), expected, rtol=rtol, atol=atol)


def test_integer_scalars_become_one_element_tensors_of_the_operand_rank_and_floats_stay():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2, 2, 3), "int64"), f: R.Tensor((1, 3), "float32")):
            with R.dataflow():
                y = R.right_shift(x, R.const(38, "int64"))
                g = R.multiply(f, R.const(0.5, "float32"))
                R.output(y, g)
            return (y, g)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2, 2, 3), "int64"), f: R.Tensor((1, 3), "float32")):
            with R.dataflow():
                y = R.right_shift(x, R.const(np.full((1, 1, 1, 1), 38), "int64"))
                g = R.multiply(f, R.const(0.5, "float32"))
                R.output(y, g)
            return (y, g)

    tvm.ir.assert_structural_equal(relax.transform.Normalize()(CalibrationConstantsAsParameters()(Before)), Expected)


def _example(calibration_images: int | None = None, brightness: float = 1.0):
    """The bundled CNN, float or calibrated on (dimmed) bundled images."""
    model = load_model(EXAMPLE / "model.onnx", input_shapes={"image": (1, 1, 28, 28)})
    if calibration_images is None:
        return model
    images = np.load(EXAMPLE / "calibration.npz")["image"][:calibration_images]
    return quantize_model(model, {"image": images * brightness}, QConfig())


def _run(mod: tvm.IRModule, images: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    return np.concatenate([vm["main"](tvm.runtime.tensor(image[None])).numpy() for image in images])


def test_cpu_code_is_channels_last_and_computes_the_same_numbers():
    """The layout change only moves data: int8 results are bit-identical, fp32 equal up to
    summation order. The input is transposed once and convolutions read NHWC."""
    images = np.load(EXAMPLE / "test.npz")["image"][:8]
    host = load_target("host")
    for model, exact in ((_example(), False), (_example(calibration_images=64), True)):
        lowered = codegen_module(model.mod, host)
        assert 'data_layout="NHWC"' in lowered.script() and 'data_layout="NCHW"' not in lowered.script()
        reference, channels_last = _run(for_codegen(model.mod), images), _run(lowered, images)
        if exact:
            np.testing.assert_array_equal(channels_last, reference)
        else:
            np.testing.assert_allclose(channels_last, reference, rtol=1e-5, atol=1e-5)


def test_gpu_code_keeps_the_model_layout():
    lowered = codegen_module(_example().mod, load_target("cuda-sm80"))
    assert 'data_layout="NCHW"' in lowered.script()


def test_two_calibrations_of_a_model_give_the_same_kernels_to_tune():
    """Calibrated on images a quarter as bright, every scale, requantization shift and input
    quantization step differs; they are kernel parameters, not literals, so the kernels (what
    tuning logs are keyed by) are the same and one log serves both."""
    preset = load_target("x86-avx2")
    target = tuning_target(preset, num_cores=2)

    def kernels(model) -> set[str]:
        return {task.dispatched[0].script() for task in extract_tasks(codegen_module(model.mod, preset), target)}

    bright, dim = _example(calibration_images=64), _example(calibration_images=64, brightness=0.25)
    assert kernels(bright) == kernels(dim)


def test_int8_convolutions_get_whole_groups_of_4_input_channels_and_the_same_results():
    """A 3-channel int8 stem gets a fourth channel of zero weights (the int8 intrinsics sum 4
    channels at a time); whatever the padded activation holds, the int32 results are equal."""

    @I.ir_module
    class Stem:
        @R.function
        def main(x: R.Tensor((1, 3, 9, 9), "uint8")):
            with R.dataflow():
                w = R.const(np.random.default_rng(0).integers(-128, 128, (8, 3, 3, 3)).astype("int8"))
                y = R.nn.conv2d(x, w, strides=[2, 2], padding=[1, 1, 1, 1], out_dtype="int32")
                R.output(y)
            return y

    padded = PadInt8ConvChannels()(Stem)
    (conv,) = [b.value for b in padded["main"].body.blocks[0].bindings if "conv2d" in str(b.value.op)]
    weights = conv.args[1].value.numpy()
    assert weights.shape == (8, 4, 3, 3)
    assert not weights[:, 3].any()
    x = np.random.default_rng(1).integers(0, 256, (1, 3, 9, 9)).astype("uint8")
    results = []
    for mod in (Stem, padded):
        vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
        results.append(vm["main"](tvm.runtime.tensor(x)).numpy())
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
@pytest.mark.parametrize("groups, dense", [(4, True), (8, True), (16, False), (32, False)])
def test_a_grouped_convolution_with_few_groups_becomes_a_block_diagonal_dense_one(groups, dense, dtype):
    """4 and 8 groups of 32 channels: one convolution whose weights are zero off the diagonal
    blocks, computing the same numbers, float and integer (exactly; the default schedules
    vectorize it; a grouped one ran TVM's serial loops). 16 groups would cost 16x the
    multiply-adds, and 32 is depthwise: kept."""
    rng = np.random.default_rng(groups)
    integer = dtype != "float32"
    weights = rng.integers(-127, 128, (32, 32 // groups, 3, 3)).astype("int8" if integer else "float32")
    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 32, 6, 6), dtype))
    with builder.function("main", [x]):
        with builder.dataflow():
            y = relax.op.nn.conv2d(
                x, relax.const(weights), padding=1, groups=groups, out_dtype="int32" if integer else "float32"
            )
            out = builder.emit_output(builder.emit(y))
        builder.emit_func_output(out)
    before = builder.get()
    after = GroupedConvAsDense()(before)
    (conv,) = [b.value for b in after["main"].body.blocks[0].bindings if isinstance(b.value, relax.Call)]
    assert int(conv.attrs.groups) == (1 if dense else groups)

    data = rng.integers(0, 256, (1, 32, 6, 6)).astype(dtype)
    run = [relax.VirtualMachine(relax.build(m, "llvm"), tvm.cpu())["main"] for m in (before, after)]
    np.testing.assert_array_equal(*(f(tvm.runtime.tensor(data)).numpy() for f in run))
