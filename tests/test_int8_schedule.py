"""The default int8 schedule (tvmq.kernels.int8_schedule): with no tuning log, every int8 matmul
and convolution that the target's dot-product intrinsic computes is tiled around it instead of
compiling to TVM's naive loops; the results stay exact (numpy, or the plain integer kernels),
whatever the shapes; float kernels are left alone."""

import re

import numpy as np
import onnx_models
import pytest
import tvm
import tvm_ffi
from relax_models import X86_PRESETS, int8_matmul_operands, kernels_called, matmul, skip_unless_runnable
from tvm import relax

import tvmq
from tvmq.codegen.pipeline import build_executable
from tvmq.compiler import codegen_module
from tvmq.kernels.int8_schedule import schedule_int8_kernel
from tvmq.kernels.intrinsics import intrin_for
from tvmq.kernels.spaces import int8_space
from tvmq.kernels.tasks import extract_tasks, tuning_target
from tvmq.quantize import quantize_model
from tvmq.target import load_target


def _kernel(mod: tvm.IRModule, target) -> tvm.tirx.PrimFunc:
    (task,) = extract_tasks(mod, target)
    return task.dispatched[0]["main"]


@pytest.mark.parametrize("preset", X86_PRESETS)
@pytest.mark.parametrize("rows, depth, columns", [(7, 10, 13), (16, 64, 48), (1, 36, 40)])
def test_an_untuned_int8_matmul_equals_numpy_on_odd_shapes(preset, rows, depth, columns):
    """Depth not a multiple of 4 and columns not a multiple of the lanes are padded; a prime
    row count gets a tile of its own size; one row is a matrix-vector product. The weights are
    padded and packed at compile time: main calls the kernel alone, on prepacked weights."""
    skip_unless_runnable(preset)
    saturating = intrin_for(load_target(preset).tvm_target()).saturates
    x, weights = int8_matmul_operands(rows, depth, columns, saturating, seed=rows + depth)
    executable = build_executable(matmul("uint8", weights, rows), load_target(preset))
    assert kernels_called(executable) == ["matmul_prepacked"]
    out = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(out, x.astype(np.int32) @ weights.astype(np.int32))


@pytest.mark.parametrize(
    "preset, instruction",
    [
        ("x86-avx2", "vpmaddubsw\t%ymm"),
        ("x86-avx512", "vpmaddubsw\t%zmm"),
        ("x86-vnni", "vpdpbusd\t%zmm"),
        ("arm-cortex-a76", r"sdot\tv\d+\.4s"),
        ("arm-cortex-a72", r"smull\tv"),
    ],
)
def test_the_default_schedule_tensorizes_with_the_targets_instruction_across_cores(preset, instruction):
    # Code generation only: it needs no CPU that has the instructions.
    target = tuning_target(load_target(preset), 2)
    intrin = intrin_for(target)
    scheduled = schedule_int8_kernel(_kernel(matmul(intrin.activation, np.ones((64, 64), "int8"), 16), target), intrin)
    assert scheduled is not None and "T.parallel" in scheduled.script()
    assembly = tvm.tirx.build(tvm.IRModule({"main": scheduled}), target=target).inspect_source("asm")
    assert re.search(instruction, assembly)


def test_float_kernels_are_left_to_the_default_code():
    target = tuning_target(load_target("x86-vnni"), 2)
    kernel = _kernel(matmul("float32", np.ones((64, 64), "float32"), 16), target)
    assert schedule_int8_kernel(kernel, intrin_for(target)) is None


@pytest.mark.parametrize("preset", X86_PRESETS)
@pytest.mark.parametrize(
    "model", list(onnx_models.SCHEDULED_CONV_BLOCKS.values()), ids=list(onnx_models.SCHEDULED_CONV_BLOCKS)
)
def test_an_untuned_int8_model_equals_the_plain_integer_kernels(tmp_path, preset, model):
    """Convolutions with bias, ReLU (or ReLU6), requantization, an explicit pad before a
    stride-2 3x3, a residual Add of two integer tensors, 32 channels (two tiles of AVX-512's 16
    lanes) or 24 (EfficientNet's: padded to whole tiles), a depthwise 3x3 (vectors of channels,
    no intrinsic): every convolution's kernel gets the schedule, with its epilogue fused, and
    the package's outputs equal those of TVM's unscheduled integer kernels bit for bit."""
    skip_unless_runnable(preset)
    fp32 = tvmq.load_model(model())
    (spec,) = fp32.inputs
    rng = np.random.default_rng(1)
    int8 = quantize_model(fp32, {spec.name: rng.normal(size=(16, *spec.shape[1:])).astype(np.float32)}, target=preset)
    mod = codegen_module(int8.mod, load_target(preset))
    target = tuning_target(load_target(preset), 2)
    intrin = intrin_for(target)
    kernels = [task.dispatched[0]["main"] for task in extract_tasks(mod, target)]
    scheduled = [kernel for kernel in kernels if schedule_int8_kernel(kernel, intrin) is not None]
    assert len(scheduled) == sum(node.op_type == "Conv" for node in model().graph.node)

    tvmq.compile_model(int8, preset, tmp_path / "pkg")
    plain = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    package = tvmq.load_package(tmp_path / "pkg")
    for seed in range(3):
        x = 3 * np.random.default_rng(seed).normal(size=spec.shape).astype(np.float32)
        expected = plain["main"](tvm.runtime.tensor(x)).numpy()
        (actual,) = package.run({spec.name: x}).values()
        np.testing.assert_array_equal(actual, expected)


def test_tuning_measures_the_default_schedule_beside_the_searched_candidates():
    """So that a tuned kernel is never slower than the one a build without a log would get."""
    target = tuning_target(load_target("x86-vnni"), 2)
    intrin = intrin_for(target)
    (task,) = extract_tasks(matmul("uint8", np.ones((32, 32), "int8"), 4), target)
    kernel = task.dispatched[0]
    context = tvm.s_tir.meta_schedule.TuneContext(
        kernel, target=target, space_generator=int8_space(intrin), task_name="matmul", rand_state=0
    )
    spaces = context.space_generator.generate_design_space(kernel)
    expected = schedule_int8_kernel(kernel["main"], intrin)
    assert [tvm_ffi.structural_equal(space.mod["main"], expected) for space in spaces].count(True) == 1
