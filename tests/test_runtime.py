"""Running and timing a package: inputs are checked by name, shape and dtype."""

import numpy as np
import onnx_models
import pytest

from tvmq.errors import InputError


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    import tvmq

    out = tmp_path_factory.mktemp("runtime") / "pkg"
    tvmq.compile_model(tvmq.load_model(onnx_models.mlp()), "host", out)
    return tvmq.load_package(out)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"y": np.zeros((4, 32), np.float32)}, r"unknown input 'y'; missing input x: float32\[4, 32\]"),
        ({}, r"missing input x: float32\[4, 32\] \(the model takes x: float32\[4, 32\]\)"),
        ({"x": np.zeros((4, 31), np.float32)}, r"input 'x' has shape \[4, 31\], expected \[4, 32\]"),
        ({"x": np.zeros((4, 32), np.float64)}, r"input 'x' has dtype float64, expected float32"),
    ],
)
def test_wrong_inputs_are_reported_by_name(package, inputs, message):
    with pytest.raises(InputError, match=message):
        package.run(inputs)


def test_outputs_are_softmax_probabilities(package):
    probs = package.run(package.random_inputs(seed=3))["probs"]
    np.testing.assert_allclose(probs.sum(axis=1), np.ones(4), rtol=1e-5)


def test_benchmark_reports_consistent_statistics(package):
    result = package.benchmark(repeat=5, threads=1)
    assert result.repeat == 5 and result.threads == 1
    assert 0 < result.min_ms <= result.median_ms <= result.max_ms
    assert set(result.to_json()) >= {"median_ms", "min_ms", "max_ms", "repeat", "threads"}


def test_thread_count_is_bounded_by_the_available_cpus(package):
    from tvmq.errors import TvmqError
    from tvmq.target import available_cores as available_cpus

    assert package.benchmark(repeat=1, threads=available_cpus()).threads == available_cpus()
    with pytest.raises(TvmqError, match="--threads must be between 1 and"):
        package.benchmark(repeat=1, threads=available_cpus() + 1)
