"""`python -m benchmarks.matrix`, the benchmark matrix, in --quick mode on the bundled example:
every system produces its figures and the results file has the documented schema. Nothing here
judges speed (the machine may be busy); the timings only have to be well-formed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bundled_example import FP32_TOP1

from benchmarks import matrix

REPO = Path(__file__).resolve().parent.parent

EXAMPLE_SYSTEMS = [
    "pytorch fp32",
    "onnxruntime fp32",
    "onnxruntime int8",
    "tvmq fp32 untuned",
    "tvmq fp32 tuned",
    "tvmq int8 untuned",
    "tvmq int8 tuned",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One --quick run with an empty tuning log: the tuned systems go through the tuned build
    with nothing to apply, so the run does not depend on what tuning_logs/ holds."""
    root = tmp_path_factory.mktemp("bench")
    (root / "logs" / "x86-avx2").mkdir(parents=True)
    output = root / "results.json"
    command = [sys.executable, "-m", "benchmarks.matrix", "--quick", "--logs", str(root / "logs"), "--output", output]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(output.read_text()), output.with_suffix(".md").read_text(), finished.stdout


@pytest.fixture(scope="module")
def example_rows(quick_run):
    (result,) = quick_run[0]["results"]
    assert (result["model"], result["batch"]) == ("example", 1)
    return {row["system"]: row for row in result["systems"]}


def test_quick_mode_measures_every_system_of_the_example(example_rows):
    assert list(example_rows) == EXAMPLE_SYSTEMS
    assert all(row["status"] == "measured" for row in example_rows.values()), example_rows


def test_each_cell_is_the_median_of_its_rounds_with_their_range(example_rows):
    for row in example_rows.values():
        assert set(row["latency"]) == {"1", "2"}
        for cell in row["latency"].values():
            assert len(cell["rounds_ms"]) == 2
            assert 0 < cell["min_ms"] <= cell["median_ms"] <= cell["max_ms"]
            assert cell["min_ms"] == min(cell["rounds_ms"]) and cell["max_ms"] == max(cell["rounds_ms"])


def test_ratios_are_taken_against_onnxruntime_fp32_at_the_same_thread_count(example_rows):
    reference = example_rows["onnxruntime fp32"]["latency"]
    assert example_rows["onnxruntime fp32"]["ratio_to_onnxruntime_fp32"] == {"1": 1.0, "2": 1.0}
    for row in example_rows.values():
        for threads, ratio in row["ratio_to_onnxruntime_fp32"].items():
            assert ratio == pytest.approx(row["latency"][threads]["median_ms"] / reference[threads]["median_ms"])


def test_accuracy_on_the_bundled_test_images(example_rows):
    accuracy = {system: row["quality"]["top1_accuracy"] for system, row in example_rows.items()}
    for fp32 in ("onnxruntime fp32", "pytorch fp32", "tvmq fp32 untuned", "tvmq fp32 tuned"):
        assert accuracy[fp32] == pytest.approx(100 * FP32_TOP1)
    for int8 in ("onnxruntime int8", "tvmq int8 untuned", "tvmq int8 tuned"):
        assert abs(accuracy[int8] - 100 * FP32_TOP1) <= 1.0


def test_sizes_and_build_times_are_reported(example_rows):
    assert example_rows["onnxruntime fp32"]["size_of"] == "ONNX file"
    assert example_rows["tvmq int8 untuned"]["size_of"] == "library"
    assert all(row["size_bytes"] > 0 for row in example_rows.values())
    assert example_rows["onnxruntime int8"]["size_bytes"] < example_rows["onnxruntime fp32"]["size_bytes"]
    assert set(example_rows["tvmq int8 untuned"]["build_seconds"]) == {"quantize", "compile"}
    assert set(example_rows["tvmq fp32 untuned"]["build_seconds"]) == {"compile"}


def test_a_log_without_the_models_kernels_is_reported_as_no_coverage(example_rows):
    for system in ("tvmq fp32 tuned", "tvmq int8 tuned"):
        tuning = example_rows[system]["tuning"]
        assert tuning["kernels_tuned"] == 0 and tuning["kernels"] == len(tuning["untuned"]) > 0
        assert tuning["tuning_minutes"] is None
    assert example_rows["tvmq fp32 untuned"]["tuning"] is None


def test_results_file_describes_the_run_and_holds_the_table(quick_run):
    report, table_file, stdout = quick_run
    assert report["format"] == "tvmq-bench/1"
    assert set(report["machine"]) == {"host", "cpu", "cores", "target"}
    assert report["settings"]["quick"] is True and report["settings"]["threads"] == [1, 2]
    assert report["table"] in table_file and report["table"] in stdout
    rows = [line for line in report["table"].splitlines() if line.startswith("| example |")]
    assert [row.split(" | ")[1] for row in rows] == EXAMPLE_SYSTEMS


def test_tuned_systems_are_skipped_without_a_tuning_log(tmp_path):
    args = matrix.parse_args(["--quick", "--logs", str(tmp_path)])
    with pytest.raises(matrix.Skipped, match=f"no tuning log at {tmp_path / 'x86-avx2'}"):
        matrix.tvmq_system("fp32", tuned=True)(None, args)


def test_a_missing_framework_skips_its_system_with_the_reason():
    with pytest.raises(matrix.Skipped, match="no_such_framework is not installed \\(PyTorch eager\\)"):
        matrix.require("no_such_framework", "PyTorch eager")


def test_tuning_cost_is_read_from_the_logs_tuning_json(tmp_path):
    runs = [{"minutes": 6.0, "trials": 64}, {"minutes": 4.5, "trials": 40}]
    (tmp_path / "tuning.json").write_text(json.dumps({"example-fp32": {"runs": runs}}))
    record = matrix.tuning_record(tmp_path, "example-fp32", {"tuned": ["conv"], "untuned": ["pool", "dense"]})
    assert record["kernels_tuned"] == 1 and record["kernels"] == 3 and record["untuned"] == ["pool", "dense"]
    assert record["tuning_minutes"] == 10.5 and record["tuning_trials"] == 104
