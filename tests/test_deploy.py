"""Deploying to ARM boards and CUDA GPUs.

An ARM build is proven by running it: the C++ runner is cross-compiled against the aarch64 TVM
runtime (PyPI's manylinux_2_28_aarch64 wheels, cached in ~/.cache/tvmq) and run under
qemu-aarch64; its outputs must equal the x86 build's (int8: bit for bit; fp32: to float32
rounding). Tests that need the cross compiler, qemu or the wheels skip with the reason (shown
by pytest -ra) when those cannot be had; .ci/run installs them.
"""

import subprocess

import numpy as np
import onnx_models
import pytest

import tvmq
from tvmq.errors import PackageError, TvmqError
from tvmq.quantize import quantize_model
from tvmq.runtime.cpp_runner import RunnerPackage, build_runner
from tvmq.runtime.runtime_libs import host_runtime
from tvmq.tolerance import FP16_TOLERANCE, allowed_error

ARM = "arm-cortex-a76"


@pytest.fixture(scope="module")
def models():
    """The small CNN in float32 and int8 (calibrated on 16 random images)."""
    fp32 = tvmq.load_model(onnx_models.conv_net(), input_shapes={"image": (1, 3, 16, 16)})
    calibration = {"image": np.random.default_rng(1).normal(size=(16, 3, 16, 16)).astype(np.float32)}
    return {"fp32": fp32, "int8": quantize_model(fp32, calibration)}


@pytest.fixture(scope="module")
def builds(tmp_path_factory, models):
    """Package directories by (precision, "x86" | "arm")."""
    root = tmp_path_factory.mktemp("builds")
    cache = {}

    def build(precision, where):
        if (precision, where) not in cache:
            target = "host" if where == "x86" else ARM
            tvmq.compile_model(models[precision], target, root / f"{precision}-{where}")
            cache[precision, where] = root / f"{precision}-{where}"
        return cache[precision, where]

    return build


def emulated_and_native_outputs(builds, precision, seed):
    native = tvmq.load_package(builds(precision, "x86"))
    inputs = native.random_inputs(seed)
    emulated = RunnerPackage(builds(precision, "arm"))
    assert emulated.emulated and emulated.arch == "aarch64"
    return emulated.run(inputs)["logits"], native.run(inputs)["logits"]


@pytest.mark.parametrize("seed", [0, 1])
def test_arm_fp32_build_under_qemu_matches_the_x86_build(aarch64_runner, builds, seed):
    arm, x86 = emulated_and_native_outputs(builds, "fp32", seed)
    # Same kernels in float32; only instruction selection (FMA contraction) may differ.
    np.testing.assert_allclose(arm, x86, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_arm_int8_build_under_qemu_is_bit_exact_with_the_x86_build(aarch64_runner, builds, seed):
    arm, x86 = emulated_and_native_outputs(builds, "int8", seed)
    # Integer arithmetic end to end (uint8 x int8 -> int32, integer requantization): no
    # rounding freedom anywhere, so any difference is a bug.
    assert np.array_equal(arm, x86)


def test_arm_fp16_build_under_qemu_agrees_with_fp32_within_fp16_tolerance(aarch64_runner, builds, models, tmp_path):
    from tvmq.quantize.fp16 import to_fp16

    metadata = tvmq.compile_model(to_fp16(models["fp32"]), ARM, tmp_path / "fp16")
    assert metadata.quantization["mode"] == "fp16"
    x86 = tvmq.load_package(builds("fp32", "x86"))
    inputs = x86.random_inputs(0)
    fp16 = RunnerPackage(tmp_path / "fp16").run(inputs)["logits"]
    fp32 = x86.run(inputs)["logits"]
    error = np.abs(fp16 - fp32).max()
    # Logits of magnitude ~2: float16's 11 bits give errors near 1e-3, far from fp32's 1e-7.
    assert 1e-5 < error <= allowed_error(fp32, **FP16_TOLERANCE)


def test_runner_source_in_a_package_builds_natively_and_matches_python(builds, tmp_path):
    package_dir = builds("int8", "x86")
    executable = tmp_path / "tvmq_runner"
    env = {"RUNTIME": str(host_runtime()), "OUT": str(executable), "PATH": "/usr/bin:/bin"}
    subprocess.run(["sh", str(package_dir / "runner" / "build.sh")], env=env, check=True, capture_output=True)
    package = tvmq.load_package(package_dir)
    inputs = package.random_inputs(3)
    np.save(tmp_path / "image.npy", inputs["image"])
    # As the runner's README says to run it: from the package, the library by its bare name.
    result = subprocess.run(
        [executable, "model.so", tmp_path, tmp_path / "image.npy", "--repeat", "2"],
        cwd=package_dir,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "median" in result.stdout
    assert np.array_equal(np.load(tmp_path / "output_0.npy"), package.run(inputs)["logits"])


def test_runner_names_a_file_that_is_not_npy(builds, tmp_path):
    executable = build_runner("x86_64")
    (tmp_path / "image.npy").write_bytes(b"not numpy")
    result = subprocess.run(
        [executable, builds("fp32", "x86") / "model.so", tmp_path, tmp_path / "image.npy"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "image.npy: not a .npy file" in result.stderr


def test_runner_package_refuses_a_modified_library_and_wrong_inputs(builds, tmp_path):
    import shutil

    copy = tmp_path / "pkg"
    shutil.copytree(builds("fp32", "x86"), copy)
    package = RunnerPackage(copy)
    with pytest.raises(TvmqError, match=r"input 'image' has shape \[1, 3, 8, 8\], expected \[1, 3, 16, 16\]"):
        package.run({"image": np.zeros((1, 3, 8, 8), np.float32)})
    with open(copy / "model.so", "ab") as f:
        f.write(b"\0")
    with pytest.raises(PackageError, match="does not match its package metadata"):
        package.run(package.random_inputs())


def test_cli_runs_an_arm_package_under_emulation(aarch64_runner, builds, cli, tmp_path):
    inputs = tvmq.load_package(builds("int8", "x86")).random_inputs(0)
    np.save(tmp_path / "image.npy", inputs["image"])
    result = cli("run", builds("int8", "arm"), "--emulate", "--input", tmp_path / "image.npy", "-o", tmp_path / "o.npz")
    assert result.code == 0, result.err
    assert "(ran under aarch64 emulation)" in result.out
    expected = tvmq.load_package(builds("int8", "x86")).run(inputs)["logits"]
    assert np.array_equal(np.load(tmp_path / "o.npz")["logits"], expected)


def test_cli_refuses_to_emulate_a_package_that_runs_here(builds, cli):
    result = cli("run", builds("fp32", "x86"), "--emulate")
    assert result.code == 1
    assert "--emulate is for packages built for another CPU" in result.err


def test_cli_compile_verifies_an_arm_build_under_emulation(aarch64_runner, cli, tmp_path):
    import onnx

    onnx.save(onnx_models.conv_net(), tmp_path / "conv.onnx")
    result = cli(
        "compile", tmp_path / "conv.onnx", "-t", "arm-cortex-a72", "-o", tmp_path / "arm",
        "--input-shape", "image=1,3,16,16", "--quantize", "fp16", "--verify",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "verified under aarch64 emulation against onnxruntime" in result.out
    assert "(within fp16 tolerance)" in result.out


def test_fp16_takes_no_calibration_data(cli, tmp_path):
    result = cli("compile", "m.onnx", "-t", "host", "-o", tmp_path / "o", "--quantize", "fp16", "--calib", "c.npz")
    assert result.code == 1
    assert "--calib is only used with --quantize int8" in result.err


def test_fp16_mode_refuses_an_int8_model(models):
    from tvmq.quantize.fp16 import to_fp16

    with pytest.raises(TvmqError, match="fp16 mode applies to a float model; this one is int8-quantized"):
        to_fp16(models["int8"])


def test_fp16_mode_keeps_relu6_bounds(tmp_path):
    """ReLU6 (Clip 0..6, as in MobileNet/EfficientNet) used to stop fp16 mode: ToMixedPrecision
    rejects clip's scalar bounds. The fp16 build must still clamp at 0 and 6: inputs scaled x100
    push most activations past both bounds."""
    from tvmq.quantize.fp16 import to_fp16

    model = tvmq.load_model(onnx_models.padded_relu6_convs())
    tvmq.compile_model(model, "host", tmp_path / "fp32")
    tvmq.compile_model(to_fp16(model), "host", tmp_path / "fp16")
    inputs = {name: 100 * value for name, value in tvmq.load_package(tmp_path / "fp32").random_inputs(1).items()}
    [fp32] = tvmq.load_package(tmp_path / "fp32").run(inputs).values()
    [fp16] = tvmq.load_package(tmp_path / "fp16").run(inputs).values()
    assert np.abs(fp16 - fp32).max() <= allowed_error(fp32, **FP16_TOLERANCE)
