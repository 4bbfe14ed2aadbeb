"""Relax module -> executable for one target: TVM's build pipeline with tvmq's kernels, the
default schedules (tvmq.kernels) or a tuning log's records."""

from __future__ import annotations

from pathlib import Path

import tvm

from tvmq.errors import BuildError
from tvmq.progress import log, step
from tvmq.target import TargetPreset


def build_executable(mod, preset: TargetPreset, warn_unscheduled: bool = True, schedules: dict | None = None):
    """Compile a Relax module for the preset's target with TVM's default pipeline, as tvmq
    varies it (see `_pipeline`); warning of the kernels left to TVM's serial loops unless
    `warn_unscheduled` is false (calibration's builds). `schedules`, when given, is filled with
    each kernel's name -> where its schedule came from (_schedule_census)."""
    from tvm import relax

    target = preset.tvm_target()
    with step(f"compiling for {preset.name}"):
        try:
            int8_intrin = _default_int8_intrin(mod, target)
            pipeline = _pipeline(target, False, int8_intrin, _schedule_census(schedules, warn_unscheduled))
            return relax.build(mod, target=target, relax_pipeline=pipeline)
        except Exception as err:
            raise BuildError(f"compiling for {preset.name} failed: {type(err).__name__}: {err}") from err


def build_tuned_executable(
    mod, preset: TargetPreset, log_dir: Path, num_cores: int | None = None, schedules: dict | None = None
):
    """Compile with the kernels a tuning log holds for this target (no tuning happens);
    returns the executable and which kernels the log covered. `schedules` as for
    build_executable."""
    import tvm
    from tvm import relax

    from tvmq.kernels.intrinsics import weights_within_7_bits
    from tvmq.kernels.log import TuningLog
    from tvmq.kernels.tasks import coverage, extract_tasks, tuning_target

    if not Path(log_dir).is_dir():
        raise BuildError(f"tuning log {log_dir} does not exist")
    target = tuning_target(preset, num_cores)
    database = TuningLog(log_dir, target, weights_within_7_bits(mod))
    if database.skipped_intrin:
        log.warning(
            "%d records of %s use int8 kernels built on vpmaddubsw, which need 7-bit weights "
            "(quantize with reduce_range); this model's weights use 8 bits, so those kernels are "
            "not applied",
            database.skipped_intrin,
            log_dir,
        )
    covered = coverage(extract_tasks(mod, target), database, target)
    int8_intrin = _default_int8_intrin(mod, target)
    with step(f"compiling for {preset.name} with tuned kernels ({covered.describe()})"):
        try:
            with target, database, tvm.transform.PassContext(opt_level=3):
                pipeline = _pipeline(target, True, int8_intrin, _schedule_census(schedules, warn=True))
                return relax.build(mod, target=target, relax_pipeline=pipeline), covered
        except Exception as err:
            raise BuildError(f"compiling for {preset.name} failed: {type(err).__name__}: {err}") from err


def _default_int8_intrin(mod, target):
    """The intrinsic the int8 kernels without a tuned schedule are built on, or None: the
    target has none, or only a vpmaddubsw one that the model's 8-bit weights would overflow."""
    from tvmq.kernels.intrinsics import intrin_for, weights_within_7_bits

    intrin = intrin_for(target)
    return None if intrin is None or (intrin.saturates and not weights_within_7_bits(mod)) else intrin


KERNELS_NAMED = 6  # unscheduled kernels the warning names; the rest it counts
TUNING_LOG = "tuning log"  # how a kernel whose schedule a tuning log's record gave is recorded
FALLBACK = "TVM fallback"  # how a kernel nothing scheduled is recorded (serial scalar loops)


def _schedule_census(schedules: dict | None, warn: bool):
    """A module pass recording into `schedules` (when given) where each kernel's schedule came
    from: a tuning log, a default schedule (its SCHEDULE_ATTR), or nowhere (FALLBACK); warning,
    if `warn`, naming the kernels that got nothing: they run TVM's serial scalar loops."""
    from tvmq.kernels.tiling import SCHEDULE_ATTR

    @tvm.transform.module_pass(opt_level=0, name="tvmq.ScheduleCensus")
    def census(mod, _ctx):
        found = {}
        for gv, func in mod.functions_items():
            if isinstance(func, tvm.tirx.PrimFunc):
                scheduled = func.attrs.get("tirx.is_scheduled", 0) == 1
                found[gv.name_hint] = str(func.attrs.get(SCHEDULE_ATTR, TUNING_LOG)) if scheduled else FALLBACK
        if schedules is not None:
            schedules.update(found)
        names = sorted(name for name, source in found.items() if source == FALLBACK)
        if warn and names:
            shown = ", ".join(names[:KERNELS_NAMED]) + (
                f" and {len(names) - KERNELS_NAMED} more" if len(names) > KERNELS_NAMED else ""
            )
            count = "1 kernel is" if len(names) == 1 else f"{len(names)} kernels are"
            log.warning("%s left to TVM's serial loops, no fast schedule (tvmq tune can fix that): %s", count, shown)
        return mod

    return census


def _pipeline(target, tuned: bool, int8_intrin, census):
    """TVM's backend pipeline for the target, with these changes. Tuned: the log's kernels are
    swapped in for the fused functions they tuned (before any default schedule, so the functions
    still match the tuned workloads). Int8 kernels left without a schedule are tiled around
    `int8_intrin` (tvmq.kernels.int8_schedule), float convolutions and matmuls on the CPU's
    vectors (tvmq.kernels.float_schedule), kernels without a reduction as one parallel,
    vectorized pass (tvmq.kernels.injective_schedule), other reductions (softmax, norms,
    pooling) by rows or by vectors of columns (tvmq.kernels.reduction_schedule). The weight
    packing that tuned and int8 kernels chose (layout-rewrite blocks) is split out and evaluated
    on the constant weights at compile time, so it never runs per inference. GPU: kernels the
    log lacks get dlight's default schedules through `default_gpu_schedule`, which survives the
    rules that fail on some kernels. Last, `census` records how each kernel was scheduled."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline
    from tvm.relax.backend.cuda import pipeline as cuda_pipeline

    from tvmq.codegen.fold import FoldConstantKernels
    from tvmq.kernels.float_schedule import default_float_schedule
    from tvmq.kernels.gpu_schedule import default_gpu_schedule
    from tvmq.kernels.injective_schedule import default_injective_schedule
    from tvmq.kernels.int8_schedule import default_int8_schedule, fold_padded_weight_packing
    from tvmq.kernels.reduction_schedule import default_reduction_schedule
    from tvmq.target import float_vectors

    gpu = target.kind.name == "cuda"  # tvmq's two target kinds: llvm and cuda
    pipeline = cuda_pipeline if gpu else cpu_pipeline
    fuse = [
        *pipeline.library_dispatch_passes(target),
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]
    if tuned:
        fuse.append(relax.transform.MetaScheduleApplyDatabase())
    if int8_intrin is not None:
        fuse.append(default_int8_schedule(int8_intrin))
    vectors = float_vectors(target)
    if vectors is not None:
        vector_bits = vectors[0] * 32
        fuse += [
            default_float_schedule(*vectors),
            default_injective_schedule(vector_bits),
            default_reduction_schedule(vector_bits),
        ]
    if tuned or int8_intrin is not None or vectors is not None:
        fuse += [
            fold_padded_weight_packing(),
            relax.transform.SplitLayoutRewritePreproc(),
            FoldConstantKernels(),
        ]
    if gpu:
        fuse.append(default_gpu_schedule())
    fuse.append(census)
    return tvm.transform.Sequential([*fuse, *pipeline.dataflow_lower_passes(target), *pipeline.finalize_passes(target)])
