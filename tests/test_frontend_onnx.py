"""ONNX models import into Relax, compile, and compute what onnxruntime computes."""

import numpy as np
import onnx
import onnx_models
import pytest
from conftest import assert_matches_reference

import tvmq
from tvmq.errors import InputShapeError, ModelLoadError, UnsupportedOperatorError
from tvmq.tensors import TensorSpec


def test_conv_net_matches_onnxruntime(compile_and_load):
    imported, package = compile_and_load(onnx_models.conv_net(), input_shapes={"image": (2, 3, 16, 16)})
    assert package.inputs == (TensorSpec("image", (2, 3, 16, 16), "float32"),)
    assert package.outputs == (TensorSpec("logits", (2, 10), "float32"),)
    assert_matches_reference(imported, package)


def test_mlp_with_static_shapes_needs_no_input_shape(compile_and_load):
    imported, package = compile_and_load(onnx_models.mlp())
    assert package.outputs == (TensorSpec("probs", (4, 10), "float32"),)
    assert_matches_reference(imported, package)


def test_transformer_block_matches_onnxruntime(compile_and_load):
    imported, package = compile_and_load(onnx_models.transformer_block(), input_shapes={"x": (3, 8, 16)})
    assert_matches_reference(imported, package, rtol=1e-4, atol=1e-4)


def test_model_zoo_constructs_compile_and_match_onnxruntime(compile_and_load):
    """Dropout with its mask, variadic Sum and Max, a channel shuffle and a ConvTranspose: each
    once made the channels-last lowering fail (a tuple, a 5-D transpose, a stack it cannot
    convert, a transposed convolution nothing legalizes in NHWC)."""
    imported, package = compile_and_load(onnx_models.model_zoo_constructs())
    assert_matches_reference(imported, package)


def test_model_file_and_proto_import_alike(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(onnx_models.mlp(), path)
    from_file = tvmq.load_model(path)
    from_proto = tvmq.load_model(onnx_models.mlp())
    assert from_file.source.description == str(path)
    assert from_file.source.sha256 == from_proto.source.sha256
    assert from_file.inputs == from_proto.inputs


def test_dynamic_dimension_without_shape_names_the_input():
    with pytest.raises(
        InputShapeError, match=r"input 'image' has dynamic dimensions \[N, 3, 16, 16\].*image=N,3,16,16"
    ):
        tvmq.load_model(onnx_models.conv_net())


@pytest.mark.parametrize(
    "shapes, message",
    [
        ({"images": (1, 3, 16, 16)}, r"no input named 'images'; the inputs are image \[N, 3, 16, 16\]"),
        ({"image": (1, 3, 16)}, r"'image' has 4 dimensions .* has 3"),
        ({"image": (1, 4, 16, 16)}, r"fixed dimension 1 = 3, but the given shape \[1, 4, 16, 16\] says 4"),
        ({"image": (0, 3, 16, 16)}, r"dimension 0 must be > 0"),
    ],
)
def test_wrong_input_shapes_are_reported(shapes, message):
    with pytest.raises(InputShapeError, match=message):
        tvmq.load_model(onnx_models.conv_net(), input_shapes=shapes)


def test_every_unsupported_operator_is_reported_at_once():
    with pytest.raises(UnsupportedOperatorError) as error:
        tvmq.load_model(onnx_models.with_unsupported_ops())
    message = str(error.value)
    assert "ConvInteger (2 nodes: conv_int_a, conv_int_b)" in message
    assert "QLinearConv (1 node: qlinear)" in message
    assert "Relu" not in message and "Cast" not in message


def test_corrupt_file_is_reported_with_its_path(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(onnx_models.mlp().SerializeToString()[:100])
    with pytest.raises(ModelLoadError, match=f"{path} is not a valid ONNX model"):
        tvmq.load_model(path)


def test_missing_file_and_unknown_format_are_reported(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot read model .*nothere.onnx: No such file"):
        tvmq.load_model(tmp_path / "nothere.onnx")
    with pytest.raises(ModelLoadError, match=r"unknown model format '\.tflite'"):
        tvmq.load_model(tmp_path / "model.tflite")


def test_two_outputs_come_back_by_name_in_order(compile_and_load):
    from onnx import TensorProto, helper

    model = onnx_models.make_model(
        [helper.make_node("Relu", ["x"], ["relu"]), helper.make_node("Neg", ["x"], ["neg"])],
        [("x", TensorProto.FLOAT, [2, 3])],
        [("relu", TensorProto.FLOAT, [2, 3]), ("neg", TensorProto.FLOAT, [2, 3])],
    )
    _, package = compile_and_load(model)
    x = np.array([[-1, 0, 2], [3, -4, 5]], np.float32)
    outputs = package.run({"x": x})
    assert list(outputs) == ["relu", "neg"]
    np.testing.assert_array_equal(outputs["relu"], np.maximum(x, 0))
    np.testing.assert_array_equal(outputs["neg"], -x)


def test_input_of_unknown_rank_takes_the_given_shape(compile_and_load):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "unranked",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InputShapeError, match="input 'x' has no declared shape"):
        tvmq.load_model(model)
    _, package = compile_and_load(model, input_shapes={"x": (2, 3)})
    np.testing.assert_array_equal(package.run({"x": -np.ones((2, 3), np.float32)})["y"], np.zeros((2, 3)))


def test_unnamed_clip_and_pad_nodes_import(compile_and_load):
    """ONNX node names are optional; tvmq's own Clip/Pad converters must not depend on them."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"]),
        helper.make_node("Clip", ["p", "lo", "hi"], ["c"]),
        helper.make_node("Conv", ["c", "w"], ["y"], name="conv"),
    ]
    initializers = [
        ("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
        ("lo", np.array(0.0, np.float32)),
        ("hi", np.array(6.0, np.float32)),
        ("w", np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32)),
    ]
    model = onnx_models.make_model(
        nodes, [("x", TensorProto.FLOAT, [1, 3, 6, 6])], [("y", TensorProto.FLOAT, [1, 2, 6, 6])], initializers
    )
    imported, package = compile_and_load(model)
    from conftest import assert_matches_reference

    assert_matches_reference(imported, package)
