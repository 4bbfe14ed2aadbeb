"""The schedule a kernel without a reduction gets on CPUs when nothing else schedules it:
elementwise and broadcast chains, transposes and layout changes, concats, pads, gathers,
requantizing casts.

TVM compiles an unscheduled kernel to one loop nest per stage, each writing a whole buffer of
its own, on one core. Here every stage but the kernel's outputs is computed inside its
consumer, and each output's loops are fused into one, split into vectors (as many lanes as a
register holds of the widest operand) and spread over the cores: one pass over memory, in
parallel.
"""

from __future__ import annotations

import math

import tvm
from tvm.s_tir import ScheduleError
from tvm.tirx import IterVar

from tvmq.kernels.tiling import default_schedule_pass, vector_lanes

# Below this many output elements a kernel runs on one core: waking the thread pool costs more
# than such a pass over memory.
PARALLEL_FROM = 4096


def schedule_injective_kernel(func: tvm.tirx.PrimFunc, vector_bits: int) -> tvm.tirx.PrimFunc | None:
    """`func` scheduled as the module docstring says, or None if it has a reduction (other
    schedules' business, or the default code's)."""
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    root = sch.get_sblock("root")
    blocks = list(sch.get_child_blocks(root))
    if not blocks or any(_has_reduction(sch.get(block)) for block in blocks):
        return None
    for block in blocks:
        try:
            sch.compute_inline(block)
        except ScheduleError:  # an output, or a stage that cannot be recomputed in its readers
            pass
    for block in sch.get_child_blocks(root):
        fuse_parallel_vectorize(sch, block, vector_bits)
    return sch.mod["main"]


def _has_reduction(stmt) -> bool:
    return any(iv.iter_type != IterVar.DataPar for iv in stmt.iter_vars)


def fuse_parallel_vectorize(sch: tvm.s_tir.Schedule, block, vector_bits: int) -> None:
    """The block's loops fused into one, split into vectors where they divide, in parallel
    above PARALLEL_FROM elements."""
    loops = sch.get_loops(block)
    if not loops:
        return
    extents = [sch.get(loop).extent for loop in loops]
    if not all(isinstance(e, tvm.tirx.IntImm) for e in extents):
        return
    total = math.prod(int(extent) for extent in extents)
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    lanes = vector_lanes(sch.get(block), vector_bits)
    if lanes > 1 and int(extents[-1]) % lanes == 0 and total >= 2 * lanes:
        outer, inner = sch.split(fused, [None, lanes])
        sch.vectorize(inner)
    else:
        outer = fused
    if total >= PARALLEL_FROM:
        sch.parallel(outer)


def default_injective_schedule(vector_bits: int):
    """A module pass scheduling every unscheduled kernel without a reduction."""
    return default_schedule_pass(
        "tvmq.DefaultInjectiveSchedule",
        lambda func: schedule_injective_kernel(func, vector_bits),
        "default elementwise",
    )
