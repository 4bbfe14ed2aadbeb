"""Tune the benchmark models for a target preset and fold the results into the log that ships
in tuning_logs/<target>/ (one log for all models, the best record per kernel).

Each model and precision is tuned into its own full log in --work/<target>/<model>-<precision>
(a run stopped or killed is resumed by running the same command again: MetaSchedule
warm-starts from what the log holds); the shipped log is then rewritten as the best records of
itself and that full log, and tuning.json beside it records what each model's tuning cost.

    python -m benchmarks.tune_shipped_logs --models resnet18 --precisions fp32 int8 \\
        --trials 600 [--time-budget 40] [--target x86-avx2] [--calibration-samples 8]
        [--logs tuning_logs] [--work ~/.cache/tvmq/tuning]

int8 models are calibrated on --calibration-samples samples (benchmarks.zoo.calibration); the
kernels do not depend on the calibration (tests/test_lower.py), so the logs serve any
calibration of the model. They are quantized with the target's defaults (on x86 without VNNI,
7-bit weights, so that the int8 kernels tensorized with vpmaddubsw are tuned); the log keeps
the best plain kernels too, for models with 8-bit weights.
Needs what benchmarks/zoo.py needs for the models (torch, transformers and the pretrained packages).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
from pathlib import Path

import tvmq
from tvmq.frontend import load_model
from tvmq.kernels.log import merge
from tvmq.quantize import quantize_model
from tvmq.target import load_target
from tvmq.tune.tuner import tune_model

from . import zoo
from .timing import cpu_name, setup_logging, write_text


def tune_one(name: str, precision: str, args: argparse.Namespace, exports: Path) -> dict:
    path, inputs = zoo.export(name, exports)
    model = load_model(path, input_shapes={key: value.shape for key, value in inputs.items()})
    if precision == "int8":
        data = zoo.calibration(name, inputs, args.calibration_samples)
        model = quantize_model(model, data, target=args.target)
    key = f"{name}-{precision}"
    full_log = args.work / args.target / key
    result = tune_model(model, args.target, full_log, args.trials, args.time_budget)
    shipped = args.logs / args.target
    costs_file = shipped / "tuning.json"
    costs = json.loads(costs_file.read_text()) if costs_file.exists() else {}
    records = merge([shipped, full_log] if shipped.is_dir() else [full_log], shipped, top=1)
    runs = [
        *costs.get(key, {}).get("runs", []),
        {
            "date": datetime.date.today().isoformat(),
            "host": platform.node(),
            "cpu": cpu_name(),
            "tvmq": tvmq.__version__,
            "trials": result.trials,
            "remeasured": result.remeasured,
            "minutes": round(result.seconds / 60, 1),
            "trials_per_minute": round(result.trials_per_minute, 1),
            "estimated_latency_ms": result.estimated_latency_ms,
        },
    ]
    costs[key] = {
        "kernels": len(result.tasks),
        "kernels_tuned": sum(task.best_us is not None for task in result.tasks),
        "runs": runs,
    }
    write_text(costs_file, json.dumps(costs, indent=2, sort_keys=True) + "\n")
    print(f"{key}: {result.trials} trials in {result.seconds / 60:.1f} min; {shipped} holds {records} records")
    return costs[key]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=zoo.MODELS, default=list(zoo.MODELS))
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "int8"), default=["fp32", "int8"])
    parser.add_argument("--trials", type=int, required=True, help="trials per model and precision")
    parser.add_argument("--time-budget", type=float, help="minutes per model and precision")
    parser.add_argument("--target", default="x86-avx2")
    parser.add_argument(
        "--calibration-samples",
        type=int,
        default=8,
        help="int8 calibration samples (the kernels do not depend on them; fewer quantize faster)",
    )
    parser.add_argument("--logs", type=Path, default=Path("tuning_logs"), help="where shipped logs go")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "tvmq" / "tuning", help="full logs")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    setup_logging()
    load_target(args.target)  # an unknown preset fails before any model is exported
    with tempfile.TemporaryDirectory(prefix="tvmq-models-") as exports:
        for name in args.models:
            for precision in args.precisions:
                tune_one(name, precision, args, Path(exports))


if __name__ == "__main__":
    main()
