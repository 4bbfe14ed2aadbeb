"""How far a package's outputs are from a baseline package's (usually the fp32 build of the same
model) on the same inputs, and top-1 accuracy where the inputs come with labels.

The inputs are random (seeded, needing no data) or stored in an `.npz` file whose arrays are
keyed by input name with the first axis = samples, optionally with a `label` array of class
indices; the samples are fed in batches of the package's batch size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.errors import InputError, PackageError
from tvmq.files import read_npz
from tvmq.metrics import ErrorSums, looks_like_class_scores
from tvmq.runtime import check_inputs
from tvmq.tensors import TensorSpec

LABEL_KEY = "label"


@dataclass(frozen=True)
class EvaluationInputs:
    """Model-shaped input batches, the labels of their samples (or None) and where they came from."""

    batches: list[dict[str, np.ndarray]]
    labels: np.ndarray | None
    description: str

    @property
    def num_samples(self) -> int:
        return sum(len(next(iter(batch.values()))) for batch in self.batches)


def random_input_sets(package, count: int) -> EvaluationInputs:
    """`count` batches of random inputs (seeds 0..count-1), as `Package.random_inputs` makes them."""
    if count < 1:
        raise InputError(f"the number of random input sets must be positive, got {count}")
    batches = [package.random_inputs(seed) for seed in range(count)]
    return EvaluationInputs(batches, None, f"{count} random input set(s), seeds 0-{count - 1}")


def load_inputs(path: str | Path, specs: tuple[TensorSpec, ...]) -> EvaluationInputs:
    """The samples stored in `path`, checked against the package's inputs and cut into batches."""
    arrays = read_npz(path, "inputs")
    labels = arrays.pop(LABEL_KEY, None)
    counts = {name: len(array) if array.ndim else 0 for name, array in arrays.items()}
    if len(set(counts.values())) > 1:
        raise InputError(f"{path}: the arrays have different sample counts {counts}")
    samples = next(iter(counts.values()), 0)
    batch = specs[0].shape[0] if specs[0].shape else 1
    if samples < batch:
        raise InputError(f"{path}: {samples} samples are fewer than the package's batch size {batch}")
    batches = list(_batches(arrays, batch, samples))
    try:
        check_inputs(specs, batches[0])
    except InputError as err:
        raise InputError(f"{path} (arrays keyed by input name, first axis = samples): {err}") from None
    used = len(batches) * batch
    if labels is not None:
        if labels.shape != (samples,) or labels.dtype.kind not in "iu":
            raise InputError(
                f"{path}: {LABEL_KEY!r} must hold one integer class per sample ({samples}), "
                f"got {labels.dtype}{list(labels.shape)}"
            )
        labels = labels[:used]
    return EvaluationInputs(batches, labels, f"{used} samples from {path}")


def _batches(arrays: dict[str, np.ndarray], batch: int, samples: int) -> Iterator[dict[str, np.ndarray]]:
    """Whole batches only: a package's shapes are static, so a remainder cannot run."""
    for start in range(0, samples - batch + 1, batch):
        yield {name: array[start : start + batch] for name, array in arrays.items()}


def run_all(package, inputs: EvaluationInputs) -> list[dict[str, np.ndarray]]:
    """The package's outputs for every batch."""
    return [package.run(batch) for batch in inputs.batches]


def check_same_signature(package, baseline) -> None:
    """Raise PackageError unless both packages take the same inputs and give the same outputs."""
    for kind in ("inputs", "outputs"):
        ours, theirs = getattr(package, kind), getattr(baseline, kind)
        if ours != theirs:
            raise PackageError(
                f"baseline {baseline.path} has {kind} {', '.join(map(str, theirs))}; "
                f"package {package.path} has {', '.join(map(str, ours))}: they are not builds of the same model"
            )


def output_agreement(outputs: list[dict], baseline_outputs: list[dict]) -> list[dict]:
    """Per output: SQNR (dB) and cosine of the package's outputs to the baseline's, the largest
    absolute difference, and top-1 agreement for outputs shaped like class scores."""
    rows = []
    for name in baseline_outputs[0]:
        sums, max_abs_diff = ErrorSums(), 0.0
        for ours, theirs in zip(outputs, baseline_outputs):
            x, y = theirs[name], ours[name]
            sums.add_output(x, y)
            max_abs_diff = max(max_abs_diff, float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()))
        rows.append({"name": name, **sums.to_json(), "max_abs_diff": max_abs_diff})
    return rows


def top1_accuracy(outputs: list[dict], labels: np.ndarray, where: str) -> float:
    """Fraction of samples whose highest-scoring class (first class-score output) is the label."""
    first = outputs[0]
    name = next((name for name, array in first.items() if looks_like_class_scores(array)), None)
    if name is None:
        shapes = ", ".join(f"{n}: {list(a.shape)}" for n, a in first.items())
        raise InputError(f"{where} has labels, but no output holds class scores [batch, classes] ({shapes})")
    predicted = np.concatenate([batch[name].argmax(axis=1) for batch in outputs])
    return float((predicted == labels).mean())
