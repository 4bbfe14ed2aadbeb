"""`tvmq demo`: the whole pipeline on the bundled Fashion-MNIST CNN, needing nothing from outside.

Import the ONNX model with batch 1, compile it for the target, load the package, classify the
bundled test images, compare with onnxruntime where installed, and time one inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.build import compile_model
from tvmq.frontend import load_model
from tvmq.progress import step
from tvmq.resources import examples_dir
from tvmq.runtime import BenchmarkResult, load_package

EXAMPLE = "fashion_mnist"


@dataclass(frozen=True)
class DemoResult:
    model_path: Path
    package_dir: Path
    target: str
    library_kib: float
    images: int
    correct: int
    reference_agreement: int | None  # images where onnxruntime's top-1 is the same; None: no onnxruntime
    max_logit_diff: float | None
    latency: BenchmarkResult

    def describe(self) -> str:
        lines = [
            f"Bundled example: Fashion-MNIST CNN ({self.model_path})",
            f"  package      {self.package_dir} for {self.target}, model.so {self.library_kib:.0f} KiB",
            f"  accuracy     {self.correct}/{self.images} test images correct ({100 * self.correct / self.images:.1f}%)",
        ]
        if self.reference_agreement is None:
            lines.append("  onnxruntime  not installed: no comparison (pip install onnxruntime)")
        else:
            lines.append(
                f"  onnxruntime  same top-1 on {self.reference_agreement}/{self.images} images, "
                f"max |logit diff| {self.max_logit_diff:.2g}"
            )
        lines.append(
            f"  latency      median {self.latency.median_ms:.3f} ms (min {self.latency.min_ms:.3f}, "
            f"max {self.latency.max_ms:.3f}), batch 1, {self.latency.threads} thread(s)"
        )
        lines.append(f"Try: tvmq bench {self.package_dir}   or   tvmq run {self.package_dir} --input image=IMAGE.npy")
        return "\n".join(lines)


def _onnxruntime_logits(model, images: np.ndarray) -> np.ndarray | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    return np.concatenate([model.reference({"image": image[None]})[0] for image in images])


def _describe_target(target: dict) -> str:
    cpu = target["target"].get("mcpu")
    return f"{target['name']} ({cpu})" if cpu else target["name"]


def run_demo(output_dir: str | Path, target: str = "host") -> DemoResult:
    example = examples_dir() / EXAMPLE
    model_path = example / "model.onnx"
    test = np.load(example / "test.npz")
    images, labels = test["image"], test["label"]

    model = load_model(model_path, input_shapes={"image": (1, *images.shape[1:])})
    metadata = compile_model(model, target, output_dir)
    package = load_package(output_dir)
    with step(f"classifying {len(images)} test images"):
        logits = np.concatenate([package.run({"image": image[None]})["logits"] for image in images])
    reference = _onnxruntime_logits(model, images)
    with step("timing one inference"):
        latency = package.benchmark(repeat=20)
    predictions = logits.argmax(axis=1)
    return DemoResult(
        model_path=model_path,
        package_dir=Path(output_dir),
        target=_describe_target(metadata.target),
        library_kib=metadata.library.size_bytes / 1024,
        images=len(images),
        correct=int((predictions == labels).sum()),
        reference_agreement=None if reference is None else int((reference.argmax(axis=1) == predictions).sum()),
        max_logit_diff=None if reference is None else float(np.abs(reference - logits).max()),
        latency=latency,
    )
