"""Target presets: named, reviewed TVM target configurations for the hardware tvmq deploys to.

A preset is a small JSON file (see targets/): the TVM target dict, the C++ compiler that links
the library (a cross compiler for ARM), the CPU features a machine needs to run the build, and
what cross-compiling needs installed. `host` is filled in from this machine's CPU when used.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tvmq.errors import TargetError
from tvmq.resources import presets_dir

_MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class TargetPreset:
    """A TVM target plus what it takes to build for it and run its builds."""

    name: str
    description: str
    target: Mapping  # a TVM target dict, e.g. {"kind": "llvm", "mcpu": "haswell"}
    compiler: str | None = None  # C++ compiler that links the library; None: TVM's default
    cpu_features: tuple[str, ...] = ()  # /proc/cpuinfo flags a CPU needs to run the build
    setup: str = ""  # what building or running for this target needs installed
    source: str = "inline"  # the preset file, or "inline"

    @property
    def kind(self) -> str:
        return self.target["kind"]

    @property
    def arch(self) -> str:
        """The CPU architecture the library's host code is built for (x86_64, aarch64, ...)."""
        host = self.target.get("host", self.target) if self.kind != "llvm" else self.target
        triple = host.get("mtriple") if isinstance(host, Mapping) else None
        return triple.split("-")[0] if triple else this_machine()

    def tvm_target(self):
        import tvm

        return tvm.target.Target(dict(self.target))

    def to_json(self) -> dict:
        """What a package records of its target (enough to tell where it can run)."""
        return {
            "name": self.name,
            "description": self.description,
            "target": dict(self.target),
            "compiler": self.compiler,
            "cpu_features": list(self.cpu_features),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> TargetPreset:
        """The preset recorded in a package's metadata (trusted: not re-validated)."""
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            target=data["target"],
            compiler=data.get("compiler"),
            cpu_features=tuple(data.get("cpu_features", ())),
            source="package",
        )


# The int8 dot-product instructions tvmq's int8 kernels are built on, best first (LLVM feature
# names). x86, u8 x s8: vpdpbusd sums four products straight into int32; vpmaddubsw (AVX-512BW
# and AVX2, followed by vpmaddwd) first sums pairs of them into int16, saturating. ARM, s8 x s8:
# sdot (+dotprod) sums four into int32; plain NEON multiplies into int16 (smull) and adds pairs
# into int32 (saddlp), exactly.
INT8_DOT_ISAS = {"x86": ("avx512vnni", "avx512bw", "avx2"), "aarch64": ("dotprod", "neon")}
SATURATING_INT8_DOT_ISAS = ("avx512bw", "avx2")


def _target_arch(target) -> str | None:
    """x86 or aarch64 for an LLVM CPU target (no mtriple: this machine), else None."""
    if target.kind.name != "llvm":
        return None
    triple = str(target.attrs.get("mtriple", "")) or this_machine()
    return next((arch for arch in INT8_DOT_ISAS if arch in triple), None)


def int8_dot_isa(target) -> str | None:
    """Which of INT8_DOT_ISAS tvmq's int8 kernels use on a TVM target, or None."""
    from tvm.target.codegen import target_has_features

    isas = INT8_DOT_ISAS.get(_target_arch(target), ())
    return next((isa for isa in isas if target_has_features(isa, target)), None)


# Float vector registers: (LLVM feature, float32 lanes, registers), widest first.
FLOAT_VECTOR_ISAS = {"x86": (("avx512f", 16, 32), ("avx2", 8, 16)), "aarch64": (("neon", 4, 32),)}


def float_vectors(target) -> tuple[int, int] | None:
    """(float32 lanes a vector register holds, how many registers) on a TVM CPU target, or None
    (no vector unit tvmq schedules for)."""
    from tvm.target.codegen import target_has_features

    for feature, lanes, registers in FLOAT_VECTOR_ISAS.get(_target_arch(target), ()):
        if target_has_features(feature, target):
            return lanes, registers
    return None


def int8_activation_dtype(target) -> str:
    """The activation dtype of int8 models for a TVM target: ARM's dot products take two signed
    operands (int8), x86's an unsigned and a signed one (uint8)."""
    return "int8" if _target_arch(target) == "aarch64" else "uint8"


def int8_weights_need_7_bits(target) -> bool:
    """Whether int8 models for a TVM target keep their weights within 7 bits: its int8 kernels
    use vpmaddubsw, whose int16 pair sums 8-bit weights can overflow (see
    tvmq.kernels.intrinsics); with VNNI they cannot."""
    return int8_dot_isa(target) in SATURATING_INT8_DOT_ISAS


def this_machine() -> str:
    machine = platform.machine().lower()
    return _MACHINE_ALIASES.get(machine, machine)


@cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


# ISA extensions that code compiled for this CPU may use: a host build records those present,
# so that a package moved to a machine without them is refused instead of crashing.
_ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512dq",
    "avx512vl",
    "avx512cd",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
)


def available_cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _detect_host(preset: TargetPreset) -> TargetPreset:
    from tvm.target import codegen

    target = {**preset.target, "mcpu": codegen.llvm_get_system_cpu(), "num-cores": available_cores()}
    return TargetPreset(
        name=preset.name,
        description=f"{preset.description}: {target['mcpu']}, {target['num-cores']} cores",
        target=target,
        cpu_features=tuple(f for f in _ISA_FLAGS if f in cpu_flags()),
        setup=preset.setup,
        source=preset.source,
    )


def _validate_target_dict(target, where: str) -> None:
    import tvm

    if not isinstance(target, Mapping) or "kind" not in target:
        raise TargetError(f"{where}: a target must be a JSON object with a 'kind', got {target!r}")
    try:
        tvm.target.Target(dict(target))
    except Exception as err:
        raise TargetError(f"{where}: TVM rejects the target {json.dumps(target)}: {err}") from None


def _preset_from_json(name: str, data, where: str) -> TargetPreset:
    """A preset from a preset file's content, or from a bare TVM target dict."""
    if not isinstance(data, Mapping):
        raise TargetError(f"{where}: expected a JSON object")
    if "target" not in data:  # a bare TVM target dict
        data = {"target": data, "description": f"custom target {json.dumps(data)}"}
    unknown = set(data) - {"target", "description", "compiler", "cpu_features", "setup", "detect_host"}
    if unknown:
        raise TargetError(f"{where}: unknown preset field(s) {', '.join(sorted(unknown))}")
    _validate_target_dict(data["target"], where)
    preset = TargetPreset(
        name=name,
        description=data.get("description", ""),
        target=data["target"],
        compiler=data.get("compiler"),
        cpu_features=tuple(data.get("cpu_features", ())),
        setup=data.get("setup", ""),
        source=where,
    )
    return _detect_host(preset) if data.get("detect_host") else preset


def _read_preset_file(path: Path) -> TargetPreset:
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise TargetError(f"cannot read target preset {path}: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise TargetError(f"target preset {path} is not valid JSON: {err}") from None
    return _preset_from_json(path.stem, data, str(path))


def _preset_files(search_dirs: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """Preset files by name; user directories (earlier first) shadow the built-in presets."""
    files = {}
    for directory in [presets_dir(), *reversed([Path(d) for d in search_dirs])]:
        for path in sorted(directory.glob("*.json")):
            files[path.stem] = path
    return files


def list_presets(search_dirs: Iterable[str | os.PathLike] = ()) -> list[TargetPreset]:
    """All presets, built-in and from `search_dirs`, sorted by name."""
    return [_read_preset_file(path) for _, path in sorted(_preset_files(search_dirs).items())]


def load_target(spec, search_dirs: Iterable[str | os.PathLike] = ()) -> TargetPreset:
    """A preset from a name (`x86-avx2`), a preset/target JSON file, a JSON string or a dict."""
    if isinstance(spec, TargetPreset):
        return spec
    if isinstance(spec, Mapping):
        return _preset_from_json("custom", dict(spec), "target dict")
    spec = str(spec)
    if spec.lstrip().startswith("{"):
        try:
            data = json.loads(spec)
        except json.JSONDecodeError as err:
            raise TargetError(f"target {spec!r} is not valid JSON: {err}") from None
        return _preset_from_json("custom", data, "target JSON")
    if spec.endswith(".json") or os.sep in spec:
        return _read_preset_file(Path(spec))
    files = _preset_files(search_dirs)
    if spec not in files:
        raise TargetError(f"unknown target {spec!r}; known targets: {', '.join(sorted(files))}")
    return _read_preset_file(files[spec])


def check_compiler(preset: TargetPreset) -> None:
    """Raise TargetError if the preset's compiler is not installed, saying what to install."""
    if preset.compiler and shutil.which(preset.compiler) is None:
        hint = f" ({preset.setup})" if preset.setup else ""
        raise TargetError(f"target {preset.name} needs the compiler {preset.compiler}, not found{hint}")
