"""Models tvmq has never seen, from another exporter, with their reference outputs: the onnx
wheel's own backend test data. Every pytorch-converted and pytorch-operator case (PyTorch
modules exported with their inputs and outputs) and every bundled model-zoo graph ("light"
AlexNet ... ZFNet-512, constant-filled weights, their outputs for the onnx runner's inputs)
compiles for this CPU in fp32 and matches its reference (about 80 s in all, most of it the nine
model-zoo graphs)."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import tvm
from onnx import numpy_helper
from tvm import relax

import tvmq
from tvmq.codegen.pipeline import build_executable
from tvmq.compiler import codegen_module
from tvmq.runtime.package import flatten_outputs
from tvmq.target import load_target

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
CASES = sorted(p for kind in ("pytorch-converted", "pytorch-operator") for p in (DATA / kind).iterdir())
LIGHT = sorted((DATA / "light").glob("light_*.onnx"))
# The tolerance the onnx backend runner applies to these cases.
RTOL, ATOL = 1e-3, 1e-7


def _run(model: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The model compiled for this CPU (in memory: no package) and run on `inputs`, in order."""
    imported = tvmq.load_model(model)
    preset = load_target("host")
    vm = relax.VirtualMachine(build_executable(codegen_module(imported.mod, preset), preset), tvm.cpu())
    return flatten_outputs(vm["main"](*(tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs)))


def _tensors(folder: Path, prefix: str) -> list[np.ndarray]:
    files = sorted(folder.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[-1]))
    return [numpy_helper.to_array(onnx.load_tensor(str(f))) for f in files]


@pytest.mark.parametrize("case", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_a_pytorch_exported_case_matches_its_reference_outputs(case):
    data = case / "test_data_set_0"
    outputs = _run(onnx.load(case / "model.onnx"), _tensors(data, "input"))
    for actual, expected in zip(outputs, _tensors(data, "output"), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def _runner_input(info: onnx.ValueInfoProto) -> np.ndarray:
    """The input the onnx backend runner feeds a model-zoo graph (generate_dummy_data with
    random=False): 0, 1/n, 2/n, ... in the input's shape."""
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in info.type.tensor_type.shape.dim)
    count = int(np.prod(shape))
    return (np.arange(count).reshape(shape) / count).astype(np.float32)


@pytest.mark.parametrize("path", LIGHT, ids=[p.stem.removeprefix("light_") for p in LIGHT])
def test_a_model_zoo_graph_matches_its_reference_output(path):
    model = onnx.load(path)
    constants = {t.name for t in model.graph.initializer}
    inputs = [_runner_input(i) for i in model.graph.input if i.name not in constants]
    (expected,) = [
        numpy_helper.to_array(onnx.load_tensor(str(p))) for p in path.parent.glob(f"{path.stem}_output_0.pb")
    ]
    (actual, *_) = _run(model, inputs)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL * np.abs(expected).max())
