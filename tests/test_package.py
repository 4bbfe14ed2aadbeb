"""Deployable packages: written atomically, self-describing, verified before loading."""

import json
import subprocess
import sys

import numpy as np
import onnx_models
import pytest
from conftest import tree_snapshot

import tvmq
from tvmq.compiler import compile_model
from tvmq.errors import BuildError, PackageError
from tvmq.metadata import METADATA_FILE, file_sha256


@pytest.fixture(scope="module")
def mlp_model():
    return tvmq.load_model(onnx_models.mlp())


@pytest.fixture
def package_dir(tmp_path, mlp_model):
    compile_model(mlp_model, "host", tmp_path / "pkg")
    return tmp_path / "pkg"


def test_metadata_describes_the_package(package_dir):
    metadata = json.loads((package_dir / METADATA_FILE).read_text())
    assert metadata["inputs"] == [{"name": "x", "shape": [4, 32], "dtype": "float32"}]
    assert metadata["outputs"] == [{"name": "probs", "shape": [4, 10], "dtype": "float32"}]
    assert metadata["target"]["name"] == "host" and metadata["target"]["target"]["kind"] == "llvm"
    assert metadata["versions"]["tvm"].startswith("0.27") and metadata["versions"]["tvmq"] == tvmq.__version__
    assert metadata["quantization"] is None and metadata["tuning"] is None
    library = package_dir / metadata["library"]["file"]
    assert metadata["library"]["sha256"] == file_sha256(library)
    assert metadata["library"]["size_bytes"] == library.stat().st_size
    # CPU packages carry the C++ runner for machines without Python (tests/test_deploy.py).
    assert sorted(p.name for p in package_dir.iterdir()) == ["metadata.json", "model.so", "runner"]
    assert sorted(p.name for p in (package_dir / "runner").iterdir()) == ["README.md", "build.sh", "tvmq_runner.cc"]


def test_package_round_trips_through_a_fresh_process(package_dir, mlp_model):
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    np.save(package_dir.parent / "x.npy", x)
    script = (
        "import sys, numpy as np, tvmq;"
        "p = tvmq.load_package(sys.argv[1]);"
        "np.save(sys.argv[3], p.run({'x': np.load(sys.argv[2])})['probs'])"
    )
    out = package_dir.parent / "probs.npy"
    subprocess.run([sys.executable, "-c", script, package_dir, package_dir.parent / "x.npy", out], check=True)
    np.testing.assert_allclose(np.load(out), mlp_model.reference({"x": x})[0], rtol=1e-5, atol=1e-6)


def test_tampered_library_is_refused(package_dir):
    library = package_dir / "model.so"
    data = bytearray(library.read_bytes())
    data[-1] ^= 0xFF
    library.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="does not match its package metadata .* refusing to load it"):
        tvmq.load_package(package_dir)


def test_rebuilt_package_loads_its_new_library_in_the_same_process(tmp_path, mlp_model):
    """The dynamic loader caches libraries by path; a rebuilt package must not run the old code."""
    out = tmp_path / "pkg"
    compile_model(mlp_model, "host", out)
    assert tvmq.load_package(out).inputs[0].shape == (4, 32)
    compile_model(tvmq.load_model(onnx_models.conv_net(), input_shapes={"image": (1, 3, 16, 16)}), "host", out)
    rebuilt = tvmq.load_package(out)
    assert rebuilt.run(rebuilt.random_inputs())["logits"].shape == (1, 10)


def test_failed_build_leaves_the_existing_package_untouched(package_dir, mlp_model, monkeypatch):
    import tvmq.compiler as compiler

    before = tree_snapshot(package_dir.parent)

    def failing_export(executable, path, preset, *device_code_packing):
        path.write_bytes(b"half a library")
        raise BuildError("linker crashed")

    monkeypatch.setattr(compiler, "export_library", failing_export)
    with pytest.raises(BuildError, match="linker crashed"):
        compile_model(mlp_model, "host", package_dir)
    assert tree_snapshot(package_dir.parent) == before  # no staging directory left behind either


def test_a_directory_that_is_not_a_package_is_never_replaced(tmp_path, mlp_model):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(BuildError, match="not empty and is not a tvmq package; refusing to replace it"):
        compile_model(mlp_model, "host", precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_missing_or_malformed_packages_are_reported(tmp_path):
    with pytest.raises(PackageError, match="is not a tvmq package: no such directory"):
        tvmq.load_package(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackageError, match="metadata.json is missing"):
        tvmq.load_package(tmp_path / "empty")
    (tmp_path / "empty" / METADATA_FILE).write_text('{"format_version": 1, "inputs": []}')
    with pytest.raises(PackageError, match="malformed package metadata"):
        tvmq.load_package(tmp_path / "empty")


def test_atomically_written_files_get_the_permissions_open_would_give(tmp_path):
    """mkstemp's private 0600 must not leak into reports and tuning.json other users read."""
    import os

    from tvmq.files import write_atomically

    mask = os.umask(0)
    os.umask(mask)
    write_atomically(tmp_path / "report.json", lambda f: f.write(b"{}"))
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o666 & ~mask != 0o600
