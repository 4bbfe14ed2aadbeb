"""Folding of compile-time computations in ONNX graphs, once input shapes are static.

Exporters (older torch.onnx, Paddle, TF) compute shapes inside the graph: Shape -> Gather ->
Concat -> Reshape, "same" padding from Shape/Div/Ceil, ConstantOfShape of a computed shape.
TVM's Relax importer needs those shape arguments as constants and rejects such graphs even when
the input shapes are known. Here every node whose inputs are known at compile time is evaluated
(with onnx's reference implementation) and replaced by an initializer; `Shape` and `Size` of
tensors whose shape inference gives static dimensions count as known. Repeats until nothing
more folds, since each fold can make more shapes static.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

log = logging.getLogger(__name__)

# Larger folded outputs stay as nodes (with constant inputs): folding them would bloat the
# model file without helping the importer, which only needs small shape-like tensors constant.
MAX_GROWN_ELEMENTS = 1 << 16

# Never evaluated at compile time: results differ run to run, or hold subgraphs.
_UNFOLDABLE = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "If",
    "Loop",
    "Scan",
    "SequenceConstruct",
    "SequenceInsert",
}


# Initializers larger than this are declared by type and shape only when inferring shapes:
# shape inference needs the values of small shape-like constants, not of the weights.
_INFERENCE_VALUE_LIMIT = 1024


def _without_large_values(model: onnx.ModelProto) -> onnx.ModelProto:
    light = onnx.ModelProto()
    light.CopyFrom(model)
    graph = light.graph
    large = [init for init in graph.initializer if np.prod(init.dims) > _INFERENCE_VALUE_LIMIT]
    for init in large:
        graph.initializer.remove(init)
        graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return light


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Shapes that ONNX shape inference can fully determine, by tensor name."""
    try:
        inferred = onnx.shape_inference.infer_shapes(_without_large_values(model), data_prop=True)
    except Exception as err:  # inference is best effort: unknown shapes just fold less
        log.debug("ONNX shape inference failed: %s", err)
        inferred = model
    graph = inferred.graph
    shapes = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    return shapes


def _shape_of(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    """Output of Shape (with its optional start/end, opset 15) or Size for a known shape."""
    if node.op_type == "Size":
        return np.array(int(np.prod(shape)), dtype=np.int64)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return np.array(shape[start:end], dtype=np.int64)


class _NodeEvaluator:
    """Evaluates single nodes with onnx's reference implementation at the model's opsets."""

    def __init__(self, model: onnx.ModelProto):
        self._opsets = list(model.opset_import)
        self._ir_version = model.ir_version

    def __call__(self, node: onnx.NodeProto, values: list[np.ndarray | None]) -> list[np.ndarray]:
        inputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in node.input if name]
        outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output]
        graph = helper.make_graph([node], "fold", inputs, outputs)
        model = helper.make_model(graph, opset_imports=self._opsets, ir_version=self._ir_version)
        feeds = {name: value for name, value in zip(node.input, values) if name}
        return list(ReferenceEvaluator(model).run(None, feeds))


def _fold_node(node, constants, shapes, evaluate) -> list[np.ndarray] | None:
    """The node's outputs if they can and should be computed now, else None."""
    if node.domain not in ("", "ai.onnx") or node.op_type in _UNFOLDABLE:
        return None
    if node.op_type in ("Shape", "Size") and node.input[0] in shapes:
        return [_shape_of(node, shapes[node.input[0]])]
    if not all(name in constants for name in node.input if name):
        return None
    values = [constants[name] if name else None for name in node.input]
    try:
        outputs = evaluate(node, values)
    except Exception as err:  # leave it to the importer, which reports it in context
        log.debug("cannot fold %s %r: %s", node.op_type, node.name, err)
        return None
    grown = sum(np.size(o) for o in outputs) - sum(np.size(v) for v in values if v is not None)
    if grown > MAX_GROWN_ELEMENTS:
        return None
    return [np.asarray(o) for o in outputs]


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with all compile-time-known nodes replaced by initializers.

    The graph inputs should have static shapes already; dynamic ones simply fold less.
    """
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    evaluate = _NodeEvaluator(folded)
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    while True:
        shapes = _static_shapes(folded)
        kept, folded_any = [], False
        for node in graph.node:
            outputs = _fold_node(node, constants, shapes, evaluate)
            if outputs is None:
                kept.append(node)
                continue
            folded_any = True
            for name, value in zip(node.output, outputs):
                constants[name] = value
                graph.initializer.append(numpy_helper.from_array(value, name))
        if not folded_any:
            break
        del graph.node[:]
        graph.node.extend(kept)
    _drop_unused_initializers(graph, graph_inputs)
    return folded


def _drop_unused_initializers(graph: onnx.GraphProto, graph_inputs: set[str]) -> None:
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output} | graph_inputs
    used |= {name for node in graph.node for name in _subgraph_inputs(node)}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    known = {init.name for init in graph.initializer}
    stale = [vi for vi in graph.value_info if vi.name in known]
    for vi in stale:
        graph.value_info.remove(vi)


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs (If/Loop bodies) read from the enclosing scope."""
    names = set()
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for inner in sub.node:
                names.update(inner.input)
                names.update(_subgraph_inputs(inner))
    return names
