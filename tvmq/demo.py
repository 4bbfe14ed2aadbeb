"""`tvmq demo`: the whole pipeline on the bundled Fashion-MNIST CNN, needing nothing from outside.

Import the ONNX model (batch 1), build a float package and an int8 package (calibrated on the
bundled calibration images), classify the bundled test images with both, compare the float
package with onnxruntime where installed, and time one inference of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.compiler import compile_model
from tvmq.frontend import load_model
from tvmq.progress import step
from tvmq.quantize import quantize_model
from tvmq.resources import examples_dir
from tvmq.runtime import BenchmarkResult, load_package

EXAMPLE = "fashion_mnist"


@dataclass(frozen=True)
class Variant:
    """One package built by the demo and what it measured."""

    name: str
    package_dir: Path
    library_kib: float
    predictions: np.ndarray
    latency: BenchmarkResult


@dataclass(frozen=True)
class DemoResult:
    model_path: Path
    target: str
    labels: np.ndarray
    variants: list[Variant]
    reference_predictions: np.ndarray | None  # onnxruntime's; None without onnxruntime
    worst_layer: dict

    def describe(self) -> str:
        images = len(self.labels)
        fp32, int8 = self.variants
        lines = [
            f"Bundled example: Fashion-MNIST CNN ({self.model_path}), {images} test images, target {self.target}",
            f"        {'accuracy':>9}  {'library':>9}  latency (median, batch 1, {fp32.latency.threads} thread(s))",
        ]
        for variant in self.variants:
            accuracy = 100 * (variant.predictions == self.labels).mean()
            lines.append(
                f"  {variant.name:<5} {accuracy:>8.1f}%  {variant.library_kib:>5.0f} KiB  {variant.latency.median_ms:.3f} ms"
            )
        if self.reference_predictions is None:
            lines.append("  fp32 vs onnxruntime: not installed, no comparison (pip install onnxruntime)")
        else:
            same = int((self.reference_predictions == fp32.predictions).sum())
            lines.append(f"  fp32 vs onnxruntime: same class on {same}/{images} images")
        same = int((int8.predictions == fp32.predictions).sum())
        worst = self.worst_layer
        lines.append(
            f"  int8 vs fp32: same class on {same}/{images} images; "
            f"worst layer {worst['layer']}: SQNR {worst['sqnr_db']:.1f} dB"
        )
        lines.append(f"Packages: {fp32.package_dir}, {int8.package_dir}.  Try: tvmq report {int8.package_dir}")
        return "\n".join(lines)


def _classify(package_dir: Path, images: np.ndarray, name: str) -> tuple[np.ndarray, BenchmarkResult]:
    package = load_package(package_dir)
    with step(f"classifying {len(images)} test images with the {name} package"):
        predictions = np.array([package.run({"image": image[None]})["logits"].argmax() for image in images])
    with step(f"timing one {name} inference"):
        latency = package.benchmark(repeat=20)
    return predictions, latency


def _onnxruntime_predictions(model, images: np.ndarray) -> np.ndarray | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    return np.array([model.reference({"image": image[None]})[0].argmax() for image in images])


def _describe_target(target: dict) -> str:
    cpu = target["target"].get("mcpu")
    return f"{target['name']} ({cpu})" if cpu else target["name"]


def run_demo(output_dir: str | Path, target: str = "host") -> DemoResult:
    """Build `output_dir`/fp32 and `output_dir`/int8 for `target` and measure both."""
    example = examples_dir() / EXAMPLE
    model_path = example / "model.onnx"
    test = np.load(example / "test.npz")
    images, labels = test["image"], test["label"]
    output_dir = Path(output_dir)

    model = load_model(model_path, input_shapes={"image": (1, *images.shape[1:])})
    quantized = quantize_model(model, example / "calibration.npz", target=target, error_report="full")
    variants = []
    for name, variant_model in (("fp32", model), ("int8", quantized)):
        metadata = compile_model(variant_model, target, output_dir / name)
        predictions, latency = _classify(output_dir / name, images, name)
        variants.append(Variant(name, output_dir / name, metadata.library.size_bytes / 1024, predictions, latency))
    return DemoResult(
        model_path=model_path,
        target=_describe_target(metadata.target),
        labels=labels,
        variants=variants,
        reference_predictions=_onnxruntime_predictions(model, images),
        worst_layer=quantized.quantization["error"]["layers"][0],
    )
