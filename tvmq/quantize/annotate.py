"""Annotate: decide which operators run in int8 and which tensors calibration must measure.

Walks `main`'s bindings in order. A registry keyed by Relax op name says how each operator
quantizes; each match becomes a `Layer`, fused with the elementwise ops that follow it (bias
add, ReLU, ReLU6/clip). Unknown operators stay float and are listed. The result, a
`QuantPlan`, names every quantization point: the activation tensors whose ranges calibration
measures and where quantize/dequantize pairs are inserted.
Run after `prepare_for_quantization` (BatchNorm folded, constants folded).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from tvm import relax

from tvmq.errors import QuantizationError
from tvmq.ir import constant_value, is_constant, op_name, scalar_value
from tvmq.quantize.config import QConfig
from tvmq.quantize.dataflow import DataflowGraph
from tvmq.quantize.prepare import channel_axis, per_channel_vector

# Layers whose output keeps the input's quantization parameters: they move or select values
# without changing their range, so integers pass through them unchanged.
SHARED_SCALE_OPS = {
    "relax.nn.max_pool2d": "max_pool2d",
    "relax.nn.avg_pool2d": "avg_pool2d",
    "relax.nn.adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "relax.mean": "mean",
    "relax.reshape": "reshape",
    "relax.permute_dims": "permute_dims",
    "relax.squeeze": "squeeze",
    "relax.expand_dims": "expand_dims",
}

# ONNX (and common) names users may pass to --skip, by the layer op they mean.
OP_ALIASES = {
    "conv": "conv2d",
    "conv2d": "conv2d",
    "gemm": "matmul",
    "matmul": "matmul",
    "dense": "matmul",
    "linear": "matmul",
    "add": "add",
    "concat": "concat",
    "maxpool": "max_pool2d",
    "averagepool": "avg_pool2d",
    "globalaveragepool": "mean",
    "reducemean": "mean",
    "flatten": "reshape",
    "transpose": "permute_dims",
}


@dataclass(frozen=True, eq=False)
class Layer:
    """One quantized operator with what is fused into it."""

    name: str  # e.g. "conv2d_3": op and position among layers of that op
    op: str  # conv2d, matmul, add, concat, or a shared-scale op
    anchor: relax.Var  # bound to the operator call
    output: relax.Var  # bound to the last fused op: the layer's output point
    inputs: tuple[relax.Expr, ...]  # activation inputs (quantization points)
    weight: np.ndarray | None = None  # constant weights (conv2d OIHW, matmul [K, N])
    bias: np.ndarray | None = None  # per output channel
    clip: tuple[float, float] | None = None  # fused ReLU / ReLU6 / clip bounds
    shares_input_scale: bool = False
    source_names: tuple[str, ...] = ()  # the model's own names of the fused nodes (ONNX node names)

    @property
    def title(self) -> str:
        """The name to show users: tvmq's name, with the model's node name where known."""
        return f"{self.name} ({self.source_names[0]})" if self.source_names else self.name

    def answers_to(self, name: str) -> bool:
        """True if `name` (as given to --skip) designates this layer."""
        return name == self.name or _as_var_name(name) in self.source_names

    @property
    def weighted(self) -> bool:
        return self.weight is not None


@dataclass
class QuantPlan:
    """The layers to quantize, in order, and the quantization points they need."""

    layers: list[Layer] = field(default_factory=list)
    float_ops: dict[str, int] = field(default_factory=dict)  # op -> count, of ops left in float

    @property
    def points(self) -> list[relax.Expr]:
        """Tensors with their own quantization parameters, in order of first use: the inputs
        of quantized layers. A layer output that only float operators or the model's outputs
        read is not a point: it leaves the integer domain straight from the accumulator."""
        seen, points = set(), []
        for layer in self.layers:
            for tensor in layer.inputs:
                source = self.alias_of(tensor)
                if source not in seen:
                    seen.add(source)
                    points.append(source)
        return points

    def quantized_tensors(self) -> list[relax.Expr]:
        """Every tensor that is quantized: the points and the shared-scale outputs using them."""
        points = set(self.points)
        tensors = [t for layer in self.layers for t in (*layer.inputs, layer.output) if self.alias_of(t) in points]
        return list(dict.fromkeys(tensors))

    def alias_of(self, tensor: relax.Expr) -> relax.Expr:
        """The point whose parameters `tensor` uses (itself unless made by a shared-scale op)."""
        for layer in self.layers:
            if layer.shares_input_scale and layer.output.same_as(tensor):
                return self.alias_of(layer.inputs[0])
        return tensor


def _fused_epilogue(graph: DataflowGraph, anchor: relax.Var, weight_channels: int | None, layer_call):
    """Follow single-use chains from `anchor`: an optional bias add (weighted layers only),
    then an optional ReLU or clip(lo >= 0... any bounds). Returns (output var, bias, clip)."""
    output, bias, clip = anchor, None, None
    user = graph.only_user(output)
    if weight_channels is not None and user is not None and op_name(graph.value[user]) == "relax.add":
        call = graph.value[user]
        other = call.args[1] if call.args[0].same_as(output) else call.args[0]
        if is_constant(other):
            vector = per_channel_vector(
                constant_value(other), len(layer_call.ty.shape), channel_axis(layer_call), weight_channels
            )
            if vector is not None:
                output, bias, user = user, vector, graph.only_user(user)
    if user is not None:
        call = graph.value[user]
        if op_name(call) == "relax.nn.relu":
            output, clip = user, (0.0, float("inf"))
        elif op_name(call) == "relax.clip":
            lo, hi = scalar_value(call.args[1]), scalar_value(call.args[2])
            if lo is not None and hi is not None:
                output, clip = user, (lo, hi)
    return output, bias, clip


def _is_activation(expr) -> bool:
    return isinstance(expr, relax.Var) and isinstance(expr.ty, relax.TensorType) and str(expr.ty.dtype) == "float32"


def _match(graph: DataflowGraph, var: relax.Var, quantized: set) -> tuple[str, dict] | None:
    """What layer, if any, the binding of `var` anchors: (op, Layer fields)."""
    call = graph.value[var]
    name = op_name(call)
    if name in ("relax.nn.conv2d", "relax.matmul"):
        data, weight = call.args[0], call.args[1]
        if not _is_activation(data):
            return None
        op = "conv2d" if name == "relax.nn.conv2d" else "matmul"
        if is_constant(weight):
            if op == "conv2d" and call.attrs["kernel_layout"] != "OIHW":
                return None
            weights = constant_value(weight)
            if op == "matmul" and weights.ndim != 2:
                return None
            channels = weights.shape[0] if op == "conv2d" else weights.shape[-1]
            output, bias, clip = _fused_epilogue(graph, var, channels, call)
            return op, dict(inputs=(data,), output=output, weight=weights, bias=bias, clip=clip)
        if op == "matmul" and _is_activation(weight):
            output, _, clip = _fused_epilogue(graph, var, None, call)
            return op, dict(inputs=(data, weight), output=output, clip=clip)
        return None
    if name == "relax.add" and all(_is_activation(a) for a in call.args):
        if call.args[0].ty.shape is None or list(call.args[0].ty.shape) != list(call.args[1].ty.shape):
            return None
        # Only between integer tensors (residual adds of CNNs). Where one side is float, as the
        # residual stream around a transformer's LayerNorm, quantizing it would clip that
        # stream's outlier channels (a measured collapse on MiniLM) and save no float work.
        if not all(a in quantized for a in call.args):
            return None
        output, _, clip = _fused_epilogue(graph, var, None, call)
        return "add", dict(inputs=tuple(call.args), output=output, clip=clip)
    if name == "relax.concat" and isinstance(call.args[0], relax.Tuple):
        fields = tuple(call.args[0].fields)
        if all(_is_activation(f) for f in fields):
            return "concat", dict(inputs=fields, output=var)
    if name in SHARED_SCALE_OPS and call.args and call.args[0] in quantized:
        return SHARED_SCALE_OPS[name], dict(inputs=(call.args[0],), output=var, shares_input_scale=True)
    return None


# Names Relax gives bindings itself; any other binding name came from the model.
_GENERATED_NAME = re.compile(r"^(lv|gv)\d*(_\d+)?$")


def _as_var_name(name: str) -> str:
    """A node name as Relax spells variables named after it."""
    return name.replace(".", "_")


def _skipped(layer: Layer, skip: Iterable[str]) -> bool:
    return any(layer.answers_to(s) or OP_ALIASES.get(s.lower(), s) == layer.op for s in skip)


def annotate(func: relax.Function, config: QConfig) -> QuantPlan:
    """Plan the quantization of `func` (see the module docstring)."""
    graph = DataflowGraph(func)
    plan, counts, quantized, fused = QuantPlan(), {}, set(), set()
    candidates = []
    for binding in graph.bindings:
        var = binding.var
        if var in fused:
            continue
        matched = _match(graph, var, quantized)
        if matched is None:
            name = op_name(binding.value)
            if name is not None:
                plan.float_ops[name.removeprefix("relax.")] = plan.float_ops.get(name.removeprefix("relax."), 0) + 1
            continue
        op, fields = matched
        chain = _chain(graph, var, fields["output"])
        source_names = tuple(v.name for v in chain if not _GENERATED_NAME.match(v.name))
        layer = Layer(name=f"{op}_{counts.get(op, 0)}", op=op, anchor=var, source_names=source_names, **fields)
        counts[op] = counts.get(op, 0) + 1
        candidates.append(layer)
        if _skipped(layer, config.skip):
            continue
        plan.layers.append(layer)
        quantized.add(layer.output)
        fused.update(chain)
    _check_skip_names(config.skip, candidates)
    _keep_ends_float(plan, config)
    if not plan.layers:
        raise QuantizationError(
            f"nothing to quantize: {len(candidates)} quantizable layer(s), all skipped"
            if candidates
            else "nothing to quantize: the model has no conv2d, matmul, add or concat layers"
        )
    return plan


def _chain(graph: DataflowGraph, anchor: relax.Var, output: relax.Var) -> list[relax.Var]:
    """The vars from `anchor` to `output` along single-use links (the fused ops)."""
    chain, var = [anchor], anchor
    while not var.same_as(output):
        var = graph.only_user(var)
        chain.append(var)
    return chain


def _check_skip_names(skip: Iterable[str], candidates: list[Layer]) -> None:
    known_ops = {layer.op for layer in candidates}
    unknown = [
        s
        for s in skip
        if not any(layer.answers_to(s) for layer in candidates) and OP_ALIASES.get(s.lower(), s) not in known_ops
    ]
    if unknown:
        raise QuantizationError(
            f"--skip {', '.join(unknown)} matches no layer; layers: {', '.join(layer.title for layer in candidates)}"
        )


def _keep_ends_float(plan: QuantPlan, config: QConfig) -> None:
    weighted = [layer for layer in plan.layers if layer.weighted]
    drop = set()
    if config.keep_first_float and weighted:
        drop.add(weighted[0].name)
    if config.keep_last_float and weighted:
        drop.add(weighted[-1].name)
    if drop:
        kept = [layer for layer in plan.layers if layer.name not in drop]
        plan.layers[:] = _drop_orphaned_shared(kept)


def _drop_orphaned_shared(layers: list[Layer]) -> list[Layer]:
    """Shared-scale layers need an integer input: drop those whose producer left the plan."""
    outputs, kept = set(), []
    for layer in layers:
        if layer.shares_input_scale and layer.inputs[0] not in outputs:
            continue
        kept.append(layer)
        outputs.add(layer.output)
    return kept
