"""The tuning loop: MetaSchedule's evolutionary search with the XGBoost cost model over a
model's kernels, trials spread by the gradient task scheduler where the model spends time,
every measurement appended to the target's tuning log."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from tvmq.compiler import codegen_module
from tvmq.frontend.imported import ImportedModel
from tvmq.kernels.intrinsics import weights_within_7_bits
from tvmq.kernels.log import TuningLog, mean_latency_us
from tvmq.kernels.spaces import tune_contexts
from tvmq.kernels.tasks import extract_tasks, tuning_target
from tvmq.progress import log, step
from tvmq.target import TargetPreset, available_cores, load_target
from tvmq.tune.builder import local_builder
from tvmq.tune.measure import measure_default_schedules, remeasure_finalists
from tvmq.tune.tvm_intrinsics import import_tensor_intrinsics


@dataclass(frozen=True)
class TaskResult:
    name: str
    weight: float  # how many times the model runs this kernel
    best_us: float | None  # the best latency the log holds for it


@dataclass(frozen=True)
class TuneResult:
    log_dir: Path
    target: str
    trials: int  # candidates measured in this run (default schedules and search)
    remeasured: int  # finalists measured again at the end
    seconds: float
    tasks: tuple[TaskResult, ...]

    @property
    def estimated_latency_ms(self) -> float | None:
        """Sum over kernels of weight x best latency (untuned kernels make it unknown)."""
        if any(task.best_us is None for task in self.tasks):
            return None
        return sum(task.weight * task.best_us for task in self.tasks) / 1e3

    @property
    def trials_per_minute(self) -> float:
        return 60 * self.trials / self.seconds if self.seconds else 0.0


@derived_object
class _Progress(ms.measure_callback.PyMeasureCallback):
    """Logs trials done and each kernel's best latency after every measured batch, and ends
    the search once the time budget is spent."""

    def __init__(self, names: list[str], weights: list[float], total: int, deadline: float | None):
        super().__init__()
        self.names, self.weights, self.total, self.deadline = names, weights, total, deadline
        self.trials, self.budget_spent = 0, False
        self.best_us: list[float | None] = [None] * len(names)

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        self.trials += len(runner_results)
        for result in runner_results:
            if result.error_msg is None and result.run_secs:
                us = 1e6 * sum(float(s) for s in result.run_secs) / len(result.run_secs)
                best = self.best_us[task_id]
                self.best_us[task_id] = us if best is None else min(best, us)
        known = [w * b for w, b in zip(self.weights, self.best_us) if b is not None]
        estimate = f"{sum(known) / 1e3:.3f} ms" if len(known) == len(self.weights) else "pending"
        best = self.best_us[task_id]
        log.info(
            "tuning: %d/%d trials; %s best %s; estimated model latency %s",
            self.trials,
            self.total,
            self.names[task_id],
            f"{best:.1f} us" if best else "none yet",
            estimate,
        )
        if (
            self.deadline is not None
            and time.monotonic() > self.deadline
            and not _others_pending(task_scheduler, task_id)
        ):
            # Raising is the one way out: MetaSchedule's scheduler fails a check on the task it
            # continues with if tasks are terminated from a callback. Waiting for the other
            # kernels' measured batches first (after the first round all of them arrive in a
            # row) keeps that work; everything measured is in the log by now.
            log.info("tuning: time budget spent, stopping")
            self.budget_spent = True
            raise RuntimeError("tuning time budget spent")


def _others_pending(task_scheduler, task_id: int) -> bool:
    """Whether kernels other than `task_id` have candidates out being measured."""
    return any(
        task.measure_candidates is not None for index, task in enumerate(task_scheduler.tasks_) if index != task_id
    )


def batch_size(trials: int, kernels: int) -> int:
    """Candidates measured per kernel per round. MetaSchedule's first round gives every kernel
    one batch before any result comes back (nothing reaches the log or the progress until that
    round ends), and later rounds go where the model spends time once the cost model has
    learned something; so the first round takes about a third of the budget."""
    return max(1, min(64, trials // (3 * kernels)))


@contextlib.contextmanager
def quiet_meta_schedule():
    """MetaSchedule's own logging, for the duration of a run: its per-task tables kept off the
    console (tvmq reports progress itself), and handlers without a name (pytest's, a user's)
    set aside, since MetaSchedule's logging setup fails on them."""
    from tvm.s_tir.meta_schedule import logging as ms_logging

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    level, unnamed = logger.level, [h for h in logger.handlers if h.get_name() is None]
    create_loggers = ms_logging.create_loggers

    def create_quiet_loggers(*args, **kwargs):
        # Each setup gives its console handler the logger's level, then sets the logger to
        # DEBUG: without this, every setup after the first printed INFO lines.
        logger.setLevel(logging.WARNING)
        return create_loggers(*args, **kwargs)

    ms_logging.create_loggers = create_quiet_loggers
    for handler in unnamed:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        ms_logging.create_loggers = create_loggers
        logger.setLevel(level)
        for handler in unnamed:
            logger.addHandler(handler)


def tune_model(
    model: ImportedModel,
    target: TargetPreset | str | dict,
    log_dir: str | os.PathLike,
    trials: int,
    time_budget_minutes: float | None = None,
    num_cores: int | None = None,
    runner: ms.runner.Runner | None = None,
    seed: int = 0,
) -> TuneResult:
    """Tune `model`'s kernels for `target` with at most `trials` measurements (and within
    `time_budget_minutes`), adding to the tuning log in `log_dir`, whose records also seed the
    search. The default schedules are measured first, within the trials, and the best
    schedules again at the end (tvmq.tune.measure). `runner` measures candidates elsewhere
    (RPC); by default on this machine."""
    if trials < 1:
        raise ValueError(f"the number of trials must be positive, got {trials}")
    preset = load_target(target)
    target = tuning_target(preset, num_cores)
    with step("extracting the kernels to tune"):
        mod = codegen_module(model.mod, preset)
        tasks = extract_tasks(mod, target)
    weights_7_bit = weights_within_7_bits(mod)
    database = TuningLog(log_dir, target, weights_7_bit)
    start = time.monotonic()
    deadline = start + 60 * time_budget_minutes if time_budget_minutes else None
    progress = _Progress([t.task_name for t in tasks], [float(t.weight) for t in tasks], trials, deadline)
    import_tensor_intrinsics()
    with tempfile.TemporaryDirectory(prefix="tvmq-tune-") as work_dir, quiet_meta_schedule():
        contexts, weights = tune_contexts(
            tasks, work_dir, num_threads=available_cores(), seed=seed, weights_7_bit=weights_7_bit
        )
        builder = local_builder(max_workers=available_cores(), compiler=preset.compiler)
        runner = runner or ms.runner.LocalRunner()
        progress.trials = measure_default_schedules(contexts, builder, runner, database)
        progress.best_us = [_best_us(database, task) for task in tasks]
        search_trials = trials - progress.trials
        try:
            if search_trials > 0:
                ms.tune.tune_tasks(
                    tasks=contexts,
                    task_weights=weights,
                    work_dir=work_dir,
                    max_trials_global=search_trials,
                    num_trials_per_iter=batch_size(search_trials, len(tasks)),
                    builder=builder,
                    runner=runner,
                    database=database,
                    cost_model=ms.cost_model.XGBModel(),
                    measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), progress],
                )
        except Exception:
            if not progress.budget_spent:  # the callback's own stop arrives as a generic error
                raise
        remeasured = remeasure_finalists(contexts, builder, runner, database)
    results = tuple(TaskResult(task.task_name, float(task.weight), _best_us(database, task)) for task in tasks)
    seconds = time.monotonic() - start
    return TuneResult(Path(log_dir), preset.name, progress.trials, remeasured, seconds, results)


def _best_us(database: TuningLog, task: ms.ExtractedTask) -> float | None:
    """The best latency the log holds for the task's kernel."""
    top = database.get_top_k(database.commit_workload(task.dispatched[0]), 1)
    return mean_latency_us(top[0]) if top else None
