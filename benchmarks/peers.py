"""The systems tvmq is measured against, built and run the same way in every benchmark:
onnxruntime fp32 and int8 (`quantize_static` with QDQ, `quantize_dynamic`), OpenVINO int8
(NNCF), PyTorch eager fp32 and `torch.ao.quantization.quantize_dynamic`; and a tvmq package behind the same `Runner`
interface, so that `run_all` feeds every system its evaluation samples alike.

torch, OpenVINO and NNCF are imported when first used.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

import tvmq

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]  # one batch of inputs, by name -> the first output
ORT_CALIBRATION_METHODS = ("MinMax", "Percentile", "Entropy")  # onnxruntime's names (CalibrationMethod)


def batches(inputs: dict[str, np.ndarray], batch: int) -> list[dict[str, np.ndarray]]:
    """The samples of `inputs` (first axis = samples) in batches of `batch`, in order."""
    count = len(next(iter(inputs.values())))
    return [{name: array[i : i + batch] for name, array in inputs.items()} for i in range(0, count, batch)]


def run_all(runner: Runner, inputs: dict[str, np.ndarray], batch: int = 1) -> tuple[np.ndarray, float]:
    """The outputs for every sample of `inputs`, run `batch` at a time, and the mean milliseconds per sample."""
    count = len(next(iter(inputs.values())))
    start = time.perf_counter()
    outputs = [runner(chunk) for chunk in batches(inputs, batch)]
    return np.concatenate(outputs), 1e3 * (time.perf_counter() - start) / count


# --- onnxruntime ----------------------------------------------------------------


def onnxruntime_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """A quiet onnxruntime CPU session with `threads` intra-op threads (and one inter-op), or
    onnxruntime's default where `threads` is None."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnxruntime_runner(path: Path, threads: int | None = 1) -> Runner:
    session = onnxruntime_session(path, threads)
    return lambda inputs: session.run(None, inputs)[0]


class CalibrationReader(CalibrationDataReader):
    """Calibration samples (first axis = samples) for onnxruntime, `batch` at a time."""

    def __init__(self, inputs: dict[str, np.ndarray], batch: int = 1):
        self._batches = iter(batches(inputs, batch))

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def onnxruntime_int8_static(
    model: Path,
    calibration: dict[str, np.ndarray],
    output: Path,
    method: str = "MinMax",
    per_channel: bool = True,
    batch: int = 1,
) -> Path:
    """`quantize_static` of `model` into `output`: QDQ, int8 weights (per output channel unless
    `per_channel` is false), uint8 activations, `method` calibration (one of
    ORT_CALIBRATION_METHODS, the calibrator's default settings) on `calibration` fed `batch`
    samples at a time. Its progress prints are kept off stdout, where the reports go."""
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            model,
            output,
            CalibrationReader(calibration, batch),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
        )
    return output


def onnxruntime_int8_dynamic(model: Path, output: Path, per_channel: bool) -> Path:
    """`quantize_dynamic` of `model` into `output`: int8 weights, activations quantized at run time."""
    quantize_dynamic(model, output, weight_type=QuantType.QInt8, per_channel=per_channel)
    return output


# --- OpenVINO ---------------------------------------------------------------------


def openvino_int8(model: Path, calibration: dict[str, np.ndarray]):
    """NNCF's post-training quantization (`nncf.quantize`, its defaults) of the OpenVINO model
    read from the ONNX file, on all of `calibration`'s samples, one at a time."""
    import nncf
    import openvino as ov

    samples = batches(calibration, 1)
    read = ov.Core().read_model(str(model))
    return nncf.quantize(read, nncf.Dataset(samples), subset_size=len(samples))


# --- PyTorch --------------------------------------------------------------------


def torch_runner(module) -> Runner:
    """PyTorch eager under torch.no_grad, the inputs given positionally in their order."""
    import torch

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return module(*(torch.from_numpy(array) for array in inputs.values())).numpy()

    return run


def torch_int8_dynamic(module):
    """`torch.ao.quantization.quantize_dynamic` of the module's nn.Linear layers to qint8 weights."""
    import torch

    return torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)


def torch_size_bytes(module) -> int:
    """The size of the module's saved state dict."""
    import torch

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.tell()


# --- tvmq -----------------------------------------------------------------------


def package_runner(package_dir: Path) -> Runner:
    package = tvmq.load_package(package_dir)
    return lambda inputs: next(iter(package.run(inputs).values()))
