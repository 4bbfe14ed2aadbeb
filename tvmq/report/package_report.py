"""Everything `tvmq report` says about a package, gathered once: the text table, the JSON file
and the chart are three views of this one record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tvmq.errors import InputError
from tvmq.files import write_atomically
from tvmq.metadata import PackageMetadata, read_metadata
from tvmq.report.compare import (
    EvaluationInputs,
    check_same_signature,
    load_inputs,
    output_agreement,
    random_input_sets,
    run_all,
    top1_accuracy,
)
from tvmq.report.latency import Latency, measure_latency, read_stored_latency
from tvmq.runtime.devices import cannot_run_here
from tvmq.target import TargetPreset

JSON_FORMAT = "tvmq-report/1"
RANDOM_INPUT_SETS = 8


@dataclass(frozen=True)
class Measured:
    """What was measured of one package; a field is None where it could not be, and `skipped`
    says why."""

    path: Path
    metadata: PackageMetadata
    latency: Latency | None
    accuracy: float | None  # top-1 on the labelled inputs
    skipped: str | None

    def to_json(self) -> dict:
        return {
            "package": str(self.path),
            "model": self.metadata.model["source"],
            "target": self.metadata.target["name"],
            "library_bytes": self.metadata.library.size_bytes,
            "latency": None if self.latency is None else self.latency.to_json(),
            "top1_accuracy": self.accuracy,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class PackageReport:
    package: Measured
    baseline: Measured | None
    inputs: str | None = None  # what the packages ran on (None: they could not run here)
    samples: int = 0
    outputs: list[dict] | None = None  # output_agreement() with the baseline

    @property
    def quantization(self) -> dict | None:
        return self.package.metadata.quantization

    def to_json(self) -> dict:
        return {
            "format": JSON_FORMAT,
            **self.package.to_json(),
            "quantization": self.quantization,
            "tuning": self.package.metadata.tuning,
            "baseline": None if self.baseline is None else self.baseline.to_json(),
            "inputs": self.inputs,
            "samples": self.samples,
            "outputs_vs_baseline": self.outputs,
        }


def write_json(report: PackageReport, path: str | Path) -> None:
    text = json.dumps(report.to_json(), indent=2) + "\n"
    write_atomically(path, lambda f: f.write(text.encode()))


def build_report(
    package_dir: str | Path,
    baseline_dir: str | Path | None = None,
    inputs: str | Path | None = None,
    random_sets: int | None = None,
    repeat: int = 10,
    threads: int | None = None,
    stored_latency: str | Path | None = None,
) -> PackageReport:
    """Measure the package at `package_dir` (and the baseline package, if given) on this machine.

    Latency is timed here with `repeat` measurements on `threads` threads, unless
    `stored_latency` (a `tvmq bench --json` file) is given for the package. Outputs are compared
    with the baseline's on the samples in `inputs` (an .npz, see tvmq.report.compare) or on
    `random_sets` random input sets (default RANDOM_INPUT_SETS); labelled inputs also give
    top-1 accuracy. What this machine cannot run is reported as skipped with the reason.
    """
    package_dir = Path(package_dir)
    metadata = read_metadata(package_dir)
    baseline_metadata = None if baseline_dir is None else read_metadata(baseline_dir)
    stored = None if stored_latency is None else read_stored_latency(stored_latency, metadata)
    loaded = _load_if_runnable(package_dir, metadata)
    loaded_baseline = None if baseline_dir is None else _load_if_runnable(Path(baseline_dir), baseline_metadata)
    if loaded is not None and loaded_baseline is not None:
        check_same_signature(loaded, loaded_baseline)

    evaluation = _evaluation_inputs(loaded, inputs, random_sets)
    described = {} if evaluation is None else {"inputs": evaluation.description, "samples": evaluation.num_samples}
    outputs = _outputs(loaded, evaluation)
    package = _measure(package_dir, metadata, loaded, stored, evaluation, outputs, repeat, threads)
    if baseline_dir is None:
        return PackageReport(package, None, **described)
    baseline_outputs = _outputs(loaded_baseline, evaluation)
    baseline = _measure(
        Path(baseline_dir), baseline_metadata, loaded_baseline, None, evaluation, baseline_outputs, repeat, threads
    )
    compared = outputs is not None and baseline_outputs is not None
    agreement = output_agreement(outputs, baseline_outputs) if compared else None
    return PackageReport(package, baseline, **described, outputs=agreement)


def _load_if_runnable(path: Path, metadata: PackageMetadata):
    """The loaded package, or None where this machine cannot run its target (an ARM board's)."""
    from tvmq.runtime import load_package

    return None if _why_not_here(metadata) else load_package(path)


def _why_not_here(metadata: PackageMetadata) -> str | None:
    return cannot_run_here(TargetPreset.from_json(metadata.target))


def _evaluation_inputs(loaded, inputs: str | Path | None, random_sets: int | None) -> EvaluationInputs | None:
    if inputs is not None and random_sets is not None:
        raise InputError(f"compare on stored inputs ({inputs}) or on {random_sets} random input sets, not both")
    if loaded is None:
        if inputs is not None:  # refused rather than silently ignored
            raise InputError(f"inputs {inputs}: the package cannot run on this machine, so nothing would use them")
        return None
    if inputs is None:
        return random_input_sets(loaded, RANDOM_INPUT_SETS if random_sets is None else random_sets)
    return load_inputs(inputs, loaded.inputs)


def _outputs(loaded, evaluation: EvaluationInputs | None) -> list[dict] | None:
    return None if loaded is None or evaluation is None else run_all(loaded, evaluation)


def _measure(
    path: Path,
    metadata: PackageMetadata,
    loaded,
    stored: Latency | None,
    evaluation: EvaluationInputs | None,
    outputs: list[dict] | None,
    repeat: int,
    threads: int | None,
) -> Measured:
    skipped = _why_not_here(metadata)
    latency = stored or (None if loaded is None else measure_latency(loaded, repeat, threads))
    accuracy = None
    if outputs is not None and evaluation.labels is not None:
        accuracy = top1_accuracy(outputs, evaluation.labels, evaluation.description)
    return Measured(path, metadata, latency, accuracy, skipped)
