"""What tuning works on: the tuning target and the model's kernels (MetaSchedule tasks)."""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from tvmq.target import TargetPreset, available_cores


def tuning_target(preset: TargetPreset, num_cores: int | None = None) -> tvm.target.Target:
    """The preset's target with the core count MetaSchedule schedules for (this machine's,
    unless given). Records are matched on the rest of the target (see log.target_key)."""
    target = dict(preset.target)
    if preset.kind == "llvm":
        target["num-cores"] = int(num_cores or target.get("num-cores") or available_cores())
    return tvm.target.Target(target)


def extract_tasks(mod: tvm.IRModule, target: tvm.target.Target) -> list[ms.ExtractedTask]:
    """The fused kernels of `mod` as MetaSchedule tasks, each weighted by how often it runs.
    The module is legalized first: extract_tasks finds nothing in high-level Relax."""
    with target:
        passes = relax.pipeline.library_dispatch_passes(target) + relax.pipeline.legalize_passes(target)
        legalized = tvm.ir.transform.Sequential(passes)(mod)
    return list(ms.relax_integration.extract_tasks(legalized, target))


@dataclass(frozen=True)
class TaskCoverage:
    """Which of a model's kernels a tuning log covers."""

    tuned: tuple[str, ...]
    untuned: tuple[str, ...]

    def describe(self) -> str:
        total = len(self.tuned) + len(self.untuned)
        text = f"the tuning log covers {len(self.tuned)} of {total} kernels"
        return text + (f"; untuned (default code): {', '.join(self.untuned)}" if self.untuned else "")

    def to_json(self) -> dict:
        return {"tuned": list(self.tuned), "untuned": list(self.untuned)}


def coverage(tasks: list[ms.ExtractedTask], database, target: tvm.target.Target) -> TaskCoverage:
    tuned, untuned = [], []
    for task in tasks:
        record = database.query_tuning_record(task.dispatched[0], target, task.task_name)
        (tuned if record is not None else untuned).append(task.task_name)
    return TaskCoverage(tuple(tuned), tuple(untuned))
