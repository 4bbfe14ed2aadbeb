"""Small Relax models built directly (no frontend), for tests of kernels and their schedules."""

import numpy as np
import tvm
from tvm import relax


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
