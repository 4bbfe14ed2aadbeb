"""Measure tvmq's INT8 post-training quantization accuracy on the bundled Fashion-MNIST CNN.

The quantizer's default settings (calibration method, per-channel weights, activation dtype)
must be chosen on real accuracy, and the bar is set by the float model and by onnxruntime:
tvmq int8 top-1 within 0.3 points of fp32, and at most 0.1 point below onnxruntime's
`quantize_static` with the same calibration images. This script measures, on the Fashion-MNIST
test set (10,000 images, from the `dataset-fashion-mnist` package), the top-1 accuracy of

    fp32            onnxruntime on model.onnx, and the tvmq fp32 package (they should agree)
    onnxruntime     quantize_static: QDQ format, per-channel int8 weights, uint8 activations,
                    MinMax, Entropy and Percentile calibration
    tvmq int8       realized integer operators, for a grid of QConfigs: calibration method
                    (minmax, percentile 99.9 / 99.99 / 99.999, entropy, mse) x per-channel or
                    per-tensor weights x uint8 asymmetric or int8 symmetric activations
    tvmq simulate   the default QConfig built as fake-quant float code, which should match
                    the realized model

Calibration uses the first `--calib-samples` training images, the same ones for onnxruntime
and tvmq. tvmq caches calibration statistics (they do not depend on the range method), so
only the first tvmq int8 row pays for running the float model over the calibration set.

Prints a markdown table (top-1, delta vs fp32 in points, top-1 agreement with fp32,
calibrate + compile seconds, whether each tvmq configuration meets the two bars), and writes
the same as JSON with `--json`. The bar against onnxruntime uses its best calibration method. `--quick`: 2,000 test images,
3 tvmq configurations, MinMax only for onnxruntime.

Usage (from the repository root):

    python -m benchmarks.quant_accuracy [--quick] [--calib-samples 1000] [--json out.json]
        [--workdir DIR] [--verbose]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import tvmq
from tvmq.quantize import QConfig, quantize_model

from . import zoo
from .metrics import describe_qconfig, fmt, yes_no
from .peers import onnxruntime_int8_static, onnxruntime_runner, package_runner, run_all
from .timing import setup_logging

MODEL_PATH = zoo.EXAMPLE_MODEL
INPUT_NAME = "image"
BATCH = 100  # the tvmq model's batch size: test and calibration counts must be multiples of it
QUICK_TEST_SAMPLES = 2000
MAX_FP32_DROP = 0.3  # points of top-1 tvmq int8 may lose against fp32
MAX_ORT_GAP = 0.1  # points of top-1 tvmq int8 may trail onnxruntime's best quantize_static
SLACK = 1e-9  # the percentages are floats: a drop of exactly 0.3 points must pass
DEFAULT_CONFIG = QConfig()
ORT_METHODS = ("MinMax", "Entropy", "Percentile")  # onnxruntime's calibration methods, in the table's order


@dataclass
class Result:
    system: str
    settings: str
    seconds: float | None = None  # building: quantize_static, or quantize_model + compile_model
    top1: float | None = None  # percent
    delta: float | None = None  # points vs fp32
    agreement: float | None = None  # percent of test images with fp32's top-1 class
    within_fp32_bar: bool | None = None
    within_ort_bar: bool | None = None
    config: dict | None = None
    error: str | None = None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK_TEST_SAMPLES} test images, a few configurations"
    )
    parser.add_argument(
        "--calib-samples",
        type=int,
        default=1000,
        help=f"first N training images for calibration, a multiple of {BATCH} (default: 1000)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--workdir", type=Path, help="keep models and packages here (default: a temporary folder)")
    parser.add_argument("--verbose", action="store_true", help="show tvmq's progress on stderr")
    args = parser.parse_args()
    if args.calib_samples < BATCH or args.calib_samples % BATCH:
        parser.error(f"--calib-samples must be a positive multiple of {BATCH}")
    return args


# --- data -------------------------------------------------------------------


def load_data(test_samples: int | None, calib_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(test images, test labels, calibration images): float32 [N, 1, 28, 28] in [0, 1]."""
    test_images, test_labels = zoo.fashion_mnist("t10k")
    train_images, _ = zoo.fashion_mnist("train")
    return test_images[:test_samples], test_labels[:test_samples], train_images[:calib_samples]


def ort_logits(model_path: Path, images: np.ndarray) -> np.ndarray:
    """onnxruntime's logits for `images` (its default threads), in batches of the tvmq model's size."""
    return run_all(onnxruntime_runner(model_path, threads=None), {INPUT_NAME: images}, BATCH)[0]


def package_logits(package_dir: Path, images: np.ndarray) -> np.ndarray:
    return run_all(package_runner(package_dir), {INPUT_NAME: images}, BATCH)[0]


def timed(build: Callable[[], Path]) -> tuple[Path, float]:
    start = time.perf_counter()
    built = build()
    return built, time.perf_counter() - start


# --- systems ----------------------------------------------------------------


def ort_quantize(method: str, calib_images: np.ndarray, workdir: Path) -> Path:
    """quantize_static (QDQ, per-channel int8 weights, uint8 activations, no reduce_range) on
    the calibration images, in model-sized batches."""
    output = workdir / f"ort-{method.lower()}.onnx"
    return onnxruntime_int8_static(MODEL_PATH, {INPUT_NAME: calib_images}, output, method=method, batch=BATCH)


def tvmq_compile(model, package_dir: Path, simulate: bool = False) -> Path:
    tvmq.compile_model(model, "host", package_dir, simulate=simulate)
    return package_dir


def tvmq_quantize_and_compile(
    model, config: QConfig, calib_images: np.ndarray, workdir: Path, package_dir: Path, simulate: bool = False
) -> Path:
    quantized = quantize_model(model, {INPUT_NAME: calib_images}, config, cache_dir=workdir / "calibration-cache")
    return tvmq_compile(quantized, package_dir, simulate)


def tvmq_grid(quick: bool) -> list[QConfig]:
    """The default QConfig first (it pays for calibration), then every other combination."""
    if quick:
        return [
            DEFAULT_CONFIG,
            dataclasses.replace(DEFAULT_CONFIG, reduce_range=not DEFAULT_CONFIG.reduce_range),
            QConfig(method="entropy", per_channel=False, activation_dtype="int8", symmetric_activations=True),
        ]
    methods = [
        dict(method="minmax"),
        *(dict(method="percentile", percentile=p) for p in (99.9, 99.99, 99.999)),
        dict(method="entropy"),
        dict(method="mse"),
    ]
    grid = [
        QConfig(**method, per_channel=per_channel, activation_dtype=dtype, symmetric_activations=dtype == "int8")
        for method in methods
        for per_channel in (True, False)
        for dtype in ("uint8", "int8")
    ]
    grid += [QConfig(**method, reduce_range=True) for method in methods]
    return [DEFAULT_CONFIG, *(config for config in grid if config != DEFAULT_CONFIG)]


def measure(
    result: Result,
    build: Callable[[], Path],
    run: Callable[[Path], np.ndarray],
    labels: np.ndarray,
    fp32_classes: np.ndarray | None,
) -> np.ndarray | None:
    """Build, run on the test images and fill `result`; returns the predicted classes, or None
    (with the traceback in `result.error`) if building or running failed."""
    try:
        built, result.seconds = timed(build)
        predicted = run(built).argmax(axis=1)
    except Exception:
        result.error = traceback.format_exc()
        return None
    result.top1 = 100 * float((predicted == labels).mean())
    if fp32_classes is not None:
        result.agreement = 100 * float((predicted == fp32_classes).mean())
    return predicted


def judge(results: list[Result], fp32_accuracy: float) -> None:
    """Deltas vs fp32 for every row, and the two bars for the tvmq int8 rows."""
    ort_int8 = [r.top1 for r in results if r.system == "onnxruntime int8" and r.top1 is not None]
    ort_best = max(ort_int8) if ort_int8 else None
    for result in results:
        if result.top1 is None:
            continue
        result.delta = result.top1 - fp32_accuracy
        if result.system == "tvmq int8":
            result.within_fp32_bar = result.delta >= -MAX_FP32_DROP - SLACK
            result.within_ort_bar = None if ort_best is None else result.top1 >= ort_best - MAX_ORT_GAP - SLACK


def run_benchmark(args: argparse.Namespace, workdir: Path) -> tuple[list[Result], dict]:
    test_samples = QUICK_TEST_SAMPLES if args.quick else None
    images, labels, calib = load_data(test_samples, args.calib_samples)
    model = tvmq.load_model(MODEL_PATH, input_shapes={INPUT_NAME: (BATCH, 1, 28, 28)})
    results: list[Result] = []

    fp32 = Result("onnxruntime fp32", "model.onnx")
    fp32_classes = measure(fp32, lambda: MODEL_PATH, lambda path: ort_logits(path, images), labels, None)
    if fp32_classes is None:
        raise RuntimeError(f"onnxruntime cannot run the fp32 model:\n{fp32.error}")
    fp32.agreement, fp32.seconds = 100.0, None  # nothing to build
    results.append(fp32)

    tvmq_fp32 = Result("tvmq fp32", "host package")
    measure(
        tvmq_fp32,
        lambda: tvmq_compile(model, workdir / "tvmq-fp32"),
        lambda p: package_logits(p, images),
        labels,
        fp32_classes,
    )
    results.append(tvmq_fp32)

    for method in ORT_METHODS[:1] if args.quick else ORT_METHODS:
        result = Result("onnxruntime int8", f"{method}, QDQ, per-channel int8 weights, uint8 asym activations")
        measure(
            result,
            lambda method=method: ort_quantize(method, calib, workdir),
            lambda p: ort_logits(p, images),
            labels,
            fp32_classes,
        )
        results.append(result)

    realized_default = None
    for index, config in enumerate(tvmq_grid(args.quick)):
        result = Result("tvmq int8", describe_qconfig(config), config=config.to_json())
        predicted = measure(
            result,
            lambda config=config, index=index: tvmq_quantize_and_compile(
                model, config, calib, workdir, workdir / f"tvmq-int8-{index}"
            ),
            lambda p: package_logits(p, images),
            labels,
            fp32_classes,
        )
        if config == DEFAULT_CONFIG:
            realized_default = predicted
        results.append(result)

    simulated = Result(
        "tvmq simulate", describe_qconfig(DEFAULT_CONFIG) + " (fake-quant float code)", config=DEFAULT_CONFIG.to_json()
    )
    simulated_classes = measure(
        simulated,
        lambda: tvmq_quantize_and_compile(model, DEFAULT_CONFIG, calib, workdir, workdir / "tvmq-simulate", True),
        lambda p: package_logits(p, images),
        labels,
        fp32_classes,
    )
    results.append(simulated)

    judge(results, fp32.top1)
    summary = {
        "test_samples": len(images),
        "calib_samples": len(calib),
        "fp32_top1": fp32.top1,
        "bars": {"max_fp32_drop_points": MAX_FP32_DROP, "max_gap_to_best_onnxruntime_points": MAX_ORT_GAP},
        "simulate_agrees_with_realized": (
            None
            if simulated_classes is None or realized_default is None
            else 100 * float((simulated_classes == realized_default).mean())
        ),
    }
    return results, summary


# --- report -----------------------------------------------------------------


def markdown_table(results: list[Result]) -> str:
    header = (
        "| system | settings | top-1 % | Δ vs fp32 (points) | agrees with fp32 % | calibrate+compile s "
        f"| within {MAX_FP32_DROP} of fp32 | ≥ best ORT int8 − {MAX_ORT_GAP} |"
    )
    rows = [header, "|" + "---|" * 8]
    for r in results:
        top1 = "**error**" if r.error else fmt(r.top1, ".2f")
        rows.append(
            f"| {r.system} | {r.settings} | {top1} | {fmt(r.delta, '+.2f')} | {fmt(r.agreement, '.2f')} "
            f"| {fmt(r.seconds, '.1f')} | {yes_no(r.within_fp32_bar)} | {yes_no(r.within_ort_bar)} |"
        )
    return "\n".join(rows)


def report(results: list[Result], summary: dict) -> str:
    lines = [
        f"Fashion-MNIST CNN: {summary['test_samples']} test images, "
        f"{summary['calib_samples']} calibration images (first of the training set)",
        "",
        markdown_table(results),
        "",
    ]
    if summary["simulate_agrees_with_realized"] is not None:
        lines.append(
            f"tvmq simulate vs realized ({describe_qconfig(DEFAULT_CONFIG)}): same top-1 class on "
            f"{summary['simulate_agrees_with_realized']:.2f}% of test images"
        )
    candidates = [r for r in results if r.system == "tvmq int8" and r.top1 is not None]
    if candidates:
        best = max(candidates, key=lambda r: (r.top1, r.agreement))
        passing = sum(bool(r.within_fp32_bar and r.within_ort_bar) for r in candidates)
        lines.append(f"best tvmq int8: {best.settings}: {best.top1:.2f}% ({best.delta:+.2f} points vs fp32)")
        lines.append(f"tvmq int8 configurations meeting both bars: {passing} of {len(candidates)}")
    lines.extend(f"\n{r.system} ({r.settings}) failed:\n{r.error}" for r in results if r.error)
    lines.append(f"wall time: {summary['wall_seconds']:.0f} s")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.verbose:
        setup_logging()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tvmq-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        results, summary = run_benchmark(args, workdir)
    summary["wall_seconds"] = time.perf_counter() - start
    print(report(results, summary))
    if args.json:
        args.json.write_text(json.dumps({**summary, "results": [asdict(r) for r in results]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
