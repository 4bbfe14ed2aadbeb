"""Build a model for an NVIDIA GPU: `python scripts/build_cuda.py MODEL -o OUT
[-t cuda-sm80|cuda-sm90] [--calib DATA.npz | --fp16] [...]`.

TVM's dlight GPU schedules apply automatically; with nvcc on PATH the package embeds a fatbin
for the arch (no compile when the GPU machine first loads it). Check it on a GPU with
python -m benchmarks.check_cuda."""

import sys

from build_common import build


def gpu_steps(args) -> None:
    print(f"\non a GPU machine: python -m benchmarks.check_cuda --package {args.output}  (runs, compares, times)")


if __name__ == "__main__":
    sys.exit(build("CUDA", "cuda-sm80", ["nvcc", "g++"], after=gpu_steps))
