"""ONNX models into Relax: read, check operators, fix input shapes, fold, import."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from tvmq.errors import ModelLoadError, UnsupportedOperatorError
from tvmq.frontend.imported import ImportedModel, ModelSource, output_specs, sha256_of
from tvmq.frontend.onnx_fold import fold_constants
from tvmq.frontend.shapes import DeclaredDim, resolve_input_shapes
from tvmq.progress import step
from tvmq.tensors import TensorSpec

# Handled by the importer itself rather than through its converter table.
_IMPORTER_BUILTINS = {"Constant", "If"}


def read_onnx(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, ModelSource]:
    """The model proto and where it came from; unreadable files raise ModelLoadError."""
    if isinstance(model, onnx.ModelProto):
        data = model.SerializeToString()
        return model, ModelSource("onnx", f"ONNX model {model.graph.name or '(unnamed)'}", sha256_of(data))
    path = Path(model)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelLoadError(f"cannot read model {path}: {err.strerror or err}") from None
    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise ModelLoadError(f"{path} is not a valid ONNX model: {err}") from None
    if not proto.graph.node:
        raise ModelLoadError(f"{path} is not a valid ONNX model: its graph has no nodes")
    try:  # models with external data keep their weights in files beside the model
        onnx.load_external_data_for_model(proto, str(path.parent))
    except OSError as err:
        raise ModelLoadError(f"cannot read the external weights of {path}: {err}") from None
    return proto, ModelSource("onnx", str(path), sha256_of(data))


def _all_nodes(graph: onnx.GraphProto):
    """Every node of the graph, including those of If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                yield from _all_nodes(sub)


def check_supported_ops(proto: onnx.ModelProto, model: str) -> None:
    """Raise one UnsupportedOperatorError listing every op type TVM cannot import."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    supported = set(_get_convert_map()) | _IMPORTER_BUILTINS
    missing: dict[str, list[str]] = defaultdict(list)
    for index, node in enumerate(_all_nodes(proto.graph)):
        if node.op_type not in supported:
            missing[node.op_type].append(node.name or f"#{index}")
    if missing:
        lines = [
            f"  {op} ({len(nodes)} node{'s' if len(nodes) > 1 else ''}: {', '.join(nodes[:8])}"
            + (", ..." if len(nodes) > 8 else "")
            + ")"
            for op, nodes in sorted(missing.items())
        ]
        raise UnsupportedOperatorError(
            f"{model} uses operators that TVM's ONNX importer does not support:\n" + "\n".join(lines)
        )


def graph_input_dims(proto: onnx.ModelProto, model: str) -> dict[str, list[DeclaredDim] | None]:
    """Declared dimensions of the real inputs (initializers excluded): int or dim name/None
    each, or None for an input of unknown rank."""
    initializers = {init.name for init in proto.graph.initializer}
    declared = {}
    for info in proto.graph.input:
        if info.name in initializers:
            continue
        if not info.type.HasField("tensor_type"):
            raise ModelLoadError(f"{model}: input {info.name!r} is not a tensor ({info.type.WhichOneof('value')})")
        if not info.type.tensor_type.HasField("shape"):
            declared[info.name] = None
            continue
        dims = info.type.tensor_type.shape.dim
        declared[info.name] = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None) for d in dims
        ]
    return declared


def _input_dtype(info: onnx.ValueInfoProto) -> str:
    return str(onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type))


def with_static_inputs(proto: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    """A copy of `proto` whose graph inputs declare the given static shapes."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    for info in fixed.graph.input:
        if info.name in shapes:
            shape = info.type.tensor_type.shape
            shape.Clear()
            for size in shapes[info.name]:
                shape.dim.add().dim_value = size
    return fixed


class OnnxRuntimeReference:
    """Runs the original (shape-fixed) ONNX model with onnxruntime, the reference for ONNX."""

    def __init__(self, proto: onnx.ModelProto):
        self._model_bytes = proto.SerializeToString()
        self._session = None

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if self._session is None:
            try:
                import onnxruntime
            except ImportError:
                raise ModelLoadError(
                    "comparing with the original ONNX model needs onnxruntime: pip install onnxruntime"
                ) from None
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(self._model_bytes, options, providers=["CPUExecutionProvider"])
        return self._session.run(None, dict(inputs))


def _constant_scalar(expr) -> float | None:
    import tvm

    if isinstance(expr, tvm.ir.expr.GenericConst) and expr.value.numpy().size == 1:
        return float(expr.value.numpy().reshape(()))
    return None


def _clip(inputs, attrs, opset):
    """Clip with constant bounds as one relax.clip (TVM emits two opaque TE kernels, which
    hide ReLU6 from fusion and quantization). None: leave it to TVM."""
    from tvm import relax

    if opset < 11:
        bounds = [attrs.get("min", -np.inf), attrs.get("max", np.inf)]
    else:
        given = [inputs[i] if len(inputs) > i else None for i in (1, 2)]
        bounds = [default if b is None else _constant_scalar(b) for b, default in zip(given, (-np.inf, np.inf))]
    if any(b is None or np.isnan(b) for b in bounds):
        return None
    return relax.op.clip(inputs[0], float(bounds[0]), float(bounds[1]))


def _pad(inputs, attrs, opset):
    """Constant-mode Pad with constant widths as relax.nn.pad (TVM emits an opaque TE kernel,
    which hides it from the passes that fold zero padding into convolutions)."""
    import tvm
    from tvm import relax

    mode = attrs.get("mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
        return None
    if opset < 11:
        pads, value = attrs.get("pads"), attrs.get("value", 0.0)
    else:
        if len(inputs) > 3 and inputs[3] is not None:  # explicit axes (opset 18)
            return None
        pads = inputs[1].value.numpy().tolist() if isinstance(inputs[1], tvm.ir.expr.GenericConst) else None
        value = 0.0 if len(inputs) < 3 or inputs[2] is None else _constant_scalar(inputs[2])
    if pads is None or value is None:
        return None
    rank = len(pads) // 2
    width = [int(v) for axis in range(rank) for v in (pads[axis], pads[axis + rank])]
    if any(w < 0 for w in width):
        return None
    return relax.op.nn.pad(inputs[0], width, "constant", float(value))


def _dropout(inputs, attrs, opset):
    """Dropout is the identity in inference, and its mask all true (TVM's relax.nn.dropout, a
    call returning the pair, is one the channels-last layout pass cannot convert)."""
    from tvm import relax

    if attrs["tvm_custom"]["num_outputs"] == 1:
        return inputs[0]
    return relax.Tuple([inputs[0], relax.op.ones_like(inputs[0], "bool")])


def _prelu(inputs, attrs, opset):
    """PRelu with a slope per channel of one axis, as relax.nn.prelu on that axis: before opset
    7 a 1-D slope is per channel of axis 1 (PyTorch's exports), from 7 on it broadcasts like
    numpy, so [C, 1, 1] against NCHW is axis 1 too; TVM's converter puts a 1-D slope on the
    last axis. Other slopes are left to TVM's converter."""
    from tvm import relax

    x, slope = inputs
    shape = [int(d) for d in x.ty.shape]
    slope_shape = [int(d) for d in slope.ty.shape]
    if math.prod(slope_shape) == 1:
        return None
    if opset < 7:
        axis = 1 if len(slope_shape) == 1 and len(shape) > 1 and shape[1] == slope_shape[0] else None
    else:
        aligned = [1] * (len(shape) - len(slope_shape)) + slope_shape
        channels = [i for i, d in enumerate(aligned) if d != 1]
        axis = channels[0] if len(channels) == 1 and aligned[channels[0]] == shape[channels[0]] else None
    if axis is None:
        return None
    return relax.op.nn.prelu(x, relax.op.reshape(slope, [shape[axis]]), axis)


def _slice_v1(inputs, attrs, opset):
    """Slice before opset 10, its starts, ends and axes attributes (PyTorch's older exports):
    TVM's converter fails on it. Later Slices (inputs, not attributes) are TVM's."""
    from tvm import relax

    if opset >= 10:
        return None
    shape = [int(d) for d in inputs[0].ty.shape]
    starts, ends = list(attrs["starts"]), list(attrs["ends"])
    axes = list(attrs.get("axes", range(len(starts))))
    axes = [a + len(shape) if a < 0 else a for a in axes]
    # ends beyond the dimension (INT64_MAX for "to the end") stop at it
    ends = [min(e, shape[a]) if e >= 0 else e for e, a in zip(ends, axes, strict=True)]
    return relax.op.strided_slice(inputs[0], axes, starts, ends)


def _elementwise_fold(op_name: str):
    """A variadic elementwise node (Sum, Max, Min) as a chain of binary operators: TVM stacks
    the inputs into one tensor of a rank more and reduces it, which copies them and which the
    layout pass cannot convert."""

    def convert(inputs, attrs, opset):
        from tvm import relax

        binary = getattr(relax.op, op_name)
        return functools.reduce(binary, inputs) if inputs and all(x is not None for x in inputs) else None

    return convert


# Converters tvmq provides instead of TVM's, where TVM's output hides structure tvmq needs.
_CONVERTERS = {
    "Clip": _clip,
    "Dropout": _dropout,
    "Max": _elementwise_fold("maximum"),
    "Min": _elementwise_fold("minimum"),
    "Pad": _pad,
    "PRelu": _prelu,
    "Slice": _slice_v1,
    "Sum": _elementwise_fold("add"),
}


def _named_importer_class():
    """TVM's ONNX importer with two changes, both on its per-node hook (tvmq pins the TVM
    version it was written against): each node's result is bound to a variable named after the
    node, so quantization reports and --skip can speak of layers by their ONNX names; and the
    converters in _CONVERTERS replace TVM's where they apply."""
    from tvm import relax
    from tvm.relax.frontend.onnx.onnx_frontend import ONNXGraphImporter

    class NamedImporter(ONNXGraphImporter):
        def _convert_operator(self, op_name, inputs, attrs, opset):
            convert = _CONVERTERS.get(op_name)
            result = convert(inputs, attrs, opset) if convert else None
            if result is not None:
                result = self.bb.normalize(result)  # typed, as the next converter expects
            else:
                result = super()._convert_operator(op_name, inputs, attrs, opset)
            name = attrs["tvm_custom"]["name"]
            if name and isinstance(result, relax.Call):
                result = self.bb.emit(result, name_hint=name)
            return result

    return NamedImporter


def _import_graph(proto: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]):
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    importer = _named_importer_class()(dict(shapes), "float32", keep_params_in_input=False, sanitize=True)
    return importer.from_onnx(proto.graph, opset)


def load_onnx(
    model: str | os.PathLike | onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> ImportedModel:
    """Import an ONNX model (file or ModelProto) into Relax with static input shapes."""
    proto, source = read_onnx(model)
    check_supported_ops(proto, source.description)
    shapes = resolve_input_shapes(graph_input_dims(proto, source.description), input_shapes or {}, source.description)
    fixed = with_static_inputs(proto, shapes)
    with step("folding shape computations"):
        folded = fold_constants(fixed)
    with step(f"importing {source.description} into Relax"), contextlib.redirect_stdout(io.StringIO()) as printed:
        # The importer prints the failing operator to stdout; keep it for the error message.
        try:
            mod = _import_graph(folded, shapes)
        except Exception as err:
            failed_op = re.search(r"Error converting operator (\w+)", printed.getvalue())
            raise ModelLoadError(
                f"TVM's ONNX importer failed on {source.description}"
                + (f" at a {failed_op[1]} node" if failed_op else "")
                + f": {type(err).__name__}: {err}"
            ) from err
    initializers = {init.name for init in proto.graph.initializer}
    inputs = tuple(
        TensorSpec(info.name, shapes[info.name], _input_dtype(info))
        for info in proto.graph.input
        if info.name not in initializers
    )
    outputs = output_specs(mod, [o.name for o in proto.graph.output], source.description)
    return ImportedModel(mod, inputs, outputs, source, OnnxRuntimeReference(fixed))
