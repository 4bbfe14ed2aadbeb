"""tvmq's u8 x s8 -> s32 intrinsics (AVX2, AVX-512BW, AVX-512 VNNI) and the int8 search space:
every tensorized design space computes exactly what numpy does (odd shapes, padded), the
instructions reach the assembly, float kernels keep MetaSchedule's default space, tensorized
records survive the tuning log and compile into kernels on weights packed once, and models
whose 8-bit weights could overflow vpmaddubsw's int16 sums never get kernels built on it."""

import logging
import re

import numpy as np
import onnx_models
import pytest
import tvm
from relax_models import X86_PRESETS, int8_matmul_operands, kernels_called, matmul, skip_unless_runnable
from tvm import relax
from tvm.s_tir import meta_schedule as ms

import tvmq
from tvmq.codegen.pipeline import build_tuned_executable
from tvmq.kernels.intrinsics import INTRINSICS, intrin_for, record_intrin, weights_within_7_bits
from tvmq.kernels.log import TuningLog, merge
from tvmq.kernels.packing import tensorizable_block
from tvmq.kernels.spaces import int8_space, tune_contexts
from tvmq.kernels.tasks import extract_tasks, tuning_target
from tvmq.quantize import quantize_model
from tvmq.runtime.devices import cannot_run_here
from tvmq.target import load_target
from tvmq.tune.tuner import quiet_meta_schedule

X86_AVX2 = tuning_target(load_target("x86-avx2"), num_cores=2)


def _tensorized_spaces(kernel: tvm.IRModule, target=X86_AVX2) -> list[tvm.s_tir.Schedule]:
    """The int8 space's design spaces for `kernel` that use the target's intrinsic,
    post-processed as MetaSchedule would."""
    intrin = intrin_for(target)
    context = ms.TuneContext(kernel, target=target, space_generator=int8_space(intrin), task_name="t", rand_state=0)
    spaces = []
    for space in context.space_generator.generate_design_space(kernel):
        if all(postproc.apply(space) for postproc in context.space_generator.postprocs):
            spaces.append(space)
    return [space for space in spaces if intrin.name in str(space.trace)]


def test_each_x86_target_gets_the_best_int8_instructions_it_has():
    presets = [*X86_PRESETS, "arm-cortex-a72", "arm-cortex-a76", "arm-neoverse-n1"]
    chosen = {name: intrin_for(tuning_target(load_target(name), 2)).isa for name in presets}
    assert chosen == {
        "x86-avx2": "avx2",
        "x86-avx512": "avx512bw",
        "x86-vnni": "avx512vnni",
        "arm-cortex-a72": "neon",
        "arm-cortex-a76": "dotprod",
        "arm-neoverse-n1": "dotprod",
    }
    assert intrin_for(tuning_target(load_target("cuda-sm80"), 2)) is None


@pytest.mark.parametrize("preset", X86_PRESETS)
@pytest.mark.parametrize("rows, depth, columns", [(5, 13, 19), (3, 64, 24), (2, 6, 8)])
def test_every_tensorized_design_space_matches_numpy_exactly_on_odd_shapes(preset, rows, depth, columns):
    skip_unless_runnable(preset)
    target = tuning_target(load_target(preset), 2)
    x_u8, weights_i8 = int8_matmul_operands(rows, depth, columns, intrin_for(target).saturates, seed=depth)
    (task,) = extract_tasks(matmul("uint8", weights_i8, rows), target)
    spaces = _tensorized_spaces(task.dispatched[0], target)
    assert spaces, "no design space used the intrinsic"
    expected = x_u8.astype(np.int32) @ weights_i8.astype(np.int32)
    for space in spaces:
        kernel = tvm.build(space.mod, target=target)
        out = tvm.runtime.tensor(np.zeros(expected.shape, "int32"))
        kernel["main"](tvm.runtime.tensor(x_u8), tvm.runtime.tensor(weights_i8), out)
        np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize(
    "preset, instructions",
    [
        ("x86-avx2", ["vpmaddubsw\t%ymm", "vpmaddwd\t%ymm"]),
        ("x86-avx512", ["vpmaddubsw\t%zmm", "vpmaddwd\t%zmm"]),
        ("x86-vnni", ["vpdpbusd\t%zmm"]),
        ("arm-cortex-a76", [r"sdot\tv\d+\.4s"]),
        ("arm-cortex-a72", ["smull\tv", "saddlp\tv", "addp\tv"]),
    ],
)
def test_the_int8_matmul_assembly_contains_the_targets_dot_product_instructions(preset, instructions):
    # Code generation only: it needs no CPU that has the instructions.
    target = tuning_target(load_target(preset), 2)
    activations = intrin_for(target).activation
    (task,) = extract_tasks(matmul(activations, np.ones((64, 32), "int8"), 16), target)
    space = _tensorized_spaces(task.dispatched[0], target)[0]
    assembly = tvm.build(space.mod, target=target).inspect_source("asm")
    for instruction in instructions:
        assert re.search(instruction, assembly), instruction


def test_float_kernels_keep_the_default_search_space(tmp_path):
    tasks = extract_tasks(matmul("float32", np.ones((16, 8), "float32"), 4), X86_AVX2)
    with quiet_meta_schedule():
        (context,), _ = tune_contexts(tasks, str(tmp_path), num_threads=1, seed=0, weights_7_bit=True)
    assert not _uses_int8_space(context)


def _uses_int8_space(context) -> bool:
    return any(isinstance(postproc, ms.postproc.RewriteTensorize) for postproc in context.space_generator.postprocs)


@pytest.mark.parametrize(
    "preset, with_8_bit_weights",
    [
        ("x86-avx2", False),
        ("x86-avx512", False),
        ("x86-vnni", True),
        ("arm-cortex-a72", True),
        ("arm-cortex-a76", True),
    ],
)
def test_int8_kernels_get_the_int8_space_with_8_bit_weights_unless_vpmaddubsw(tmp_path, preset, with_8_bit_weights):
    target = tuning_target(load_target(preset), 2)
    activations = intrin_for(target).activation
    tasks = extract_tasks(matmul(activations, np.ones((16, 16), "int8"), 4), target)
    with quiet_meta_schedule():  # MetaSchedule's logging setup fails on pytest's log handlers
        (fits,), _ = tune_contexts(tasks, str(tmp_path), num_threads=1, seed=0, weights_7_bit=True)
        (overflows,), _ = tune_contexts(tasks, str(tmp_path), num_threads=1, seed=0, weights_7_bit=False)
    assert _uses_int8_space(fits)
    assert _uses_int8_space(overflows) == with_8_bit_weights


def test_weights_fit_7_bits_when_two_products_stay_within_int16():
    # 255 * (64 + 64) = 32640 fits int16; one weight of 65 lets 255 * (65 + 64) = 32895 overflow.
    assert weights_within_7_bits(matmul("uint8", np.full((8, 8), -64, "int8"), 1))
    assert not weights_within_7_bits(matmul("uint8", np.full((8, 8), 65, "int8"), 1))


def _log_with_a_tensorized_record(directory, mod: tvm.IRModule, plain_seconds=(), target=X86_AVX2) -> tvm.IRModule:
    """A tuning log at `directory` holding one tensorized record (10 us) for `mod`'s kernel and
    untensorized ones measured at `plain_seconds`; returns the kernel as the tensorized record
    schedules it."""
    (task,) = extract_tasks(mod, target)
    kernel = task.dispatched[0]
    space = _tensorized_spaces(kernel, target)[0]
    log = TuningLog(directory, target)
    workload, args = log.commit_workload(kernel), ms.arg_info.ArgInfo.from_prim_func(kernel["main"])
    log.commit_tuning_record(ms.database.TuningRecord(space.trace, workload, [1e-5], target, args))
    for seconds in plain_seconds:
        trace = tvm.s_tir.Schedule(kernel).trace
        log.commit_tuning_record(ms.database.TuningRecord(trace, workload, [seconds], target, args))
    return space.mod


def test_a_tensorized_record_is_written_to_the_log_and_read_back(tmp_path):
    scheduled = _log_with_a_tensorized_record(tmp_path, matmul("uint8", np.ones((64, 32), "int8"), 16))
    (record,) = TuningLog(tmp_path, X86_AVX2).get_all_tuning_records()
    assert record_intrin(record) is INTRINSICS["avx2"]
    replayed = tvm.s_tir.Schedule(record.workload.mod)
    record.trace.apply_to_schedule(replayed, remove_postproc=False)
    tvm.ir.assert_structural_equal(replayed.mod, scheduled)
    without = TuningLog(tmp_path, X86_AVX2, weights_7_bit=False)
    assert len(without) == 0 and without.skipped_intrin == 1


def test_a_pruned_merge_keeps_the_best_plain_record_beside_the_best_tensorized_one(tmp_path):
    mod = matmul("uint8", np.ones((64, 32), "int8"), 16)
    _log_with_a_tensorized_record(tmp_path / "full", mod, plain_seconds=[3e-5, 2e-5])
    assert merge([tmp_path / "full"], tmp_path / "pruned", top=1) == 2
    kept = TuningLog(tmp_path / "pruned", X86_AVX2).get_all_tuning_records()
    assert sorted(record_intrin(record) is not None for record in kept) == [False, True]
    (plain,) = TuningLog(tmp_path / "pruned", X86_AVX2, weights_7_bit=False).get_all_tuning_records()
    assert [float(s) for s in plain.run_secs] == [2e-5]


def _run_vm(executable, x: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


@pytest.mark.parametrize("depth, columns", [(40, 24), (38, 20)])
def test_compiling_with_the_log_packs_the_weights_once_and_computes_exactly(tmp_path, depth, columns):
    """Whole tiles of weights, or (38 x 20) weights the tuned kernel pads to 40 x 24 as it
    packs them."""
    rng = np.random.default_rng(1)
    weights = rng.integers(-64, 65, (depth, columns)).astype("int8")  # 7 bits: the intrinsic is exact
    mod = matmul("uint8", weights, 3)
    _log_with_a_tensorized_record(tmp_path, mod)
    executable, covered = build_tuned_executable(mod, load_target("x86-avx2"), tmp_path)
    assert len(covered.tuned) == 1 and not covered.untuned
    # The packing (and padding) was split off the kernel and folded into the constant weights:
    # main calls the kernel alone, on prepacked weights.
    assert kernels_called(executable) == ["matmul_prepacked"]
    x = rng.integers(0, 256, (3, depth)).astype("uint8")
    np.testing.assert_array_equal(_run_vm(executable, x), x.astype(np.int32) @ weights.astype(np.int32))


def test_8_bit_weights_compile_without_the_tensorized_records(tmp_path, caplog):
    # 255 * 127 + 255 * 127 overflows vpmaddubsw's int16 sums: the tensorized kernel would be
    # wrong on every output, so the log's record must not be applied.
    weights = np.full((40, 24), 127, "int8")
    mod = matmul("uint8", weights, 3)
    _log_with_a_tensorized_record(tmp_path, mod)
    with caplog.at_level(logging.WARNING, logger="tvmq"):
        executable, covered = build_tuned_executable(mod, load_target("x86-avx2"), tmp_path)
    assert "need 7-bit weights" in caplog.text and not covered.tuned
    x = np.full((3, 40), 255, "uint8")
    np.testing.assert_array_equal(_run_vm(executable, x), x.astype(np.int32) @ weights.astype(np.int32))


def test_vnni_records_apply_to_8_bit_weights_and_compute_exactly(tmp_path):
    """vpdpbusd has no int16 step: the weights that vpmaddubsw would overflow on get the
    tensorized kernel with VNNI, and its results are exact."""
    preset = load_target("x86-vnni")
    target = tuning_target(preset, 2)
    weights = np.full((40, 24), 127, "int8")
    weights[::3] = -128
    mod = matmul("uint8", weights, 3)
    _log_with_a_tensorized_record(tmp_path, mod, target=target)
    executable, covered = build_tuned_executable(mod, preset, tmp_path, num_cores=2)
    assert len(covered.tuned) == 1
    if cannot_run_here(preset):
        pytest.skip(cannot_run_here(preset))
    x = np.full((3, 40), 255, "uint8")
    np.testing.assert_array_equal(_run_vm(executable, x), x.astype(np.int32) @ weights.astype(np.int32))


@pytest.mark.parametrize("preset", ["x86-avx512", "x86-vnni"])
def test_the_default_space_never_uses_tvms_own_x86_int8_intrinsics(tmp_path, preset):
    """MetaSchedule's space chosen by target tensorizes int8 kernels on AVX-512 CPUs with TVM's
    dot_16x4_avx512 (vpmaddubsw: wrong on 8-bit weights) or dot_16x4_vnni (rejected by LLVM)."""
    target = tuning_target(load_target(preset), 2)
    tasks = extract_tasks(matmul("uint8", np.ones((64, 64), "int8"), 16), target)
    with quiet_meta_schedule():
        (context,), _ = tune_contexts(tasks, str(tmp_path), num_threads=1, seed=0, weights_7_bit=False)
        spaces = context.space_generator.generate_design_space(context.mod)
    traces = [str(space.trace) for space in spaces]
    assert traces and not any(name in trace for trace in traces for name in ("dot_16x4_vnni", "dot_16x4_avx512"))


def _tensorized_log(mod: tvm.IRModule, target, directory) -> int:
    """A tuning log at `directory` with, for every kernel of `mod` the target's intrinsic
    computes, a tensorized design space as its record; returns how many."""
    log = TuningLog(directory, target)
    written = 0
    for task in extract_tasks(mod, target):
        kernel = task.dispatched[0]
        spaces = _tensorized_spaces(kernel, target) if tensorizable_block(kernel, intrin_for(target)) else []
        if spaces:
            workload, args = log.commit_workload(kernel), ms.arg_info.ArgInfo.from_prim_func(kernel["main"])
            log.commit_tuning_record(ms.database.TuningRecord(spaces[0].trace, workload, [1e-5], target, args))
            written += 1
    return written


@pytest.mark.parametrize("tuned", [True, False], ids=["tuned", "default-schedule"])
@pytest.mark.parametrize("preset", ["arm-cortex-a76", "arm-cortex-a72"])
def test_tensorized_arm_int8_model_under_qemu_equals_the_x86_build(aarch64_runner, tmp_path, preset, tuned):
    """sdot (Cortex-A76) and smull/saddlp (Cortex-A72) kernels, on two convolutions (1x1, then a
    padded stride-2 3x3) quantized for ARM (int8 activations, 8-bit weights): compiled with a
    log of tensorized records, or without one (tvmq's default int8 schedule), and run under
    qemu, the output equals the x86 build's bit for bit."""
    from tvmq.compiler import codegen_module
    from tvmq.runtime.cpp_runner import RunnerPackage

    fp32 = tvmq.load_model(onnx_models.pointwise_relu6_then_padded_conv())
    calibration = {"x": np.random.default_rng(1).normal(size=(16, 4, 8, 8)).astype(np.float32)}
    int8 = quantize_model(fp32, calibration, target=preset)
    assert int8.quantization["config"]["activation_dtype"] == "int8"
    arm = load_target(preset)
    log = None
    if tuned:
        log = tmp_path / "log"
        assert _tensorized_log(codegen_module(int8.mod, arm), tuning_target(arm, None), log) == 2
    metadata = tvmq.compile_model(int8, arm, tmp_path / "arm", tuning_log=log)
    assert not tuned or len(metadata.tuning["tuned"]) == 2
    tvmq.compile_model(int8, "host", tmp_path / "x86")
    for seed in range(3):
        inputs = {"x": 3 * np.random.default_rng(seed).normal(size=(1, 4, 8, 8)).astype(np.float32)}
        expected = tvmq.load_package(tmp_path / "x86").run(inputs)
        actual = RunnerPackage(tmp_path / "arm").run(inputs)
        for name in expected:
            np.testing.assert_array_equal(actual[name], expected[name])


def test_meta_schedule_keeps_its_info_lines_off_the_console_however_often_it_sets_up(tmp_path, capsys):
    """tune_contexts sets MetaSchedule's logging up twice for an int8 model (plain and int8
    spaces); each setup used to reset the level, and every later line reached the console."""
    import logging

    tasks = extract_tasks(matmul("uint8", np.ones((16, 16), "int8"), 4), X86_AVX2)
    with quiet_meta_schedule():
        tune_contexts(tasks, str(tmp_path), num_threads=1, seed=0, weights_7_bit=True)
        logging.getLogger("tvm.s_tir.meta_schedule").info("TaskScheduler picks Task #0")
    assert "TaskScheduler picks" not in capsys.readouterr().out
