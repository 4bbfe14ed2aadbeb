"""What every frontend returns: a Relax module plus the model's signature and a reference."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from tvmq.errors import ModelLoadError
from tvmq.metrics import OutputProbe
from tvmq.tensors import TensorSpec

Reference = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from, recorded in the package so a build can be traced back."""

    format: str  # "onnx" or "torch"
    description: str  # a path, or a short description of an in-memory model
    sha256: str

    def to_json(self) -> dict:
        return {"format": self.format, "source": self.description, "sha256": self.sha256}


@dataclass(frozen=True)
class ImportedModel:
    """A model in Relax with static shapes.

    `mod["main"]` takes the inputs positionally in the order of `inputs` and returns the outputs
    in the order of `outputs` (a tuple when there are several). `reference` runs the original
    model in its own framework (onnxruntime, PyTorch), the yardstick for verification.
    """

    mod: tvm.IRModule
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    source: ModelSource
    reference: Reference
    quantization: dict | None = None  # what quantize_model did; None for a float model
    # calibration inputs with the float model's outputs, on which compiling measures the
    # quantized model's error (quantize_model's error report); None where not measured
    error_probe: OutputProbe | None = None


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _static_shape(ty, what: str) -> tuple[int, ...]:
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise ModelLoadError(f"{what} is not a tensor with a known shape ({ty})")
    dims = []
    for dim in ty.shape.values:
        if not isinstance(dim, tvm.tirx.IntImm):
            raise ModelLoadError(f"{what} has a dynamic dimension {dim}; fix the input shapes")
        dims.append(int(dim))
    return tuple(dims)


def _flatten_tensor_types(ty) -> list:
    if isinstance(ty, relax.TupleType):
        return [leaf for field in ty.fields for leaf in _flatten_tensor_types(field)]
    return [ty]


def output_specs(mod: tvm.IRModule, names: Sequence[str], model: str) -> tuple[TensorSpec, ...]:
    """The outputs of `mod["main"]` as TensorSpecs named by the frontend's output names."""
    types = _flatten_tensor_types(mod["main"].ret_ty)
    if len(types) != len(names):
        names = [f"output{i}" for i in range(len(types))]
    return tuple(
        TensorSpec(name, _static_shape(ty, f"{model}: output {name!r}"), ty.dtype) for name, ty in zip(names, types)
    )
