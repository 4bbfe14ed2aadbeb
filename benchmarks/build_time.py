"""How long a user waits for an int8 package, against the peers' quantizers, on models the
shipped logs were not tuned for (benchmarks/unseen.py).

For each model, one after the other (nothing else running), on the same 32 calibration samples
(photo crops or template sentences, benchmarks/unseen.py):

    tvmq fp32     `tvmq compile MODEL -t host -o PKG`, a fresh process, timed whole
    tvmq int8     the same with `--quantize int8 --calib CALIB.npz --calib-cache none` and the
                  default (quick) error report, or `--error-report` as given
    NNCF          `nncf.quantize` of the OpenVINO model read from the ONNX file, in process
                  after the imports (benchmarks/peers.py)
    onnxruntime   `quantize_static`, QDQ, per-channel int8 weights, in process

The bar: tvmq int8 <= 3 x tvmq fp32 + 10 s on every model. A build that fails is reported
with its error's last line, and the bar counts as missed.

Usage (from the repository root):

    python -m benchmarks.build_time [--models resnet50 bert-base ...] [--samples 32]
        [--error-report quick] [--no-peers] [--workdir DIR] [--output results/NAME.json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import unseen
from .peers import onnxruntime_int8_static, openvino_int8
from .timing import machine, source_revision, write_results

BAR_FACTOR, BAR_SECONDS = 3.0, 10.0  # int8 build <= 3 x fp32 build + 10 s


def timed_command(args: list[str]) -> tuple[float | None, str]:
    """Seconds `args` ran for, or None and the last line of its error output if it failed."""
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        return None, lines[-1] if lines else f"exit code {result.returncode}"
    return seconds, ""


def timed_call(build) -> tuple[float | None, str]:
    start = time.perf_counter()
    try:
        build()
    except Exception as err:  # a peer's failure is a result, reported as such
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return time.perf_counter() - start, ""


def measure(name: str, workdir: Path, samples: int, error_report: str, peers: bool) -> dict:
    model = unseen.export(name, workdir / "models")
    calibration = unseen.samples(model, samples, seed=1)
    calib = workdir / f"{name}-calibration.npz"
    np.savez(calib, **calibration)
    tvmq = [sys.executable, "-m", "tvmq.cli", "compile", str(model), "-t", "host"]
    row = {"model": name}
    row["fp32_s"], row["fp32_error"] = timed_command([*tvmq, "-o", str(workdir / f"{name}-fp32")])
    int8 = ["--quantize", "int8", "--calib", str(calib), "--calib-cache", "none", "--error-report", error_report]
    row["int8_s"], row["int8_error"] = timed_command([*tvmq, *int8, "-o", str(workdir / f"{name}-int8")])
    if peers:
        row["nncf_s"], row["nncf_error"] = timed_call(lambda: openvino_int8(model, calibration))
        quantized = workdir / f"{name}-ort-int8.onnx"
        row["ort_s"], row["ort_error"] = timed_call(lambda: onnxruntime_int8_static(model, calibration, quantized))
    if row["fp32_s"] is not None and row["int8_s"] is not None:
        row["bar_s"] = BAR_FACTOR * row["fp32_s"] + BAR_SECONDS
        row["meets_bar"] = row["int8_s"] <= row["bar_s"]
    else:
        row["meets_bar"] = False
    return row


def _seconds(row: dict, key: str) -> str:
    if row.get(f"{key}_s") is not None:
        return f"{row[f'{key}_s']:.1f}"
    return "fails" if f"{key}_error" in row else "-"


def _table_row(row: dict) -> str:
    ratio = f"{row['int8_s'] / row['fp32_s']:.2f}" if row.get("bar_s") else "-"
    bar = "met" if row["meets_bar"] else "missed"
    return (
        f"| {row['model']} | {_seconds(row, 'fp32')} | {_seconds(row, 'int8')} | {ratio} | {bar} | "
        f"{_seconds(row, 'nncf')} | {_seconds(row, 'ort')} |"
    )


def table(rows: list[dict], samples: int, error_report: str, cpu: str) -> str:
    lines = [
        f"int8 build time with {samples} calibration samples (error report: {error_report}), "
        f"seconds, on {cpu}; bar: int8 <= {BAR_FACTOR:g} x fp32 + {BAR_SECONDS:g} s",
        "",
        "| model | tvmq fp32 | tvmq int8 | int8 / fp32 | bar | NNCF quantize | onnxruntime quantize_static |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_table_row(row) for row in rows]
    failures = [
        f"- {row['model']} {key}: {row[f'{key}_error']}"
        for row in rows
        for key in ("fp32", "int8", "nncf", "ort")
        if row.get(f"{key}_error")
    ]
    return "\n".join(lines + ([""] + failures if failures else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(unseen.MODELS), choices=unseen.MODELS)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--error-report", default="quick", choices=("none", "quick", "full"))
    parser.add_argument("--no-peers", action="store_true", help="time tvmq only")
    parser.add_argument("--workdir", type=Path, help="keep the models and packages here")
    parser.add_argument("--output", type=Path, help="write the results as JSON (and a .md table beside it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tvmq-build-time-") as scratch:
        workdir = args.workdir or Path(scratch)
        rows = []
        for name in args.models:
            rows.append(measure(name, workdir, args.samples, args.error_report, not args.no_peers))
            print(_table_row(rows[-1]), flush=True)
    record = machine(revision=source_revision(), samples=args.samples, error_report=args.error_report, rows=rows)
    text = table(rows, args.samples, args.error_report, record["cpu"])
    print(text)
    if args.output:
        write_results(args.output, record, text)
    return 0 if all(row["meets_bar"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
