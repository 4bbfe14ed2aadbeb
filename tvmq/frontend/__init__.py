"""Frontends: models from ONNX and PyTorch into Relax with static shapes.

`load_model` picks the frontend from the model's type or file extension; all frontends return
an `ImportedModel`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from tvmq.errors import ModelLoadError
from tvmq.frontend.imported import ImportedModel, ModelSource
from tvmq.frontend.shapes import parse_shape_assignment

__all__ = ["ImportedModel", "ModelSource", "load_model", "parse_shape_assignment"]

_SUFFIXES = {".onnx": "onnx", ".pt2": "torch"}


def load_model(
    model,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    example_inputs: Sequence | None = None,
) -> ImportedModel:
    """Import `model`: a `.onnx`/`.pt2` path, an onnx.ModelProto, a torch.nn.Module (with
    `example_inputs`) or a torch ExportedProgram. `input_shapes` fixes dynamic dimensions."""
    if isinstance(model, (str, os.PathLike)):
        kind = _SUFFIXES.get(Path(model).suffix.lower())
        if kind is None:
            raise ModelLoadError(
                f"{model}: unknown model format {Path(model).suffix!r}; expected one of {', '.join(sorted(_SUFFIXES))}"
            )
    elif type(model).__module__.startswith("onnx"):
        kind = "onnx"
    elif type(model).__module__.startswith("torch") or _is_torch_module(model):
        kind = "torch"
    else:
        raise ModelLoadError(f"cannot import a {type(model).__name__}: expected an ONNX or PyTorch model")

    if kind == "onnx":
        from tvmq.frontend.onnx import load_onnx

        return load_onnx(model, input_shapes)
    from tvmq.frontend.torch import load_torch

    return load_torch(model, example_inputs, input_shapes)


def _is_torch_module(model) -> bool:
    """True for user-defined nn.Module subclasses (whose __module__ is the user's)."""
    return any(cls.__module__.startswith("torch.nn") for cls in type(model).__mro__)
