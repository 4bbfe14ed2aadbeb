"""The schedule int8 kernels get when no tuning log holds one: the convolution or matmul tiled
around the target's dot-product intrinsic (tvmq.tune.int8_kernels), its weights packed at
compile time, and the requantizing epilogue fused into the tile's output loop.

Without it, an int8 kernel the log lacks would compile to TVM's naive scalar loops (ResNet-18
int8 took over 6 s a run that way). The tile is fixed rather than searched: a block of output
rows by a few intrinsic widths of output channels, the accumulators of which fit the vector
registers, with the reduction running inside it. Tuning still finds better tiles; this one
costs a few milliseconds per kernel to make.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import ScheduleError
from tvm.tirx import IterVar

from tvmq.tune.int8_kernels import (
    REDUCE,
    DotIntrin,
    PackingPlan,
    pack_weights_for_intrin,
    packing_plan,
    register_intrinsics,
    tensorizable_block,
)

# Output rows x intrinsic widths of output channels per tile: rows x widths accumulators, in
# 32 vector registers on AVX-512 and AArch64, 16 on AVX2 (where vpmaddubsw also needs two
# temporaries per product).
REGISTER_TILES = {"avx512vnni": (8, 2), "avx512bw": (8, 2), "avx2": (4, 2), "dotprod": (8, 2), "neon": (4, 2)}

LAYOUT_REWRITE = "meta_schedule.layout_rewrite_preproc"


def schedule_int8_kernel(func: tvm.tirx.PrimFunc, intrin: DotIntrin) -> tvm.tirx.PrimFunc | None:
    """`func` scheduled around `intrin`, or None when it has no block the intrinsic computes (or
    one laid out in a way this schedule does not handle: it then keeps the default code)."""
    register_intrinsics()
    scheduled = tile_int8_kernel(tvm.s_tir.Schedule(tvm.IRModule({"main": func})), intrin)
    return None if scheduled is None else scheduled.mod["main"]


def tile_int8_kernel(sch: tvm.s_tir.Schedule, intrin: DotIntrin) -> tvm.s_tir.Schedule | None:
    """A copy of `sch` (a kernel's module) with the default int8 schedule applied, or None.
    Tuning measures it beside the searched candidates (tvmq.tune.int8_kernels.int8_space)."""
    name = tensorizable_block(sch.mod, intrin)
    if name is None:
        return None
    plan = packing_plan(sch, sch.get_sblock(name), intrin)
    prepared = pack_weights_for_intrin(sch, name, intrin)
    if prepared is None:
        return None
    try:
        tiled = _tile_around_intrin(prepared, name, plan, intrin)
    except ScheduleError:
        return None
    return prepared if tiled else None


def _tile_around_intrin(sch: tvm.s_tir.Schedule, name: str, plan: PackingPlan, intrin: DotIntrin) -> bool:
    """Loops of block `name` (one per block iterator, N and K as `plan` found them) ->
    parallel(other spatial, rows / r, N / (w x lanes)) reduction(...) rows r, widths w, then
    the intrinsic's lanes x 4; the epilogue follows each tile. False if the loops do not map
    one to one onto the block's iterators (nothing was changed then)."""
    block = sch.get_sblock(name)
    iters, loops = sch.get(block).iter_vars, sch.get_loops(block)
    if len(iters) != len(loops):
        return False
    for producer in sch.get_producers(block):  # the activations' padding, if any
        if LAYOUT_REWRITE not in sch.get(producer).annotations:
            _parallel_and_vectorized(sch, sch.get_loops(producer))
    n, k = plan.n_iter, plan.k_iter
    n_outer, n_lanes = sch.split(loops[n], [None, intrin.lanes])
    k_outer, k_inner = sch.split(loops[k], [None, REDUCE])
    kinds = [iv.iter_type for iv in iters]
    spatial = [loop for i, loop in enumerate(loops) if kinds[i] == IterVar.DataPar and i != n]
    reduction = [loop for i, loop in enumerate(loops) if kinds[i] == IterVar.CommReduce and i != k] + [k_outer]
    rows, widths = REGISTER_TILES[intrin.isa]
    row_outer, row_inner = sch.split(spatial[-1], [None, _largest_divisor(_extent(sch, spatial[-1]), rows)])
    n_tiles, n_widths = sch.split(n_outer, [None, _largest_divisor(_extent(sch, n_outer), widths)])
    sch.reorder(*spatial[:-1], row_outer, n_tiles, *reduction, row_inner, n_widths, n_lanes, k_inner)

    epilogue = _elementwise_consumers(sch, block)
    if epilogue:
        # Inlined into the kernel's last stage: bias, requantization, clamp, and the stages of a
        # residual input added to the result, which would otherwise run over the whole tensor.
        for stage in _stages_after(sch, block)[:-1]:
            sch.compute_inline(stage)
        sch.reverse_compute_at(epilogue[-1], n_tiles)
        sch.vectorize(sch.get_loops(epilogue[-1])[-1])
    sch.parallel(sch.fuse(*spatial[:-1], row_outer, n_tiles))
    init = sch.decompose_reduction(block, reduction[0])
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(row_inner)
    sch.unroll(n_widths)
    sch.tensorize(n_lanes, intrin.name)
    return True


def _elementwise_consumers(sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV) -> list[tvm.s_tir.SBlockRV]:
    """The chain of single consumers after `block` (bias, requantization, clamp, cast)."""
    chain = []
    consumers = sch.get_consumers(block)
    while len(consumers) == 1:
        chain.append(consumers[0])
        consumers = sch.get_consumers(consumers[0])
    return chain


def _stages_after(sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV) -> list[tvm.s_tir.SBlockRV]:
    """The kernel's top-level stages that follow `block`, in order."""
    stages = list(sch.get_child_blocks(sch.get_sblock("root")))
    position = next(i for i, stage in enumerate(stages) if sch.get(stage).same_as(sch.get(block)))
    return stages[position + 1 :]


def _parallel_and_vectorized(sch: tvm.s_tir.Schedule, loops) -> None:
    if len(loops) > 1:
        sch.parallel(sch.fuse(*loops[:-1]))
        sch.vectorize(loops[-1])
    elif loops:
        sch.parallel(loops[0])


def _extent(sch: tvm.s_tir.Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def _largest_divisor(extent: int, limit: int) -> int:
    return max(d for d in range(1, min(extent, limit) + 1) if extent % d == 0)


def default_int8_schedule(intrin: DotIntrin):
    """A module pass scheduling every unscheduled int8 kernel that `intrin` computes."""

    @tvm.transform.module_pass(opt_level=0, name="tvmq.DefaultInt8Schedule")
    def schedule(mod, _ctx):
        for global_var, func in list(mod.functions_items()):
            if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", 0) == 1:
                continue
            scheduled = schedule_int8_kernel(func, intrin)
            if scheduled is not None:
                mod[global_var] = scheduled.with_attr("tirx.is_scheduled", True)
        return mod

    return schedule
