"""Where a build can run: this machine's CPU or GPU, and why a target's builds cannot run here."""

from __future__ import annotations

from pathlib import Path

from tvmq.target import TargetPreset, cpu_flags, this_machine


def cuda_device():
    """TVM's first CUDA device. A runtime-only TVM (`TVM_USE_RUNTIME_LIB=1`, what a deployment
    machine needs) does not load its CUDA library by itself, so load it first; without a GPU
    driver that fails quietly and the device does not exist."""
    import tvm
    from tvm.base import _LOADED_LIBS

    if "tvm_runtime_cuda" not in _LOADED_LIBS:
        from tvm_ffi.libinfo import load_lib_ctypes

        runtime_dir = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
        try:
            _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(
                package="tvm", target_name="tvm_runtime_cuda", extra_lib_paths=[runtime_dir], mode="RTLD_LOCAL"
            )
        except (OSError, RuntimeError):
            pass
    return tvm.cuda(0)


def device_for(preset: TargetPreset):
    """The TVM device a build for `preset` runs on here."""
    import tvm

    return cuda_device() if preset.kind == "cuda" else tvm.cpu(0)


def cannot_run_here(preset: TargetPreset) -> str | None:
    """Why a build for `preset` cannot run on this machine, or None if it can."""
    if preset.arch != this_machine():
        return f"target {preset.name} is {preset.arch}; this machine is {this_machine()}"
    if preset.kind == "cuda":
        return None if cuda_device().exist else f"target {preset.name} needs a CUDA GPU; none found"
    if preset.kind != "llvm":
        return f"target {preset.name} runs on {preset.kind} devices, which tvmq cannot run here"
    missing = [f for f in preset.cpu_features if f not in cpu_flags()]
    if missing and cpu_flags():
        return f"this CPU lacks {', '.join(missing)} needed by target {preset.name}"
    return None
