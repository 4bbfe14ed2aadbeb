"""`tvmq report`: a package's latency, size and agreement with a baseline package, as a table,
JSON and a PNG chart, on the bundled example's fp32 and int8 builds."""

import json
import sys

import numpy as np
import onnx
import onnx_models
import pytest
from bundled_example import EXAMPLE, FP32_TOP1

from tvmq.errors import InputError, PackageError
from tvmq.report import build_report, format_report, write_chart, write_json


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """The example built as fp32 and int8 packages (and an unrelated model) for the host."""
    import tvmq
    from tvmq.quantize import QConfig, quantize_model

    root = tmp_path_factory.mktemp("report")
    model = tvmq.load_model(EXAMPLE / "model.onnx", input_shapes={"image": (1, 1, 28, 28)})
    quantized = quantize_model(
        model, EXAMPLE / "calibration.npz", QConfig(num_samples=64), cache_dir=None, error_report="full"
    )
    tvmq.compile_model(model, "host", root / "fp32")
    tvmq.compile_model(quantized, "host", root / "int8")
    onnx.save(onnx_models.conv_net(), root / "other.onnx")
    other = tvmq.load_model(root / "other.onnx", input_shapes={"image": (1, 3, 16, 16)})
    tvmq.compile_model(other, "host", root / "other")
    return root


@pytest.fixture(scope="module")
def int8_vs_fp32(packages):
    return build_report(
        packages / "int8", baseline_dir=packages / "fp32", inputs=EXAMPLE / "test.npz", repeat=3, threads=1
    )


def test_labelled_inputs_give_both_packages_top1_accuracy(int8_vs_fp32):
    assert int8_vs_fp32.samples == 500
    assert int8_vs_fp32.baseline.accuracy == pytest.approx(FP32_TOP1)
    assert abs(int8_vs_fp32.package.accuracy - FP32_TOP1) <= 0.01


def test_int8_outputs_stay_close_to_the_fp32_baseline(int8_vs_fp32):
    (logits,) = int8_vs_fp32.outputs
    assert logits["name"] == "logits"
    assert logits["cosine"] > 0.999 and logits["sqnr_db"] > 25
    assert logits["top1_agreement"] >= 0.97
    assert 0 < logits["max_abs_diff"] < 2


def test_both_packages_are_timed_and_sized_here(int8_vs_fp32):
    for measured in (int8_vs_fp32.package, int8_vs_fp32.baseline):
        latency = measured.latency
        assert latency.source == "measured here" and latency.threads == 1 and latency.repeat == 3
        assert 0 < latency.min_ms <= latency.median_ms <= latency.max_ms
    int8_size = int8_vs_fp32.package.metadata.library.size_bytes
    assert int8_size < int8_vs_fp32.baseline.metadata.library.size_bytes


def test_a_package_compared_with_itself_agrees_exactly(packages):
    report = build_report(packages / "fp32", baseline_dir=packages / "fp32", random_sets=2, repeat=1)
    (logits,) = report.outputs
    assert logits["sqnr_db"] is None  # infinite: no error at all
    assert logits["cosine"] == pytest.approx(1.0) and logits["max_abs_diff"] == 0.0
    assert logits["top1_agreement"] == 1.0
    assert report.inputs == "2 random input set(s), seeds 0-1" and report.samples == 2


def test_the_table_lists_the_figures_then_the_layers(int8_vs_fp32):
    text = format_report(int8_vs_fp32)
    assert "  library " in text and "x smaller" in text
    assert "  top-1 accuracy" in text
    assert "  logits          SQNR" in text and "max |diff|" in text
    assert text.index("outputs vs baseline") < text.index("quantization  int8") < text.index("per layer, worst first")


def test_json_holds_the_comparison_and_the_layer_errors(int8_vs_fp32, tmp_path):
    write_json(int8_vs_fp32, tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["format"] == "tvmq-report/1"
    assert set(data["latency"]) == {"median_ms", "min_ms", "max_ms", "threads", "repeat", "source"}
    assert data["library_bytes"] == int8_vs_fp32.package.metadata.library.size_bytes
    assert data["baseline"]["top1_accuracy"] == pytest.approx(FP32_TOP1)
    assert [row["name"] for row in data["outputs_vs_baseline"]] == ["logits"]
    assert len(data["quantization"]["error"]["layers"]) == 5
    assert data["samples"] == 500 and "test.npz" in data["inputs"]


def test_chart_is_a_png(int8_vs_fp32, tmp_path):
    pytest.importorskip("matplotlib")
    write_chart(int8_vs_fp32, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_json_and_chart_with_a_stored_latency(cli, packages, tmp_path):
    pytest.importorskip("matplotlib")
    assert cli("bench", packages / "int8", "--repeat", "2", "--json", tmp_path / "bench.json").code == 0
    result = cli(
        "report",
        packages / "int8",
        "--bench-json",
        tmp_path / "bench.json",
        "--json",
        tmp_path / "r.json",
        "--chart",
        tmp_path / "r.png",
    )
    assert result.code == 0, result.err
    stored = json.loads((tmp_path / "bench.json").read_text())
    latency = json.loads((tmp_path / "r.json").read_text())["latency"]
    assert latency["median_ms"] == stored["median_ms"] and latency["source"] == f"stored in {tmp_path / 'bench.json'}"
    assert f"median {stored['median_ms']:.3f} ms" in result.out
    assert (tmp_path / "r.png").stat().st_size > 0


def test_chart_without_matplotlib_fails_before_measuring(cli, packages, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = cli("report", packages / "int8", "--chart", tmp_path / "r.png")
    assert result.code == 1
    assert "the chart needs matplotlib, which is not installed: pip install 'tvmq[report]'" in result.err
    assert result.out == "" and not (tmp_path / "r.png").exists()


def test_a_baseline_of_another_model_is_refused(packages):
    with pytest.raises(PackageError, match="baseline .*other has inputs image: float32\\[1, 3, 16, 16\\]"):
        build_report(packages / "fp32", baseline_dir=packages / "other", repeat=1)


def test_inputs_with_a_wrong_tensor_name_the_file_and_the_tensor(packages, tmp_path):
    np.savez(tmp_path / "bad.npz", pixels=np.zeros((4, 1, 28, 28), np.float32))
    with pytest.raises(InputError, match=r"bad.npz .*unknown input 'pixels'; missing input image"):
        build_report(packages / "fp32", inputs=tmp_path / "bad.npz", repeat=1)


def test_labels_must_be_one_class_per_sample(packages, tmp_path):
    np.savez(tmp_path / "bad.npz", image=np.zeros((4, 1, 28, 28), np.float32), label=np.zeros(3, np.int64))
    with pytest.raises(InputError, match=r"'label' must hold one integer class per sample \(4\), got int64\[3\]"):
        build_report(packages / "fp32", inputs=tmp_path / "bad.npz", repeat=1)


def test_a_stored_latency_of_another_target_is_refused(packages, tmp_path):
    stored = {"median_ms": 1, "min_ms": 1, "max_ms": 1, "threads": 1, "repeat": 1, "target": "arm-cortex-a76"}
    (tmp_path / "bench.json").write_text(json.dumps(stored))
    with pytest.raises(InputError, match="timed a build for target 'arm-cortex-a76'; the package is for 'host'"):
        build_report(packages / "fp32", stored_latency=tmp_path / "bench.json")


def test_stored_and_random_inputs_are_exclusive(packages):
    with pytest.raises(InputError, match="not both"):
        build_report(packages / "fp32", inputs=EXAMPLE / "test.npz", random_sets=3)


@pytest.fixture(scope="module")
def arm_package(packages):
    """The unrelated model cross-compiled for a Raspberry Pi: a package this machine cannot run."""
    import shutil

    import tvmq

    if not shutil.which("aarch64-linux-gnu-g++"):
        pytest.skip("no aarch64 cross compiler")
    model = tvmq.load_model(packages / "other.onnx", input_shapes={"image": (1, 3, 16, 16)})
    tvmq.compile_model(model, "arm-cortex-a72", packages / "arm")
    return packages / "arm"


def test_a_package_for_another_machine_is_reported_with_what_could_not_be_measured(packages, arm_package):
    report = build_report(arm_package, baseline_dir=packages / "other", repeat=1)
    assert report.package.latency is None and report.outputs is None
    assert report.baseline.latency.source == "measured here"
    text = format_report(report)
    assert "latency   not measured: target arm-cortex-a72 is aarch64" in text
    assert "outputs not compared: target arm-cortex-a72 is aarch64" in text


def test_a_package_for_another_machine_takes_its_latency_from_the_board(arm_package, tmp_path):
    stored = {"median_ms": 4.5, "min_ms": 4.0, "max_ms": 6.0, "threads": 4, "repeat": 20, "target": "arm-cortex-a72"}
    (tmp_path / "bench.json").write_text(json.dumps(stored))
    latency = build_report(arm_package, stored_latency=tmp_path / "bench.json").package.latency
    assert (latency.median_ms, latency.min_ms, latency.max_ms, latency.threads) == (4.5, 4.0, 6.0, 4)
