"""The AVX2 u8 x s8 -> s32 intrinsic and the int8 search space: every tensorized design space
computes exactly what numpy does (odd shapes, padded), the instructions reach the assembly, and
float kernels keep MetaSchedule's default space."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from tvmq.target import load_target
from tvmq.tune.int8_kernels import AVX2_U8S8_DOT_8X4, PackWeightsForIntrin, int8_space, tune_contexts
from tvmq.tune.tasks import extract_tasks, tuning_target

X86_AVX2 = tuning_target(load_target("x86-avx2"), num_cores=2)


def _matmul_module(x_dtype: str, weights: np.ndarray, rows: int) -> tvm.IRModule:
    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((rows, weights.shape[0]), x_dtype))
    with builder.function("main", [x]):
        with builder.dataflow():
            out_dtype = "int32" if x_dtype == "uint8" else x_dtype
            out = builder.emit_output(builder.emit(relax.op.matmul(x, relax.const(weights), out_dtype=out_dtype)))
        builder.emit_func_output(out)
    return builder.get()


def _tensorized_spaces(kernel: tvm.IRModule) -> list[tvm.s_tir.Schedule]:
    """The int8 space's design spaces for `kernel`, post-processed as MetaSchedule would."""
    context = ms.TuneContext(kernel, target=X86_AVX2, space_generator=int8_space(), task_name="t", rand_state=0)
    spaces = []
    for space in context.space_generator.generate_design_space(kernel):
        if all(postproc.apply(space) for postproc in context.space_generator.postprocs):
            spaces.append(space)
    return spaces


def _is_tensorized(sch: tvm.s_tir.Schedule) -> bool:
    return AVX2_U8S8_DOT_8X4 in str(sch.trace)


@pytest.mark.parametrize("rows, depth, columns", [(5, 13, 19), (3, 64, 24), (2, 6, 8)])
def test_every_tensorized_design_space_matches_numpy_exactly_on_odd_shapes(rows, depth, columns):
    rng = np.random.default_rng(depth)
    # 7-bit weights: a pair of products stays within int16, so no saturation can occur.
    weights_i8 = rng.integers(-64, 64, (depth, columns)).astype("int8")
    x_u8 = rng.integers(0, 256, (rows, depth)).astype("uint8")
    (task,) = extract_tasks(_matmul_module("uint8", weights_i8, rows), X86_AVX2)
    spaces = [s for s in _tensorized_spaces(task.dispatched[0]) if _is_tensorized(s)]
    assert spaces, "no design space used the intrinsic"
    expected = x_u8.astype(np.int32) @ weights_i8.astype(np.int32)
    for space in spaces:
        kernel = tvm.build(space.mod, target=X86_AVX2)
        out = tvm.runtime.tensor(np.zeros(expected.shape, "int32"))
        kernel["main"](tvm.runtime.tensor(x_u8), tvm.runtime.tensor(weights_i8), out)
        np.testing.assert_array_equal(out.numpy(), expected)


def test_the_x86_avx2_int8_matmul_assembly_contains_vpmaddubsw():
    weights_i8 = np.ones((64, 32), "int8")
    (task,) = extract_tasks(_matmul_module("uint8", weights_i8, 16), X86_AVX2)
    space = next(s for s in _tensorized_spaces(task.dispatched[0]) if _is_tensorized(s))
    assembly = tvm.build(space.mod, target=X86_AVX2).inspect_source("asm")
    assert "vpmaddubsw" in assembly and "vpmaddwd" in assembly


def test_float_kernels_keep_the_default_search_space(tmp_path):
    tasks = extract_tasks(_matmul_module("float32", np.ones((16, 8), "float32"), 4), X86_AVX2)
    (context,), _ = tune_contexts(tasks, str(tmp_path), num_threads=1, seed=0)
    assert not any(isinstance(rule, PackWeightsForIntrin) for rule in context.space_generator.sch_rules)
