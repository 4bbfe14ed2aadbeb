"""How close a compiled package must come to its reference: one place for the bounds that
`tvmq compile --verify`, the tests and the GPU check apply (and importable with TVM's runtime
alone, as on a deployment machine)."""

from __future__ import annotations

import numpy as np

# max |got - want| <= atol + rtol * max |want|: relative to the output's range, not elementwise,
# so small outputs beside large ones do not fail on rounding.
FP32_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}
# float16 keeps 11 significant bits (relative step 1e-3); a few layers of float32-accumulated
# products stay well inside 1% of the output's range.
FP16_TOLERANCE = {"rtol": 1e-2, "atol": 1e-3}


def allowed_error(want: np.ndarray, rtol: float, atol: float) -> float:
    """The largest max |got - want| the bound allows for the reference output `want`."""
    scale = float(np.abs(want).max()) if want.size else 0.0
    return atol + rtol * scale
