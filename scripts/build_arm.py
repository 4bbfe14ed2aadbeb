"""Build a model for a 64-bit ARM board: `python scripts/build_arm.py MODEL -o OUT
[-t arm-cortex-a72|arm-cortex-a76|arm-neoverse-n1] [--calib DATA.npz | --fp16] [...]`.

Cross-compiles with aarch64-linux-gnu-g++; `--verify` runs the build under qemu-aarch64 with
the C++ runner when qemu is installed. Then prints how to take the package to the board."""

import sys

from build_common import build


def board_steps(args) -> None:
    print(f"\non the board: copy {args.output}/, then either")
    print(f"  with Python and apache-tvm there:  tvmq run {args.output} --input NAME=FILE.npy")
    print(f"  without Python:                    see {args.output}/runner/README.md (C++ runner)")
    print(f"  from here over RPC:                tvmq run {args.output} --rpc BOARD:9090 --input ...")


if __name__ == "__main__":
    sys.exit(build("ARM (aarch64)", "arm-cortex-a76", ["aarch64-linux-gnu-g++", "qemu-aarch64"], after=board_steps))
