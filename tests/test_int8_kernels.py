"""The AVX2 u8 x s8 -> s32 intrinsic and the int8 search space: every tensorized design space
computes exactly what numpy does (odd shapes, padded), the instructions reach the assembly,
float kernels keep MetaSchedule's default space, tensorized records survive the tuning log and
compile into kernels on weights packed once, and models whose 8-bit weights could overflow the
intrinsic's int16 sums never get them."""

import logging
import re

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from tvmq.build.compile import build_tuned_executable
from tvmq.target import load_target
from tvmq.tune.int8_kernels import (
    AVX2_U8S8_DOT_8X4,
    int8_space,
    tune_contexts,
    uses_intrin,
    weights_fit_intrin,
)
from tvmq.tune.log import TuningLog, merge
from tvmq.tune.tasks import extract_tasks, tuning_target
from tvmq.tune.tuner import quiet_meta_schedule

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
    with quiet_meta_schedule():
        (context,), _ = tune_contexts(tasks, str(tmp_path), num_threads=1, seed=0, use_intrin=True)
    assert not _uses_int8_space(context)


def _uses_int8_space(context) -> bool:
    return any(isinstance(postproc, ms.postproc.RewriteTensorize) for postproc in context.space_generator.postprocs)


def test_int8_kernels_get_the_int8_space_only_when_the_weights_fit_the_intrinsic(tmp_path):
    tasks = extract_tasks(_matmul_module("uint8", np.ones((16, 8), "int8"), 4), X86_AVX2)
    with quiet_meta_schedule():  # MetaSchedule's logging setup fails on pytest's log handlers
        (fits,), _ = tune_contexts(tasks, str(tmp_path), num_threads=1, seed=0, use_intrin=True)
        (overflows,), _ = tune_contexts(tasks, str(tmp_path), num_threads=1, seed=0, use_intrin=False)
    assert _uses_int8_space(fits) and not _uses_int8_space(overflows)


def test_weights_fit_the_intrinsic_when_two_products_stay_within_int16():
    # 255 * (64 + 64) = 32640 fits int16; one weight of 65 lets 255 * (65 + 64) = 32895 overflow.
    assert weights_fit_intrin(_matmul_module("uint8", np.full((8, 8), -64, "int8"), 1))
    assert not weights_fit_intrin(_matmul_module("uint8", np.full((8, 8), 65, "int8"), 1))


def _log_with_a_tensorized_record(directory, mod: tvm.IRModule, plain_seconds=()) -> tvm.IRModule:
    """A tuning log at `directory` holding one tensorized record (10 us) for `mod`'s kernel and
    untensorized ones measured at `plain_seconds`; returns the kernel as the tensorized record
    schedules it."""
    (task,) = extract_tasks(mod, X86_AVX2)
    kernel = task.dispatched[0]
    space = next(s for s in _tensorized_spaces(kernel) if _is_tensorized(s))
    log = TuningLog(directory, X86_AVX2)
    workload, args = log.commit_workload(kernel), ms.arg_info.ArgInfo.from_prim_func(kernel["main"])
    log.commit_tuning_record(ms.database.TuningRecord(space.trace, workload, [1e-5], X86_AVX2, args))
    for seconds in plain_seconds:
        trace = tvm.s_tir.Schedule(kernel).trace
        log.commit_tuning_record(ms.database.TuningRecord(trace, workload, [seconds], X86_AVX2, args))
    return space.mod


def test_a_tensorized_record_is_written_to_the_log_and_read_back(tmp_path):
    scheduled = _log_with_a_tensorized_record(tmp_path, _matmul_module("uint8", np.ones((64, 32), "int8"), 16))
    (record,) = TuningLog(tmp_path, X86_AVX2).get_all_tuning_records()
    assert uses_intrin(record)
    replayed = tvm.s_tir.Schedule(record.workload.mod)
    record.trace.apply_to_schedule(replayed, remove_postproc=False)
    tvm.ir.assert_structural_equal(replayed.mod, scheduled)
    without = TuningLog(tmp_path, X86_AVX2, use_intrin=False)
    assert len(without) == 0 and without.skipped_intrin == 1


def test_a_pruned_merge_keeps_the_best_plain_record_beside_the_best_tensorized_one(tmp_path):
    mod = _matmul_module("uint8", np.ones((64, 32), "int8"), 16)
    _log_with_a_tensorized_record(tmp_path / "full", mod, plain_seconds=[3e-5, 2e-5])
    assert merge([tmp_path / "full"], tmp_path / "pruned", top=1) == 2
    kept = TuningLog(tmp_path / "pruned", X86_AVX2).get_all_tuning_records()
    assert sorted(uses_intrin(record) for record in kept) == [False, True]
    (plain,) = TuningLog(tmp_path / "pruned", X86_AVX2, use_intrin=False).get_all_tuning_records()
    assert [float(s) for s in plain.run_secs] == [2e-5]


def _run_vm(executable, x: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _kernels_called(executable) -> list[str]:
    return re.findall(r"call\s+(\w+) in:", executable.as_text())


def test_compiling_with_the_log_packs_the_weights_once_and_computes_exactly(tmp_path):
    rng = np.random.default_rng(1)
    weights = rng.integers(-64, 65, (40, 24)).astype("int8")  # 7 bits: the intrinsic is exact
    mod = _matmul_module("uint8", weights, 3)
    _log_with_a_tensorized_record(tmp_path, mod)
    executable, covered = build_tuned_executable(mod, load_target("x86-avx2"), tmp_path)
    assert len(covered.tuned) == 1 and not covered.untuned
    # The packing copy was split off the kernel and folded into the constant weights: main
    # calls the kernel alone, on prepacked weights.
    assert [k for k in _kernels_called(executable) if not k.startswith("vm.builtin")] == ["matmul_prepacked"]
    x = rng.integers(0, 256, (3, 40)).astype("uint8")
    np.testing.assert_array_equal(_run_vm(executable, x), x.astype(np.int32) @ weights.astype(np.int32))


def test_8_bit_weights_compile_without_the_tensorized_records(tmp_path, caplog):
    # 255 * 127 + 255 * 127 overflows vpmaddubsw's int16 sums: the tensorized kernel would be
    # wrong on every output, so the log's record must not be applied.
    weights = np.full((40, 24), 127, "int8")
    mod = _matmul_module("uint8", weights, 3)
    _log_with_a_tensorized_record(tmp_path, mod)
    with caplog.at_level(logging.WARNING, logger="tvmq"):
        executable, covered = build_tuned_executable(mod, load_target("x86-avx2"), tmp_path)
    assert "need 7-bit weights" in caplog.text and not covered.tuned
    x = np.full((3, 40), 255, "uint8")
    np.testing.assert_array_equal(_run_vm(executable, x), x.astype(np.int32) @ weights.astype(np.int32))
