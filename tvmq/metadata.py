"""The metadata file of a deployable package: what the library computes, for which target, how
it was built, and the library's checksum. Written by tvmq.compiler, read by tvmq.runtime."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tvmq.errors import PackageError
from tvmq.tensors import TensorSpec

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
LIBRARY_FILE = "model.so"


@dataclass(frozen=True)
class LibraryInfo:
    file: str
    sha256: str
    size_bytes: int

    def to_json(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class PackageMetadata:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    target: dict  # TargetPreset.to_json()
    model: dict  # ModelSource.to_json()
    versions: dict  # tvmq, tvm, tvm_ffi
    library: LibraryInfo
    created: str  # ISO 8601, UTC
    quantization: dict | None = None  # the quantization settings used; None: float
    tuning: dict | None = None  # the tuning log applied; None: untuned
    device_code: dict | None = None  # CUDA: DeviceCode.to_json() (fatbin, or source); None: CPU
    kernels: dict | None = None  # kernel name -> where its schedule came from (tvmq profile shows it)

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
            "target": self.target,
            "model": self.model,
            "versions": self.versions,
            "quantization": self.quantization,
            "tuning": self.tuning,
            "device_code": self.device_code,
            "kernels": self.kernels,
            "library": self.library.to_json(),
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: dict, where: str) -> PackageMetadata:
        if data.get("format_version") != FORMAT_VERSION:
            raise PackageError(
                f"{where}: package format {data.get('format_version')!r} is not supported "
                f"(this tvmq reads format {FORMAT_VERSION}); rebuild the package"
            )
        try:
            return cls(
                inputs=tuple(TensorSpec.from_json(s) for s in data["inputs"]),
                outputs=tuple(TensorSpec.from_json(s) for s in data["outputs"]),
                target=data["target"],
                model=data["model"],
                versions=data["versions"],
                library=LibraryInfo(**data["library"]),
                created=data["created"],
                quantization=data.get("quantization"),
                tuning=data.get("tuning"),
                device_code=data.get("device_code"),
                kernels=data.get("kernels"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise PackageError(f"{where}: malformed package metadata ({type(err).__name__}: {err})") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(package_dir: str | Path) -> PackageMetadata:
    """The metadata of the package in `package_dir`; PackageError if it is not a package."""
    path = Path(package_dir) / METADATA_FILE
    if not Path(package_dir).is_dir():
        raise PackageError(f"{package_dir} is not a tvmq package: no such directory")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PackageError(f"{package_dir} is not a tvmq package: {METADATA_FILE} is missing") from None
    except (OSError, json.JSONDecodeError) as err:
        raise PackageError(f"cannot read {path}: {err}") from None
    return PackageMetadata.from_json(data, str(path))
