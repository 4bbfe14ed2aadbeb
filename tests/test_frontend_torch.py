"""PyTorch models import through torch.export and compute what PyTorch computes."""

import numpy as np
import pytest
from conftest import assert_matches_reference

import tvmq
from tvmq.errors import InputShapeError, ModelLoadError
from tvmq.tensors import TensorSpec

torch = pytest.importorskip("torch", reason="the PyTorch frontend needs torch (pip install 'tvmq[torch]')")


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1),
            torch.nn.ReLU6(),
            torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(16, 10)

    def forward(self, image):
        return self.head(self.features(image).flatten(1))


def test_module_with_example_inputs_matches_torch(compile_and_load):
    example = torch.randn(2, 1, 12, 12)
    imported, package = compile_and_load(SmallCNN(), example_inputs=(example,))
    assert package.inputs == (TensorSpec("image", (2, 1, 12, 12), "float32"),)
    assert package.outputs[0].shape == (2, 10)
    assert_matches_reference(imported, package, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        expected = SmallCNN().eval()(example).numpy()
    np.testing.assert_allclose(package.run({"image": example.numpy()})["linear"], expected, rtol=1e-4, atol=1e-5)


def test_saved_program_with_dynamic_batch_takes_the_given_shape(tmp_path, compile_and_load):
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(SmallCNN().eval(), (torch.randn(2, 1, 12, 12),), dynamic_shapes={"image": {0: batch}})
    path = tmp_path / "cnn.pt2"
    torch.export.save(program, path)

    with pytest.raises(InputShapeError, match=r"input 'image' has dynamic dimensions \[s\w+, 1, 12, 12\]"):
        tvmq.load_model(path)
    imported, package = compile_and_load(path, input_shapes={"image": (5, 1, 12, 12)})
    assert package.inputs[0].shape == (5, 1, 12, 12)
    assert package.outputs[0].shape == (5, 10)
    assert_matches_reference(imported, package)


def test_module_without_example_inputs_is_an_error():
    with pytest.raises(InputShapeError, match="needs example inputs"):
        tvmq.load_model(SmallCNN())


def test_corrupt_program_file_is_reported_with_its_path(tmp_path):
    path = tmp_path / "broken.pt2"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ModelLoadError, match=f"{path} is not a valid torch.export program"):
        tvmq.load_model(path)
