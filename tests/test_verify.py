"""--verify catches a compiled model that disagrees with its original framework."""

import numpy as np
import onnx_models
import pytest

import tvmq
from tvmq.errors import VerificationError
from tvmq.verify import compare_with_reference


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "pkg"
    model = tvmq.load_model(onnx_models.mlp())
    tvmq.compile_model(model, "host", out)
    return model, tvmq.load_package(out)


def test_agreeing_outputs_pass_with_their_differences_reported(mlp):
    model, package = mlp
    [comparison] = compare_with_reference(package, model.reference)
    assert comparison.name == "probs" and comparison.ok
    assert comparison.max_abs_diff < 1e-6
    # Tolerance = atol + rtol * max |reference|, probabilities are at most 1.
    assert comparison.tolerance <= 1e-4 + 1e-3


def test_a_disagreeing_output_fails_with_its_name_and_size(mlp):
    model, package = mlp

    def off_by_a_bit(inputs):
        return [model.reference(inputs)[0] + np.float32(0.01)]

    with pytest.raises(VerificationError, match=r"output 'probs' max \|diff\| 0\.01 > tolerance"):
        compare_with_reference(package, off_by_a_bit)
