"""Relax module -> executable -> shared library for one target."""

from __future__ import annotations

from pathlib import Path

from tvmq.errors import BuildError
from tvmq.progress import step
from tvmq.target import TargetPreset, check_compiler


def build_executable(mod, preset: TargetPreset):
    """Compile a Relax module for the preset's target with TVM's default pipeline."""
    import tvm

    with step(f"compiling for {preset.name}"):
        try:
            return tvm.compile(mod, target=preset.tvm_target())
        except Exception as err:
            raise BuildError(f"compiling for {preset.name} failed: {type(err).__name__}: {err}") from err


def build_tuned_executable(mod, preset: TargetPreset, log_dir: Path, num_cores: int | None = None):
    """Compile with the kernels a tuning log holds for this target (no tuning happens);
    returns the executable and which kernels the log covered."""
    from tvm.s_tir import meta_schedule as ms

    from tvmq.tune.log import TuningLog
    from tvmq.tune.tasks import coverage, extract_tasks, tuning_target

    if not Path(log_dir).is_dir():
        raise BuildError(f"tuning log {log_dir} does not exist")
    target = tuning_target(preset, num_cores)
    database = TuningLog(log_dir, target)
    covered = coverage(extract_tasks(mod, target), database, target)
    with step(f"compiling for {preset.name} with tuned kernels ({covered.describe()})"):
        try:
            return ms.relax_integration.compile_relax(database, mod, target, params=None), covered
        except Exception as err:
            raise BuildError(f"compiling for {preset.name} failed: {type(err).__name__}: {err}") from err


def export_library(executable, path: Path, preset: TargetPreset, pack_imports=None) -> None:
    """Write the executable as a shared library, linked by the preset's (cross) compiler;
    `pack_imports` replaces TVM's packing of device modules (see tvmq.build.cuda)."""
    import tvm.support.cc

    check_compiler(preset)
    fcompile = tvm.support.cc.cross_compiler(preset.compiler) if preset.compiler else None
    with step(f"linking {path.name}" + (f" with {preset.compiler}" if preset.compiler else "")):
        try:
            # -s: no symbol tables or debug info in a deployable library (a fifth of it here).
            extra = {"fpack_imports": pack_imports} if pack_imports else {}
            executable.export_library(str(path), fcompile=fcompile, options=["-s"], **extra)
        except Exception as err:
            raise BuildError(f"exporting the library for {preset.name} failed: {err}") from err
