"""The schedule a kernel with a reduction that is not a product gets on CPUs when nothing else
schedules it: softmax, layer and RMS norms, means and sums, global and windowed pooling.

Two shapes cover them. Row kernels reduce the innermost axis (softmax, norms over features):
the rows run in parallel, each row's stages one after another while the row is in cache, the
elementwise stages in vectors, and each reduction in vectors too, as `lanes` partial results
(rfactor) summed at the end of the row. Column kernels reduce other axes and keep the innermost
one (pooling and means over the spatial axes of channels-last tensors, sums over the sequence):
each output vector accumulates the whole reduction window in a register, the vectors spread
over the cores. Elementwise stages that feed or follow the reduction are computed inside it.
"""

from __future__ import annotations

import math
from functools import partial

import tvm
from tvm.s_tir import ScheduleError
from tvm.tirx import IterVar

from tvmq.kernels.injective_schedule import PARALLEL_FROM, fuse_parallel_vectorize
from tvmq.kernels.tiling import default_schedule_pass, extent, steps_by_one, uses, vector_lanes


def schedule_reduction_kernel(func: tvm.tirx.PrimFunc, vector_bits: int) -> tvm.tirx.PrimFunc | None:
    """`func` scheduled as the module docstring says, or None: it has no reduction, or one
    that is a product (convolutions and matmuls are other schedules' business)."""
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    blocks = _blocks(sch)
    reductions = [b for b in blocks if _is_reduction(sch.get(b))]
    if not reductions or any(_is_product(sch.get(b)) for b in reductions):
        return None
    _inline_single_use(sch)
    # Rows with their remainders in loops of their own, then without (loop_partition fails on
    # some kernels: log_softmax's), then columns.
    attempts = (partial(_row_schedule, partition=True), partial(_row_schedule, partition=False), _column_schedule)
    for schedule in attempts:
        attempt = sch.copy()
        try:
            if schedule(attempt, vector_bits):
                return attempt.mod["main"]
        except (ScheduleError, tvm.error.InternalError):  # or a primitive failing its own check
            pass
    return None


def _blocks(sch):
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _is_reduction(stmt) -> bool:
    return any(iv.iter_type == IterVar.CommReduce for iv in stmt.iter_vars)


def _is_product(stmt) -> bool:
    """A reduction over products of two operands: a convolution's or a matmul's."""
    value = stmt.body.value if isinstance(stmt.body, tvm.tirx.BufferStore) else None
    if not (isinstance(value, tvm.tirx.Add) and isinstance(value.b, tvm.tirx.Mul)):
        return False
    return all(_is_load(operand) for operand in (value.b.a, value.b.b))


def _is_load(expr) -> bool:
    """A buffer element, cast or not."""
    while isinstance(expr, tvm.tirx.Cast):
        expr = expr.value
    return isinstance(expr, tvm.ir.TensorLoad)


def _inline_single_use(sch) -> None:
    """Compute every elementwise stage that one other stage reads inside that stage (a pad
    inside its pooling, a division inside the norm that follows); a stage read by several
    (softmax's exponentials) stays, so that it is computed once."""
    for block in _blocks(sch):
        stmt = sch.get(block)
        if _is_reduction(stmt) or len(sch.get_consumers(block)) != 1:
            continue
        try:
            sch.compute_inline(block)
        except ScheduleError:  # an output of the kernel
            pass


def _leading_spatial(stmt) -> int:
    kinds = [iv.iter_type for iv in stmt.iter_vars]
    return next((i for i, kind in enumerate(kinds) if kind != IterVar.DataPar), len(kinds))


def _row_schedule(sch, vector_bits: int, partition: bool) -> bool:
    """Rows in parallel, each row's stages computed inside it, reductions over its innermost
    axis in vectors. Applies where every stage iterates the rows first (the kernel's output
    stage elementwise) and every reduction reduces the innermost axis of what it reads.
    `partition`: elementwise rows that are no whole number of vectors have their remainder in
    a loop of its own (else they stay scalar)."""
    blocks = _blocks(sch)
    stmts = [sch.get(b) for b in blocks]
    if _is_reduction(stmts[-1]) or any(len(sch.get_loops(b)) != len(s.iter_vars) for b, s in zip(blocks, stmts)):
        return False
    rows = min(_leading_spatial(s) for s in stmts)
    if rows == 0 or rows == len(stmts[-1].iter_vars):
        return False
    reductions = [(b, s) for b, s in zip(blocks, stmts) if _is_reduction(s)]
    if not all(_reduces_innermost(s) for _, s in reductions):
        return False
    for block, stmt in reductions:
        _vectorize_reduction(sch, block, stmt, vector_bits)
    *producers, last = _blocks(sch)
    loops = sch.get_loops(last)
    total = math.prod(extent(sch, loop) for loop in loops)
    row = sch.fuse(*loops[:rows]) if rows > 1 else loops[0]
    for block in reversed(producers):
        sch.compute_at(block, row, preserve_unit_loops=True)
    if total >= PARALLEL_FROM:
        sch.parallel(row)
    for block in sch.get_child_blocks(row):
        stmt = sch.get(block)
        if stmt.name_hint.endswith("_rf"):  # the lanes' partial reductions
            _vectorize_lanes(sch, block, stmt)
        elif not _is_reduction(stmt):
            _vectorize_innermost(sch, block, vector_bits, partition)
    return True


def _reduces_innermost(stmt) -> bool:
    """Whether the innermost reduction iterator steps the innermost axis of every read operand
    that it indexes, and every other iterator of the block precedes it."""
    inner = stmt.iter_vars[-1]
    if inner.iter_type != IterVar.CommReduce:
        return False
    indexed = [r for r in stmt.reads if any(uses(dim.min, inner.var) for dim in r.region)]
    return bool(indexed) and all(steps_by_one(r.region[-1].min, inner.var) for r in indexed)


def _vectorize_reduction(sch, block, stmt, vector_bits: int) -> None:
    """Split the innermost reduction loop into `lanes` partial reductions (a block of its own,
    named *_rf) that the original block then reduces; one that is no whole number of vectors
    stays scalar (a predicate on the lanes would keep them scalar anyway)."""
    lanes = vector_lanes(stmt, vector_bits)
    inner = sch.get_loops(block)[-1]
    length = extent(sch, inner)
    if lanes < 2 or length < 2 * lanes or length % lanes:
        return
    _, lane = sch.split(inner, [None, lanes])
    sch.rfactor(lane, factor_axis=len(stmt.iter_vars) - 1)


def _vectorize_lanes(sch, rf_block, stmt) -> None:
    """An rfactor block's loops, which compute_at made one per iterator in the block's order,
    reordered to (..., reduction, lanes) with the lanes (the last index of what the block
    writes) in a vector, initialized in a vector too."""
    loops = sch.get_loops(rf_block)[-len(stmt.iter_vars) :]
    lane_var = stmt.writes[0].region[-1].min
    lane = next(i for i, iv in enumerate(stmt.iter_vars) if iv.var.same_as(lane_var))
    reduction = [i for i, iv in enumerate(stmt.iter_vars) if iv.iter_type == IterVar.CommReduce]
    sch.reorder(*(loops[i] for i in reduction), loops[lane])
    sch.vectorize(loops[lane])  # before the init is split off, as the primitive wants
    init = sch.decompose_reduction(rf_block, loops[reduction[0]])
    sch.vectorize(sch.get_loops(init)[-1])


def _column_schedule(sch, vector_bits: int) -> bool:
    """Each output vector of the innermost axis accumulates its whole reduction in registers;
    applies where every reduction keeps the innermost axis of its output spatial. Where that
    axis does not step the innermost axis of what it reads by one (a strided window), or is no
    whole number of vectors, the outputs are computed one at a time, still in parallel."""
    done = False
    for block in _blocks(sch):
        stmt = sch.get(block)
        if not _is_reduction(stmt):
            continue
        loops = sch.get_loops(block)
        if len(loops) != len(stmt.iter_vars):
            return False
        kinds = [iv.iter_type for iv in stmt.iter_vars]
        spatial = [i for i, kind in enumerate(kinds) if kind == IterVar.DataPar]
        if not spatial:
            return False
        inner = stmt.iter_vars[spatial[-1]].var
        if not steps_by_one(stmt.writes[0].region[-1].min, inner):
            return False
        lanes = vector_lanes(stmt, vector_bits)
        contiguous = all(
            steps_by_one(r.region[-1].min, inner) for r in stmt.reads if any(uses(d.min, inner) for d in r.region)
        )
        if lanes < 2 or extent(sch, loops[spatial[-1]]) % lanes or not contiguous:
            lanes = 1  # in parallel, not in vectors: a strided window (channels-first pooling)
        work = math.prod(extent(sch, loop) for loop in loops)  # the window's elements too
        c_outer, c_lanes = sch.split(loops[spatial[-1]], [None, lanes])
        outer = [loops[i] for i in spatial[:-1]] + [c_outer]
        reduction = [loops[i] for i, kind in enumerate(kinds) if kind == IterVar.CommReduce]
        sch.reorder(*outer, *reduction, c_lanes)
        fused = sch.fuse(*outer)
        if work >= PARALLEL_FROM:
            sch.parallel(fused)
        if lanes > 1:
            sch.vectorize(c_lanes)  # before the init is split off, as the primitive wants
        init = sch.decompose_reduction(block, reduction[0])
        if lanes > 1:
            sch.vectorize(sch.get_loops(init)[-1])
        for consumer in sch.get_consumers(block):
            fuse_parallel_vectorize(sch, consumer, vector_bits)
        done = True
    return done


def _vectorize_innermost(sch, block, vector_bits: int, partition: bool) -> None:
    """The block's innermost loop in vectors, the remainder of its division by the lanes in a
    loop of its own if `partition` (else such a loop stays scalar)."""
    stmt = sch.get(block)
    inner = sch.get_loops(block)[-1]
    lanes = vector_lanes(stmt, vector_bits)
    length = extent(sch, inner)
    if lanes < 2 or length < 2:
        return
    if length <= lanes:
        sch.vectorize(inner)
    elif length % lanes == 0:
        _, lane = sch.split(inner, [None, lanes])
        sch.vectorize(lane)
    elif partition:
        body, _rest = sch.loop_partition(inner, [length - length % lanes, None])
        _, lane = sch.split(body, [None, lanes])
        sch.vectorize(lane)


def default_reduction_schedule(vector_bits: int):
    """A module pass scheduling every unscheduled kernel whose reduction is not a product."""
    return default_schedule_pass(
        "tvmq.DefaultReductionSchedule", lambda func: schedule_reduction_kernel(func, vector_bits), "default reduction"
    )
