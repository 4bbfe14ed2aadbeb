"""CUDA packages carry compiled device code when nvcc is at hand.

TVM 0.27's CUDA codegen keeps the kernels as CUDA C source; the GPU machine then compiles them
when the library is first loaded (NVRTC through the cuda-bindings Python package, or nvcc),
which needs Python, those tools and time there. When nvcc is installed at build time, tvmq
compiles the source into a fatbin for the target's arch (machine code for it plus PTX that
newer GPUs can JIT) and swaps it into the library in place of the source; the CUDA runtime
loads it directly (cuModuleLoadData), no compiler needed on the GPU machine.

The swap edits TVM's serialized module blob (runtime.ModulePackImportsToTensor) and links it
through export_library's `fpack_imports` hook. The blob is, with u64 little-endian lengths:
    u64 size | vector<u64> import_tree_row_ptr | vector<u64> child_indices
    | per module: str kind [str payload unless kind == "_lib"]
and a CUDA module's payload is: str format | function table | str code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from tvmq.errors import BuildError
from tvmq.progress import step
from tvmq.target import TargetPreset

CUDA_KIND = "cuda"


@dataclass(frozen=True)
class DeviceCode:
    """The device code a CUDA package carries."""

    format: str  # "fatbin", or "cuda" (source, compiled on first load)
    arch: str
    binary: bytes | None = None
    compiler: str | None = None  # e.g. "nvcc 13.0"
    note: str = ""

    def to_json(self) -> dict:
        record = {"format": self.format, "arch": self.arch, "compiler": self.compiler, "note": self.note}
        if self.binary is not None:
            record |= {"bytes": len(self.binary), "sha256": hashlib.sha256(self.binary).hexdigest()}
        return record


def cuda_source(executable) -> str:
    """The CUDA C source of a compiled executable's kernels."""
    modules = [executable.mod]
    while modules:
        module = modules.pop()
        if module.kind == CUDA_KIND:
            return module.inspect_source("")
        modules.extend(module.imports)
    raise BuildError("the CUDA build holds no CUDA module")


def nvcc_version(nvcc: str) -> str:
    output = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    release = [line for line in output.splitlines() if "release" in line]
    return release[0].split("release")[1].split(",")[0].strip() if release else "unknown"


def compile_device_code(executable, preset: TargetPreset) -> DeviceCode:
    """A fatbin of the executable's kernels for the preset's arch, made with the nvcc on PATH;
    without nvcc, a record that the source will be compiled on first load."""
    from tvm.support import nvcc as tvm_nvcc

    arch = preset.target.get("arch", "")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        note = "nvcc not found at build time: the kernels are compiled when the package is first loaded"
        return DeviceCode(CUDA_KIND, arch, note=note + " (needs cuda-bindings or nvcc on the GPU machine)")
    number = arch.removeprefix("sm_")
    gencode = ["-gencode", f"arch=compute_{number},code=[sm_{number},compute_{number}]"]
    # TVM's own nvcc driver and flags: the code is what TVM would compile on first load.
    with step(f"compiling the CUDA kernels for {arch} with {nvcc}"), preset.tvm_target():
        try:
            binary = bytes(tvm_nvcc.compile_cuda(cuda_source(executable), "fatbin", arch=gencode, compiler="nvcc"))
        except Exception as err:
            raise BuildError(f"nvcc failed on the CUDA kernels for {arch}: {str(err)[-1500:]}") from None
    return DeviceCode("fatbin", arch, binary, f"nvcc {nvcc_version(nvcc)}", "compiled at build time")


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def u64(self) -> int:
        value = int.from_bytes(self.data[self.at : self.at + 8], "little")
        self.at += 8
        return value

    def raw(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise BuildError("the serialized TVM module is truncated; cannot embed CUDA device code")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def string(self) -> bytes:
        return self.raw(self.u64())


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(8, "little") + value


def _swap_cuda_payload(payload: bytes, source: bytes, code: DeviceCode) -> bytes:
    """The CUDA module payload with its source replaced by the compiled binary."""
    head, tail = _string(CUDA_KIND.encode()), _string(source)
    if not (payload.startswith(head) and payload.endswith(tail)):
        raise BuildError("the CUDA module is not stored as source the way TVM 0.27 stores it; cannot embed a fatbin")
    function_table = payload[len(head) : len(payload) - len(tail)]
    return _string(code.format.encode()) + function_table + _string(code.binary)


def embed_device_code(blob: bytes, source: str, code: DeviceCode) -> bytes:
    """The packed-imports blob with every CUDA module's `source` replaced by `code`."""
    reader = _Reader(blob)
    reader.u64()  # the blob's size, recomputed below
    rows = [reader.u64() for _ in range(reader.u64())]
    children = [reader.u64() for _ in range(reader.u64())]
    body = [_vector(rows), _vector(children)]
    swapped = 0
    for _ in range(len(rows) - 1):
        kind = reader.string()
        body.append(_string(kind))
        if kind == b"_lib":
            continue
        payload = reader.string()
        if kind == CUDA_KIND.encode():
            payload = _swap_cuda_payload(payload, source.encode(), code)
            swapped += 1
        body.append(_string(payload))
    if reader.at != len(blob) or swapped == 0:
        raise BuildError("unexpected layout of the serialized TVM module; cannot embed CUDA device code")
    content = b"".join(body)
    return len(content).to_bytes(8, "little") + content


def _vector(values: list[int]) -> bytes:
    return len(values).to_bytes(8, "little") + b"".join(v.to_bytes(8, "little") for v in values)


def pack_imports_with(code: DeviceCode, source: str, preset: TargetPreset):
    """An export_library `fpack_imports` hook that packs the imported modules with the CUDA
    source swapped for `code`, as an object file for the preset's host."""
    import tvm

    host = preset.target.get("host", {"kind": "llvm"})

    def pack(module, is_system_lib: bool, symbol_prefix: str, workspace_dir: str) -> str:
        blob = tvm.get_global_func("runtime.ModulePackImportsToTensor")(module).numpy().tobytes()
        packed = embed_device_code(blob, source, code)
        llvm_module = tvm.get_global_func("codegen.codegen_blob")(
            packed, is_system_lib, json.dumps(host), symbol_prefix
        )
        path = os.path.join(workspace_dir, f"{symbol_prefix}devc.o")
        llvm_module.write_to_file(path)
        return path

    return pack
