"""PyTorch models into Relax through torch.export: an nn.Module with example inputs, an
ExportedProgram, or a saved `.pt2` file. torch is imported only when this frontend is used."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tvmq.errors import InputShapeError, ModelLoadError
from tvmq.frontend.imported import ImportedModel, ModelSource, output_specs, sha256_of
from tvmq.frontend.shapes import DeclaredDim, resolve_input_shapes
from tvmq.progress import step
from tvmq.tensors import TensorSpec


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ModelLoadError("the PyTorch frontend needs torch: pip install 'tvmq[torch]'") from None
    return torch


def export_module(module, example_inputs: Sequence):
    """Trace an nn.Module in eval mode with torch.export."""
    torch = _import_torch()
    if not example_inputs:
        raise InputShapeError("exporting a PyTorch module needs example inputs (a tuple of tensors)")
    with step("exporting the PyTorch module with torch.export"):
        try:
            return torch.export.export(module.eval(), tuple(example_inputs))
        except Exception as err:
            raise ModelLoadError(f"torch.export failed: {type(err).__name__}: {err}") from err


def read_exported_program(path: str | os.PathLike):
    """A saved ExportedProgram (`torch.export.save`); unreadable files raise ModelLoadError."""
    torch = _import_torch()
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"cannot read model {path}: no such file")
    try:
        return torch.export.load(str(path))
    except Exception as err:
        raise ModelLoadError(f"{path} is not a valid torch.export program (.pt2): {err}") from None


def _placeholders(program):
    """The graph's user-input placeholder nodes, in call order."""
    names = set(program.graph_signature.user_inputs)
    return [n for n in program.graph.nodes if n.op == "placeholder" and n.name in names]


def _declared_dims(program) -> dict[str, list[DeclaredDim]]:
    declared = {}
    for node in _placeholders(program):
        value = node.meta.get("val")
        if value is None or not hasattr(value, "shape"):
            raise ModelLoadError(f"input {node.name!r} of the exported program is not a tensor")
        declared[node.name] = [d if isinstance(d, int) else str(d) for d in value.shape]
    return declared


class TorchReference:
    """Runs the exported program in PyTorch, the reference for PyTorch models."""

    def __init__(self, program, input_names: Sequence[str]):
        self._module = program.module()
        self._input_names = list(input_names)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        torch = _import_torch()
        args = [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in self._input_names]
        with torch.no_grad():
            result = self._module(*args)
        leaves = torch.utils._pytree.tree_leaves(result)
        return [leaf.detach().numpy() for leaf in leaves]


def _bind_dynamic_dims(mod, params_ty, shapes: Sequence[tuple[int, ...]]):
    """Replace the symbolic dims of `main`'s parameters by the user's static sizes."""
    from tvm import tirx

    bindings = {}
    for ty, shape in zip(params_ty, shapes):
        for dim, size in zip(ty.shape.values, shape):
            if isinstance(dim, tirx.Var):
                bindings[dim] = size
    if bindings:
        mod["main"] = mod["main"].bind_symbolic_vars(bindings)
    return mod


def load_torch(
    model,
    example_inputs: Sequence | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> ImportedModel:
    """Import a PyTorch model: an nn.Module (with `example_inputs`), an ExportedProgram, or a
    path to a `.pt2` file. Dynamic dimensions of exported programs are fixed by `input_shapes`."""
    torch = _import_torch()
    from tvm.relax.frontend.torch import from_exported_program

    if isinstance(model, (str, os.PathLike)):
        program = read_exported_program(model)
        source = ModelSource("torch", str(model), sha256_of(Path(model).read_bytes()))
    elif isinstance(model, torch.nn.Module):
        program = export_module(model, example_inputs or ())
        source = ModelSource("torch", f"PyTorch module {type(model).__name__}", _state_digest(model))
    elif isinstance(model, torch.export.ExportedProgram):
        program = model
        source = ModelSource("torch", "torch.export program", _state_digest(program.module()))
    else:
        raise ModelLoadError(f"not a PyTorch model: {type(model).__name__}")

    declared = _declared_dims(program)
    shapes = resolve_input_shapes(declared, input_shapes or {}, source.description)
    with step(f"importing {source.description} into Relax"):
        try:
            mod = from_exported_program(program, unwrap_unit_return_tuple=True)
        except Exception as err:
            raise ModelLoadError(
                f"TVM's PyTorch importer failed on {source.description}: {type(err).__name__}: {err}"
            ) from err
    params_ty = [p.ty for p in mod["main"].params]
    mod = _bind_dynamic_dims(mod, params_ty, list(shapes.values()))
    dtypes = [str(ty.dtype) for ty in params_ty]
    inputs = tuple(TensorSpec(name, shapes[name], dtype) for name, dtype in zip(declared, dtypes))
    outputs = output_specs(mod, list(program.graph_signature.user_outputs), source.description)
    return ImportedModel(mod, inputs, outputs, source, TorchReference(program, list(declared)))


def _state_digest(module) -> str:
    """A digest of a module's parameters and buffers, identifying in-memory models."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
