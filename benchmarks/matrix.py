"""The benchmark matrix: speed, size and accuracy of tvmq side by side with onnxruntime and
PyTorch, measured in one run on this machine.

For each model (benchmarks/zoo.py: the bundled Fashion-MNIST example, ResNet-18 with random
weights (speed only), EfficientNet-Lite0 and MiniLM-L6 pretrained; batch 1, and batch 8 for
MiniLM) and each system

    pytorch fp32            eager, torch.no_grad
    pytorch int8 dynamic    MiniLM only: torch.ao.quantization.quantize_dynamic on nn.Linear
    onnxruntime fp32        the reference every ratio is taken against
    onnxruntime int8        quantize_static (QDQ, per-channel int8 weights, uint8 activations,
                            MinMax) on the calibration samples; quantize_dynamic for MiniLM
    tvmq fp32 / int8        untuned (TVM's default code; int8 convolutions and matrix products
                            get tvmq's default int8 schedule) and tuned (compiled with the tuning
                            log --logs/<target>; the kernels it lacks stay untuned, and the
                            coverage is reported)

it reports latency at 1 and 2 threads (each cell the median of --rounds round medians, systems
interleaved within a round, with the range of the round medians as its spread), the ratio to
onnxruntime fp32, the library or model size, accuracy (example: top-1 on the bundled labelled
test images) or fidelity to onnxruntime fp32 (top-1 agreement for the image models, mean
cosine of the mean-pooled sentence embedding for MiniLM), build times (quantization,
compilation) and, from --logs/<target>/tuning.json, what tuning the log cost. A system that
cannot run here (no torch, no tuning log) is listed as skipped with the reason; one that fails
is listed with its error.

Writes benchmarks/results/<date>-<host>.json and a markdown table beside it (.md), and prints
the table. --quick: the bundled example only, few runs (a smoke run of every code path).
Exits 1 if a system failed (its traceback is printed), 0 otherwise.

    python -m benchmarks.matrix [--quick] [--models example resnet18 efficientnet-lite0 minilm-l6]
        [--systems SYSTEM ...] [--threads 1 2] [--rounds 4] [--runs 20] [--untuned-runs 3]
        [--eval-samples 64] [--target x86-avx2] [--logs tuning_logs] [--output FILE.json]
        [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import tvmq
from tvmq.metadata import read_metadata
from tvmq.runtime.devices import cannot_run_here

from . import metrics, peers, timing, zoo

REFERENCE = "onnxruntime fp32"
LARGER_BATCH = {"minilm-l6": 8}  # timed at this batch size too (latency only)
FORMAT = "tvmq-bench/1"

TimerFactory = Callable[[dict[str, np.ndarray], int, int], Callable[[], float]]  # (inputs, threads, runs)


class Skipped(Exception):
    """A system that cannot run on this machine; the message says why."""


@dataclass
class Built:
    """A system made ready to run: how to time it, how to run one sample, what it weighs."""

    timer: TimerFactory
    runner: peers.Runner
    size_bytes: int
    size_of: str  # what size_bytes measures
    build_seconds: dict[str, float] = field(default_factory=dict)
    tuning: dict | None = None


@dataclass
class Case:
    """One model at one batch size, exported, with its inputs and evaluation samples."""

    model: str
    batch: int
    onnx_path: Path
    inputs: dict[str, np.ndarray]  # one batch, for timing
    calibration: dict[str, np.ndarray]
    evaluation: dict[str, np.ndarray] | None  # first axis = samples, fed one at a time
    labels: np.ndarray | None
    workdir: Path

    @property
    def key(self) -> str:
        return self.model if self.batch == 1 else f"{self.model}-batch{self.batch}"


# --- systems ----------------------------------------------------------------


def require(module: str, why: str) -> None:
    """Skip the system, saying why, where `module` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise Skipped(f"{module} is not installed ({why})")


def pytorch_fp32(case: Case, args) -> Built:
    require("torch", "PyTorch eager")
    return torch_built(zoo.torch_module(case.model), "state dict")


def pytorch_int8_dynamic(case: Case, args) -> Built:
    require("torch", "torch.ao.quantization.quantize_dynamic")
    start = time.perf_counter()
    built = torch_built(peers.torch_int8_dynamic(zoo.torch_module(case.model)), "state dict (int8 Linear weights)")
    built.build_seconds["quantize"] = time.perf_counter() - start
    return built


def torch_built(module, size_of: str) -> Built:
    return Built(
        lambda inputs, threads, runs: timing.torch_timer(module, inputs, threads, runs),
        peers.torch_runner(module),
        peers.torch_size_bytes(module),
        size_of,
    )


def onnx_built(path: Path, size_of: str, build_seconds: dict | None = None) -> Built:
    return Built(
        lambda inputs, threads, runs: timing.onnxruntime_timer(path, inputs, threads, runs),
        peers.onnxruntime_runner(path),
        path.stat().st_size,
        size_of,
        build_seconds or {},
    )


def onnxruntime_fp32(case: Case, args) -> Built:
    return onnx_built(case.onnx_path, "ONNX file")


def onnxruntime_int8(case: Case, args) -> Built:
    output = case.workdir / f"{case.key}-ort-int8.onnx"
    start = time.perf_counter()
    if case.model == "minilm-l6":
        peers.onnxruntime_int8_dynamic(case.onnx_path, output, per_channel=True)
        return onnx_built(output, "ONNX file (quantize_dynamic)", {"quantize": time.perf_counter() - start})
    peers.onnxruntime_int8_static(case.onnx_path, case.calibration, output, method="MinMax")
    return onnx_built(output, "ONNX file (quantize_static QDQ)", {"quantize": time.perf_counter() - start})


def tvmq_system(precision: str, tuned: bool) -> Callable[[Case, argparse.Namespace], Built]:
    """Build the package of `precision`, untuned or with the tuning log --logs/<target>."""

    def build(case: Case, args) -> Built:
        from tvmq.quantize import QConfig, quantize_model

        log = args.logs / args.target if tuned else None
        if log is not None and not log.is_dir():
            raise Skipped(f"no tuning log at {log} (python -m benchmarks.tune_shipped_logs makes it)")
        reason = cannot_run_here(tvmq.load_target(args.target))
        if reason:
            raise Skipped(reason)
        seconds = {}
        model = tvmq.load_model(case.onnx_path, input_shapes={k: v.shape for k, v in case.inputs.items()})
        if precision == "int8":
            start = time.perf_counter()
            cache = case.workdir / "calibration-cache"
            model = quantize_model(model, case.calibration, QConfig(), cache_dir=cache, target=args.target)
            seconds["quantize"] = time.perf_counter() - start
        out = case.workdir / f"{case.key}-tvmq-{precision}-{'tuned' if tuned else 'untuned'}"
        package_dir, seconds["compile"], coverage = timing.timed_compile(model, args.target, out, log)
        return Built(
            lambda inputs, threads, runs: timing.package_timer(package_dir, inputs, threads, runs),
            peers.package_runner(package_dir),
            read_metadata(package_dir).library.size_bytes,
            "library",
            seconds,
            None if log is None else tuning_record(log, f"{case.model}-{precision}", coverage),
        )

    return build


def tuning_record(log: Path, key: str, coverage: dict) -> dict:
    """Which of the model's kernels the log covered, and what tuning this model cost (from the
    log's tuning.json, where python -m benchmarks.tune_shipped_logs records it)."""
    tuned, untuned = coverage["tuned"], coverage["untuned"]
    record = {"log": str(log), "kernels_tuned": len(tuned), "kernels": len(tuned) + len(untuned), "untuned": untuned}
    costs_file = log / "tuning.json"
    runs = json.loads(costs_file.read_text()).get(key, {}).get("runs", []) if costs_file.exists() else []
    record["tuning_minutes"] = round(sum(run["minutes"] for run in runs), 1) if runs else None
    record["tuning_trials"] = sum(run["trials"] for run in runs) if runs else None
    return record


def systems_for(case: Case) -> dict[str, Callable[[Case, argparse.Namespace], Built]]:
    systems = {"pytorch fp32": pytorch_fp32}
    if case.model == "minilm-l6":
        systems["pytorch int8 dynamic"] = pytorch_int8_dynamic
    systems |= {REFERENCE: onnxruntime_fp32, "onnxruntime int8": onnxruntime_int8}
    for precision in ("fp32", "int8"):
        for tuned in (False, True):
            systems[f"tvmq {precision} {'tuned' if tuned else 'untuned'}"] = tvmq_system(precision, tuned)
    return systems


# --- accuracy and fidelity --------------------------------------------------


def evaluate(case: Case, outputs: np.ndarray, reference: np.ndarray | None) -> dict:
    """Top-1 accuracy where there are labels; fidelity to onnxruntime fp32's outputs otherwise."""
    if case.labels is not None:
        return {"top1_accuracy": 100 * float((outputs.argmax(axis=1) == case.labels).mean())}
    if reference is None:
        return {}
    if case.model == "minilm-l6":
        mask = case.evaluation["attention_mask"]
        return metrics.embedding_fidelity(metrics.mean_pooled(reference, mask), metrics.mean_pooled(outputs, mask))
    return {"top1_agreement": metrics.classifier_fidelity(reference, outputs)["top1_agreement"]}


# --- the benchmark ------------------------------------------------------------


def make_cases(name: str, args, workdir: Path) -> list[Case]:
    path, inputs = zoo.export(name, workdir / "models")
    calibration = zoo.calibration(name, inputs, zoo.CALIBRATION_SAMPLES)
    evaluation, labels = (None, None) if name == "resnet18" else zoo.evaluation(name, inputs, args.eval_samples)
    cases = [Case(name, 1, path, inputs, calibration, evaluation, labels, workdir)]
    if name in LARGER_BATCH:
        batch = LARGER_BATCH[name]
        batch_inputs = zoo.calibration(name, inputs, batch)  # the first calibration samples
        cases.append(Case(name, batch, path, batch_inputs, calibration, None, None, workdir))
    return cases


def bench_case(case: Case, args) -> dict:
    rows, built = {}, {}
    for system, build in systems_for(case).items():
        if args.systems and system not in {*args.systems, REFERENCE}:  # ratios need the reference
            continue
        print(f"  {case.key}: {system} ...", file=sys.stderr, flush=True)
        try:
            built[system] = ready = build(case, args)
            rows[system] = {
                "status": "measured",
                "size_bytes": ready.size_bytes,
                "size_of": ready.size_of,
                "build_seconds": ready.build_seconds,
                "tuning": ready.tuning,
            }
        except Skipped as reason:
            rows[system] = {"status": "skipped", "reason": str(reason)}
        except Exception as err:
            traceback.print_exc()
            rows[system] = {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
    if case.evaluation is not None:
        evaluate_all(case, built, rows)
    time_all(case, built, rows, args)
    return {
        "model": case.model,
        "batch": case.batch,
        "inputs": {name: list(array.shape) for name, array in case.inputs.items()},
        "evaluation_samples": 0 if case.evaluation is None else len(next(iter(case.evaluation.values()))),
        "systems": [{"system": system, **row} for system, row in rows.items()],
    }


def evaluate_all(case: Case, built: dict[str, Built], rows: dict[str, dict]) -> None:
    outputs = {}
    for system, ready in built.items():
        try:
            outputs[system], _ = peers.run_all(ready.runner, case.evaluation)
        except Exception as err:
            rows[system] |= {"status": "failed", "reason": f"running the evaluation samples: {err}"}
    reference = outputs.get(REFERENCE)
    for system, result in outputs.items():
        rows[system]["quality"] = evaluate(case, result, reference)


def time_all(case: Case, built: dict[str, Built], rows: dict[str, dict], args) -> None:
    running = {system: ready for system, ready in built.items() if rows[system]["status"] == "measured"}
    for threads in args.threads:
        timers = {}
        for system, ready in running.items():
            runs = args.untuned_runs if system.endswith("untuned") else args.runs
            timers[system] = ready.timer(case.inputs, threads, runs)
        for system, medians in timing.interleaved_rounds(timers, args.rounds).items():
            rows[system].setdefault("latency", {})[str(threads)] = timing.spread(medians)
    for system in running:
        reference = rows.get(REFERENCE, {}).get("latency")
        latency = rows[system]["latency"]
        rows[system]["ratio_to_onnxruntime_fp32"] = {
            threads: latency[threads]["median_ms"] / reference[threads]["median_ms"] if reference else None
            for threads in latency
        }


# --- the report ---------------------------------------------------------------


def describe_quality(quality: dict | None) -> str:
    if not quality:
        return "-"
    if "top1_accuracy" in quality:
        return f"top-1 {quality['top1_accuracy']:.1f}%"
    if "top1_agreement" in quality:
        return f"top-1 agreement {quality['top1_agreement']:.1f}%"
    return f"cosine {quality['mean_cosine']:.4f}"


def describe_build(row: dict) -> str:
    seconds = " + ".join(f"{step} {value:.1f}" for step, value in row.get("build_seconds", {}).items())
    tuning = row.get("tuning")
    if tuning:
        seconds += f"; log covers {tuning['kernels_tuned']}/{tuning['kernels']} kernels"
        if tuning["tuning_minutes"] is not None:
            seconds += f", tuned {tuning['tuning_minutes']} min ({tuning['tuning_trials']} trials)"
    return seconds or "-"


def markdown(results: list[dict], threads: list[int]) -> str:
    head = ["model", "system", *(f"{t} thread{'s' * (t > 1)} ms (range)" for t in threads)]
    head += [f"vs ort fp32 ({t}t)" for t in threads] + ["size KiB", "accuracy / fidelity", "build s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in results:
        if "skipped" in result:
            lines.append(f"| {result['model']} | all | skipped: {result['skipped']} |")
            continue
        label = result["model"] + (f" (batch {result['batch']})" if result["batch"] > 1 else "")
        for row in result["systems"]:
            if row["status"] != "measured":
                lines.append(f"| {label} | {row['system']} | {row['status']}: {row['reason']} |")
                continue
            latency = row["latency"]
            cells = [f"{v['median_ms']:.2f} ({v['min_ms']:.2f}-{v['max_ms']:.2f})" for v in map(latency.get, latency)]
            ratios = [f"{r:.2f}x" if r is not None else "-" for r in row["ratio_to_onnxruntime_fp32"].values()]
            cells += ratios + [
                f"{row['size_bytes'] / 1024:.0f}",
                describe_quality(row.get("quality")),
                describe_build(row),
            ]
            lines.append(f"| {label} | {row['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args) -> dict:
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="tvmq-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        for name in args.models:
            try:
                cases = make_cases(name, args, workdir)
            except ImportError as err:  # torch, transformers or a pretrained-model package
                results.append({"model": name, "skipped": f"cannot export it here: {err}", "systems": []})
                continue
            results.extend(bench_case(case, args) for case in cases)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "output"}
    return {
        "format": FORMAT,
        "date": datetime.date.today().isoformat(),
        "machine": timing.machine(target=args.target),
        "tvmq_revision": timing.source_revision(),
        "settings": settings,
        "wall_seconds": time.perf_counter() - started,
        "results": results,
        "table": markdown(results, args.threads),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: the example only (its 500 test images), 2 rounds of 5 runs"
    )
    parser.add_argument("--models", nargs="+", choices=zoo.MODELS, default=list(zoo.MODELS))
    parser.add_argument(
        "--systems",
        nargs="+",
        help='only these systems (and onnxruntime fp32), e.g. "onnxruntime int8" "tvmq int8 tuned"',
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=20, help="runs per round and system")
    parser.add_argument("--untuned-runs", type=int, default=3, help="runs per round of untuned tvmq (seconds each)")
    parser.add_argument("--eval-samples", type=int, default=64, help="samples for accuracy and fidelity")
    parser.add_argument("--target", default="x86-avx2")
    parser.add_argument("--logs", type=Path, default=Path("tuning_logs"), help="tuning logs, one folder per target")
    parser.add_argument("--output", type=Path, help="JSON results (default benchmarks/results/<date>-<host>.json)")
    parser.add_argument("--workdir", type=Path, help="keep exported models and packages here")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.rounds, args.runs, args.untuned_runs, args.eval_samples = ["example"], 2, 5, 5, 500
    if min(args.rounds, args.runs, args.untuned_runs, args.eval_samples) < 1:
        parser.error("--rounds, --runs, --untuned-runs and --eval-samples must be positive")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    timing.setup_logging()
    report = run(args)
    output = args.output or timing.RESULTS_DIR / f"{report['date']}-{platform.node()}.json"
    table = f"{report['table']}\n\n{report['machine']['cpu']}, {report['machine']['cores']} cores; tvmq {report['tvmq_revision']}\n"
    timing.write_results(output, report, table)
    print(table + f"written {output} and {output.with_suffix('.md')}")
    return report


def failed(report: dict) -> bool:
    return any(row["status"] == "failed" for result in report["results"] for row in result["systems"])


if __name__ == "__main__":
    sys.exit(1 if failed(main()) else 0)
