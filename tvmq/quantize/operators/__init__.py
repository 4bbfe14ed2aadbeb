"""The registry of operator families: how each Relax operator quantizes, one class a family.

    weighted           conv2d / matmul with constant weights (WeightedLayer)
    activation_matmul  matmul of two activations (ActivationMatmul)
    add                add of two integer tensors (Add)
    concat             concat of quantized tensors (Concat)
    shared_scale       pooling, reshapes, transposes, means: the input's parameters (SharedScale)

A call whose op no family claims, or that no claiming family matches, stays float and is
listed in the quantization report. To quantize another operator, write its family (an
`OperatorQuantizer` in a module of its own) and add it to FAMILIES; the order there is the
order in which families are tried on a call and in which their realize rewrites run.
"""

from __future__ import annotations

from tvmq.quantize.operators.activation_matmul import ActivationMatmul
from tvmq.quantize.operators.add import Add
from tvmq.quantize.operators.base import LayerMatch, OperatorQuantizer
from tvmq.quantize.operators.concat import Concat
from tvmq.quantize.operators.shared_scale import SharedScale
from tvmq.quantize.operators.weighted import WeightedLayer

__all__ = ["FAMILIES", "LayerMatch", "OperatorQuantizer", "families_for", "layer_op_named"]

FAMILIES: tuple[OperatorQuantizer, ...] = (WeightedLayer(), ActivationMatmul(), Add(), Concat(), SharedScale())

_BY_OP: dict[str, list[OperatorQuantizer]] = {}
for _family in FAMILIES:
    for _op in _family.ops:
        _BY_OP.setdefault(_op, []).append(_family)


def families_for(op: str | None) -> list[OperatorQuantizer]:
    """The families that may quantize a call of Relax op `op`, in the order to try them."""
    return _BY_OP.get(op, [])


def layer_op_named(name: str) -> str:
    """The layer op a `--skip` name means, case-insensitively: a family's alias (Conv, Gemm,
    MaxPool, ...) or the name itself (MatMul, Add, Concat, ...)."""
    lowered = name.lower()
    return next((family.aliases[lowered] for family in FAMILIES if lowered in family.aliases), lowered)
