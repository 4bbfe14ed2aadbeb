"""What tuning buys: untuned vs tuned tvmq against onnxruntime, and whether the shipped logs
reproduce the tuned speed with no tuning.

For each model and precision (benchmarks/zoo.py), in one run on this machine:

    onnxruntime fp32        the reference the tuning bar is set against
    tvmq untuned            TVM's default code (--untuned; seconds per run on big models)
    tvmq shipped log        compiled with tuning_logs/<target>
    tvmq full log           compiled with the full tuning log the shipped one was pruned from
                            (python -m benchmarks.tune_shipped_logs --work), where it exists

Latencies are medians over --rounds rounds (systems interleaved within a round, so drift hits
all alike) at 1 and 2 threads; the spread is the range of the round medians. Also reported:
compile time with and without a log, the log's kernel coverage, the ratio to onnxruntime fp32
(the bar: tuned fp32 within 1.2x) and shipped/full (the bar: within 10%).

    python -m benchmarks.tuning [--models resnet18 efficientnet-lite0] [--precisions fp32 int8]
        [--untuned] [--threads 1 2] [--rounds 4] [--runs 20] [--target x86-avx2]
        [--logs tuning_logs] [--work ~/.cache/tvmq/tuning] [--output FILE.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path

import numpy as np

from tvmq.frontend import load_model
from tvmq.quantize import QConfig, quantize_model
from tvmq.runtime import load_package

from . import timing, zoo
from .peers import onnxruntime_session


def bench_model(name: str, precision: str, args: argparse.Namespace, workdir: Path) -> dict:
    path, inputs = zoo.export(name, workdir / "models")
    model = load_model(path, input_shapes={key: value.shape for key, value in inputs.items()})
    if precision == "int8":
        data = zoo.calibration(name, inputs, zoo.CALIBRATION_SAMPLES)
        model = quantize_model(model, data, QConfig(), target=args.target)
    key = f"{name}-{precision}"
    logs = {"shipped log": args.logs / args.target, "full log": args.work / args.target / key}
    packages, compiles = {}, {}
    if args.untuned:
        packages["untuned"], compiles["untuned"], _ = timing.timed_compile(
            model, args.target, workdir / f"{key}-untuned", None
        )
    for system, log in logs.items():
        if log.is_dir():
            out = workdir / f"{key}-{system.split()[0]}"
            packages[system], seconds, tuning = timing.timed_compile(model, args.target, out, log)
            compiles[system] = seconds
            compiles[f"{system} coverage"] = f"{len(tuning['tuned'])}/{len(tuning['tuned']) + len(tuning['untuned'])}"
    outputs = {system: load_package(p).run(inputs) for system, p in packages.items()}
    reference = onnxruntime_session(path).run(None, inputs)[0]
    max_diff = {system: float(np.abs(next(iter(o.values())) - reference).max()) for system, o in outputs.items()}

    summary: dict[str, dict[str, dict]] = {}
    for threads in args.threads:
        timers = {"onnxruntime fp32": timing.onnxruntime_timer(path, inputs, threads, args.runs)}
        for system, package_dir in packages.items():
            runs = 3 if system == "untuned" else args.runs
            timers[f"tvmq {system}"] = timing.package_timer(package_dir, inputs, threads, runs)
        for system, medians in timing.interleaved_rounds(timers, args.rounds).items():
            summary.setdefault(system, {})[str(threads)] = timing.spread(medians)
    ratios = {}
    for threads in map(str, args.threads):
        ort_ms = summary["onnxruntime fp32"][threads]["median_ms"]
        for system in summary:
            if system.startswith("tvmq"):
                ratios[f"{system} / onnxruntime fp32, {threads} threads"] = (
                    summary[system][threads]["median_ms"] / ort_ms
                )
        if "tvmq shipped log" in summary and "tvmq full log" in summary:
            ratios[f"shipped / full log, {threads} threads"] = (
                summary["tvmq shipped log"][threads]["median_ms"] / summary["tvmq full log"][threads]["median_ms"]
            )
    if "untuned" in compiles and "shipped log" in compiles:
        ratios["compile with shipped log / untuned compile"] = compiles["shipped log"] / compiles["untuned"]
    costs_file = logs["shipped log"] / "tuning.json"
    return {
        "model": name,
        "precision": precision,
        "latency": summary,
        "ratios": ratios,
        "compile_seconds": compiles,
        "max_abs_diff_vs_onnxruntime": max_diff,
        "tuning": json.loads(costs_file.read_text()).get(key) if costs_file.exists() else None,
    }


def markdown(results: list[dict], threads: list[int]) -> str:
    head = "| model | system | " + " | ".join(f"{t} thread{'s' * (t > 1)} ms (range)" for t in threads) + " | vs ort |"
    lines = [head, "|" + "---|" * (3 + len(threads))]
    for result in results:
        ort_ms = result["latency"]["onnxruntime fp32"][str(threads[-1])]["median_ms"]
        for system, by_threads in result["latency"].items():
            cells = [
                f"{v['median_ms']:.2f} ({v['min_ms']:.2f}-{v['max_ms']:.2f})"
                for v in (by_threads[str(t)] for t in threads)
            ]
            ratio = by_threads[str(threads[-1])]["median_ms"] / ort_ms
            label = f"{result['model']} {result['precision']}"
            lines.append(f"| {label} | {system} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=zoo.MODELS, default=["resnet18", "efficientnet-lite0"])
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "int8"), default=["fp32"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=20, help="runs per round and system")
    parser.add_argument("--untuned", action="store_true", help="also time TVM's untuned code (slow)")
    parser.add_argument("--target", default="x86-avx2")
    parser.add_argument("--logs", type=Path, default=Path("tuning_logs"))
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "tvmq" / "tuning")
    parser.add_argument("--output", type=Path, help="JSON results (default benchmarks/results/<date>-tuning.json)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    timing.setup_logging()
    results = []
    with tempfile.TemporaryDirectory(prefix="tvmq-bench-tune-") as workdir:
        for name in args.models:
            for precision in args.precisions:
                results.append(bench_model(name, precision, args, Path(workdir)))
                print(json.dumps(results[-1]["ratios"], indent=2))
    table = markdown(results, args.threads)
    print(table)
    output = args.output or timing.RESULTS_DIR / f"{datetime.date.today().isoformat()}-tuning.json"
    timing.write_results(output, {"machine": timing.machine(target=args.target), "results": results, "table": table})
    print(f"written {output}")


if __name__ == "__main__":
    main()
