"""Measurements outside the search: each kernel's default schedule before it, the best
schedules again after it.

A kernel that compiles without a log gets tvmq's default schedule, and tuning's space holds it
as one design space among MetaSchedule's (tvmq.kernels.spaces); but the evolutionary search picks
its candidates by cost model and chance, so a short run could end with only records slower
than no log at all. Measured first, the default schedule is in the log: the best record can
only be as fast or faster, and the search warm-starts from it.

Each candidate is measured once, and on a shared machine one measurement can be far off; the
fastest of hundreds is then often the luckiest, not the best. So each kernel's finalists (its
fastest records, the record a compile would apply and its default schedule) are measured
again in interleaved rounds; that measurement is the one the log keeps, marked confirmed, and
a kernel's best record is its fastest confirmed one (tvmq.kernels.log). Once the finalists'
lucky times are gone, the fastest records are other ones measured once: their turn comes in a
further pass, a few passes at most, and they never win unconfirmed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import tvm
from tvm.s_tir import meta_schedule as ms

from tvmq.kernels.log import TuningLog
from tvmq.kernels.spaces import default_schedule
from tvmq.progress import log

FINALISTS = 3  # a kernel's best records measured again (and its default schedule)
ROUNDS = 3
PASSES = 3  # rounds of finalists at most, while a kernel's fastest record was not measured again


def measure_default_schedules(
    contexts: list[ms.TuneContext], builder: ms.builder.Builder, runner: ms.runner.Runner, database: TuningLog
) -> int:
    """Build and run the default schedule of every kernel that has one and whose log does not
    hold it yet, committing each measurement to `database`. Returns how many were measured."""
    pending = []
    for context in contexts:
        sch = default_schedule(context)
        if sch is None:
            continue
        workload = database.commit_workload(context.mod)
        if database.measured_record(workload, sch.trace) is None:
            args_info = ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
            record = ms.database.TuningRecord(sch.trace, workload, None, context.target, args_info)
            pending.append((context, record, sch.mod))
    return _measure(pending, builder, runner, database, rounds=1, confirmed=False, what="default schedule")


def remeasure_finalists(
    contexts: list[ms.TuneContext],
    builder: ms.builder.Builder,
    runner: ms.runner.Runner,
    database: TuningLog,
    finalists: int = FINALISTS,
    rounds: int = ROUNDS,
    passes: int = PASSES,
) -> int:
    """Measure each kernel's `finalists` fastest records, its best one (the record a compile
    applies) and its default schedule again, in `rounds` rounds over all kernels, committing
    the result to `database` as confirmed, where it replaces the earlier measurement. Up to
    `passes` times, kernels whose fastest record was not measured again in this call have
    their new finalists measured. Kernels with a single record are left as they are. Returns
    how many schedules were measured."""
    defaults = {context.task_name: default_schedule(context) for context in contexts}
    confirmed: set[tuple[str, str]] = set()  # (kernel, schedule) measured again in this call
    measured = 0
    for _ in range(passes):
        pending = []
        for context in contexts:
            workload = database.commit_workload(context.mod)
            records = database.fastest(workload, finalists)
            if not records or (context.task_name, str(records[0].trace)) in confirmed:
                continue
            default = defaults[context.task_name]
            default_record = database.measured_record(workload, default.trace) if default else None
            for extra in (*database.get_top_k(workload, 1), default_record):
                if extra is not None and not any(r.same_as(extra) for r in records):
                    records.append(extra)
            if len(records) < 2:
                continue
            for record in records:
                key = (context.task_name, str(record.trace))
                if key not in confirmed:
                    confirmed.add(key)
                    sch = tvm.s_tir.Schedule(context.mod)
                    record.trace.apply_to_schedule(sch, remove_postproc=False)
                    pending.append((context, record, sch.mod))
        if not pending:
            break
        measured += _measure(pending, builder, runner, database, rounds=rounds, confirmed=True, what="finalist")
    return measured


def _measure(pending: list, builder, runner, database: TuningLog, rounds: int, confirmed: bool, what: str) -> int:
    """Build each (context, record, scheduled module) of `pending`, run them all `rounds` times
    in turn, and commit each record with the mean of its rounds as its run times."""
    if not pending:
        return 0
    built = builder.build([ms.builder.BuilderInput(mod, context.target) for context, _, mod in pending])
    runs = []
    for (context, record, _), result in zip(pending, built):
        if result.error_msg is None:
            runs.append((context, record, result.artifact_path))
        else:
            log.warning("the %s of %s did not build: %s", what, context.task_name, result.error_msg)
    inputs = [ms.runner.RunnerInput(path, _device(context.target), record.args_info) for context, record, path in runs]
    rounds_secs: list[list[float] | None] = [[] for _ in runs]
    for _ in range(rounds):
        for index, future in enumerate(runner.run(inputs)):
            result = future.result()
            if rounds_secs[index] is None:
                continue
            if result.error_msg is not None:
                log.warning("the %s of %s did not run: %s", what, runs[index][0].task_name, result.error_msg)
                rounds_secs[index] = None
            else:
                secs = [float(s) for s in result.run_secs]
                rounds_secs[index].append(sum(secs) / len(secs))
    measured = 0
    for (context, record, path), secs in zip(runs, rounds_secs):
        shutil.rmtree(Path(path).parent, ignore_errors=True)
        if secs is None:
            continue
        commit = database.commit_confirmed_record if confirmed else database.commit_tuning_record
        commit(ms.database.TuningRecord(record.trace, record.workload, secs, record.target, record.args_info))
        log.info("tuning: %s %s measured at %.1f us", context.task_name, what, 1e6 * sum(secs) / len(secs))
        measured += 1
    return measured


def _device(target: tvm.target.Target) -> str:
    """The runner's name for the target's device ("cpu", "cuda")."""
    return tvm.runtime.device(target.get_target_device_type()).type
