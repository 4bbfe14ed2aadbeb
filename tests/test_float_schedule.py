"""The default float schedule (tvmq.kernels.float_schedule): with no tuning log, float
convolutions and matmuls on CPUs are register-tiled on the CPU's vectors and spread over its
cores instead of compiling to TVM's scalar loops on one core; results agree with onnxruntime
and numpy to float rounding, whatever the shapes."""

import re

import numpy as np
import onnx_models
import onnxruntime as ort
import pytest
import tvm
import tvm_ffi
from relax_models import matmul, skip_unless_runnable
from tvm import relax
from tvm.s_tir import meta_schedule as ms

import tvmq
from tvmq.codegen.pipeline import build_executable
from tvmq.compiler import codegen_module
from tvmq.kernels.float_schedule import schedule_float_kernel
from tvmq.kernels.spaces import cpu_space
from tvmq.kernels.tasks import extract_tasks, tuning_target
from tvmq.target import float_vectors, load_target

FLOAT_PRESETS = ["x86-avx2", "x86-avx512"]  # 8 and 16 lanes


def _kernels(mod: tvm.IRModule, target) -> list[tvm.tirx.PrimFunc]:
    return [task.dispatched[0]["main"] for task in extract_tasks(mod, target)]


@pytest.mark.parametrize("preset", FLOAT_PRESETS)
@pytest.mark.parametrize("rows, depth, columns", [(7, 13, 32), (16, 64, 24), (1, 36, 40), (9, 5, 7), (197, 8, 16)])
def test_an_untuned_float_matmul_equals_numpy_on_odd_shapes(preset, rows, depth, columns):
    """24 and 40 columns are whole vectors of half AVX-512's lanes (8); 7 columns of weights are
    no whole vector and keep TVM's default code; 197 rows, prime, are computed padded to whole
    tiles of 8 rows, zeros in the padding, cut off in the output (a prime below PAD_ROWS_FROM
    gets a tile of its own size)."""
    skip_unless_runnable(preset)
    rng = np.random.default_rng(rows + depth)
    x, weights = (rng.normal(size=shape).astype(np.float32) for shape in ((rows, depth), (depth, columns)))
    mod = matmul("float32", weights, rows)
    target = tuning_target(load_target(preset), 2)
    (kernel,) = _kernels(mod, target)
    scheduled = schedule_float_kernel(kernel, *float_vectors(target))
    assert (scheduled is not None) == (columns % 8 == 0)
    assert scheduled is None or ("matmul_pad" in scheduled.script()) == (rows == 197)
    out = relax.VirtualMachine(build_executable(mod, load_target(preset)), tvm.cpu())["main"](tvm.runtime.tensor(x))
    np.testing.assert_allclose(out.numpy(), x @ weights, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "preset, instruction",
    [
        ("x86-avx2", r"vfmadd\d+ps\t%ymm"),
        ("x86-avx512", r"vfmadd\d+ps\t(\(.*\)\{1to16\}|%zmm)"),
        ("arm-cortex-a72", r"fmla\tv\d+\.4s"),
    ],
)
def test_the_default_schedule_multiplies_whole_vectors_across_cores(preset, instruction):
    # Code generation only: it needs no CPU that has the instructions.
    target = tuning_target(load_target(preset), 2)
    (kernel,) = _kernels(matmul("float32", np.ones((64, 64), "float32"), 16), target)
    scheduled = schedule_float_kernel(kernel, *float_vectors(target))
    assert scheduled is not None and "T.parallel" in scheduled.script()
    assembly = tvm.tirx.build(tvm.IRModule({"main": scheduled}), target=target).inspect_source("asm")
    assert re.search(instruction, assembly)


@pytest.mark.parametrize("preset", FLOAT_PRESETS)
@pytest.mark.parametrize(
    "model", list(onnx_models.SCHEDULED_CONV_BLOCKS.values()), ids=list(onnx_models.SCHEDULED_CONV_BLOCKS)
)
def test_an_untuned_float_model_matches_onnxruntime(tmp_path, preset, model):
    """Bias, ReLU and ReLU6 fused into the tile; an explicit pad after a convolution (a tensor of
    another shape, which must not be computed tile by tile: its border would be left unwritten);
    a residual Add; a depthwise 3x3 (each channel reads its own input channel). Every
    convolution's kernel gets the schedule, and the package agrees with onnxruntime."""
    skip_unless_runnable(preset)
    proto = model()
    imported = tvmq.load_model(proto)
    target = tuning_target(load_target(preset), 2)
    kernels = _kernels(codegen_module(imported.mod, load_target(preset)), target)
    scheduled = [k for k in kernels if schedule_float_kernel(k, *float_vectors(target)) is not None]
    assert len(scheduled) == sum(node.op_type == "Conv" for node in proto.graph.node)

    tvmq.compile_model(imported, preset, tmp_path / "pkg")
    package = tvmq.load_package(tmp_path / "pkg")
    session = ort.InferenceSession(proto.SerializeToString())
    (spec,) = imported.inputs
    for seed in range(3):
        x = 3 * np.random.default_rng(seed).normal(size=spec.shape).astype(np.float32)
        (actual,) = package.run({spec.name: x}).values()
        np.testing.assert_allclose(actual, session.run(None, {spec.name: x})[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "model, expected",
    [
        (lambda: onnx_models.depthwise_block(stride=2), ["group_conv2d_nhwc"]),
        (onnx_models.depthwise_block, []),
        (onnx_models.residual_block, []),
        (lambda: onnx_models.pointwise_relu6_then_padded_conv(channels=32), []),
    ],
    ids=["strided-depthwise", "depthwise", "residual-block", "strided-full-conv"],
)
def test_only_a_strided_depthwise_convolution_pads_inside_its_tiles(model, expected):
    """A stride-2 depthwise convolution reads windows of an input four times its output, with 9
    multiply-adds per output: each tile pads the window it reads, inside the parallel tile loop
    (a padded copy of the whole input took half its time). Stride-1 depthwise and full
    convolutions keep a padding pass of their own before the tiles."""
    target = tuning_target(load_target("x86-avx512"), 2)
    mod = codegen_module(tvmq.load_model(model()).mod, load_target("x86-avx512"))
    padded_per_tile = []
    for kernel in _kernels(mod, target):
        scheduled = schedule_float_kernel(kernel, *float_vectors(target))
        script = scheduled.script() if scheduled is not None else ""
        if "pad_temp" not in script:
            continue
        sch = tvm.s_tir.Schedule(scheduled)
        (conv,) = (name for name in ("conv2d_nhwc", "group_conv2d_nhwc") if f'"{name}_update"' in script)
        tile_loop = sch.get_loops(sch.get_sblock(f"{conv}_update"))[0]
        if sch.get(sch.get_loops(sch.get_sblock("pad_temp"))[0]).same_as(sch.get(tile_loop)):
            padded_per_tile.append(conv)
    assert padded_per_tile == expected


def test_a_convolution_without_padding_reads_its_input_where_it_lies():
    """TVM's convolution reads its input through a pad stage even with no padding: a copy of
    the whole input, a pass over memory before every 1x1 convolution (EfficientNet-Lite0's
    took 8-26% of their time). The default schedule inlines it; the 3x3 keeps its real pad."""
    target = tuning_target(load_target("x86-avx512"), 2)
    mod = codegen_module(tvmq.load_model(onnx_models.depthwise_block()).mod, load_target("x86-avx512"))
    scheduled = [schedule_float_kernel(kernel, *float_vectors(target)) for kernel in _kernels(mod, target)]
    scripts = [func.script() for func in scheduled if func is not None]
    reads_a_copy = sorted(("group_conv2d" in script, '"pad_temp"' in script) for script in scripts)
    # (depthwise, pads): the expand and project 1x1 convolutions, then the depthwise 3x3
    assert reads_a_copy == [(False, False), (False, False), (True, True)]


@pytest.mark.parametrize("depth, columns, first", [(64, 64, "i0"), (1024, 512, "i1")], ids=["16KB", "2MB"])
def test_only_weights_that_outgrow_a_core_cache_are_tiled_channels_first(depth, columns, first):
    """A 16-row matmul's register tiles, spread across the cores: rows first (i0) where
    the weights fit a core's L2 whatever the order, so that each core keeps whole rows of the
    activations in its own cache; channel tiles first (i1) above 1 MB, so that a tile's weights
    serve all rows while they are in cache."""
    target = tuning_target(load_target("x86-avx512"), 2)
    (task,) = extract_tasks(matmul("float32", np.ones((depth, columns), "float32"), 16), target)
    scheduled = schedule_float_kernel(task.dispatched[0]["main"], *float_vectors(target))
    (parallel_loop,) = re.findall(r"for (\w+) in T\.parallel", scheduled.script())
    assert parallel_loop.startswith(first)


def test_tuning_measures_the_default_schedule_beside_the_searched_candidates():
    """So that a tuned float kernel is never slower than the one a build without a log gets:
    the default schedule is one of the design spaces, and it survives the post-processing that
    every candidate gets before it is measured."""
    target = tuning_target(load_target("x86-avx512"), 2)
    (task,) = extract_tasks(matmul("float32", np.ones((32, 32), "float32"), 4), target)
    kernel = task.dispatched[0]
    context = ms.TuneContext(kernel, target=target, space_generator=cpu_space(float_vectors(target)), rand_state=0)
    spaces = context.space_generator.generate_design_space(kernel)
    expected = schedule_float_kernel(kernel["main"], *float_vectors(target))
    default = [s for s in spaces if tvm_ffi.structural_equal(s.mod["main"], expected)]
    assert len(spaces) > 1 and len(default) == 1
    assert all(postproc.apply(default[0]) for postproc in context.space_generator.postprocs)
