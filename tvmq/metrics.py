"""How far an approximation's outputs are from a reference's (a quantized model's from the
float model's, a package's from its baseline's): SQNR, cosine and top-1 agreement, from sums
accumulated batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def looks_like_class_scores(array: np.ndarray) -> bool:
    """Whether an output is shaped [batch, classes]: top-1 agreement and accuracy apply."""
    return array.ndim == 2 and array.shape[1] > 1


@dataclass
class ErrorSums:
    """Running sums for SQNR and cosine between a reference x and an approximation y."""

    xx: float = 0.0
    yy: float = 0.0
    xy: float = 0.0
    dd: float = 0.0
    top1_same: int = 0
    rows: int = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = x.astype(np.float64).reshape(-1), y.astype(np.float64).reshape(-1)
        self.xx += float(x @ x)
        self.yy += float(y @ y)
        self.xy += float(x @ y)
        self.dd += float((x - y) @ (x - y))

    def add_output(self, x: np.ndarray, y: np.ndarray) -> None:
        """`add` for a model output, counting top-1 agreement too where it holds class scores."""
        self.add(x, y)
        if looks_like_class_scores(x):
            self.top1_same += int((x.argmax(1) == y.argmax(1)).sum())
            self.rows += len(x)

    @property
    def sqnr_db(self) -> float:
        if self.dd == 0:
            return float("inf")
        return float(10 * np.log10(self.xx / self.dd)) if self.xx > 0 else float("-inf")

    @property
    def cosine(self) -> float:
        norm = np.sqrt(self.xx * self.yy)
        return float(self.xy / norm) if norm > 0 else 1.0

    def to_json(self) -> dict:
        result = {"sqnr_db": _finite_or_none(self.sqnr_db), "cosine": self.cosine}
        if self.rows:
            result["top1_agreement"] = self.top1_same / self.rows
        return result


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class OutputProbe:
    """Inputs and the float model's outputs for them, kept from calibration: what the compiled
    quantized model's outputs are measured against (its end-to-end error)."""

    batches: tuple[dict[str, np.ndarray], ...]  # model-shaped inputs, by name
    reference: tuple[tuple[np.ndarray, ...], ...]  # per batch, the float model's outputs in order

    @property
    def samples(self) -> int:
        return sum(len(next(iter(batch.values()))) for batch in self.batches)

    def measure(self, run: Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]]) -> list[dict]:
        """Per output, the error of `run` (a batch of inputs -> the outputs in order)."""
        sums = [ErrorSums() for _ in self.reference[0]]
        for batch, reference in zip(self.batches, self.reference):
            for output, x, y in zip(sums, reference, run(batch), strict=True):
                output.add_output(x, y)
        return [output.to_json() for output in sums]
