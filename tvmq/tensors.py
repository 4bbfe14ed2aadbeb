"""Names, shapes and dtypes of a model's inputs and outputs, shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a model's signature, with a fully static shape."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", str(np.dtype(str(self.dtype))))

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(map(str, self.shape))}]"

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict) -> TensorSpec:
        return cls(name=data["name"], shape=tuple(data["shape"]), dtype=data["dtype"])

    def random(self, rng: np.random.Generator) -> np.ndarray:
        """A random tensor of this spec: normal floats, small non-negative integers (safe as
        indices, e.g. token ids), fair booleans."""
        dtype = np.dtype(self.dtype)
        if dtype.kind == "f":
            return rng.standard_normal(self.shape).astype(dtype)
        if dtype.kind in "iu":
            return rng.integers(0, 2, self.shape).astype(dtype)
        if dtype.kind == "b":
            return rng.integers(0, 2, self.shape).astype(bool)
        raise ValueError(f"cannot make random data of dtype {self.dtype} for {self.name!r}")
