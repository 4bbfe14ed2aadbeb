"""Shape computations inside ONNX graphs are folded once input shapes are static, so models from
exporters that compute shapes at run time import into TVM."""

import numpy as np
import onnx
import onnx_models
import pytest
from conftest import assert_matches_reference
from onnx import TensorProto, helper, numpy_helper

from tvmq.frontend.onnx import with_static_inputs
from tvmq.frontend.onnx_fold import MAX_GROWN_ELEMENTS, fold_constants

RUNTIME_SHAPE_MODELS = [
    (onnx_models.flatten_by_computed_shape, (2, 3, 8, 8), "Reshape requires the input new shape to be Shape"),
    (onnx_models.same_padding_conv, (2, 3, 9, 9), "Dynamic pads are not supported yet"),
    (onnx_models.softmax_scaled_by_computed_dim, (2, 6, 16), "relax.sqrt"),
]


def _ops(model):
    return [node.op_type for node in model.graph.node]


def _initializer(model, name):
    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)


@pytest.mark.parametrize("build, shape, tvm_error", RUNTIME_SHAPE_MODELS, ids=lambda v: getattr(v, "__name__", None))
def test_tvm_alone_rejects_runtime_shape_computations(build, shape, tvm_error):
    """Why folding exists: TVM's importer fails on these graphs even with static input shapes."""
    from tvm.relax.frontend.onnx import from_onnx

    with pytest.raises(Exception, match=tvm_error):
        from_onnx(build(), shape_dict={"x": list(shape)})


@pytest.mark.parametrize("build, shape, tvm_error", RUNTIME_SHAPE_MODELS, ids=lambda v: getattr(v, "__name__", None))
def test_folded_models_import_and_match_onnxruntime(compile_and_load, build, shape, tvm_error):
    imported, package = compile_and_load(build(), input_shapes={"x": shape})
    assert_matches_reference(imported, package)


def test_computed_reshape_target_becomes_a_constant():
    before = with_static_inputs(onnx_models.flatten_by_computed_shape(), {"x": (2, 3, 8, 8)})
    after = fold_constants(before)
    assert _ops(after) == ["Reshape", "Relu"]
    np.testing.assert_array_equal(_initializer(after, "new_shape"), [2, -1])
    # The helper constants that only fed the folded nodes are gone.
    assert {i.name for i in after.graph.initializer} == {"new_shape"}


def test_computed_pads_become_a_constant():
    after = fold_constants(with_static_inputs(onnx_models.same_padding_conv(), {"x": (1, 3, 9, 9)}))
    assert _ops(after) == ["Pad", "Conv"]
    # ceil(9 / 2) * 2 - 9 + 1 = 2 rows and columns of padding, split 1 before and 1 after.
    np.testing.assert_array_equal(_initializer(after, "pads"), [0, 0, 1, 1, 0, 0, 1, 1])


def test_nothing_folds_while_shapes_are_dynamic():
    before = onnx_models.flatten_by_computed_shape()
    after = fold_constants(before)
    assert after == before


def test_large_results_stay_nodes_with_constant_inputs():
    """ConstantOfShape of a computed shape: the shape folds, the big tensor is not stored."""
    rows = MAX_GROWN_ELEMENTS // 4 + 1
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node(
            "ConstantOfShape", ["shape"], ["ones"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
        ),
        helper.make_node("Add", ["x", "ones"], ["y"]),
    ]
    model = onnx_models.make_model(nodes, [("x", TensorProto.FLOAT, ["N", 8])], [("y", TensorProto.FLOAT, ["N", 8])])
    after = fold_constants(with_static_inputs(model, {"x": (rows, 8)}))
    assert _ops(after) == ["ConstantOfShape", "Add"]
    np.testing.assert_array_equal(_initializer(after, "shape"), [rows, 8])


def test_folding_keeps_the_model_valid():
    after = fold_constants(with_static_inputs(onnx_models.same_padding_conv(), {"x": (1, 3, 9, 9)}))
    onnx.checker.check_model(after, full_check=True)


def test_importer_failures_name_the_operator(monkeypatch):
    """Without folding, TVM's error surfaces as a ModelLoadError naming the failing op type."""
    import tvmq
    import tvmq.frontend.onnx as onnx_frontend
    from tvmq.errors import ModelLoadError

    monkeypatch.setattr(onnx_frontend, "fold_constants", lambda model: model)
    with pytest.raises(ModelLoadError, match="failed on ONNX model test at a Pad node: ValueError: Dynamic pads"):
        tvmq.load_model(onnx_models.same_padding_conv(), input_shapes={"x": (1, 3, 9, 9)})
