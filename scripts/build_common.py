"""What scripts/build_{x86,arm,cuda}.py share: build one model for one target family end to end
with `tvmq compile` (import, optional int8 with calibration data or fp16, the target's tuning
log, export), printing the toolchain it used first. Thin on purpose: every step is the CLI's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tvmq.cli import main as tvmq

REPO = Path(__file__).resolve().parent.parent


def tool_version(tool: str) -> str:
    """`tool`'s path and the first line of its --version, or that it is missing."""
    path = shutil.which(tool)
    if path is None:
        return f"{tool}: not installed"
    output = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    release = [line for line in output if "release" in line]  # nvcc prints it on the last line
    return f"{path}: {(release or output or ['?'])[0]}"


def parse_args(family: str, default_target: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"Build a model for {family} with tvmq, end to end.")
    parser.add_argument("model", help="an ONNX (.onnx) or torch.export (.pt2) model")
    parser.add_argument("-o", "--output", required=True, help="the package directory to write")
    parser.add_argument("-t", "--target", default=default_target, help=f"target preset (default {default_target})")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--calib", metavar="DATA", help="quantize to int8 with this calibration data (.npz)")
    precision.add_argument("--fp16", action="store_true", help="float16 compute, float32 accumulation")
    parser.add_argument(
        "--tuning-log",
        metavar="DIR",
        help="tuning log to apply (default tuning_logs/TARGET when it exists; 'none' for untuned)",
    )
    return parser.parse_args(argv)


def compile_command(args: argparse.Namespace) -> list[str]:
    """The `tvmq compile` arguments for a parsed command line."""
    command = ["compile", args.model, "-t", args.target, "-o", args.output, "--verify"]
    for shape in args.input_shape:
        command += ["--input-shape", shape]
    if args.calib:
        command += ["--quantize", "int8", "--calib", args.calib]
    if args.fp16:
        command += ["--quantize", "fp16"]
    log = args.tuning_log
    if log is None and (REPO / "tuning_logs" / args.target).is_dir():
        log = str(REPO / "tuning_logs" / args.target)
    if log and log != "none":
        command += ["--tuning-log", log]
    return command


def build(
    family: str,
    default_target: str,
    tools: Sequence[str],
    after: Callable[[argparse.Namespace], None] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Print the toolchain, run `tvmq compile`, then `after` (the family's own follow-up)."""
    args = parse_args(family, default_target, argv)
    print(f"toolchain for {family}:")
    for name in ("apache-tvm", "apache-tvm-ffi"):
        print(f"  {name} {importlib.metadata.version(name)}")
    for tool in tools:
        print(f"  {tool_version(tool)}")
    command = compile_command(args)
    print("$ tvmq " + " ".join(command), flush=True)
    code = tvmq(command)
    if code == 0 and after is not None:
        after(args)
    return code


if __name__ == "__main__":
    sys.exit("run build_x86.py, build_arm.py or build_cuda.py")
