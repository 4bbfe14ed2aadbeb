"""A package's latency for the report: measured here when this machine can run the package, or
read from a stored `tvmq bench --json` result (a package for a board is timed on the board)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tvmq.errors import InputError
from tvmq.metadata import PackageMetadata

STORED_FIELDS = ("median_ms", "min_ms", "max_ms", "threads", "repeat")


@dataclass(frozen=True)
class Latency:
    """One inference's latency over `repeat` measurements; `source` says where it comes from."""

    median_ms: float
    min_ms: float
    max_ms: float
    threads: int
    repeat: int
    source: str

    def to_json(self) -> dict:
        return dict(self.__dict__)


def measure_latency(package, repeat: int, threads: int | None) -> Latency:
    """Time `package` (a loaded tvmq.runtime.Package) on random inputs."""
    result = package.benchmark(repeat=repeat, threads=threads)
    return Latency(result.median_ms, result.min_ms, result.max_ms, result.threads, result.repeat, "measured here")


def read_stored_latency(path: str | Path, metadata: PackageMetadata) -> Latency:
    """The latency in a `tvmq bench --json` file, which must have timed a build for the same
    target as the package (the file carries no checksum, so the target is what can be checked)."""
    try:
        stored = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the benchmark result {path}: {err}") from None
    missing = [key for key in (*STORED_FIELDS, "target") if not isinstance(stored, dict) or key not in stored]
    if missing:
        raise InputError(f"{path} is not a `tvmq bench --json` result: it lacks {', '.join(missing)}")
    if stored["target"] != metadata.target["name"]:
        raise InputError(
            f"{path} timed a build for target {stored['target']!r}; the package is for {metadata.target['name']!r}"
        )
    return Latency(**{key: stored[key] for key in STORED_FIELDS}, source=f"stored in {path}")
