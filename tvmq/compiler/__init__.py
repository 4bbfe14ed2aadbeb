"""Compiler: compile an imported model for a target and write a deployable package directory.

A package is a directory holding the shared library (`model.so`, cross-compiled for ARM
targets) and `metadata.json`: the signature, the target, tool versions, the quantization and
tuning settings used, and the library's sha256, which the runtime checks before loading. CPU
packages also carry `runner/`, the C++ runner's source and build recipe for running the model
where there is no Python (an ARM board).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
from pathlib import Path

import tvmq
from tvmq.codegen.lower import lower_for_target
from tvmq.codegen.pipeline import build_executable, build_tuned_executable
from tvmq.compiler.cuda import CUDA_KIND, compile_device_code, cuda_source, pack_imports_with
from tvmq.compiler.package import export_library, write_package_atomically
from tvmq.frontend import ImportedModel
from tvmq.metadata import LIBRARY_FILE, LibraryInfo, PackageMetadata, file_sha256
from tvmq.progress import step
from tvmq.quantize import for_codegen, has_qdq
from tvmq.quantize.fp16 import is_fp16
from tvmq.runtime.cpp_runner import copy_runner_source
from tvmq.runtime.devices import cannot_run_here, device_for
from tvmq.runtime.package import flatten_outputs
from tvmq.target import TargetPreset, check_compiler, load_target

__all__ = ["codegen_module", "compile_model"]

RUNNER_DIR = "runner"  # the C++ runner's source and build recipe, in CPU packages


def codegen_module(mod, preset: TargetPreset, simulate: bool = False):
    """The module code is generated from for `preset`: a quantized `mod` realized into integer
    operators (unless `simulate`), then lowered for the target (tvmq.codegen.lower). Tuning and
    compiling both start here, so that the kernels tuned are exactly the kernels built."""
    return lower_for_target(for_codegen(mod, simulate), preset)


def tool_versions() -> dict:
    return {
        "tvmq": tvmq.__version__,
        "tvm": importlib.metadata.version("apache-tvm"),
        "tvm_ffi": importlib.metadata.version("apache-tvm-ffi"),
    }


def _quantization_record(model: ImportedModel, quantized: bool, simulate: bool) -> dict | None:
    """What the package records of its quantization (None for a float model)."""
    if is_fp16(model.quantization):
        return dict(model.quantization)
    if not quantized:
        return None
    record = dict(model.quantization or {"source": "pre-quantized (QDQ) model"})
    record["mode"] = "simulated" if simulate else "int8"
    return record


def _compiled_output_error(library: Path, preset: TargetPreset, model: ImportedModel) -> dict:
    """The error report's output figures for the compiled library: its outputs against the
    float model's on the calibration samples kept for it, or why they were not measured."""
    import tvm
    from tvm.runtime.vm import VirtualMachine

    reason = cannot_run_here(preset)
    if reason:
        return {"outputs_not_measured": reason}
    device = device_for(preset)
    vm = VirtualMachine(tvm.runtime.load_module(str(library)), device)

    def run(batch):
        return flatten_outputs(vm["main"](*[tvm.runtime.tensor(batch[spec.name], device) for spec in model.inputs]))

    with step(f"measuring the compiled model's error on {model.error_probe.samples} calibration samples"):
        return {"outputs": model.error_probe.measure(run), "outputs_of": "compiled model"}


def compile_model(
    model: ImportedModel,
    target: TargetPreset | str | dict,
    output_dir: str | os.PathLike,
    simulate: bool = False,
    tuning_log: str | os.PathLike | None = None,
) -> PackageMetadata:
    """Compile `model` for `target` (a preset, its name, or a TVM target dict) into a package
    directory at `output_dir`, replacing a previous package there only on success.

    A quantized model (from tvmq.quantize or a pre-quantized QDQ model) is realized into
    integer operators, unless `simulate` keeps it as fake-quant float code for debugging.
    With `tuning_log` (a folder written by `tvmq tune` for this target), the tuned kernels
    replace the default ones; kernels the log lacks keep default code."""
    preset = load_target(target)
    check_compiler(preset)
    quantized = has_qdq(model.mod)
    with step("realizing integer operators" if quantized and not simulate else "preparing the model"):
        mod = codegen_module(model.mod, preset, simulate)
    tuning = None
    schedules: dict = {}
    if tuning_log is None:
        executable = build_executable(mod, preset, schedules=schedules)
    else:
        executable, covered = build_tuned_executable(mod, preset, Path(tuning_log), schedules=schedules)
        tuning = {"log": str(tuning_log), **covered.to_json()}

    device_code = compile_device_code(executable, preset) if preset.kind == CUDA_KIND else None
    pack_imports = None
    if device_code is not None and device_code.binary is not None:
        pack_imports = pack_imports_with(device_code, cuda_source(executable), preset)

    def fill(staging: Path) -> dict:
        library = staging / LIBRARY_FILE
        export_library(executable, library, preset, pack_imports)
        if preset.kind == "llvm":  # CPU packages run without Python too
            copy_runner_source(staging / RUNNER_DIR)
        quantization = _quantization_record(model, quantized, simulate)
        if quantization is not None and quantization.get("error") and model.error_probe is not None:
            quantization["error"] = quantization["error"] | _compiled_output_error(library, preset, model)
        metadata = PackageMetadata(
            inputs=model.inputs,
            outputs=model.outputs,
            target=preset.to_json(),
            model=model.source.to_json(),
            versions=tool_versions(),
            library=LibraryInfo(LIBRARY_FILE, file_sha256(library), library.stat().st_size),
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            quantization=quantization,
            tuning=tuning,
            device_code=device_code.to_json() if device_code else None,
            kernels=dict(sorted(schedules.items())),
        )
        return metadata.to_json()

    return PackageMetadata.from_json(write_package_atomically(Path(output_dir), fill), str(output_dir))
