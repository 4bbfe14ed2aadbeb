"""The `tvmq` command line: the contract users script against. Every failure is one line on
stderr, a non-zero exit code, no traceback, and no output left half-written."""

import json
import subprocess
import sys

import numpy as np
import onnx
import onnx_models
import pytest
from conftest import tree_snapshot


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "conv.onnx"
    onnx.save(onnx_models.conv_net(), path)
    return path


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory, model_file):
    from tvmq.cli import main

    out = tmp_path_factory.mktemp("cli") / "pkg"
    assert main(["compile", str(model_file), "-t", "host", "-o", str(out), "--input-shape", "image=1,3,16,16"]) == 0
    return out


def assert_clean_failure(result, message):
    assert result.code != 0
    assert message in result.err
    assert "Traceback" not in result.err + result.out


def test_targets_lists_every_preset(cli):
    result = cli("targets")
    assert result.code == 0
    names = [line.split()[0] for line in result.out.splitlines()]
    assert {"host", "x86-avx2", "cuda-sm90", "arm-neoverse-n1"} <= set(names)
    as_json = json.loads(cli("targets", "--json").out)
    assert {p["name"] for p in as_json} == set(names)


def test_compile_with_verify_compares_against_onnxruntime(cli, tmp_path, model_file):
    result = cli(
        "compile", model_file, "-t", "host", "-o", tmp_path / "out", "--input-shape", "image=2,3,16,16", "--verify"
    )
    assert result.code == 0, result.err
    assert "output  logits: float32[2, 10]" in result.out
    assert "verified against onnxruntime on random inputs: max |diff|" in result.out


def test_verify_is_skipped_with_a_reason_for_cross_targets_it_cannot_emulate(cli, tmp_path, model_file, monkeypatch):
    pytest.importorskip("shutil").which("aarch64-linux-gnu-g++") or pytest.skip("no aarch64 cross compiler")
    from tvmq.runtime.cpp_runner import Toolchain

    # Where qemu is installed, --verify runs the build under emulation (tests/test_deploy.py).
    monkeypatch.setattr(Toolchain, "missing", lambda self: "qemu-aarch64 is not installed (apt-get install qemu-user)")
    result = cli(
        "compile",
        model_file,
        "-t",
        "arm-cortex-a72",
        "-o",
        tmp_path / "arm",
        "--input-shape",
        "image=1,3,16,16",
        "--verify",
    )
    assert result.code == 0, result.err
    assert (
        "--verify skipped: target arm-cortex-a72 is aarch64; this machine is x86_64, "
        "and it cannot be emulated: qemu-aarch64 is not installed (apt-get install qemu-user)" in result.out
    )


def test_run_saves_outputs_by_name(cli, tmp_path, package_dir, model_file):
    import tvmq

    image = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    result = cli("run", package_dir, "--input", f"image={tmp_path / 'image.npy'}", "-o", tmp_path / "out.npz")
    assert result.code == 0, result.err
    assert result.out.startswith("logits: float32[1, 10]")
    saved = np.load(tmp_path / "out.npz")
    assert saved.files == ["logits"]
    reference = tvmq.load_model(model_file, input_shapes={"image": (1, 3, 16, 16)}).reference
    np.testing.assert_allclose(saved["logits"], reference({"image": image})[0], rtol=1e-4, atol=1e-5)


def test_bench_prints_a_table_and_writes_json(cli, tmp_path, package_dir):
    result = cli("bench", package_dir, "--repeat", 3, "--threads", 1, "--json", tmp_path / "bench.json")
    assert result.code == 0, result.err
    assert "median" in result.out and "threads  1" in result.out
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["repeat"] == 3 and report["threads"] == 1
    assert report["min_ms"] <= report["median_ms"] <= report["max_ms"]


def test_demo_builds_float_and_int8_packages_and_classifies_the_bundled_example(cli, tmp_path):
    result = cli("demo", "-o", tmp_path / "demo")
    assert result.code == 0, result.err
    rows = {line.split()[0]: line.split() for line in result.out.splitlines() if line.strip().endswith(" ms")}
    # The example model's fp32 accuracy on these 500 images is 94.6%; int8 stays within a point.
    assert float(rows["fp32"][1].rstrip("%")) > 94 and float(rows["int8"][1].rstrip("%")) > 93.5
    assert "fp32 vs onnxruntime: same class on 500/500 images" in result.out
    assert (tmp_path / "demo" / "fp32" / "model.so").is_file() and (tmp_path / "demo" / "int8" / "model.so").is_file()


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d: d.write_bytes(b"\x08\x07garbage") and None, "is not a valid ONNX model"),
        (lambda d: onnx.save(onnx_models.with_unsupported_ops(), d), "ConvInteger (2 nodes: conv_int_a, conv_int_b)"),
        (lambda d: onnx.save(onnx_models.conv_net(), d), "input 'image' has dynamic dimensions"),
    ],
    ids=["corrupt", "unsupported-op", "missing-shape"],
)
def test_bad_models_fail_cleanly_and_leave_the_output_untouched(cli, tmp_path, package_dir, make_input, message):
    model = tmp_path / "bad.onnx"
    make_input(model)
    before = tree_snapshot(package_dir)
    result = cli("compile", model, "-t", "host", "-o", package_dir)
    assert_clean_failure(result, message)
    assert tree_snapshot(package_dir) == before
    result = cli("compile", model, "-t", "host", "-o", tmp_path / "new")
    assert_clean_failure(result, message)
    assert not (tmp_path / "new").exists()


def test_unknown_target_lists_the_known_ones(cli, tmp_path, model_file):
    result = cli("compile", model_file, "-t", "x86-avx3", "-o", tmp_path / "out", "--input-shape", "image=1,3,16,16")
    assert_clean_failure(result, "unknown target 'x86-avx3'; known targets: arm-cortex-a72")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "array, name, message",
    [
        (
            np.zeros((1, 3, 16, 16), np.float32),
            "img",
            "unknown input 'img'; missing input image: float32[1, 3, 16, 16]",
        ),
        (
            np.zeros((1, 3, 15, 16), np.float32),
            "image",
            "input 'image' has shape [1, 3, 15, 16], expected [1, 3, 16, 16]",
        ),
        (np.zeros((1, 3, 16, 16), np.float64), "image", "input 'image' has dtype float64, expected float32"),
    ],
    ids=["name", "shape", "dtype"],
)
def test_wrong_run_inputs_fail_cleanly(cli, tmp_path, package_dir, array, name, message):
    np.save(tmp_path / "x.npy", array)
    result = cli("run", package_dir, "--input", f"{name}={tmp_path / 'x.npy'}", "-o", tmp_path / "out.npz")
    assert_clean_failure(result, message)
    assert not (tmp_path / "out.npz").exists()


def test_unreadable_input_file_is_named(cli, tmp_path, package_dir):
    result = cli("run", package_dir, "--input", f"image={tmp_path / 'missing.npy'}")
    assert_clean_failure(result, "cannot read input 'image' from")


def test_console_script_exits_non_zero_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tvmq.cli", "run", str(tmp_path / "no-package")], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"tvmq: error: {tmp_path / 'no-package'} is not a tvmq package: no such directory"


def test_debug_flag_shows_the_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tvmq.cli", "--debug", "run", str(tmp_path / "no-package")],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.fixture(scope="module")
def quantized_package(tmp_path_factory):
    from tvmq.cli import main
    from tvmq.resources import examples_dir

    example = examples_dir() / "fashion_mnist"
    out = tmp_path_factory.mktemp("quant") / "int8"
    args = [
        "compile",
        str(example / "model.onnx"),
        "-t",
        "host",
        "-o",
        str(out),
        "--input-shape",
        "image=1,1,28,28",
        "--quantize",
        "int8",
        "--calib",
        str(example / "calibration.npz"),
        "--calib-samples",
        "64",
        "--calib-cache",
        "none",
        "--error-report",
        "full",
    ]
    assert main(args) == 0
    return out


def test_quantized_compile_records_the_settings_and_error(quantized_package):
    metadata = json.loads((quantized_package / "metadata.json").read_text())
    record = metadata["quantization"]
    assert record["mode"] == "int8"
    assert record["config"]["method"] == "minmax" and record["config"]["per_channel"] is True
    assert record["calibration"]["samples"] == 64
    assert {row["layer"].split()[0] for row in record["error"]["layers"]} == {
        "conv2d_0",
        "conv2d_1",
        "conv2d_2",
        "matmul_0",
        "matmul_1",
    }
    # the output figures are the compiled library's, not the simulated model's
    assert record["error"]["outputs_of"] == "compiled model"
    assert record["error"]["outputs"][0]["top1_agreement"] >= 0.9


@pytest.mark.parametrize(
    "error, printed",
    [
        (
            {"report": "quick", "samples": 16, "layers": [], "outputs": [{"sqnr_db": 30.0, "cosine": 0.999}]},
            ["output SQNR 30.0 dB", "per layer     not measured (--error-report full"],
        ),
        (
            {"report": "quick", "samples": 16, "layers": [], "outputs_not_measured": "target rpi4 is aarch64"},
            ["output error not measured: target rpi4 is aarch64"],
        ),
    ],
)
def test_compile_summary_says_what_the_error_report_measured(capsys, error, printed):
    from tvmq.cli import _print_quantization_summary

    _print_quantization_summary({"mode": "int8", "layers": ["conv2d_0"], "error": error})
    out = capsys.readouterr().out
    assert all(text in out for text in printed), out


def test_report_prints_settings_sizes_and_layers_worst_first(cli, quantized_package):
    result = cli("report", quantized_package)
    assert result.code == 0, result.err
    assert "quantization  int8" in result.out and "method=minmax" in result.out
    assert "KiB float32 ->" in result.out
    table = result.out.split("worst first")[1].splitlines()[2:]
    sqnrs = [float(line.split()[-2]) for line in table if line.strip()]
    assert len(sqnrs) == 5 and sqnrs == sorted(sqnrs)


def test_report_of_a_float_package_says_so(cli, package_dir):
    result = cli("report", package_dir)
    assert result.code == 0 and "quantization  none (float model)" in result.out


def test_quantized_package_runs_from_the_command_line(cli, tmp_path, quantized_package):
    from tvmq.resources import examples_dir

    test = np.load(examples_dir() / "fashion_mnist" / "test.npz")
    np.save(tmp_path / "image.npy", test["image"][:1])
    result = cli("run", quantized_package, "--input", f"image={tmp_path / 'image.npy'}", "-o", tmp_path / "out.npz")
    assert result.code == 0, result.err
    assert np.load(tmp_path / "out.npz")["logits"].argmax() == test["label"][0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--quantize", "int8"], "--quantize int8 needs calibration data: --calib DATA.npz"),
        (["--calib", "x.npz"], "--calib is only used with --quantize int8"),
        (["--simulate"], "--simulate needs a quantized model"),
        (["--quantize", "int8", "--calib", "nothere.npz"], "cannot read calibration data nothere.npz"),
        (["--quantize", "int8", "--calib", "x.npz", "--percentile", "20"], "percentile must be in (50, 100]"),
    ],
)
def test_bad_quantization_arguments_fail_cleanly(cli, tmp_path, model_file, extra, message):
    result = cli(
        "compile", model_file, "-t", "host", "-o", tmp_path / "out", "--input-shape", "image=1,3,16,16", *extra
    )
    assert_clean_failure(result, message)
    assert not (tmp_path / "out").exists()
