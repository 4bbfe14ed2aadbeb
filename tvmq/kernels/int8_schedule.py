"""The schedule int8 kernels get when no tuning log holds one: the convolution or matmul tiled
around the target's dot-product intrinsic (tvmq.kernels.intrinsics), its weights packed at
compile time, and the requantizing epilogue fused into the tile's output loop. Depthwise
convolutions, which have no dot product to tensorize, get the same tiles on int32 vectors of
channels.

Without it, an int8 kernel the log lacks would compile to TVM's naive scalar loops. The tile is
fixed rather than searched: a block of output rows by a few intrinsic widths of output
channels, the accumulators of which fit the vector registers, with the reduction running
inside it. Tuning may find better tiles; this one is made without measuring anything.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import ScheduleError

from tvmq.kernels.intrinsics import REDUCE, WEIGHT_PACKER, DotIntrin, register_intrinsics
from tvmq.kernels.packing import pack_weights_for_intrin, packing_plan, tensorizable_block
from tvmq.kernels.tiling import LAYOUT_REWRITE, default_schedule_pass, tile_reduction

# Output rows x intrinsic widths of output channels per tile: rows x widths accumulators, in
# 32 vector registers on AVX-512 and AArch64, 16 on AVX2 (where vpmaddubsw also needs two
# temporaries per product).
REGISTER_TILES = {"avx512vnni": (8, 2), "avx512bw": (8, 2), "avx2": (4, 2), "dotprod": (8, 2), "neon": (4, 2)}

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
    or None. Tuning measures it beside the searched candidates (tvmq.kernels.spaces.int8_space)."""
    name = tensorizable_block(sch.mod, intrin)
    if name is None:
        return None
    plan = packing_plan(sch, sch.get_sblock(name), intrin)
    prepared = None if plan is None else pack_weights_for_intrin(sch, name, plan, intrin)
    if prepared is None:
        return None
    try:
        lanes = tile_reduction(
            prepared, name, plan.n_iter, intrin.lanes, plan.k_iter, REGISTER_TILES[intrin.isa], REDUCE
        )
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
        if tile_reduction(prepared, name, DEPTHWISE_CHANNELS, intrin.lanes, None, REGISTER_TILES[intrin.isa]) is None:
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


def default_int8_schedule(intrin: DotIntrin):
    """A module pass scheduling every unscheduled int8 kernel that `intrin` computes."""
    return default_schedule_pass(
        "tvmq.DefaultInt8Schedule", lambda func: schedule_int8_kernel(func, intrin), "default int8 tile"
    )


def fold_padded_weight_packing():
    """A module pass marking the blocks that pad and pack an int8 kernel's weights as
    layout-rewrite preprocessing, so that the compiler evaluates them once on the constant
    weights, as it does the plain packing copies (which are marked already); left in the
    kernel, they would pack the weights again at every inference. Tuned kernels are marked
    too, whichever log they came from."""

    @tvm.transform.module_pass(opt_level=0, name="tvmq.FoldPaddedWeightPacking")
    def mark(mod, _ctx):
        for global_var, func in list(mod.functions_items()):
            if isinstance(func, tvm.tirx.PrimFunc) and func.attrs.get("tirx.is_scheduled", 0) == 1:
                marked = _mark_padded_packers(func)
                if marked is not None:
                    mod[global_var] = marked
        return mod

    return mark


def _mark_padded_packers(func: tvm.tirx.PrimFunc) -> tvm.tirx.PrimFunc | None:
    """`func` with its unmarked weight packers (top-level blocks annotated WEIGHT_PACKER that
    read one of the function's parameters and nothing else) marked, or None if it has none."""
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    root = sch.get_sblock("root")
    local = sch.get(root).alloc_buffers
    key, value = WEIGHT_PACKER

    def unmarked_packer(stmt) -> bool:
        if stmt.annotations.get(key) != value or LAYOUT_REWRITE in stmt.annotations:
            return False
        reads_a_parameter = len(stmt.reads) == 1 and not any(stmt.reads[0].source.same_as(b) for b in local)
        return reads_a_parameter and len(stmt.writes) == 1

    packers = [block for block in sch.get_child_blocks(root) if unmarked_packer(sch.get(block))]
    for block in packers:
        sch.annotate(block, LAYOUT_REWRITE, True)
    return sch.mod["main"] if packers else None
