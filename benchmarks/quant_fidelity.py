"""Measure how faithfully tvmq's int8 post-training quantization keeps two real pretrained
models, side by side with onnxruntime's int8 (and torch's dynamic int8) on the same inputs.

No labelled data exists offline for these models, so fidelity is measured against the float
model (onnxruntime fp32 on the same ONNX file) instead of against labels. The bars:

    EfficientNet-Lite0  top-1 agreement with fp32 >= 90% on the evaluation crops; also reported:
                        mean KL(fp32 softmax || int8 softmax) and the agreement on the crops
                        where fp32 is confident (top-1 probability >= 0.5)
    all-MiniLM-L6-v2    mean cosine of the sentence embedding (mean-pooled over the attention
                        mask) to fp32 >= 0.99; also reported: the minimum and 5th percentile

Both models and their data come from benchmarks/zoo.py (exported with the legacy torch.onnx
exporter, as `python -m benchmarks.real_models` checks them). For each model it builds

    onnxruntime fp32    the reference
    tvmq fp32           `tvmq.compile_model` of the float model (should match the reference)
    tvmq int8           `quantize_model` with each `--methods` calibration method, realized
                        into integer operators by `compile_model`; the per-layer error report
                        (worst layers first) is printed below the table
    onnxruntime int8    EfficientNet: `quantize_static` (QDQ, per-channel int8 weights, uint8
                        activations) with MinMax, Percentile and Entropy calibration on the same
                        crops; MiniLM: `quantize_dynamic` (int8 weights, per tensor and per channel)
    torch int8          MiniLM only: `torch.ao.quantization.quantize_dynamic` on nn.Linear

Inputs, all deterministic (fixed seeds):
  * image crops from the photos that ship inside installed packages (scikit-learn's china.jpg
    and flower.jpg; scikit-image's natural colour photos and matplotlib's grace_hopper.jpg when
    those packages are installed):
    random resized crops (area 25-100%, aspect 3/4-4/3) to 224x224, random horizontal flips,
    brightness/contrast/saturation jitter of +-10%, scaled to [-1, 1]. Calibration crops use
    another seed than evaluation crops.
  * English sentences generated from templates x subjects x verbs x objects x places; the
    calibration sentences are distinct from the evaluation sentences. They are tokenized to
    a fixed length of 64 (padding="max_length", truncation), shorter than the benchmarks' 128 to
    keep untuned TVM's evaluation pass short; every tvmq package has static shapes.

tvmq runs one sample at a time (batch 1, static shapes) with TVM's untuned code, so the
defaults are slow (benchmarks/README.md says how long they took). Calibration statistics are cached in WORKDIR/calibration-cache, so each further method costs only
its error report and its evaluation pass. torch and onnxruntime use one thread (times here are
not speed benchmarks; see `tvmq bench` for that).

Usage (from the repository root):

    python -m benchmarks.quant_fidelity [--models efficientnet-lite0 minilm-l6]
        [--methods minmax percentile entropy mse] [--minilm-methods minmax percentile]
        [--calib-samples 64] [--eval-samples 256] [--json FILE] [--workdir DIR]
        [--percentile 99.99] [--activation-dtype uint8|int8] [--symmetric-activations]
        [--per-tensor] [--reduce-range] [--skip LAYER_OR_OP ...] [--no-bias-correction] [--verbose]

The last options change every tvmq int8 configuration of the run (to investigate a bar that is
missed: which layers to keep in float, per-tensor vs per-channel weights, int8 vs uint8).
Exits 1 if any system crashed (its traceback is printed), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

import tvmq
from tvmq.quantize import QConfig, quantize_model

from . import metrics, peers, zoo
from .metrics import describe_qconfig, fmt, yes_no
from .peers import Runner
from .timing import setup_logging, source_revision

SEQUENCE_LENGTH = 64
MIN_TOP1_AGREEMENT = 90.0  # percent, EfficientNet-Lite0
MIN_MEAN_COSINE = 0.99  # MiniLM-L6 embeddings
WORST_LAYERS_SHOWN = 5


# --- models -----------------------------------------------------------------


@dataclass
class Benchmark:
    """An exported model, its calibration and evaluation inputs (first axis = samples), and how
    its outputs become the compared features and are judged."""

    key: str
    name: str
    onnx_path: Path
    calib: dict[str, np.ndarray]
    eval: dict[str, np.ndarray]
    data_description: str
    features: Callable[[np.ndarray], np.ndarray]  # raw outputs of all eval samples -> features
    fidelity: Callable[[np.ndarray, np.ndarray], dict]  # (fp32 features, features) -> metrics
    describe: Callable[[dict], str]
    meets_bar: Callable[[dict], bool]
    bar: str
    # int8 systems to compare with: (system, settings, build(workdir) -> runner)
    baselines: list[tuple[str, str, Callable[[Path], Runner]]] = field(default_factory=list)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: (1, *array.shape[1:]) for name, array in self.eval.items()}


def efficientnet_benchmark(workdir: Path, calib_samples: int, eval_samples: int) -> Benchmark:
    path, inputs = zoo.export("efficientnet-lite0", workdir)
    photos = zoo.bundled_photos()
    (name,) = inputs
    calib = {name: zoo.image_crops(photos, calib_samples, zoo.CALIB_SEED)}
    baselines = [
        (
            "onnxruntime int8",
            f"quantize_static {method}, QDQ, per-channel, uint8 asym activations",
            lambda workdir, method=method: peers.onnxruntime_runner(
                peers.onnxruntime_int8_static(path, calib, workdir / f"ort-{method}.onnx", method=method)
            ),
        )
        for method in peers.ORT_CALIBRATION_METHODS
    ]
    return Benchmark(
        key="efficientnet-lite0",
        name=zoo.TITLES["efficientnet-lite0"],
        onnx_path=path,
        calib=calib,
        eval={name: zoo.image_crops(photos, eval_samples, zoo.EVAL_SEED)},
        data_description=f"random resized crops of {len(photos)} bundled photos ({', '.join(photos)}); "
        f"calibration seed {zoo.CALIB_SEED}, evaluation seed {zoo.EVAL_SEED}",
        features=lambda logits: logits.reshape(len(logits), -1),
        fidelity=metrics.classifier_fidelity,
        describe=metrics.describe_classifier,
        meets_bar=lambda m: m["top1_agreement"] >= MIN_TOP1_AGREEMENT,
        bar=f"top-1 agreement >= {MIN_TOP1_AGREEMENT:g}%",
        baselines=baselines,
    )


def minilm_benchmark(workdir: Path, calib_samples: int, eval_samples: int) -> Benchmark:
    calib_sentences = zoo.sentences(calib_samples, zoo.CALIB_SEED)
    eval_sentences = zoo.sentences(eval_samples, zoo.EVAL_SEED, exclude=frozenset(calib_sentences))
    # The export has a dynamic sequence axis: its input sentence is tokenized to the zoo's
    # length, the samples here to SEQUENCE_LENGTH.
    path, inputs = zoo.export("minilm-l6", workdir, eval_sentences[0])
    eval_inputs = zoo.minilm_tokens(eval_sentences, SEQUENCE_LENGTH, inputs)
    mask = eval_inputs["attention_mask"]
    baselines = [
        (
            "onnxruntime int8",
            f"quantize_dynamic, {granularity} int8 weights",
            lambda workdir, per_channel=per_channel, granularity=granularity: peers.onnxruntime_runner(
                peers.onnxruntime_int8_dynamic(path, workdir / f"ort-dynamic-{granularity}.onnx", per_channel)
            ),
        )
        for per_channel, granularity in ((False, "per-tensor"), (True, "per-channel"))
    ]
    baselines.append(
        (
            "torch int8",
            "quantize_dynamic nn.Linear, qint8",
            lambda _workdir: peers.torch_runner(peers.torch_int8_dynamic(zoo.torch_module("minilm-l6"))),
        )
    )
    lengths = mask.sum(axis=1)
    return Benchmark(
        key="minilm-l6",
        name=zoo.TITLES["minilm-l6"],
        onnx_path=path,
        calib=zoo.minilm_tokens(calib_sentences, SEQUENCE_LENGTH, inputs),
        eval=eval_inputs,
        data_description=f"template sentences padded to {SEQUENCE_LENGTH} tokens (real tokens: "
        f"{lengths.min()}-{lengths.max()}, mean {lengths.mean():.1f}); calibration "
        f"seed {zoo.CALIB_SEED}, evaluation seed {zoo.EVAL_SEED}, disjoint",
        features=lambda hidden: metrics.mean_pooled(hidden, mask),
        fidelity=metrics.embedding_fidelity,
        describe=metrics.describe_embedding,
        meets_bar=lambda m: m["mean_cosine"] >= MIN_MEAN_COSINE,
        bar=f"mean cosine >= {MIN_MEAN_COSINE:g}",
        baselines=baselines,
    )


BENCHMARKS = {"efficientnet-lite0": efficientnet_benchmark, "minilm-l6": minilm_benchmark}


# --- systems ----------------------------------------------------------------


@dataclass
class Row:
    system: str
    settings: str
    metrics: dict = field(default_factory=dict)
    fidelity: str = "-"
    meets_bar: bool | None = None
    build_s: float | None = None
    eval_ms: float | None = None  # per sample
    quantization_error: dict | None = None  # tvmq's report: per layer (worst first) and outputs
    error: str | None = None


def tvmq_fp32(model, package_dir: Path) -> Path:
    tvmq.compile_model(model, "host", package_dir)
    return package_dir


def tvmq_int8(bench: Benchmark, model, config: QConfig, workdir: Path, package_dir: Path, row: Row) -> Path:
    quantized = quantize_model(model, bench.calib, config, cache_dir=workdir / "calibration-cache")
    row.quantization_error = quantized.quantization["error"]
    tvmq.compile_model(quantized, "host", package_dir)
    return package_dir


# --- the benchmark ------------------------------------------------------------


def measure(row: Row, build: Callable[[], Runner], bench: Benchmark, reference: np.ndarray | None) -> np.ndarray | None:
    """Build, run on the evaluation inputs and fill `row`; returns the features, or None (with
    the traceback in `row.error`) if building or running failed."""
    print(f"  {row.system}: {row.settings} ...", file=sys.stderr, flush=True)
    try:
        start = time.perf_counter()
        runner = build()
        row.build_s = time.perf_counter() - start
        outputs, row.eval_ms = peers.run_all(runner, bench.eval)
    except Exception:
        row.error = traceback.format_exc()
        print(row.error, file=sys.stderr)
        return None
    features = bench.features(outputs)
    if reference is not None:
        row.metrics = bench.fidelity(reference, features)
        row.fidelity, row.meets_bar = bench.describe(row.metrics), bench.meets_bar(row.metrics)
    print(f"    {row.fidelity}; build {row.build_s:.1f} s, {row.eval_ms:.0f} ms/sample", file=sys.stderr, flush=True)
    return features


def tvmq_configs(args: argparse.Namespace, methods: list[str]) -> list[QConfig]:
    return [
        QConfig(
            method=method,
            percentile=args.percentile,
            per_channel=not args.per_tensor,
            reduce_range=args.reduce_range,
            activation_dtype=args.activation_dtype,
            symmetric_activations=args.symmetric_activations,
            skip=tuple(args.skip),
            bias_correction=not args.no_bias_correction,
        )
        for method in methods
    ]


def run_benchmark(bench: Benchmark, configs: list[QConfig], workdir: Path) -> list[Row]:
    print(f"== {bench.name}", file=sys.stderr, flush=True)
    reference_row = Row("onnxruntime fp32", "reference")
    reference = measure(reference_row, lambda: peers.onnxruntime_runner(bench.onnx_path), bench, None)
    if reference is None:
        raise RuntimeError(f"onnxruntime cannot run {bench.onnx_path}:\n{reference_row.error}")
    rows = [reference_row]
    model = tvmq.load_model(bench.onnx_path, input_shapes=bench.input_shapes)

    def add(row: Row, build: Callable[[], Runner]) -> None:
        measure(row, build, bench, reference)
        rows.append(row)

    add(Row("tvmq fp32", "host package"), lambda: peers.package_runner(tvmq_fp32(model, workdir / f"{bench.key}-fp32")))
    for system, settings, build in bench.baselines:
        add(Row(system, settings), lambda build=build: build(workdir))
    for index, config in enumerate(configs):
        row = Row("tvmq int8", describe_qconfig(config))
        package_dir = workdir / f"{bench.key}-int8-{index}"
        add(
            row,
            lambda config=config, row=row, package_dir=package_dir: peers.package_runner(
                tvmq_int8(bench, model, config, workdir, package_dir, row)
            ),
        )
    return rows


# --- report -----------------------------------------------------------------


def report(bench: Benchmark, rows: list[Row], eval_count: int, calib_count: int) -> str:
    lines = [
        f"## {bench.name}: {eval_count} evaluation / {calib_count} calibration samples",
        f"Data: {bench.data_description}.",
        f"Bar: {bench.bar} vs onnxruntime fp32.",
        "",
        "| system | settings | fidelity vs fp32 | bar met? | build s | ms/sample |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        fidelity = "**crashed**" if row.error else row.fidelity
        lines.append(
            f"| {row.system} | {row.settings} | {fidelity} | {yes_no(row.meets_bar)} "
            f"| {fmt(row.build_s, '.1f')} | {fmt(row.eval_ms, '.0f')} |"
        )
    for row in rows:
        if row.quantization_error:
            error = row.quantization_error
            outputs = "; ".join(", ".join(f"{k} {fmt(v, '.4g')}" for k, v in out.items()) for out in error["outputs"])
            lines.append(f"\ntvmq int8 ({row.settings}): outputs on {error['samples']} calibration samples: {outputs}")
            lines.append(f"  worst {WORST_LAYERS_SHOWN} of {len(error['layers'])} layers:")
            lines.extend(
                f"    {layer['layer']}: SQNR {fmt(layer['sqnr_db'], '.1f')} dB, cosine {layer['cosine']:.4f}"
                for layer in error["layers"][:WORST_LAYERS_SHOWN]
            )
    lines.extend(f"\n{row.system} ({row.settings}) crashed:\n{row.error}" for row in rows if row.error)
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.split("\n\n")[0])
    methods = ["minmax", "percentile", "entropy", "mse"]
    parser.add_argument("--models", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=methods,
        default=methods,
        help="tvmq calibration methods for EfficientNet-Lite0 (default: all four)",
    )
    parser.add_argument(
        "--minilm-methods",
        nargs="+",
        choices=methods,
        default=["minmax", "percentile"],
        help="tvmq calibration methods for MiniLM-L6 (default: minmax percentile)",
    )
    parser.add_argument("--percentile", type=float, default=QConfig().percentile)
    parser.add_argument("--activation-dtype", choices=["uint8", "int8"], default="uint8")
    parser.add_argument("--symmetric-activations", action="store_true")
    parser.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weights")
    parser.add_argument("--skip", nargs="+", default=[], help="layer names or op types tvmq keeps in float")
    parser.add_argument("--no-bias-correction", action="store_true")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (see QConfig.reduce_range)")
    parser.add_argument("--calib-samples", type=int, default=64)
    parser.add_argument("--eval-samples", type=int, default=256)
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--workdir", type=Path, help="keep models, packages and the calibration cache here")
    parser.add_argument("--verbose", action="store_true", help="show tvmq's progress on stderr")
    args = parser.parse_args()
    if min(args.calib_samples, args.eval_samples) < 1:
        parser.error("--calib-samples and --eval-samples must be positive")
    return args


def main() -> int:
    args = parse_args()
    if args.verbose:
        setup_logging()
    torch.set_num_threads(1)
    revision = source_revision()  # before anything runs: tvmq's modules are imported on first use
    started = time.perf_counter()
    results, reports = {}, []
    with tempfile.TemporaryDirectory(prefix="tvmq-fidelity-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        for key in args.models:
            bench = BENCHMARKS[key](workdir, args.calib_samples, args.eval_samples)
            methods = args.methods if key == "efficientnet-lite0" else args.minilm_methods
            rows = run_benchmark(bench, tvmq_configs(args, methods), workdir)
            reports.append(report(bench, rows, args.eval_samples, args.calib_samples))
            results[key] = {
                "name": bench.name,
                "data": bench.data_description,
                "bar": bench.bar,
                "rows": [asdict(row) for row in rows],
            }
    wall = time.perf_counter() - started
    print("\n\n".join(reports) + f"\n\ntvmq {revision}; wall time: {wall:.0f} s")
    if args.json:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"}
        record = {"tvmq_revision": revision, "settings": settings, "wall_s": wall, "models": results}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    crashed = any(row["error"] for result in results.values() for row in result["rows"])
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
