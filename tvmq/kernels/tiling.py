"""Register tiling of a CPU reduction (a convolution or matrix product): the loop nest that
tvmq's default kernel schedules share, float and int8 alike.

One tile is a block of output rows by a few vectors of output channels, whose accumulators
stay in registers while the whole reduction runs inside it; tiles run in parallel, and the
kernel's elementwise epilogue follows each tile while its outputs are still in cache.
"""

from __future__ import annotations

import tvm
from tvm.sym import detect_linear_equation
from tvm.tirx import IterVar
from tvm.tirx.analysis import undefined_vars

LAYOUT_REWRITE = "meta_schedule.layout_rewrite_preproc"
# The kernel attribute saying which default schedule scheduled a kernel (`tvmq profile` shows it).
SCHEDULE_ATTR = "tvmq.schedule"


def tile_reduction(
    sch: tvm.s_tir.Schedule,
    name: str,
    n: int,
    lanes: int,
    k: int | None,
    tile: tuple[int, int],
    k_inner: int = 4,
    channels_outer: bool = False,
    strided_pad_per_tile: bool = False,
) -> tvm.s_tir.LoopRV | None:
    """Loops of block `name` (one per block iterator; N the `n`-th, K the `k`-th if an
    intrinsic sums over it, `k_inner` at a time) -> parallel(other spatial, rows / r,
    N / (w x lanes)) reduction(...) rows r, widths w, lanes (then K's inner part), where the
    rows are the last spatial iterator but N, r and w the largest divisors of the rows and of N's
    vectors within `tile` (`channels_outer`: the N / (w x lanes) loop first instead). The
    epilogue follows each tile, and the input's padding precedes the tiles or, for
    `strided_pad_per_tile`, may be made inside each (_schedule_pads). Without K the lanes loop
    is vectorized; with K it is returned for the caller to tensorize. None if the loops do not
    map one to one onto the block's iterators (nothing was changed then)."""
    block = sch.get_sblock(name)
    iters, loops = sch.get(block).iter_vars, sch.get_loops(block)
    if len(iters) != len(loops):
        return None
    pads_per_tile = _schedule_pads(sch, block, strided_pad_per_tile)
    n_outer, n_lanes = sch.split(loops[n], [None, lanes])
    kinds = [iv.iter_type for iv in iters]
    spatial = [loop for i, loop in enumerate(loops) if kinds[i] == IterVar.DataPar and i != n]
    reduction = [loop for i, loop in enumerate(loops) if kinds[i] == IterVar.CommReduce and i != k]
    inside_lanes = []
    if k is not None:
        k_outer, k_inner_loop = sch.split(loops[k], [None, k_inner])
        reduction.append(k_outer)
        inside_lanes.append(k_inner_loop)
    rows, widths = tile
    row_outer, row_inner = sch.split(spatial[-1], [None, largest_divisor(extent(sch, spatial[-1]), rows)])
    n_tiles, n_widths = sch.split(n_outer, [None, largest_divisor(extent(sch, n_outer), widths)])
    # Channel tiles outermost: one tile's weights are reused by all the rows that follow it
    # while they are in cache (they matter where the weights outgrow the cache).
    tiles = [n_tiles, *spatial[:-1], row_outer] if channels_outer else [*spatial[:-1], row_outer, n_tiles]
    sch.reorder(*tiles, *reduction, row_inner, n_widths, n_lanes, *inside_lanes)

    after = _stages_after(sch, block)
    if _elementwise_consumers(sch, block) and all(_same_shape(sch, stage, block) for stage in after):
        # Inlined into the kernel's last stage: bias, requantization, clamp, activations, and the
        # stages of a residual input added to the result, which would otherwise run over the
        # whole tensor.
        *inlined, last = after
        for stage in inlined:
            sch.compute_inline(stage)
        sch.reverse_compute_at(last, tiles[-1])
        sch.vectorize(sch.get_loops(last)[-1])
    else:  # a stage of another shape (a pad for the next convolution) runs over the whole output
        for stage in after:
            _parallel(sch, sch.get_loops(stage))
    tile_loop = sch.fuse(*tiles)
    sch.parallel(tile_loop)
    for pad in pads_per_tile:
        sch.compute_at(pad, tile_loop)
    if k is None:
        sch.vectorize(n_lanes)  # before the reduction's init is split off, as the primitive wants
    init = sch.decompose_reduction(block, reduction[0])
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(row_inner)
    sch.unroll(n_widths)
    return n_lanes


def _schedule_pads(
    sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV, strided_pad_per_tile: bool
) -> list[tvm.s_tir.SBlockRV]:
    """Schedule the stages that pad `block`'s input (weight layout rewrites aside). A plain
    copy is inlined: a convolution without padding still reads through TVM's pad stage, a pass
    over memory before every 1x1 convolution. A real pad is a parallel pass over the whole
    tensor, or, with `strided_pad_per_tile` where `block` reads it with a stride
    (_reads_with_stride), is returned for the caller to make inside each tile, for the window
    that tile reads."""
    pads = []
    for stage in sch.get_producers(block):
        stmt = sch.get(stage)
        if LAYOUT_REWRITE in stmt.annotations:
            continue
        if _plain_copy(stmt):
            sch.compute_inline(stage)
        else:
            pads.append(stage)
    if strided_pad_per_tile and _reads_with_stride(sch, block, pads):
        return pads
    for pad in pads:
        _parallel(sch, sch.get_loops(pad))
    return []


def _plain_copy(stmt) -> bool:
    """Whether a stage's body stores an element of another tensor unchanged."""
    return isinstance(stmt.body, tvm.tirx.BufferStore) and isinstance(stmt.body.value, tvm.ir.expr.TensorLoad)


def _reads_with_stride(sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV, pads: list) -> bool:
    """Whether `block` steps through the output of one of `pads` more than one element per
    output element (a strided convolution's input).

    A float depthwise convolution with a stride pads per tile: it does so few multiply-adds per
    input element, on an input stride^2 times its output, that writing and re-reading a padded
    copy of the whole input would dominate it. Other convolutions keep the whole-tensor pad:
    stride-1 depthwise windows of neighbouring tiles overlap, full convolutions reuse each
    padded element for all output channels, and int8 windows are bytes copied per tile
    (benchmarks/README.md has the measurements)."""
    stmt = sch.get(block)
    padded = [sch.get(pad).writes[0].source for pad in pads]
    spatial = [iv.var for iv in stmt.iter_vars if iv.iter_type == IterVar.DataPar]
    return any(
        isinstance(coefficient, tvm.tirx.IntImm) and coefficient.value > 1
        for region in stmt.reads
        if any(region.source.same_as(buffer) for buffer in padded)
        for dim in region.region
        for var in spatial
        for coefficient in tvm.sym.detect_linear_equation(dim.min, [var])[:1]
    )


def _elementwise_consumers(sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV) -> list[tvm.s_tir.SBlockRV]:
    """The chain of single consumers after `block` (bias, requantization, clamp, cast)."""
    chain = []
    consumers = sch.get_consumers(block)
    while len(consumers) == 1:
        chain.append(consumers[0])
        consumers = sch.get_consumers(consumers[0])
    return chain


def _same_shape(sch: tvm.s_tir.Schedule, stage: tvm.s_tir.SBlockRV, block: tvm.s_tir.SBlockRV) -> bool:
    """Whether `stage` writes a tensor of `block`'s output shape (a tile of one is a tile of
    the other)."""
    shape = [int(n) for n in sch.get(block).writes[0].source.shape]
    return all([int(n) for n in region.source.shape] == shape for region in sch.get(stage).writes)


def _stages_after(sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV) -> list[tvm.s_tir.SBlockRV]:
    """The kernel's top-level stages that follow `block`, in order."""
    stages = list(sch.get_child_blocks(sch.get_sblock("root")))
    position = next(i for i, stage in enumerate(stages) if sch.get(stage).same_as(sch.get(block)))
    return stages[position + 1 :]


def _parallel(sch: tvm.s_tir.Schedule, loops) -> None:
    """Spread a copy-like stage (a pad) over the cores. Its innermost loop is left to LLVM's
    vectorizer: vectorized by TVM, a pad's bounds test is evaluated lane by lane (a depthwise
    convolution's pad took 3x the convolution itself)."""
    if len(loops) > 1:
        sch.parallel(sch.fuse(*loops[:-1]))
    elif loops:
        sch.parallel(loops[0])


def extent(sch: tvm.s_tir.Schedule, loop) -> int:
    """The loop's extent, 0 where it is not a constant."""
    value = sch.get(loop).extent
    return int(value) if isinstance(value, tvm.tirx.IntImm) else 0


def uses(expr, var) -> bool:
    """Whether `var` occurs in `expr`."""
    return any(v.same_as(var) for v in undefined_vars(expr))


def steps_by_one(index, var) -> bool:
    """Whether `index` grows by exactly one when `var` does."""
    coefficients = detect_linear_equation(index, [var])
    return len(coefficients) == 2 and isinstance(coefficients[0], tvm.tirx.IntImm) and int(coefficients[0]) == 1


def vector_lanes(stmt, vector_bits: int) -> int:
    """Elements a register holds of the block's widest operand: one register a step."""
    widest = max(tvm.DataType(str(region.source.dtype)).bits for region in [*stmt.reads, *stmt.writes])
    return vector_bits // max(widest, 8)


def largest_divisor(total: int, limit: int) -> int:
    return max(d for d in range(1, min(total, limit) + 1) if total % d == 0)


def default_schedule_pass(name: str, schedule_kernel, source: str):
    """A module pass replacing every unscheduled kernel that `schedule_kernel` (PrimFunc ->
    scheduled PrimFunc or None) schedules, marked with `source` (SCHEDULE_ATTR)."""

    @tvm.transform.module_pass(opt_level=0, name=name)
    def schedule(mod, _ctx):
        for global_var, func in list(mod.functions_items()):
            if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", 0) == 1:
                continue
            scheduled = schedule_kernel(func)
            if scheduled is not None:
                mod[global_var] = scheduled.with_attrs({"tirx.is_scheduled": True, SCHEDULE_ATTR: source})
        return mod

    return schedule
