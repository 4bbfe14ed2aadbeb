"""What every operator family's quantizer provides, and the pieces they share.

A family (conv2d and matmul with constant weights, activation matmuls, adds, concats, ops that
keep their input's scale, ...) is one `OperatorQuantizer` subclass in a module of its own:
  match            which calls it quantizes, and what is fused into them (annotation);
  qdq_value        how the simulated (QDQ) model computes its bindings, where that is more than
                   quantizing its inputs (weights and biases stored quantized);
  realize_passes   the rewrites that turn its QDQ groups into integer operators;
  aliases          the names `--skip` knows it by.
The registry (tvmq.quantize.operators) finds a call's family by Relax op name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from tvmq.ir import op_name, scalar_value
from tvmq.quantize.dataflow import DataflowGraph


@dataclass(frozen=True, eq=False)
class LayerMatch:
    """What a family found at one call: the fields of the layer it anchors."""

    op: str  # the layer's op, which names it: conv2d, matmul, add, concat, max_pool2d, ...
    inputs: tuple[relax.Expr, ...]  # activation inputs (quantization points)
    output: relax.Var  # bound to the last fused op: the layer's output
    weight: np.ndarray | None = None  # constant weights (conv2d OIHW, matmul [K, N])
    bias: np.ndarray | None = None  # per output channel
    clip: tuple[float, float] | None = None  # fused ReLU / ReLU6 / clip bounds
    shares_input_scale: bool = False  # the output keeps the input's quantization parameters


class OperatorQuantizer:
    """How one family of operators quantizes (see the module docstring). The defaults: no
    aliases, a QDQ model that computes the family's bindings as the float model does (only
    the inputs quantized), no realize rewrites."""

    ops: tuple[str, ...] = ()  # the Relax ops it may match, e.g. ("relax.add",)
    aliases: Mapping[str, str] = {}  # lower-case --skip names other than the layer op -> the layer op

    def match(self, graph: DataflowGraph, var: relax.Var, quantized: set) -> LayerMatch | None:
        """The layer anchored by the binding of `var`, or None. `quantized` holds the outputs
        of the layers planned so far, in binding order."""
        raise NotImplementedError

    def weight_params(self, layer, config):
        """The quantization parameters of the layer's constant weights (for families whose
        layers have weights)."""
        raise NotImplementedError(f"{type(self).__name__} matched weights but does not say how they quantize")

    def qdq_value(self, layer, var: relax.Var, value: relax.Expr, qdq) -> relax.Expr:
        """The QDQ model's value for `var`, a binding of `layer` (its anchor or a fused op),
        given `value`, the float binding with the QDQ model's variables substituted; `qdq` is
        the insertion's state (tvmq.quantize.qdq.QDQBuilder)."""
        return value

    def realize_passes(self) -> list[tvm.transform.Pass]:
        """Rewrites of this family's QDQ groups whose output is quantized, into integer code."""
        return []

    def realize_to_float_passes(self) -> list[tvm.transform.Pass]:
        """Rewrites of groups whose output only float operators read (run after every family's
        integer rewrites): integer accumulation, dequantized straight from int32."""
        return []


def is_float_tensor(expr) -> bool:
    """Whether `expr` is a float32 tensor variable: an activation a layer can quantize."""
    return isinstance(expr, relax.Var) and isinstance(expr.ty, relax.TensorType) and str(expr.ty.dtype) == "float32"


def fused_activation(graph: DataflowGraph, var: relax.Var) -> tuple[relax.Var, tuple[float, float] | None]:
    """The output of `var`'s fused activation and its bounds: the single user of `var` if that
    is a ReLU or a clip with numeric bounds, else (var, None)."""
    user = graph.only_user(var)
    if user is not None:
        call = graph.value[user]
        if op_name(call) == "relax.nn.relu":
            return user, (0.0, float("inf"))
        if op_name(call) == "relax.clip":
            lo, hi = scalar_value(call.args[1]), scalar_value(call.args[2])
            if lo is not None and hi is not None:
                return user, (lo, hi)
    return var, None
