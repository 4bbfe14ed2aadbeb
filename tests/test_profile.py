"""`tvmq profile`: each kernel of a package timed alone with the arguments of a real run, with
the calls one inference makes and where the kernel's schedule came from, most time first."""

import json

import numpy as np
import onnx_models
import pytest

import tvmq
from tvmq.runtime.profile import NOT_RECORDED


@pytest.fixture(scope="module")
def transformer_package(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile") / "pkg"
    model = tvmq.load_model(onnx_models.transformer_block(), input_shapes={"x": (1, 8, 16)})
    tvmq.compile_model(model, "host", out)
    return out


def test_every_kernel_is_timed_with_its_calls_and_schedule(cli, tmp_path, transformer_package):
    """The block's two layer norms share one kernel, called twice an inference; softmax and
    the matmuls get tvmq's default schedules, nothing is left to TVM's fallback; the table and
    the JSON list the same kernels, the most time first."""
    result = cli("profile", transformer_package, "--threads", 1, "--json", tmp_path / "profile.json")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "profile.json").read_text())
    kernels = {k["name"]: k for k in report["kernels"]}
    assert report["threads"] == 1
    assert [k["total_ms"] for k in report["kernels"]] == sorted(
        (k["total_ms"] for k in report["kernels"]), reverse=True
    )
    assert kernels["layer_norm"]["calls"] == 2 and kernels["layer_norm"]["schedule"] == "default reduction"
    assert any("softmax" in name and k["schedule"] == "default reduction" for name, k in kernels.items())
    assert {k["schedule"] for k in kernels.values()} <= {
        "default float tile",
        "default reduction",
        "default elementwise",
    }
    assert report["kernels_ms"] == pytest.approx(sum(k["total_ms"] for k in report["kernels"]))
    assert all(name in result.out for name in kernels)  # fewer than the rows the table shows
    recorded = json.loads((transformer_package / "metadata.json").read_text())["kernels"]
    assert set(kernels) <= set(recorded)


def test_a_package_without_the_record_profiles_with_its_schedules_unknown(tmp_path, transformer_package):
    """Packages built before tvmq recorded the schedules still profile; the source says so."""
    metadata = json.loads((transformer_package / "metadata.json").read_text())
    del metadata["kernels"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.so").write_bytes((transformer_package / "model.so").read_bytes())
    (old / "metadata.json").write_text(json.dumps(metadata))
    x = np.random.default_rng(0).standard_normal((1, 8, 16)).astype(np.float32)
    profile = tvmq.load_package(old).profile({"x": x}, threads=1)
    assert profile.kernels and {k.schedule for k in profile.kernels} == {NOT_RECORDED}
