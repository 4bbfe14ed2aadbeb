"""The schedule int8 kernels get when no tuning log holds one: the convolution or matmul tiled
around the target's dot-product intrinsic (tvmq.tune.int8_kernels), its weights packed at
compile time, and the requantizing epilogue fused into the tile's output loop. Depthwise
convolutions, which have no dot product to tensorize, get the same tiles on int32 vectors of
channels.

Without it, an int8 kernel the log lacks would compile to TVM's naive scalar loops (ResNet-18
int8 took over 6 s a run that way). The tile is fixed rather than searched: a block of output
rows by a few intrinsic widths of output channels, the accumulators of which fit the vector
registers, with the reduction running inside it. Tuning may find better tiles; this one
costs 20-100 ms per kernel to make.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import ScheduleError
from tvm.tirx import IterVar

from tvmq.tune.int8_kernels import (
    REDUCE,
    DotIntrin,
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
DEPTHWISE_CHANNELS = 3  # the channel iterator of TVM's group_conv2d_nhwc: n, y, x, c, ky, kx, c_in


def schedule_int8_kernel(func: tvm.tirx.PrimFunc, intrin: DotIntrin) -> tvm.tirx.PrimFunc | None:
    """`func` scheduled around `intrin` (or, for a depthwise convolution, on vectors of its
    channels), or None when it has neither (or one laid out in a way this schedule does not
    handle: it then keeps the default code)."""
    register_intrinsics()
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    scheduled = tile_int8_kernel(sch, intrin) or _tile_depthwise(sch, intrin)
    return None if scheduled is None else scheduled.mod["main"]


def tile_int8_kernel(sch: tvm.s_tir.Schedule, intrin: DotIntrin) -> tvm.s_tir.Schedule | None:
    """A copy of `sch` (a kernel's module) with its int8 conv or matmul tiled around `intrin`,
    or None. Tuning measures it beside the searched candidates (int8_kernels.int8_space)."""
    name = tensorizable_block(sch.mod, intrin)
    if name is None:
        return None
    plan = packing_plan(sch, sch.get_sblock(name), intrin)
    prepared = None if plan is None else pack_weights_for_intrin(sch, name, plan, intrin)
    if prepared is None:
        return None
    try:
        lanes = _tile(prepared, name, plan.n_iter, intrin.lanes, plan.k_iter, REGISTER_TILES[intrin.isa])
        if lanes is None:
            return None
        prepared.tensorize(lanes, intrin.name)
    except ScheduleError:
        return None
    return prepared


def _tile_depthwise(sch: tvm.s_tir.Schedule, intrin: DotIntrin) -> tvm.s_tir.Schedule | None:
    """A copy of `sch` with its depthwise int8 convolution (no dot product to tensorize: one
    input channel per output channel) computed on int32 vectors of `intrin.lanes` channels,
    or None if it has none."""
    name = _depthwise_block(sch, intrin)
    if name is None:
        return None
    prepared = sch.copy()
    try:
        if _tile(prepared, name, DEPTHWISE_CHANNELS, intrin.lanes, None, REGISTER_TILES[intrin.isa]) is None:
            return None
    except ScheduleError:
        return None
    return prepared


def _depthwise_block(sch: tvm.s_tir.Schedule, intrin: DotIntrin) -> str | None:
    """The name of a channels-last grouped convolution block (depthwise, or any other group
    count) of `intrin`'s 8-bit operands into int32 whose channel count is a whole number of
    lanes, or None."""
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        stmt = sch.get(block)
        if not stmt.name_hint.startswith("group_conv2d_nhwc") or len(stmt.iter_vars) != 7:
            continue
        dtypes = sorted(region.source.dtype for region in stmt.reads)
        if stmt.writes[0].source.dtype == "int32" and dtypes == sorted([intrin.activation, "int8"]):
            if int(stmt.iter_vars[DEPTHWISE_CHANNELS].dom.extent) % intrin.lanes == 0:
                return stmt.name_hint
    return None


def _tile(
    sch: tvm.s_tir.Schedule, name: str, n: int, lanes: int, k: int | None, tile: tuple[int, int]
) -> tvm.s_tir.LoopRV | None:
    """Loops of block `name` (one per block iterator; N the `n`-th, K the `k`-th if an
    intrinsic sums over it) -> parallel(other spatial, rows / r, N / (w x lanes))
    reduction(...) rows r, widths w, lanes (then K's 4): a tile of r x w accumulator vectors
    (`tile`), the epilogue following each tile. Without K the lanes loop is vectorized; with
    K it is returned for the caller to tensorize. None if the loops do not map one to one
    onto the block's iterators (nothing was changed then)."""
    block = sch.get_sblock(name)
    iters, loops = sch.get(block).iter_vars, sch.get_loops(block)
    if len(iters) != len(loops):
        return None
    for producer in sch.get_producers(block):  # the activations' padding, if any
        if LAYOUT_REWRITE not in sch.get(producer).annotations:
            _parallel_and_vectorized(sch, sch.get_loops(producer))
    n_outer, n_lanes = sch.split(loops[n], [None, lanes])
    kinds = [iv.iter_type for iv in iters]
    spatial = [loop for i, loop in enumerate(loops) if kinds[i] == IterVar.DataPar and i != n]
    reduction = [loop for i, loop in enumerate(loops) if kinds[i] == IterVar.CommReduce and i != k]
    inside_lanes = []
    if k is not None:
        k_outer, k_inner = sch.split(loops[k], [None, REDUCE])
        reduction.append(k_outer)
        inside_lanes.append(k_inner)
    rows, widths = tile
    row_outer, row_inner = sch.split(spatial[-1], [None, _largest_divisor(_extent(sch, spatial[-1]), rows)])
    n_tiles, n_widths = sch.split(n_outer, [None, _largest_divisor(_extent(sch, n_outer), widths)])
    sch.reorder(*spatial[:-1], row_outer, n_tiles, *reduction, row_inner, n_widths, n_lanes, *inside_lanes)

    epilogue = _elementwise_consumers(sch, block)
    if epilogue:
        # Inlined into the kernel's last stage: bias, requantization, clamp, and the stages of a
        # residual input added to the result, which would otherwise run over the whole tensor.
        for stage in _stages_after(sch, block)[:-1]:
            sch.compute_inline(stage)
        sch.reverse_compute_at(epilogue[-1], n_tiles)
        sch.vectorize(sch.get_loops(epilogue[-1])[-1])
    sch.parallel(sch.fuse(*spatial[:-1], row_outer, n_tiles))
    if k is None:
        sch.vectorize(n_lanes)  # before the reduction's init is split off, as the primitive wants
    init = sch.decompose_reduction(block, reduction[0])
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(row_inner)
    sch.unroll(n_widths)
    return n_lanes


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
