"""The schedule float convolutions and matrix products (and int32 ones, DTYPES) get on CPUs
when no tuning log holds one:
register tiles of output rows by vectors of output channels (tvmq.kernels.tiling), each a
broadcast-multiply-add over the whole reduction, with the bias and activation that follow
fused into the tile's output loop.

TVM compiles an unscheduled kernel to scalar loops on one core; this tile gives vectorized,
parallel code without any search, and tuning measures it beside the candidates it searches
(benchmarks/README.md has the figures). It applies where
the output channels are the innermost dimension of the output and of every operand that they
index (channels-last convolutions, matmul with weights as K x N), so that each tile loads whole
vectors.
"""

from __future__ import annotations

import math

import tvm
from tvm.s_tir import ScheduleError
from tvm.tirx import IterVar

from tvmq.kernels.tiling import (
    LAYOUT_REWRITE,
    default_schedule_pass,
    largest_divisor,
    steps_by_one,
    tile_reduction,
    uses,
)

MAX_ROWS = 8  # output rows per tile
MAX_WIDTHS = 4  # vectors of output channels per tile
# Rows are padded to whole tiles only from this many, where the padding wastes at most a tile
# in PAD_ROWS_FROM / MAX_ROWS.
PAD_ROWS_FROM = 4 * MAX_ROWS
# Weights above this size are laid out and read channel tile by channel tile, each tile's
# weights then serving all output rows while in cache. Smaller weights stay in a core's L2
# whatever the order, and row-major tiles give each core whole output rows, which stay in its
# own cache from one kernel to the next.
CHANNELS_OUTER_ABOVE = 1 << 20
# Products this tile computes: float32, and int32, the widened integer operands of an int8
# activation matmul (attention's) that no int8 intrinsic takes.
DTYPES = ("float32", "int32")


def schedule_float_kernel(func: tvm.tirx.PrimFunc, lanes: int, registers: int) -> tvm.tirx.PrimFunc | None:
    """`func` with its float reduction tiled on vectors of `lanes` float32s in `registers`
    vector registers, or None when it has none this schedule handles (it then keeps the default
    code)."""
    scheduled = tile_float_kernel(tvm.s_tir.Schedule(tvm.IRModule({"main": func})), lanes, registers)
    return None if scheduled is None else scheduled.mod["main"]


def tile_float_kernel(sch: tvm.s_tir.Schedule, lanes: int, registers: int) -> tvm.s_tir.Schedule | None:
    """A copy of `sch` (a kernel's module) with its float conv or matmul register-tiled, or
    None. Tuning measures it beside the searched candidates (tvmq.kernels.spaces)."""
    sch = _padded_to_tiles(sch, lanes) or sch
    found = _float_reduction(sch, lanes)
    if found is None:
        return None
    name, n_iter, lanes = found
    tiled = sch.copy()
    rows, widths = _register_tile(tiled, name, n_iter, lanes, registers)
    try:
        weight_bytes = _pack_weights(tiled, name, n_iter, widths * lanes)
        depthwise = weight_bytes == 0  # weights that do not pack are a depthwise convolution's
        channels_outer = weight_bytes > CHANNELS_OUTER_ABOVE
        if tile_reduction(
            tiled,
            name,
            n_iter,
            lanes,
            None,
            (rows, widths),
            channels_outer=channels_outer,
            strided_pad_per_tile=depthwise,
        ):
            return tiled
    except ScheduleError:
        pass
    return None


def _pack_weights(sch: tvm.s_tir.Schedule, name: str, n_iter: int, tile_channels: int) -> int:
    """Lay out the weights (_weights_operand) as [N / tile_channels, other dims...,
    tile_channels]: the weights one tile reads are then one contiguous stream. The copy is
    marked as layout-rewrite preprocessing, which the compiler folds into the constant weights.
    Returns the weights' size in bytes, 0 where there are none."""
    block = sch.get_sblock(name)
    stmt = sch.get(block)
    index = _weights_operand(stmt, n_iter)
    if index is not None:
        dims = [r.min for r in stmt.reads[index].region]
        n_dim = next(i for i, d in enumerate(dims) if uses(d, stmt.iter_vars[n_iter].var))
        packer = sch.cache_read(block, index, "global")
        sch.transform_layout(
            block,
            ("read", index),
            _tiles_first(n_dim, tile_channels),
        )
        sch.annotate(packer, LAYOUT_REWRITE, True)
        weights = stmt.reads[index].source
        return math.prod(int(extent) for extent in weights.shape) * tvm.runtime.DataType(weights.dtype).bits // 8
    return 0


def _weights_operand(stmt, n_iter: int) -> int | None:
    """The read operand that only the output channels N and the reduction index (the
    weights), or None: where each output channel reads its own input channel (depthwise
    convolutions) or where the operand N indexes also varies with other output iterators (a
    batched matmul's, both operands activations)."""
    n = stmt.iter_vars[n_iter].var
    others = [iv.var for i, iv in enumerate(stmt.iter_vars) if iv.iter_type == IterVar.DataPar and i != n_iter]
    operands = [[r.min for r in region.region] for region in stmt.reads]
    if all(any(uses(d, n) for d in dims) for dims in operands):
        return None
    for index, dims in enumerate(operands):
        if any(uses(d, n) for d in dims) and not any(uses(d, v) for d in dims for v in others):
            return index
    return None


def _float_reduction(sch: tvm.s_tir.Schedule, lanes: int) -> tuple[str, int, int] | None:
    """(name, N's position among its iterators, lanes) of the kernel's product reduction
    (_contiguous_channels) whose output channels N are a whole number of `lanes` (or of half as
    many); else None."""
    found = _contiguous_channels(sch)
    if found is None:
        return None
    name, n_iter, channels = found
    for width in (lanes, lanes // 2):
        if width > 1 and channels % width == 0:
            return name, n_iter, width
    return None


def _padded_to_tiles(sch: tvm.s_tir.Schedule, lanes: int) -> tvm.s_tir.Schedule | None:
    """A copy of `sch` whose product (a matmul: the einsum pattern) computes on output channels
    padded to a whole number of vectors, where they are none and both operands are activations
    (attention's keys: ViT's 197 patches; weights with such channels belong to small heads, and
    padding them would defeat their packing), and on rows padded to whole tiles, where they are
    many without a divisor near a tile; zeros fill the operands' padding, and a copy to the
    output cuts it off. None where nothing needs padding, or the product cannot pad
    (convolutions)."""
    found = _contiguous_channels(sch)
    if found is None:
        return None
    name, n_iter, channels = found
    stmt = sch.get(sch.get_sblock(name))
    iters = stmt.iter_vars
    rows = [i for i, iv in enumerate(iters) if iv.iter_type == IterVar.DataPar and i != n_iter][-1]
    padding = [1] * len(iters)
    if channels % lanes and channels % (lanes // 2) and _weights_operand(stmt, n_iter) is None:
        padding[n_iter] = lanes
    row_count = int(iters[rows].dom.extent)
    if row_count >= PAD_ROWS_FROM and largest_divisor(row_count, MAX_ROWS) < MAX_ROWS // 2:
        padding[rows] = MAX_ROWS
    if padding == [1] * len(iters):
        return None
    padded = sch.copy()
    try:
        padded.pad_einsum(padded.get_sblock(name), padding)
    except ScheduleError:
        return None
    return padded


def _contiguous_channels(sch: tvm.s_tir.Schedule) -> tuple[str, int, int] | None:
    """(name, N's position among its iterators, N's extent) of the kernel's product reduction,
    one of DTYPES throughout, whose output channels N are the innermost index of the output and
    of every operand that N indexes; else None."""
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        stmt = sch.get(block)
        kinds = [iv.iter_type for iv in stmt.iter_vars]
        if (
            len(stmt.writes) != 1
            or len(stmt.reads) != 2
            or IterVar.CommReduce not in kinds
            or len(dtypes := {str(region.source.dtype) for region in [*stmt.reads, *stmt.writes]}) != 1
            or not dtypes <= set(DTYPES)
            or not _is_multiply_add(stmt)
        ):
            continue
        n = stmt.writes[0].region[-1].min
        if not isinstance(n, tvm.tirx.Var):
            continue
        n_iter = next((i for i, iv in enumerate(stmt.iter_vars) if iv.var.same_as(n)), None)
        if n_iter is None or kinds[n_iter] != IterVar.DataPar:
            continue
        if not all(_innermost_or_absent(region, n) for region in stmt.reads):
            continue
        return stmt.name_hint, n_iter, int(stmt.iter_vars[n_iter].dom.extent)
    return None


def _tiles_first(n_dim: int, tile_channels: int):
    """Weight indices -> [N / tile_channels, other dims..., N % tile_channels]."""

    def index(*dims):
        n = dims[n_dim]
        return [n // tile_channels, *dims[:n_dim], *dims[n_dim + 1 :], n % tile_channels]

    return index


def _is_multiply_add(stmt) -> bool:
    """Whether the block's body accumulates a product (out = out + a * b)."""
    body = stmt.body
    value = body.value if isinstance(body, tvm.tirx.BufferStore) else None
    return isinstance(value, tvm.tirx.Add) and isinstance(value.b, tvm.tirx.Mul)


def _innermost_or_absent(region, var) -> bool:
    """Whether `var` steps only the innermost dimension of `region` (dimensions of extent 1
    after it aside), by one, or indexes none of it: vectors along it are then contiguous."""
    dims = [r.min for r in region.region]
    indexed = [i for i, index in enumerate(dims) if uses(index, var)]
    if not indexed:
        return True
    trailing = [i for i in range(indexed[0] + 1, len(dims)) if int(region.source.shape[i]) != 1]
    return len(indexed) == 1 and steps_by_one(dims[indexed[0]], var) and not trailing


def _register_tile(sch: tvm.s_tir.Schedule, name: str, n_iter: int, lanes: int, registers: int) -> tuple[int, int]:
    """(rows, vectors) of the tile with the most accumulators that fit the registers beside a
    vector of weights per width and a broadcast activation; rows divide the output's rows and
    vectors its channel vectors, so the tile has no remainder (rows: the last spatial iterator
    but the channels, tvmq.kernels.tiling)."""
    iters = sch.get(sch.get_sblock(name)).iter_vars
    spatial = [iv for i, iv in enumerate(iters) if iv.iter_type == IterVar.DataPar and i != n_iter]
    rows = int(spatial[-1].dom.extent)
    vectors = int(iters[n_iter].dom.extent) // lanes
    budget = min(16, registers - 4)  # accumulators, beside a weight vector per width and a broadcast input
    fits = [
        (r * w, r, w)
        for r in range(1, MAX_ROWS + 1)
        if rows % r == 0
        for w in range(1, MAX_WIDTHS + 1)
        if vectors % w == 0 and r * w <= budget
    ]
    _, r, w = max(fits)
    return r, w


def default_float_schedule(lanes: int, registers: int):
    """A module pass scheduling every unscheduled float32 (or int32) convolution and matmul it
    can."""
    return default_schedule_pass(
        "tvmq.DefaultFloatSchedule", lambda func: schedule_float_kernel(func, lanes, registers), "default float tile"
    )
