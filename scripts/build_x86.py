"""Build a model for an x86-64 CPU: `python scripts/build_x86.py MODEL -o OUT [-t x86-avx512]
[--calib DATA.npz | --fp16] [--input-shape NAME=D0,...] [--tuning-log DIR]`, then benchmark it.
The package runs here (`tvmq run OUT`), or without Python through OUT/runner/."""

import sys

from build_common import build, tvmq


def benchmark(args) -> None:
    tvmq(["bench", args.output, "--repeat", "10"])


if __name__ == "__main__":
    sys.exit(build("x86-64", "x86-avx2", ["g++"], after=benchmark))
