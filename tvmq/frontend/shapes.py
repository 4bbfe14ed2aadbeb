"""Fixing a model's input shapes: dynamic dimensions must be given by the user.

Frontends describe each input's declared dimensions as ints (fixed) or names/None (dynamic),
or the whole shape as None when even the rank is unknown; `resolve_input_shapes` checks the
user's shapes against them and returns fully static shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tvmq.errors import InputShapeError

DeclaredDim = int | str | None


def parse_shape_assignment(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse the CLI form `NAME=D0,D1,...` (e.g. `image=1,3,224,224`)."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise InputShapeError(f"input shape {text!r} is not of the form NAME=D0,D1,...")
    try:
        shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
    except ValueError:
        raise InputShapeError(f"input shape {text!r}: dimensions must be integers") from None
    return name, shape


def _format_dims(dims: Sequence[DeclaredDim] | None) -> str:
    if dims is None:
        return "[unknown rank]"
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def resolve_input_shapes(
    declared: Mapping[str, Sequence[DeclaredDim] | None],
    given: Mapping[str, Sequence[int]],
    model: str,
) -> dict[str, tuple[int, ...]]:
    """Static shapes for all `declared` inputs, taking dynamic dimensions from `given`.

    Raises InputShapeError naming the input when `given` names an unknown input, has the wrong
    rank, contradicts a fixed dimension, or leaves a dynamic dimension unset.
    """
    unknown = [name for name in given if name not in declared]
    if unknown:
        raise InputShapeError(
            f"{model}: no input named {', '.join(map(repr, unknown))}; the inputs are "
            + ", ".join(f"{name} {_format_dims(dims)}" for name, dims in declared.items())
        )
    resolved = {}
    for name, dims in declared.items():
        if dims is None:
            if name not in given:
                raise InputShapeError(
                    f"{model}: input {name!r} has no declared shape; give it, e.g. --input-shape {name}=1,3,224,224"
                )
            dims = [None] * len(given[name])
        if name not in given:
            dynamic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
            if dynamic:
                example = ",".join(str(d) if isinstance(d, int) else "N" for d in dims)
                raise InputShapeError(
                    f"{model}: input {name!r} has dynamic dimensions {_format_dims(dims)}; "
                    f"give its shape, e.g. --input-shape {name}={example}"
                )
            resolved[name] = tuple(dims)
            continue
        shape = tuple(int(d) for d in given[name])
        if len(shape) != len(dims):
            raise InputShapeError(
                f"{model}: input {name!r} has {len(dims)} dimensions {_format_dims(dims)}, "
                f"but the given shape {list(shape)} has {len(shape)}"
            )
        for axis, (declared_dim, dim) in enumerate(zip(dims, shape)):
            if dim <= 0:
                raise InputShapeError(f"{model}: input {name!r}: dimension {axis} must be > 0")
            if isinstance(declared_dim, int) and declared_dim != dim:
                raise InputShapeError(
                    f"{model}: input {name!r} has fixed dimension {axis} = {declared_dim}, "
                    f"but the given shape {list(shape)} says {dim}"
                )
        resolved[name] = shape
    return resolved
