"""Calibration data: `.npz` files whose arrays are keyed by input name, first axis = samples.

A folder of such files is read in name order. Batches are checked against the model's inputs
(name, shape, dtype, finite values) before anything runs, and named in every error.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.errors import InputError
from tvmq.files import read_npz
from tvmq.tensors import TensorSpec

_CHECKED_SAMPLES = 64  # samples checked for NaN and Inf at a time


@dataclass(frozen=True)
class CalibrationData:
    """Samples for every model input, arrays of shape [samples, *input shape[1:]], fed to the
    model in batches of its batch size (its inputs' first dimension)."""

    arrays: dict[str, np.ndarray]  # by input name, first axis = samples
    source: str

    @property
    def num_samples(self) -> int:
        return len(next(iter(self.arrays.values())))

    def digest(self) -> str:
        """A content hash, part of the calibration cache key."""
        digest = hashlib.sha256()
        for name in sorted(self.arrays):
            array = np.ascontiguousarray(self.arrays[name])
            digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
            digest.update(memoryview(array).cast("B"))  # the bytes, not a copy of them
        return digest.hexdigest()

    @staticmethod
    def batch_size(inputs: Sequence[TensorSpec]) -> int:
        """The model's batch size: its first input's first dimension."""
        return inputs[0].shape[0] if inputs[0].shape else 1

    def num_batches(self, inputs: Sequence[TensorSpec]) -> int:
        """How many whole batches `batches` yields (an incomplete last one is dropped)."""
        return self.num_samples // self.batch_size(inputs)

    def batches(self, inputs: Sequence[TensorSpec]) -> Iterator[dict[str, np.ndarray]]:
        """Model-shaped batches: the model's first dimension is its batch size."""
        batch = self.batch_size(inputs)
        for start in range(0, self.num_samples - batch + 1, batch):
            yield {spec.name: self.arrays[spec.name][start : start + batch].reshape(spec.shape) for spec in inputs}


def load_calibration_data(
    source: str | os.PathLike | dict, inputs: Sequence[TensorSpec], num_samples: int | None = None
) -> CalibrationData:
    """Read and check calibration data (`.npz` file, folder of them, or a dict of arrays)."""
    if isinstance(source, dict):
        arrays, where = {k: np.asarray(v) for k, v in source.items()}, "calibration data"
    else:
        path = Path(source)
        files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
        if not files:
            raise InputError(f"calibration folder {path} holds no .npz files")
        parts = [read_npz(f, "calibration data") for f in files]
        names = set(parts[0])
        for f, part in zip(files, parts):
            if set(part) != names:
                raise InputError(f"calibration file {f} has arrays {sorted(part)}, {files[0]} has {sorted(names)}")
            _check(part, inputs, str(f))
        arrays = {name: np.concatenate([part[name] for part in parts]) for name in names}
        where = str(path)
    if num_samples is not None:
        if num_samples < 1:
            raise InputError(f"the number of calibration samples must be positive, got {num_samples}")
        arrays = {name: array[:num_samples] for name, array in arrays.items()}
    _check(arrays, inputs, where)
    return CalibrationData(arrays, where)


def _check(arrays: dict[str, np.ndarray], inputs: Sequence[TensorSpec], where: str) -> None:
    expected = {spec.name: spec for spec in inputs}
    unknown = sorted(set(arrays) - set(expected))
    missing = sorted(set(expected) - set(arrays))
    if unknown or missing:
        raise InputError(
            f"{where}: arrays must be keyed by the model's input names ({', '.join(expected)}); "
            + "; ".join(
                [f"unknown: {', '.join(unknown)}"] * bool(unknown) + [f"missing: {', '.join(missing)}"] * bool(missing)
            )
        )
    counts = {name: len(array) if array.ndim else 0 for name, array in arrays.items()}
    if len(set(counts.values())) > 1:
        raise InputError(f"{where}: inputs have different sample counts {counts}")
    for name, array in arrays.items():
        spec = expected[name]
        if array.ndim == 0 or len(array) == 0:
            raise InputError(f"{where}: input {name!r} holds no samples")
        if str(array.dtype) != spec.dtype:
            raise InputError(f"{where}: input {name!r} has dtype {array.dtype}, the model takes {spec.dtype}")
        if array.shape[1:] != spec.shape[1:]:
            raise InputError(
                f"{where}: input {name!r} has samples of shape {list(array.shape[1:])}; the model takes "
                f"{list(spec.shape)}, so samples must be {list(spec.shape[1:])} (first axis = samples)"
            )
        if array.dtype.kind == "f":  # checked a block of samples at a time: no copy of all the data
            for start in range(0, len(array), _CHECKED_SAMPLES):
                block = array[start : start + _CHECKED_SAMPLES]
                bad = np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))
                if bad.size:
                    raise InputError(f"{where}: input {name!r} has NaN or Inf in sample {start + int(bad[0])}")
    batch = CalibrationData.batch_size(inputs)
    samples = next(iter(counts.values()))
    if samples < batch:
        raise InputError(f"{where}: {samples} samples are fewer than the model's batch size {batch}")
