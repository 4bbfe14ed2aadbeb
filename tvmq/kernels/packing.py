"""Preparing an int8 reduction (conv2d, matmul) for a dot-product intrinsic: which block the
intrinsic computes, how its iterators map onto it, and the weights padded and packed into the
layout it loads, [.., N/lanes, .., K/4, lanes, 4]. The packing copy is marked as layout-rewrite
preprocessing, which the compiler folds into the constant weights once, at compile time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import tvm
from tvm.s_tir.schedule.analysis import get_auto_tensorize_mapping_info

from tvmq.kernels.intrinsics import REDUCE, WEIGHT_PACKER, DotIntrin


def tensorizable_block(mod: tvm.IRModule, intrin: DotIntrin) -> str | None:
    """The name of a block of `mod` that the intrinsic computes (u8 x s8 products summed into
    int32, after reindexing), or None: the test that decides which search space a kernel gets."""
    sch = tvm.s_tir.Schedule(mod)
    for gv, func in mod.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        sch.work_on(gv.name_hint)
        for block in blocks_under(sch, sch.get_sblock("root")):
            if get_auto_tensorize_mapping_info(sch, block, intrin.description) is not None:
                return sch.get(block).name_hint
    return None


def blocks_under(sch: tvm.s_tir.Schedule, root: tvm.s_tir.SBlockRV) -> Iterator[tvm.s_tir.SBlockRV]:
    """Every block nested in `root`, at any depth."""
    blocks = list(sch.get_child_blocks(root))
    while blocks:
        block = blocks.pop()
        yield block
        blocks.extend(sch.get_child_blocks(block))


class PackingPlan(NamedTuple):
    """How a reduction of activation x s8 products into s32 maps onto an intrinsic. N is the
    spatial iterator that indexes the weights but not the activations; K the reduction iterator
    that is the activations' innermost index."""

    data_index: int  # which of the block's reads is the activations
    weight_index: int  # ... and the weights
    n_dim: int  # the weights' dimension N indexes
    k_dim: int  # ... and K
    n_iter: int  # N's position among the block's iterators
    k_iter: int  # ... and K's
    padding: list[int]  # the multiple each block iterator is padded to (lanes for N, 4 for K)


def packing_plan(sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV, intrin: DotIntrin) -> PackingPlan | None:
    """The plan for `block` if `intrin` computes it, else None."""
    stmt = sch.get(block)
    operands = [
        (i, region) for i, region in enumerate(stmt.reads) if region.source.dtype in ("int8", intrin.activation)
    ]
    if len(stmt.writes) != 1 or stmt.writes[0].source.dtype != "int32" or len(operands) != 2:
        return None
    # conv2d and matmul read the activations first, which tells them apart when both are int8.
    if intrin.activation != "int8" and [region.source.dtype for _, region in operands] == ["int8", intrin.activation]:
        operands.reverse()
    (data_index, data), (weight_index, weight) = operands
    if (data.source.dtype, weight.source.dtype) != (intrin.activation, "int8"):
        return None
    spatial = [iv.var for iv in stmt.iter_vars if iv.iter_type == tvm.tirx.IterVar.DataPar]
    reduce = [iv.var for iv in stmt.iter_vars if iv.iter_type == tvm.tirx.IterVar.CommReduce]

    def vars_of(region):
        return [r.min if isinstance(r.min, tvm.tirx.Var) else None for r in region.region]

    weight_vars, data_vars = vars_of(weight), vars_of(data)
    n = [v for v in spatial if any(v.same_as(w) for w in weight_vars) and not any(v.same_as(d) for d in data_vars)]
    k = data_vars[-1]
    if len(n) != 1 or k is None or not any(k.same_as(r) for r in reduce) or not any(k.same_as(w) for w in weight_vars):
        return None
    n_dim = next(i for i, w in enumerate(weight_vars) if w is not None and w.same_as(n[0]))
    k_dim = next(i for i, w in enumerate(weight_vars) if w is not None and w.same_as(k))
    n_iter = next(i for i, iv in enumerate(stmt.iter_vars) if iv.var.same_as(n[0]))
    k_iter = next(i for i, iv in enumerate(stmt.iter_vars) if iv.var.same_as(k))
    padding = [intrin.lanes if i == n_iter else REDUCE if i == k_iter else 1 for i in range(len(stmt.iter_vars))]
    return PackingPlan(data_index, weight_index, n_dim, k_dim, n_iter, k_iter, padding)


def _packed_index(n_dim: int, k_dim: int, lanes: int):
    """Weight indices -> [N/lanes, other dims, K/4, lanes, 4]: each lanes x 4 tile the intrinsic
    loads is contiguous."""

    def index(*dims):
        rest = [d for i, d in enumerate(dims) if i not in (n_dim, k_dim)]
        n, k = dims[n_dim], dims[k_dim]
        return [n // lanes, *rest, k // REDUCE, n % lanes, k % REDUCE]

    return index


def _pad(sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV, plan: PackingPlan) -> None:
    """Pad the block's iterators to `plan.padding`. pad_einsum takes only blocks whose buffers
    are indexed by plain iterators, which a convolution's activations (y + ky) are not: they
    are then read through a reindexed copy while padding, and the copy is inlined again."""
    try:
        sch.pad_einsum(block, plan.padding)
    except tvm.s_tir.ScheduleError:
        reindexed = sch.reindex(block, ("read", plan.data_index))
        sch.pad_einsum(block, plan.padding)
        sch.compute_inline(reindexed)


def pack_weights_for_intrin(
    sch: tvm.s_tir.Schedule, name: str, plan: PackingPlan, intrin: DotIntrin
) -> tvm.s_tir.Schedule | None:
    """A copy of `sch` in which block `name` (a reduction the intrinsic computes, as `plan`
    says) has N and K padded to the intrinsic's lanes x 4 where needed and reads its weights
    packed, or None when the block cannot be prepared so. Unpadded weights are packed by a copy
    marked as layout-rewrite preprocessing, which the compiler folds into the constant weights;
    padded ones are packed with their padding by a block that tuning measures in the kernel
    (MetaSchedule's builder can take plain copies only out of it) and that the compiler folds
    too (tvmq.kernels.int8_schedule.fold_padded_weight_packing)."""
    prepared = sch.copy()
    block = prepared.get_sblock(name)
    try:
        extents = [int(iv.dom.extent) for iv in prepared.get(block).iter_vars]
        if any(e % p for e, p in zip(extents, plan.padding)):
            _pad(prepared, block, plan)
        weights = prepared.get(block).reads[plan.weight_index].source
        producers = [p for p in prepared.get_producers(block) if prepared.get(p).writes[0].source.same_as(weights)]
        packer = producers[0] if producers else prepared.cache_read(block, plan.weight_index, "global")
        packed_index = _packed_index(plan.n_dim, plan.k_dim, intrin.lanes)
        prepared.transform_layout(block, ("read", plan.weight_index), packed_index)
    except tvm.s_tir.ScheduleError:
        return None
    if not producers:  # a plain copy of the weights: folded into them at compile time
        prepared.annotate(packer, "meta_schedule.layout_rewrite_preproc", True)
    prepared.annotate(packer, *WEIGHT_PACKER)
    return prepared
