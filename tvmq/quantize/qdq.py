"""Insert quantize/dequantize pairs: the annotated plan plus calibrated parameters become a
QDQ module, the common form of every quantized model in tvmq.

Compiled as it is, a QDQ module is the simulated (fake-quant) model: every quantized tensor is
rounded to its integer grid, every operator still computes in float. `realize` turns the same
module into true integer operators. The pairs are inserted here, centrally; each operator
family adds what its layers store quantized (weights and biases: `OperatorQuantizer.qdq_value`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tvm import relax

from tvmq.quantize.annotate import Layer, QuantPlan
from tvmq.quantize.config import QConfig
from tvmq.quantize.dataflow import DataflowGraph
from tvmq.quantize.integer import dequantize_expr, quantize_expr
from tvmq.quantize.qparams import QuantParams


def _substitute(expr: relax.Expr, mapping: dict) -> relax.Expr:
    """`expr` with the variables in `mapping` replaced (binding values are shallow)."""
    if isinstance(expr, relax.Var):
        return mapping.get(expr, expr)
    if isinstance(expr, relax.Call):
        return relax.Call(expr.op, [_substitute(a, mapping) for a in expr.args], expr.attrs, expr.ty_args)
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([_substitute(f, mapping) for f in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(_substitute(expr.tuple_value, mapping), expr.index)
    return expr


@dataclass
class QDQBuilder:
    """What the families see while the QDQ function is emitted (OperatorQuantizer.qdq_value)."""

    builder: relax.BlockBuilder
    graph: DataflowGraph  # the float function's bindings
    plan: QuantPlan
    config: QConfig
    params: dict  # quantized tensor -> QuantParams
    weight_params: dict[Layer, QuantParams]  # of the layers with weights
    channel_means: dict  # point -> E[x] per channel, where bias correction needs it
    env: dict = field(default_factory=dict)  # float binding var -> the QDQ function's var

    def emit(self, expr: relax.Expr, name: str) -> relax.Var:
        return self.builder.emit(expr, name_hint=name)


def insert_qdq(
    func: relax.Function, plan: QuantPlan, point_params: dict, config: QConfig, channel_means: dict | None = None
) -> tuple[relax.Function, list]:
    """The QDQ form of `func` for `plan`, with activation parameters `point_params` (by point),
    and each layer's output as the QDQ function computes it (for measuring the error).

    Values made by quantized layers are seen dequantized by every user (an integer model has no
    float version of them); float values feeding quantized layers are quantized for those
    layers only, so float users keep full precision. With `config.bias_correction` and the
    points' `channel_means`, biases absorb the mean shift of weight rounding.
    """
    graph = DataflowGraph(func)
    params = {tensor: point_params[plan.alias_of(tensor)] for tensor in plan.quantized_tensors()}
    made_by_layers = {layer.output for layer in plan.layers}
    owners = {var: layer for layer in plan.layers for var in layer.bindings}
    weight_params = {layer: layer.quantizer.weight_params(layer, config) for layer in plan.layers if layer.weighted}
    builder = relax.BlockBuilder()
    qdq = QDQBuilder(builder, graph, plan, config, params, weight_params, channel_means or {})
    seen_by_all, seen_by_layers = {}, {}

    def emit_point(point, value):
        q = qdq.emit(quantize_expr(value, params[point]), f"{point.name}_q")
        dq = qdq.emit(dequantize_expr(q, params[point]), f"{point.name}_dq")
        (seen_by_all if point in made_by_layers else seen_by_layers)[point] = dq

    with builder.function("main", list(func.params), attrs=dict(func.attrs) if func.attrs else None):
        with builder.dataflow():
            for param in func.params:
                if param in params:
                    emit_point(param, param)
            for binding in graph.bindings:
                var, value = binding.var, binding.value
                layer = owners.get(var)
                # Only the operator call itself reads its float inputs quantized.
                anchor = layer is not None and var.same_as(layer.anchor)
                new_value = _substitute(value, {**qdq.env, **seen_by_all, **(seen_by_layers if anchor else {})})
                if layer is not None:
                    new_value = layer.quantizer.qdq_value(layer, var, new_value, qdq)
                qdq.env[var] = qdq.emit(new_value, var.name)
                if var in params:
                    emit_point(var, qdq.env[var])
            output = builder.emit_output(_substitute(func.body.body, {**qdq.env, **seen_by_all}))
        builder.emit_func_output(output)
    layer_outputs = [seen_by_all.get(layer.output, qdq.env[layer.output]) for layer in plan.layers]
    return builder.get()["main"], layer_outputs
