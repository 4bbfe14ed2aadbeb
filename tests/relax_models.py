"""Small Relax models and int8 operands built directly (no frontend), for tests of kernels and
their schedules."""

import re

import numpy as np
import pytest
import tvm
from tvm import relax

from tvmq.runtime.devices import cannot_run_here
from tvmq.target import load_target

X86_PRESETS = ["x86-avx2", "x86-avx512", "x86-vnni"]  # one per x86 int8 intrinsic


def skip_unless_runnable(preset: str) -> None:
    reason = cannot_run_here(load_target(preset))
    if reason:
        pytest.skip(reason)


def int8_matmul_operands(rows: int, depth: int, columns: int, saturating: bool, seed: int):
    """Random uint8 activations (rows x depth) and int8 weights (depth x columns) over the
    widest range the intrinsic is exact for, its extremes included: vpmaddubsw (`saturating`)
    needs 7-bit weights to keep a pair of products within int16; vpdpbusd and the ARM
    instructions sum in int32 and take the full 8 bits."""
    rng = np.random.default_rng(seed)
    low, high = (-64, 64) if saturating else (-128, 127)
    weights = rng.integers(low, high + 1, (depth, columns)).astype("int8")
    weights.flat[:2] = (low, high)
    x = rng.integers(0, 256, (rows, depth)).astype("uint8")
    x.flat[0] = 255
    return x, weights


def matmul(x_dtype: str, weights: np.ndarray, rows: int) -> tvm.IRModule:
    """x (rows x depth, `x_dtype`) @ constant `weights` (depth x columns): int32 sums for
    integer inputs, else `x_dtype`."""
    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((rows, weights.shape[0]), x_dtype))
    with builder.function("main", [x]):
        with builder.dataflow():
            out_dtype = "int32" if "int" in x_dtype else x_dtype
            out = builder.emit_output(builder.emit(relax.op.matmul(x, relax.const(weights), out_dtype=out_dtype)))
        builder.emit_func_output(out)
    return builder.get()


def kernels_called(executable) -> list[str]:
    """The compiled kernels the executable's main calls, in order (VM builtins left out)."""
    return [k for k in re.findall(r"call\s+(\w+) in:", executable.as_text()) if not k.startswith("vm.builtin")]
