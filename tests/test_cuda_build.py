"""CUDA packages: compiled device code embedded when nvcc is at hand, and said so when not.

No GPU is needed: these tests check what the package holds. `python -m benchmarks.check_cuda`
runs a package on a real GPU.
"""

import hashlib
import json
import re
import shutil

import onnx_models
import pytest

import tvmq
from tvmq.compiler.cuda import CUDA_KIND, DeviceCode, embed_device_code
from tvmq.errors import BuildError
from tvmq.resources import examples_dir

FATBIN_MAGIC = (0xBA55ED50).to_bytes(4, "little")  # the first word of every CUDA fatbin


@pytest.fixture(scope="module")
def example_model():
    """The bundled CNN: its ONNX tensors are named like paths ("/0/0_0/Conv")."""
    return tvmq.load_model(examples_dir() / "fashion_mnist" / "model.onnx", input_shapes={"image": (1, 1, 28, 28)})


def embedded_binary(library: bytes, record: dict) -> bytes:
    """The binary stored in `library` that the metadata's sha256 names (found by its length
    prefix, as TVM's module blob stores it)."""
    prefix = record["bytes"].to_bytes(8, "little")
    at = library.find(prefix)
    while at >= 0:
        candidate = library[at + 8 : at + 8 + record["bytes"]]
        if hashlib.sha256(candidate).hexdigest() == record["sha256"]:
            return candidate
        at = library.find(prefix, at + 1)
    raise AssertionError("the library does not hold the binary its metadata describes")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH (CUDA toolkit not installed)")
def test_cuda_package_embeds_a_fatbin_for_its_arch_instead_of_source(tmp_path, example_model):
    # nvcc compiling the kernels also proves their parameter names are valid C identifiers.
    metadata = tvmq.compile_model(example_model, "cuda-sm80", tmp_path / "cuda")
    record = metadata.device_code
    assert (record["format"], record["arch"]) == ("fatbin", "sm_80")
    assert record["compiler"].startswith("nvcc ")
    library = (tmp_path / "cuda" / "model.so").read_bytes()
    assert embedded_binary(library, record)[:4] == FATBIN_MAGIC
    # The kernels' CUDA source is gone: nothing is left to compile on the GPU machine.
    assert b"__global__" not in library
    assert json.loads((tmp_path / "cuda" / "metadata.json").read_text())["device_code"] == record


def test_cuda_package_without_nvcc_keeps_source_and_says_so(tmp_path, example_model, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the host compiler, no CUDA toolkit
    if shutil.which("nvcc"):
        pytest.skip("nvcc is installed in /usr/bin")
    metadata = tvmq.compile_model(example_model, "cuda-sm90", tmp_path / "cuda")
    assert metadata.device_code["format"] == CUDA_KIND
    assert "nvcc not found at build time" in metadata.device_code["note"]
    library = (tmp_path / "cuda" / "model.so").read_bytes()
    signatures = re.findall(rb"_kernel\(([^)]*)\)", library)
    assert signatures and not any(b"/" in signature for signature in signatures)


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(8, "little") + value


def _blob(modules) -> bytes:
    """A packed-imports blob of (kind, payload) modules in a chain (each imports the next)."""
    count = len(modules)
    rows = [0, *range(1, count), count - 1]
    body = len(rows).to_bytes(8, "little") + b"".join(v.to_bytes(8, "little") for v in rows)
    children = list(range(1, count))
    body += len(children).to_bytes(8, "little") + b"".join(v.to_bytes(8, "little") for v in children)
    for kind, payload in modules:
        body += _string(kind) + (b"" if kind == b"_lib" else _string(payload))
    return len(body).to_bytes(8, "little") + body


def test_kernels_that_dlights_matmul_rule_rejects_get_another_default_schedule(tmp_path, monkeypatch):
    """1x1 conv + ReLU6 + the next layer's "same" pad fuse into one kernel on which dlight's
    GPU Matmul rule asserts; TVM's own CUDA pipeline then fails the whole build (EfficientNet-Lite0
    did, fp32 and fp16). tvmq schedules such a kernel with the next rule that applies."""
    import tvm

    from tvmq.compiler import codegen_module
    from tvmq.target import load_target

    model = tvmq.load_model(onnx_models.pointwise_relu6_then_padded_conv())
    preset = load_target("cuda-sm80")
    with pytest.raises(Exception, match="consumers of the cache-write stage"):
        tvm.compile(codegen_module(model.mod, preset), target=preset.tvm_target())
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # CUDA source is enough to see every kernel scheduled
    metadata = tvmq.compile_model(model, preset, tmp_path / "cuda")
    assert metadata.device_code["format"] == CUDA_KIND


def test_embedding_swaps_only_the_cuda_source_for_the_binary():
    table = b"\x01\x00\x00\x00\x00\x00\x00\x00<function table>"
    source = 'extern "C" __global__ void k() {}'
    vm = (b"relax.VMExecutable", b"<vm bytes>")
    blob = _blob([vm, (b"_lib", b""), (b"cuda", _string(b"cuda") + table + _string(source.encode()))])
    code = DeviceCode("fatbin", "sm_80", FATBIN_MAGIC + b"<sass>")
    expected = _blob([vm, (b"_lib", b""), (b"cuda", _string(b"fatbin") + table + _string(code.binary))])
    assert embed_device_code(blob, source, code) == expected


def test_embedding_refuses_a_blob_whose_cuda_module_is_not_that_source():
    source = "__global__ void k() {}"
    blob = _blob([(b"_lib", b""), (b"cuda", _string(b"ptx") + _string(b"other code"))])
    with pytest.raises(BuildError, match="cannot embed a fatbin"):
        embed_device_code(blob, source, DeviceCode("fatbin", "sm_80", b"bin"))


def test_embedding_refuses_a_truncated_blob():
    blob = _blob([(b"_lib", b""), (b"cuda", _string(b"cuda") + _string(b"k"))])
    with pytest.raises(BuildError, match="truncated"):
        embed_device_code(blob[:-3], "k", DeviceCode("fatbin", "sm_80", b"bin"))
