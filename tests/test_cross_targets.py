"""Builds for machines other than this one: ARM (cross-compiled) and CUDA."""

import shutil

import onnx_models
import pytest

import tvmq
from tvmq.errors import PackageError

ELF_MAGIC = b"\x7fELF"
EM_AARCH64 = 183  # e_machine of 64-bit ARM in the ELF header


@pytest.fixture(scope="module")
def conv_model():
    return tvmq.load_model(onnx_models.conv_net(), input_shapes={"image": (1, 3, 16, 16)})


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-g++") is None,
    reason="aarch64-linux-gnu-g++ is not installed (apt-get install g++-aarch64-linux-gnu; .ci/run does)",
)
def test_arm_build_is_an_aarch64_shared_library(tmp_path, conv_model):
    tvmq.compile_model(conv_model, "arm-cortex-a72", tmp_path / "arm")
    header = (tmp_path / "arm" / "model.so").read_bytes()[:20]
    assert header[:4] == ELF_MAGIC
    assert header[4] == 2  # 64-bit
    assert int.from_bytes(header[18:20], "little") == EM_AARCH64
    with pytest.raises(PackageError, match="target arm-cortex-a72 is aarch64; this machine is x86_64"):
        tvmq.load_package(tmp_path / "arm")


def test_cuda_build_makes_a_package_that_needs_a_gpu(tmp_path, conv_model):
    import tvm

    metadata = tvmq.compile_model(conv_model, "cuda-sm80", tmp_path / "cuda")
    assert metadata.target["target"]["arch"] == "sm_80"
    assert (tmp_path / "cuda" / "model.so").stat().st_size > 0
    if not tvm.cuda(0).exist:
        with pytest.raises(PackageError, match="needs a CUDA GPU; none found"):
            tvmq.load_package(tmp_path / "cuda")
