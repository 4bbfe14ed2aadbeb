"""Annotate: decide which operators run in int8 and which tensors calibration must measure.

Walks `main`'s bindings in order and asks the registry (tvmq.quantize.operators) which
family, if any, quantizes each call; a match becomes a `Layer`, with the elementwise ops fused
into it (bias add, ReLU, ReLU6/clip). Unknown operators stay float and are counted. The result,
a `QuantPlan`, names every quantization point: the activation tensors whose ranges calibration
measures and where quantize/dequantize pairs are inserted.
Run after `prepare_pipeline` (BatchNorm folded, constants folded).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tvm import relax

from tvmq.errors import QuantizationError
from tvmq.ir import op_name
from tvmq.quantize.channels import channel_axis
from tvmq.quantize.config import QConfig
from tvmq.quantize.dataflow import DataflowGraph
from tvmq.quantize.operators import LayerMatch, OperatorQuantizer, families_for, layer_op_named


@dataclass(frozen=True, eq=False, kw_only=True)
class Layer(LayerMatch):
    """One quantized operator with what is fused into it, as its family matched it."""

    name: str  # e.g. "conv2d_3": op and position among layers of that op
    quantizer: OperatorQuantizer  # the family that matched it
    bindings: tuple[relax.Var, ...]  # the anchor (the operator call) and the fused ops, in order
    source_names: tuple[str, ...] = ()  # the model's own names of the fused nodes (ONNX node names)

    @property
    def anchor(self) -> relax.Var:
        return self.bindings[0]

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

    def input_as_measured(self, layer: Layer) -> relax.Expr | None:
        """The point `layer` reads, if it reads it as it is (not through a reshape): then the
        point's per-channel means are those of the layer's input channels."""
        source, tensor = self.alias_of(layer.inputs[0]), layer.inputs[0]
        return source if _shape(source) == _shape(tensor) else None

    def mean_channel_axes(self) -> dict[relax.Expr, int]:
        """The points whose per-channel means bias correction needs, with their channel axis:
        those that weighted layers read as they are."""
        axes = {}
        for layer in self.layers:
            source = self.input_as_measured(layer) if layer.weighted else None
            if source is not None:
                axes.setdefault(source, channel_axis(layer.op, len(layer.inputs[0].ty.shape)))
        return axes


def _shape(tensor: relax.Expr) -> list[int]:
    return [int(d) for d in tensor.ty.shape]


# Names Relax gives bindings itself; any other binding name came from the model.
_GENERATED_NAME = re.compile(r"^(lv|gv)\d*(_\d+)?$")


def _as_var_name(name: str) -> str:
    """A node name as Relax spells variables named after it."""
    return name.replace(".", "_")


def _skipped(layer: Layer, skip: Iterable[str]) -> bool:
    return any(layer.answers_to(s) or layer_op_named(s) == layer.op for s in skip)


def _match(graph: DataflowGraph, var: relax.Var, quantized: set) -> tuple[OperatorQuantizer, LayerMatch] | None:
    """The first family that matches the binding of `var`, and its match."""
    for family in families_for(op_name(graph.value[var])):
        matched = family.match(graph, var, quantized)
        if matched is not None:
            return family, matched
    return None


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
        family, match = matched
        chain = _chain(graph, var, match.output)
        layer = Layer(
            **{f.name: getattr(match, f.name) for f in dataclasses.fields(LayerMatch)},
            name=f"{match.op}_{counts.get(match.op, 0)}",
            quantizer=family,
            bindings=tuple(chain),
            source_names=tuple(v.name for v in chain if not _GENERATED_NAME.match(v.name)),
        )
        counts[match.op] = counts.get(match.op, 0) + 1
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
        s for s in skip if not any(layer.answers_to(s) for layer in candidates) and layer_op_named(s) not in known_ops
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
