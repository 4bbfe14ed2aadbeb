"""Checking a compiled package against the original model run in its own framework."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvmq.errors import VerificationError
from tvmq.frontend.imported import Reference
from tvmq.runtime import Package
from tvmq.tolerance import FP32_TOLERANCE, allowed_error


@dataclass(frozen=True)
class OutputComparison:
    name: str
    max_abs_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def compare_with_reference(
    package: Package,
    reference: Reference,
    seed: int = 0,
    rtol: float = FP32_TOLERANCE["rtol"],
    atol: float = FP32_TOLERANCE["atol"],
) -> list[OutputComparison]:
    """Run package and reference on the same random inputs and compare every output: an output
    agrees when max |tvm - ref| <= atol + rtol * max |ref|. Raises VerificationError otherwise."""
    inputs = package.random_inputs(seed)
    expected = reference(inputs)
    actual = package.run(inputs)
    if len(expected) != len(actual):
        raise VerificationError(f"the package has {len(actual)} outputs, the reference {len(expected)}")
    comparisons = []
    for (name, got), want in zip(actual.items(), expected):
        want = np.asarray(want)
        if got.shape != want.shape:
            raise VerificationError(f"output {name!r}: shape {list(got.shape)}, reference {list(want.shape)}")
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        max_diff = float(np.max(diff)) if diff.size else 0.0
        bound = allowed_error(want, rtol, atol)
        comparisons.append(OutputComparison(name, max_diff if np.isfinite(max_diff) else np.inf, bound))
    failed = [c for c in comparisons if not c.ok]
    if failed:
        raise VerificationError(
            "the compiled model disagrees with the reference: "
            + "; ".join(
                f"output {c.name!r} max |diff| {c.max_abs_diff:.3g} > tolerance {c.tolerance:.3g}" for c in failed
            )
        )
    return comparisons
