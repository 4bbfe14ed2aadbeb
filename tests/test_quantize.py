"""INT8 quantization end to end: calibrated QDQ (simulated) model, realized integer model."""

import tracemalloc

import numpy as np
import onnx_models
import pytest
import tvm
from bundled_example import EXAMPLE
from tvm import relax

import tvmq
from tvmq.errors import InputError
from tvmq.quantize import QConfig, QuantizationError, quantize_model, realize
from tvmq.quantize.calibrate import ObservedModel

HOST = tvm.target.Target({"kind": "llvm"})


def _compiled(mod):
    """A function running `mod` on numpy inputs, compiled once."""
    vm = relax.VirtualMachine(tvm.compile(mod, target=HOST), tvm.cpu())
    return lambda *inputs: vm["main"](*[tvm.runtime.tensor(x) for x in inputs]).numpy()


def _run(mod, inputs):
    return _compiled(mod)(*inputs)


def _calls(mod):
    calls = []
    relax.analysis.post_order_visit(
        mod["main"], lambda e: calls.append(e) if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None
    )
    return calls


@pytest.fixture(scope="module")
def fashion():
    model = tvmq.load_model(EXAMPLE / "model.onnx", input_shapes={"image": (1, 1, 28, 28)})
    quantized = quantize_model(model, EXAMPLE / "calibration.npz", QConfig(method="percentile"), error_report="full")
    return model, quantized, realize(quantized.mod)


def test_realized_layers_take_8_bit_integers_and_accumulate_in_int32(fashion):
    _, _, realized = fashion
    layers = [c for c in _calls(realized) if c.op.name in ("relax.nn.conv2d", "relax.matmul")]
    assert len(layers) == 5  # three convolutions, two dense layers: all of them integer
    for call in layers:
        assert str(call.args[0].ty.dtype) == "uint8" and str(call.args[1].ty.dtype) == "int8"
        assert str(call.ty.dtype) == "int32"
    # Float appears only where the model's float input is quantized once and its output leaves.
    names = [c.op.name for c in _calls(realized)]
    assert names.count("relax.quantize") == 1 and names.count("relax.dequantize") == 1


def test_realized_model_agrees_with_the_simulated_model_within_one_step(fashion):
    model, quantized, realized = fashion
    images = np.load(EXAMPLE / "test.npz")["image"][:20]
    run_simulated, run_integer = _compiled(quantized.mod), _compiled(realized)
    for image in images:
        simulated, integer = run_simulated(image[None]), run_integer(image[None])
        # The logits leave straight from an int32 accumulator: one step of the last layer's
        # input moves them by at most its scale times the largest column sum of |weights|.
        assert np.abs(integer - simulated).max() < 0.05 * np.abs(simulated).max()
        assert integer.argmax() == simulated.argmax()


def test_int8_accuracy_on_the_bundled_test_images_stays_within_a_point_of_fp32(fashion):
    model, _, realized = fashion
    test = np.load(EXAMPLE / "test.npz")
    float_vm = relax.VirtualMachine(tvm.compile(model.mod, target=HOST), tvm.cpu())
    int_vm = relax.VirtualMachine(tvm.compile(realized, target=HOST), tvm.cpu())
    images, labels = test["image"][:200], test["label"][:200]
    fp32 = np.array([float_vm["main"](tvm.runtime.tensor(x[None])).numpy().argmax() for x in images])
    int8 = np.array([int_vm["main"](tvm.runtime.tensor(x[None])).numpy().argmax() for x in images])
    assert (int8 == labels).mean() >= (fp32 == labels).mean() - 0.01
    assert (int8 == fp32).mean() >= 0.98


def test_error_report_lists_every_computing_layer_worst_first(fashion):
    _, quantized, _ = fashion
    error = quantized.quantization["error"]
    names = [row["layer"].split()[0] for row in error["layers"]]
    assert sorted(names) == ["conv2d_0", "conv2d_1", "conv2d_2", "matmul_0", "matmul_1"]
    assert "conv2d_2 (/2/2_0/Conv)" in [row["layer"] for row in error["layers"]]
    sqnrs = [row["sqnr_db"] for row in error["layers"]]
    assert sqnrs == sorted(sqnrs) and sqnrs[0] > 15  # int8 keeps each layer's SNR well above 15 dB
    assert error["outputs"][0]["top1_agreement"] >= 0.95
    assert quantized.quantization["weights"]["quantized"] < 0.3 * quantized.quantization["weights"]["float32"]


def test_quick_error_report_measures_the_compiled_library_and_none_measures_nothing(tmp_path):
    """By default (quick) no simulated model is built: compiling measures the library's outputs
    against the float model's, kept from calibration; with none, nothing is measured."""
    model = tvmq.load_model(EXAMPLE / "model.onnx", input_shapes={"image": (1, 1, 28, 28)})
    quick = quantize_model(model, EXAMPLE / "calibration.npz")
    assert quick.quantization["error"] == {"report": "quick", "samples": 16, "layers": []}
    record = tvmq.compile_model(quick, "host", tmp_path / "quick").quantization
    assert record["error"]["outputs_of"] == "compiled model" and record["error"]["samples"] == 16
    assert record["error"]["outputs"][0]["top1_agreement"] >= 0.9
    assert record["error"]["outputs"][0]["sqnr_db"] > 15
    silent = quantize_model(model, EXAMPLE / "calibration.npz", error_report="none")
    assert silent.quantization["error"] is None and silent.error_probe is None
    assert tvmq.compile_model(silent, "host", tmp_path / "none").quantization["error"] is None


def test_an_unknown_error_report_is_refused():
    model = tvmq.load_model(EXAMPLE / "model.onnx", input_shapes={"image": (1, 1, 28, 28)})
    with pytest.raises(ValueError, match="none, quick, full"):
        quantize_model(model, EXAMPLE / "calibration.npz", error_report="fast")


def test_transformer_block_quantizes_matmuls_but_keeps_norms_and_the_residual_stream_float():
    """Residual adds read the float stream around LayerNorm: quantizing them would clip its
    outlier channels, so they stay float, and the projections feeding them leave as float."""
    model = tvmq.load_model(onnx_models.transformer_block(), input_shapes={"x": (2, 8, 16)})
    data = {"x": np.random.default_rng(0).standard_normal((32, 8, 16)).astype(np.float32)}
    quantized = quantize_model(model, data)
    assert {"nn.layer_norm", "nn.softmax", "erf", "add"} <= set(quantized.quantization["float_ops"])
    assert not any(name.startswith("add") for name in quantized.quantization["layers"])
    realized = realize(quantized.mod)
    int_matmuls = [c for c in _calls(realized) if c.op.name == "relax.matmul" and str(c.ty.dtype) == "int32"]
    assert len(int_matmuls) == 8  # q, k, v, out projections, QK^T, attention x V, two MLP layers
    x = data["x"][:2]
    reference = _run(model.mod, [x])
    integer = _run(realized, [x])
    cosine = float((reference * integer).sum() / np.linalg.norm(reference) / np.linalg.norm(integer))
    assert cosine > 0.99


def test_batch_norm_and_grouped_convolution_quantize_and_realize(compile_and_load):
    model = tvmq.load_model(onnx_models.conv_net(), input_shapes={"image": (1, 3, 16, 16)})
    data = {"image": np.random.default_rng(1).standard_normal((16, 3, 16, 16)).astype(np.float32)}
    quantized = quantize_model(model, data)
    assert [name.split()[0] for name in quantized.quantization["layers"]] == [
        "conv2d_0",
        "max_pool2d_0",
        "conv2d_1",
        "mean_0",
        "reshape_0",
        "matmul_0",
    ]
    simulated, integer = _run(quantized.mod, [data["image"][:1]]), _run(realize(quantized.mod), [data["image"][:1]])
    np.testing.assert_allclose(integer, simulated, atol=0.05 * np.abs(simulated).max())


def test_onnxruntime_qdq_model_realizes_to_its_own_integer_results(tmp_path):
    """A model quantized by onnxruntime's quantize_static (QDQ, per channel) needs no
    calibration: tvmq realizes its Q/DQ pairs into integer operators with its own scales and
    computes exactly what onnxruntime's int8 kernels compute."""
    ort = pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    calibration = np.load(EXAMPLE / "calibration.npz")["image"][:32]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.samples = iter({"image": x[None]} for x in calibration)

        def get_next(self):
            return next(self.samples, None)

    qdq_path = tmp_path / "qdq.onnx"
    quantize_static(
        str(EXAMPLE / "model.onnx"),
        str(qdq_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    model = tvmq.load_model(qdq_path, input_shapes={"image": (1, 1, 28, 28)})
    realized = realize(model.mod)
    assert all(str(c.ty.dtype) == "int32" for c in _calls(realized) if c.op.name in ("relax.nn.conv2d", "relax.matmul"))
    session = ort.InferenceSession(str(qdq_path), providers=["CPUExecutionProvider"])
    run_integer = _compiled(realized)
    for image in np.load(EXAMPLE / "test.npz")["image"][:20]:
        expected = session.run(None, {"image": image[None]})[0]
        np.testing.assert_array_equal(run_integer(image[None]), expected)


def test_layers_are_skipped_by_name_or_op_type():
    model = tvmq.load_model(EXAMPLE / "model.onnx", input_shapes={"image": (1, 1, 28, 28)})
    data = np.load(EXAMPLE / "calibration.npz")
    by_name = quantize_model(model, data_dict(data), QConfig(skip=("conv2d_0",), num_samples=8))
    assert by_name.quantization["layers"][0] == "conv2d_1 (/1/1_0/Conv)"
    by_onnx_name = quantize_model(model, data_dict(data), QConfig(skip=("/1/1.0/Conv",), num_samples=8))
    assert "conv2d_0 (/0/0_0/Conv)" in by_onnx_name.quantization["layers"]
    assert not any(name.startswith("conv2d_1") for name in by_onnx_name.quantization["layers"])
    by_type = quantize_model(model, data_dict(data), QConfig(skip=("Gemm",), num_samples=8))
    assert not any(name.startswith("matmul") for name in by_type.quantization["layers"])
    ends = quantize_model(model, data_dict(data), QConfig(keep_first_float=True, keep_last_float=True, num_samples=8))
    assert ends.quantization["layers"][0].startswith("conv2d_1") and "matmul_1" not in ends.quantization["layers"]
    with pytest.raises(
        QuantizationError, match=r"--skip conv9 matches no layer; layers: conv2d_0 \(/0/0_0/Conv\), max_pool2d_0"
    ):
        quantize_model(model, data_dict(data), QConfig(skip=("conv9",), num_samples=8))
    with pytest.raises(QuantizationError, match="nothing to quantize: 5 quantizable layer"):
        quantize_model(model, data_dict(data), QConfig(skip=("Conv", "MatMul"), num_samples=8))


def data_dict(npz):
    return {name: npz[name] for name in npz.files}


def test_constant_activations_get_finite_scales():
    """A tensor that is always zero (a zero-width range) must not produce NaN scales."""
    model = tvmq.load_model(onnx_models.mlp())
    zeros = {"x": np.zeros((8, 32), np.float32)}
    quantized = quantize_model(model, zeros, QConfig(method="entropy"))
    out = _run(realize(quantized.mod), [zeros["x"][:4]])
    assert np.all(np.isfinite(out))


def test_bad_calibration_data_is_reported_by_input_and_sample():
    model = tvmq.load_model(onnx_models.mlp())
    data = np.random.default_rng(0).standard_normal((8, 32)).astype(np.float32)
    with pytest.raises(
        InputError, match=r"arrays must be keyed by the model's input names \(x\); unknown: y; missing: x"
    ):
        quantize_model(model, {"y": data})
    data[5, 3] = np.nan
    with pytest.raises(InputError, match="input 'x' has NaN or Inf in sample 5"):
        quantize_model(model, {"x": data})


def test_statistics_are_cached_so_another_method_does_not_rerun_the_model(tmp_path, caplog):
    model = tvmq.load_model(onnx_models.mlp())
    data = {"x": np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)}
    with caplog.at_level("INFO", logger="tvmq"):
        first = quantize_model(model, data, QConfig(method="minmax"), cache_dir=tmp_path)
    assert "calibrating [" in caplog.text
    assert len(list(tmp_path.glob("*.npz"))) == 1
    caplog.clear()
    with caplog.at_level("INFO", logger="tvmq"):
        second = quantize_model(model, data, QConfig(method="percentile", percentile=99.0), cache_dir=tmp_path)
    assert "calibrating [" not in caplog.text and "calibration statistics from" in caplog.text
    assert second.quantization["config"]["method"] == "percentile"
    # the float outputs the error report measures against come from the cache too
    np.testing.assert_array_equal(second.error_probe.reference[0][0], first.error_probe.reference[0][0])
    caplog.clear()
    with caplog.at_level("INFO", logger="tvmq"):
        quantize_model(model, data, cache_dir=tmp_path, error_report="none")  # another report, same entry
    assert "calibrating [" not in caplog.text
    data["x"][0, 0] += 1  # other data: the statistics are collected again
    caplog.clear()
    with caplog.at_level("INFO", logger="tvmq"):
        quantize_model(model, data, QConfig(method="minmax"), cache_dir=tmp_path)
    assert "calibrating [" in caplog.text


def test_observed_tensors_are_what_a_plain_build_computes_in_the_models_layout():
    """Calibration reads the tensors in the layout the kernels compute them in (channels-last),
    viewed back in the model's: the values are exactly those of the model."""
    model = tvmq.load_model(onnx_models.residual_block())
    points = [b.var for b in model.mod["main"].body.blocks[0].bindings]
    observed = ObservedModel(model.mod, points)
    x = np.random.default_rng(3).standard_normal(model.inputs[0].shape).astype(np.float32)
    values = observed.run({model.inputs[0].name: x}, model.inputs)
    reference = relax.VirtualMachine(tvm.compile(observed.module, target=HOST), tvm.cpu())
    expected = reference["main"](tvm.runtime.tensor(x))
    for point, want in zip(points, expected):
        assert values[point].shape == want.numpy().shape
        np.testing.assert_allclose(values[point], want.numpy(), rtol=1e-5, atol=1e-5)


def test_calibration_memory_does_not_grow_with_the_number_of_samples():
    """Statistics stream batch by batch into fixed-size histograms: 1,800 more samples take
    less than 2 MB more (keeping their activations would take some 40 MB)."""
    model = tvmq.load_model(onnx_models.conv_net(), input_shapes={"image": (1, 3, 16, 16)})
    rng = np.random.default_rng(4)

    def peak_bytes(samples: int) -> int:
        data = {"image": rng.standard_normal((samples, 3, 16, 16)).astype(np.float32)}
        tracemalloc.start()
        quantize_model(model, data, error_report="none")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    few, many = peak_bytes(200), peak_bytes(2000)
    assert many - few < 2 << 20, (few, many)


def test_padding_relu6_and_dead_channels_quantize_to_integer_layers():
    model = tvmq.load_model(onnx_models.padded_relu6_convs())
    ops = [c.op.name for c in _calls(model.mod)]
    assert "relax.clip" in ops and "relax.nn.pad" in ops and "relax.call_tir" not in ops
    data = {"x": np.random.default_rng(2).standard_normal((16, 3, 9, 9)).astype(np.float32)}
    quantized = quantize_model(model, data)
    assert [name.split()[0] for name in quantized.quantization["layers"]] == ["conv2d_0", "conv2d_1"]
    realized = realize(quantized.mod)
    assert "relax.nn.pad" in [c.op.name for c in _calls(realized)]  # the zero point pads the uint8 input
    simulated, integer = _run(quantized.mod, [data["x"][:1]]), _run(realized, [data["x"][:1]])
    np.testing.assert_allclose(integer, simulated, atol=0.02 * np.abs(simulated).max())
    np.testing.assert_allclose(integer[0, 2], 0, atol=1e-6)  # the dead channel


def test_a_concat_of_two_branches_joins_their_integers_and_feeds_the_next_layer_integers():
    """The branches' ranges differ, so the concat gets its own parameters and rescales each
    input to them in integers; the 1x1 conv after it reads those uint8 values directly."""
    model = tvmq.load_model(onnx_models.concat_branches())
    data = {"x": np.random.default_rng(3).standard_normal((16, 3, 8, 8)).astype(np.float32)}
    quantized = quantize_model(model, data)
    layers = [name.split()[0] for name in quantized.quantization["layers"]]
    assert layers == ["conv2d_0", "conv2d_1", "concat_0", "conv2d_2"]
    assert "concat" not in quantized.quantization["float_ops"]
    realized = realize(quantized.mod)
    (concat,) = [c for c in _calls(realized) if c.op.name == "relax.concat"]
    assert str(concat.ty.dtype) == "uint8"
    convs = [c for c in _calls(realized) if c.op.name == "relax.nn.conv2d"]
    assert [str(c.args[0].ty.dtype) for c in convs] == ["uint8"] * 3
    simulated, integer = _run(quantized.mod, [data["x"][:1]]), _run(realized, [data["x"][:1]])
    np.testing.assert_allclose(integer, simulated, atol=0.05 * np.abs(simulated).max())


def test_calibration_observes_the_float_model_as_compiled_code_computes_it():
    """The observed model (compiled with tvmq's lowering and default schedules) returns an
    observed convolution's output as numpy computes it, and the model's outputs beside it as
    onnxruntime does."""
    from tvmq.quantize.calibrate import ObservedModel
    from tvmq.quantize.prepare import prepare_pipeline

    model = tvmq.load_model(onnx_models.conv_net(), input_shapes={"image": (1, 3, 16, 16)})
    mod = prepare_pipeline()(model.mod)
    (conv, weight) = next(
        (b.var, b.value.args[1].value.numpy())
        for b in mod["main"].body.blocks[0].bindings
        if b.value.op.name == "relax.nn.conv2d"
    )
    observed = ObservedModel(mod, [conv])
    image = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    values = observed.run({"image": image}, model.inputs)
    padded = np.pad(image[0], [(0, 0), (1, 1), (1, 1)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # c, y, x, ky, kx
    expected = np.einsum("cyxij,ocij->oyx", windows, weight)[None]
    np.testing.assert_allclose(values[conv], expected, rtol=1e-4, atol=1e-4)
    (logits,) = observed.outputs
    np.testing.assert_allclose(values[logits], model.reference({"image": image})[0], rtol=1e-4, atol=1e-5)
