"""Latency on the zoo of models no tuning log was tuned for (benchmarks.unseen), every system
side by side in one run at the same thread count, batch 1: tvmq fp32 and int8 with no log,
onnxruntime fp32 and int8 (`quantize_static`, QDQ, per-channel weights), OpenVINO strict f32
(`INFERENCE_PRECISION_HINT=f32`), OpenVINO's default (bf16 on CPUs with AVX512_BF16) and
OpenVINO int8 (NNCF). Every int8 system calibrates on the same samples; fidelity is the mean
cosine of each system's output to onnxruntime fp32's on held-out inputs.

    python -m benchmarks.zoo_latency [--models vit-tiny,resnet50] [--threads 2]
        [--calibration 32] [--rounds 5] [--runs 20] [--output benchmarks/results/F.json]

A system that fails to build or run on a model is reported with its error, not skipped.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

from benchmarks import peers, unseen
from benchmarks.timing import (
    RESULTS_DIR,
    interleaved_rounds,
    machine,
    median_of_runs,
    onnxruntime_timer,
    setup_logging,
    source_revision,
    spread,
    write_results,
)

SYSTEMS = ("ort-fp32", "ov-f32", "ov-default", "tvmq-fp32", "ort-int8", "ov-int8", "tvmq-int8")
INT8 = ("ort-int8", "ov-int8", "tvmq-int8")
EVALUATION_SAMPLES = 8


def openvino_timer(model, inputs: dict[str, np.ndarray], threads: int, runs: int, precision: str | None):
    """OpenVINO's CPU plugin at `threads` threads, latency mode; `precision` "f32" for the
    strict figure, None for its default. Returns the timer and a runner for the fidelity."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(model)) if isinstance(model, Path) else model, "CPU", config)
    request = compiled.create_infer_request()

    def run(feed):
        return request.infer(feed)[compiled.output(0)]

    run(inputs)
    return (lambda: median_of_runs(lambda: request.infer(inputs), runs)), run


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def build_systems(name: str, path: Path, calibration: dict, timing_input: dict, args, workdir: Path):
    """(timers, runners, errors) of every system that builds on this model."""
    import tvmq
    from tvmq.quantize import quantize_model
    from tvmq.runtime.threads import set_num_threads

    timers, runners, errors = {}, {}, {}

    def attempt(system: str, build) -> None:
        try:
            timers[system], runners[system] = build()
        except Exception as err:  # noqa: BLE001 - a peer's (or tvmq's) failure is a result
            errors[system] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err) else ''}"
            traceback.print_exc(file=sys.stderr)

    def ort(model_path: Path):
        session = peers.onnxruntime_session(model_path, args.threads)
        return onnxruntime_timer(model_path, timing_input, args.threads, args.runs), (
            lambda feed: session.run(None, feed)[0]
        )

    def tvmq_package(quantize: bool):
        model = tvmq.load_model(str(path))
        if quantize:
            model = quantize_model(model, calibration, target="host")
        out = workdir / f"{name}-{'int8' if quantize else 'fp32'}"
        tvmq.compile_model(model, "host", out)
        package = tvmq.load_package(out)
        set_num_threads(args.threads)
        package.run(timing_input)  # warm-up
        # Wall-clock per call with numpy inputs, as for the peers (not TVM's time_evaluator).
        return (lambda: median_of_runs(lambda: package.run(timing_input), args.runs)), peers.package_runner(out)

    attempt("ort-fp32", lambda: ort(path))
    attempt("ov-f32", lambda: openvino_timer(path, timing_input, args.threads, args.runs, "f32"))
    attempt("ov-default", lambda: openvino_timer(path, timing_input, args.threads, args.runs, None))
    attempt("tvmq-fp32", lambda: tvmq_package(False))
    attempt(
        "ort-int8",
        lambda: ort(peers.onnxruntime_int8_static(path, calibration, workdir / f"{name}-ort-int8.onnx")),
    )
    attempt(
        "ov-int8",
        lambda: openvino_timer(peers.openvino_int8(path, calibration), timing_input, args.threads, args.runs, None),
    )
    attempt("tvmq-int8", lambda: tvmq_package(True))
    return timers, runners, errors


def measure(name: str, args, workdir: Path) -> dict:
    path = unseen.export(name, workdir)
    calibration = unseen.samples(path, args.calibration, seed=0)
    evaluation = unseen.samples(path, EVALUATION_SAMPLES, seed=1)
    feeds = [{k: v[i : i + 1] for k, v in evaluation.items()} for i in range(EVALUATION_SAMPLES)]
    timers, runners, errors = build_systems(name, path, calibration, feeds[0], args, workdir)
    row: dict = {"model": name, "errors": errors, "latency": {}, "cosine_to_fp32": {}}
    for system, rounds in interleaved_rounds(timers, args.rounds).items():
        row["latency"][system] = spread(rounds)
    reference = runners.get("ort-fp32")
    if reference is not None:
        expected = [reference(feed) for feed in feeds]
        for system, runner in runners.items():
            if system != "ort-fp32":
                row["cosine_to_fp32"][system] = statistics.fmean(
                    cosine(runner(feed), want) for feed, want in zip(feeds, expected)
                )
    return row


def _cell(row: dict, system: str) -> str:
    if system in row["errors"]:
        return "fails"
    latency = row["latency"].get(system)
    if latency is None:
        return "-"
    text = f"{latency['median_ms']:.2f}"
    if system in INT8 and system in row["cosine_to_fp32"]:
        text += f" ({row['cosine_to_fp32'][system]:.4f})"
    return text


def _ratio(row: dict, system: str, peer: str) -> str:
    latency = row["latency"]
    if system not in latency or peer not in latency:
        return "-"
    return f"{latency[system]['median_ms'] / latency[peer]['median_ms']:.2f}"


def table(rows: list[dict], args, cpu: str) -> str:
    lines = [
        f"Median ms per inference (batch 1, {args.threads} threads, {args.rounds} interleaved rounds of "
        f"{args.runs} runs; int8 systems: mean output cosine to onnxruntime fp32 on {EVALUATION_SAMPLES} "
        f"held-out inputs in brackets; {args.calibration} calibration samples). CPU: {cpu}.",
        "",
        "| model | " + " | ".join(SYSTEMS) + " | tvmq fp32 / OV f32 | tvmq fp32 / ORT fp32 | tvmq int8 / OV int8 |",
        "|---" * (len(SYSTEMS) + 4) + "|",
    ]
    for row in rows:
        cells = [_cell(row, system) for system in SYSTEMS]
        ratios = [_ratio(row, "tvmq-fp32", "ov-f32"), _ratio(row, "tvmq-fp32", "ort-fp32")]
        ratios.append(_ratio(row, "tvmq-int8", "ov-int8"))
        lines.append(f"| {row['model']} | " + " | ".join(cells + ratios) + " |")
    failures = [f"- {row['model']}, {system}: {error}" for row in rows for system, error in row["errors"].items()]
    if failures:
        lines += ["", "Failures:", *failures]
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(unseen.MODELS), help="comma-separated zoo models (default all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=32, help="calibration samples for every int8 system")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20, help="runs per round (the round's figure is their median)")
    today = datetime.date.today().isoformat()
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / f"{today}-zoo-latency.json")
    parser.add_argument("--workdir", type=Path, help="where models and packages go (default: a temporary folder)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in unseen.MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; known: {', '.join(unseen.MODELS)}")
    with tempfile.TemporaryDirectory(prefix="tvmq-zoo-") as scratch:
        workdir = args.workdir or Path(scratch)
        rows = []
        for name in models:
            rows.append(measure(name, args, workdir))
            print(table(rows[-1:], args, machine()["cpu"]), flush=True)
    record = {"machine": machine(threads=args.threads), "revision": source_revision(), "args": vars(args), "rows": rows}
    record["args"] = {k: str(v) for k, v in record["args"].items()}
    write_results(args.output, record, table(rows, args, machine()["cpu"]))
    print(table(rows, args, machine()["cpu"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
