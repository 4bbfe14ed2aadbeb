"""Train the small Fashion-MNIST CNN that ships as tvmq's example model.

tvmq's examples and tests need a real, non-trivial network with real data to
compile, quantise and benchmark against.  This script produces one, fully
offline and deterministically, from the Fashion-MNIST files installed by the
``dataset-fashion-mnist`` package (``apt-get install dataset-fashion-mnist``):

    <out>/model.onnx        fp32 CNN, opset 17, BatchNorm folded into the convs,
                            input "image" [batch, 1, 28, 28] float32 in [0, 1],
                            output "logits" [batch, 10]
    <out>/calibration.npz   "image": 256 random training images, for quantisation
    <out>/test.npz          "image", "label": the first 500 test images
    <out>/README.md         how the files were made and how accurate the model is

Usage (from the repository root):

    python -m benchmarks.train_example [--epochs 8] [--seed 0] [--out examples/fashion_mnist] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from .peers import onnxruntime_session, run_all
from .zoo import OPSET, export_onnx, fashion_mnist

REPO_ROOT = Path(__file__).resolve().parent.parent
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
BATCH_SIZE = 128
LEARNING_RATE = 2e-3
CALIBRATION_SIZE = 256
BUNDLED_TEST_SIZE = 500
ORT_TOLERANCE = 1e-4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed for every random choice (default: 0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "examples" / "fashion_mnist",
        help="output directory (default: examples/fashion_mnist in the repo)",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default: 2)")
    return parser.parse_args()


# --- model and training -----------------------------------------------------


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


def build_model() -> nn.Sequential:
    """28x28 -> 14x14 -> 7x7 -> 3x3 feature maps, then a small two-layer head."""
    return nn.Sequential(
        conv_block(1, 16),
        conv_block(16, 32),
        conv_block(32, 64),
        nn.Flatten(),
        nn.Linear(64 * 3 * 3, 64),
        nn.ReLU(),
        nn.Linear(64, len(CLASS_NAMES)),
    )


def train(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int, seed: int) -> None:
    inputs, targets = torch.from_numpy(images), torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    steps_per_epoch = -(-len(inputs) // BATCH_SIZE)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LEARNING_RATE, total_steps=epochs * steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(1, epochs + 1):
        started, total_loss = time.perf_counter(), 0.0
        for batch in torch.randperm(len(inputs), generator=shuffle).split(BATCH_SIZE):
            loss = loss_fn(model(inputs[batch]), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(batch)
        print(f"epoch {epoch}/{epochs}: loss {total_loss / len(inputs):.4f} ({time.perf_counter() - started:.0f} s)")
    model.eval()


# --- export and verification ------------------------------------------------


def export(model: nn.Module, path: Path) -> None:
    """Export with the TorchScript exporter (the dynamo one would need onnxscript), which folds
    eval-mode BatchNorm into the convs, with a dynamic batch axis; check that it did."""
    axes = {"image": {0: "batch"}, "logits": {0: "batch"}}
    export_onnx(model, {"image": np.zeros((1, 1, 28, 28), np.float32)}, "logits", axes, path)
    onnx_model = onnx.load(str(path))
    onnx.checker.check_model(onnx_model, full_check=True)
    leftover_batchnorms = [n.name for n in onnx_model.graph.node if n.op_type == "BatchNormalization"]
    if leftover_batchnorms:
        raise RuntimeError(f"BatchNorm was not folded in {path}: {leftover_batchnorms}")


def onnx_logits(session: ort.InferenceSession, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    return run_all(lambda inputs: session.run(["logits"], inputs)[0], {"image": images}, batch_size)[0]


def check_matches_torch(model: nn.Module, session: ort.InferenceSession, images: np.ndarray) -> None:
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    max_error = float(np.abs(onnx_logits(session, images) - expected).max())
    if max_error > ORT_TOLERANCE:
        raise RuntimeError(f"onnxruntime differs from torch by {max_error:.2e} (> {ORT_TOLERANCE})")
    print(f"onnxruntime matches torch: max |difference| {max_error:.2e}")


def top1(session: ort.InferenceSession, images: np.ndarray, labels: np.ndarray) -> float:
    return float((onnx_logits(session, images).argmax(axis=1) == labels).mean())


# --- bundled data and README ------------------------------------------------


def save_data(out: Path, train_images: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    calibration_indices = np.sort(rng.choice(len(train_images), CALIBRATION_SIZE, replace=False))
    np.savez_compressed(out / "calibration.npz", image=train_images[calibration_indices])
    np.savez_compressed(out / "test.npz", image=test_images[:BUNDLED_TEST_SIZE], label=test_labels[:BUNDLED_TEST_SIZE])


def display_path(path: Path) -> str:
    """Path relative to the repository root when it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def write_readme(out: Path, command: str, accuracy_full: float, accuracy_bundled: float) -> None:
    files = ["model.onnx", "calibration.npz", "test.npz"]
    size_rows = "\n".join(f"| `{name}` | {(out / name).stat().st_size / 1024:.1f} KiB |" for name in files)
    class_rows = "\n".join(f"| {label} | {name} |" for label, name in enumerate(CLASS_NAMES))
    (out / "README.md").write_text(f"""\
# Fashion-MNIST example model

A small convolutional network that classifies 28x28 greyscale
[Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist) images into 10
clothing classes. tvmq uses it as a realistic example for compiling, quantising
and benchmarking.

## Model

- `model.onnx`: ONNX opset {OPSET}, fp32, BatchNorm folded into the convolutions.
- Input `image`: float32 `[batch, 1, 28, 28]`, pixel values scaled to `[0, 1]`
  (raw byte / 255, no mean/std normalisation).
- Output `logits`: float32 `[batch, 10]`, unnormalised scores; the predicted
  class is the argmax.
- Architecture: three blocks of conv3x3 + BatchNorm + ReLU + maxpool2
  (1 -> 16 -> 32 -> 64 channels), then Linear(576, 64) + ReLU + Linear(64, 10).

## Data

- `calibration.npz`: key `image`, float32 `[{CALIBRATION_SIZE}, 1, 28, 28]`, a fixed
  random subset of the training set, for post-training quantisation.
- `test.npz`: keys `image`, float32 `[{BUNDLED_TEST_SIZE}, 1, 28, 28]`, and `label`,
  int64 `[{BUNDLED_TEST_SIZE}]`: the first {BUNDLED_TEST_SIZE} images of the test set.

## Accuracy (fp32, top-1, measured with onnxruntime on `model.onnx`)

| Test images | Top-1 |
|---|---|
| Full test set (10,000) | {accuracy_full:.2%} |
| Bundled `test.npz` ({BUNDLED_TEST_SIZE}) | {accuracy_bundled:.2%} |

## Classes (label order)

| Label | Class |
|---|---|
{class_rows}

## File sizes

| File | Size |
|---|---|
{size_rows}

## How it was produced

From the repository root, with the `dataset-fashion-mnist` package installed:

```
{command}
```

Trained on CPU with torch {torch.__version__}, exported with its TorchScript ONNX
exporter (onnx {onnx.__version__}, onnxruntime {ort.__version__}). Training is
seeded and uses deterministic algorithms, so the same command with the same
library versions and thread count reproduces the same weights.
""")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)

    train_images, train_labels = fashion_mnist("train")
    test_images, test_labels = fashion_mnist("t10k")

    model = build_model()
    started = time.perf_counter()
    train(model, train_images, train_labels, args.epochs, args.seed)
    print(f"training took {time.perf_counter() - started:.0f} s")

    model_path = args.out / "model.onnx"
    export(model, model_path)
    session = onnxruntime_session(model_path)
    check_matches_torch(model, session, test_images[:16])
    accuracy_full = top1(session, test_images, test_labels)
    accuracy_bundled = top1(session, test_images[:BUNDLED_TEST_SIZE], test_labels[:BUNDLED_TEST_SIZE])
    print(
        f"top-1: {accuracy_full:.2%} on 10,000 test images, "
        f"{accuracy_bundled:.2%} on the {BUNDLED_TEST_SIZE} bundled ones"
    )

    save_data(args.out, train_images, test_images, test_labels, args.seed)
    command = (
        f"python -m benchmarks.train_example --epochs {args.epochs} --seed {args.seed} --out {display_path(args.out)}"
    )
    write_readme(args.out, command, accuracy_full, accuracy_bundled)
    print(f"wrote {display_path(args.out)}")


if __name__ == "__main__":
    main()
