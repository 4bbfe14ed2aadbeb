"""The default schedules, measured into the log before the search starts.

A kernel that compiles without a log gets tvmq's default schedule, and tuning's space holds it
as one design space among MetaSchedule's (tvmq.tune.spaces); but the evolutionary search picks
its candidates by cost model and chance, so a short run could end with only records slower
than no log at all (8 trials found 512^3 float matmuls 5x slower than the default schedule, and
the compile applied them). Measuring each default schedule first, in the same conditions as the
search's candidates, puts it in the log: the best record can then only be as fast or faster,
and the search warm-starts from it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import tvm
from tvm.s_tir import meta_schedule as ms

from tvmq.progress import log
from tvmq.tune.log import TuningLog, mean_latency_us
from tvmq.tune.spaces import default_schedule


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
        if not _holds_trace(database, workload, sch.trace):
            pending.append((context, workload, sch))
    if not pending:
        return 0
    built = builder.build([ms.builder.BuilderInput(sch.mod, context.target) for context, _, sch in pending])
    runs = []
    for (context, workload, sch), result in zip(pending, built):
        if result.error_msg is not None:
            log.warning("the default schedule of %s did not build: %s", context.task_name, result.error_msg)
            continue
        args_info = ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
        runs.append((context, workload, sch, args_info, result.artifact_path))
    futures = runner.run(
        [ms.runner.RunnerInput(path, _device(context.target), args) for context, _, _, args, path in runs]
    )
    measured = 0
    for (context, workload, sch, args_info, path), future in zip(runs, futures):
        result = future.result()
        shutil.rmtree(Path(path).parent, ignore_errors=True)
        if result.error_msg is not None:
            log.warning("the default schedule of %s did not run: %s", context.task_name, result.error_msg)
            continue
        record = ms.database.TuningRecord(sch.trace, workload, result.run_secs, context.target, args_info)
        database.commit_tuning_record(record)
        log.info("tuning: %s default schedule %.1f us", context.task_name, mean_latency_us(record))
        measured += 1
    return measured


def _device(target: tvm.target.Target) -> str:
    """The runner's name for the target's device ("cpu", "cuda")."""
    return tvm.runtime.device(target.get_target_device_type()).type


def _holds_trace(database: TuningLog, workload: ms.database.Workload, trace: tvm.s_tir.schedule.Trace) -> bool:
    """Whether the log already measured this very schedule of the workload (a resumed run)."""
    text, records = str(trace), len(database)
    return records > 0 and any(str(record.trace) == text for record in database.get_top_k(workload, records))
