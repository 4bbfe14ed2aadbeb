"""Check tvmq's CUDA packages on a real GPU in a few minutes: build, load, run, compare with the
CPU build of the same model, time both.

    python -m benchmarks.check_cuda                         # the bundled example, fp32 and fp16
    python -m benchmarks.check_cuda --model m.onnx --input-shape x=1,3,224,224
    python -m benchmarks.check_cuda --package CUDA_PKG --cpu-package CPU_PKG   # prebuilt (int8 too)
    python -m benchmarks.check_cuda --build-only            # no GPU: build and inspect only

Each also takes --repeat N (the timed runs, default 20) and --json FILE (the results).

For this GPU's compute capability (cuda-sm80 / cuda-sm90, or its own sm_XY) it builds the model
in fp32 and fp16 plus a CPU package, then for each CUDA package:
  1. reports its device code (a fatbin compiled at build time, or source to compile now) and
     how long loading takes (a fatbin loads in milliseconds; source means a compile);
  2. runs 8 random inputs on the GPU and on the CPU and checks they agree: fp32 and int8 to
     max |diff| <= 1e-4 + 1e-3 * max |cpu| (tvmq compile --verify's bound), fp16 to
     1e-3 + 1e-2 * max |cpu| (tvmq.tolerance);
  3. times both with `Package.benchmark` (median of --repeat runs).
Prints a table, writes --json, exits 1 on a disagreement and 2 when there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tvmq
from tvmq.files import write_atomically
from tvmq.metadata import read_metadata
from tvmq.runtime.devices import cuda_device
from tvmq.tolerance import FP16_TOLERANCE, FP32_TOLERANCE, allowed_error

from .zoo import EXAMPLE_MODEL

SAMPLES = 8


def gpu_target(build_only: bool) -> dict | str | None:
    """The target preset for this machine's GPU (cuda-sm80 when building without one)."""
    device = cuda_device()
    if not device.exist:
        return "cuda-sm80" if build_only else None
    arch = device.compute_version.replace(".", "")
    presets = {"80": "cuda-sm80", "90": "cuda-sm90"}
    host = {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}
    return presets.get(arch) or {"kind": "cuda", "arch": f"sm_{arch}", "host": host}


def build_packages(args, target, work: Path) -> list[tuple[Path, Path]]:
    """(CUDA package, CPU package) pairs: prebuilt, or the model in fp32 and fp16."""
    if args.package:
        return [(Path(args.package), Path(args.cpu_package))]
    from tvmq.quantize.fp16 import to_fp16

    shapes = dict(item.split("=", 1) for item in args.input_shape)
    shapes = {name: tuple(int(d) for d in dims.split(",")) for name, dims in shapes.items()}
    model = tvmq.load_model(args.model, input_shapes=shapes)
    tvmq.compile_model(model, "host", work / "cpu")
    pairs = []
    for name, variant in (("fp32", model), ("fp16", to_fp16(model))):
        tvmq.compile_model(variant, target, work / f"cuda-{name}")
        pairs.append((work / f"cuda-{name}", work / "cpu"))
    return pairs


def bound(want: np.ndarray, metadata) -> float:
    """How far the GPU may be from the CPU on output `want`: integer kernels are exact, so
    int8 packages get the float32 bound of their float parts; fp16 its own."""
    fp16 = (metadata.quantization or {}).get("mode") == "fp16"
    tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    return allowed_error(want, **tolerance)


def check_pair(cuda_dir: Path, cpu_dir: Path, repeat: int) -> dict:
    metadata = read_metadata(cuda_dir)
    start = time.perf_counter()
    gpu = tvmq.load_package(cuda_dir)
    load_ms = (time.perf_counter() - start) * 1e3
    cpu = tvmq.load_package(cpu_dir)
    diffs = []  # (max |gpu - cpu|, bound) per output and sample
    for seed in range(SAMPLES):
        inputs = cpu.random_inputs(seed)
        expected, actual = cpu.run(inputs), gpu.run(inputs)
        for name, want in expected.items():
            diff = float(np.abs(actual[name].astype(np.float64) - want).max())
            diffs.append((diff, bound(want, metadata)))
    gpu_time = gpu.benchmark(repeat=repeat)
    cpu_time = cpu.benchmark(repeat=repeat)
    return {
        "package": str(cuda_dir),
        "mode": (metadata.quantization or {}).get("mode", "fp32"),
        "device_code": metadata.device_code,
        "load_ms": load_ms,
        "max_abs_diff": max(d for d, _ in diffs),
        "tolerance": min(b for _, b in diffs),
        "agrees": all(d <= b for d, b in diffs),
        "gpu_median_ms": gpu_time.median_ms,
        "cpu_median_ms": cpu_time.median_ms,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(EXAMPLE_MODEL))
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...")
    parser.add_argument("--package", help="a prebuilt CUDA package (needs --cpu-package)")
    parser.add_argument("--cpu-package", help="the CPU package of the same model and quantization")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--build-only", action="store_true", help="build and describe the packages; run nothing")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if bool(args.package) != bool(args.cpu_package):
        parser.error("--package and --cpu-package go together")
    if not args.input_shape and not args.package and args.model.endswith("fashion_mnist/model.onnx"):
        args.input_shape = ["image=1,1,28,28"]
    target = gpu_target(args.build_only)
    if target is None:
        print("no CUDA GPU found: run this on a GPU machine (or --build-only)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="check-cuda-") as work:
        pairs = build_packages(args, target, Path(work))
        if args.build_only:
            for cuda_dir, _ in pairs:
                print(f"{cuda_dir.name}: {json.dumps(read_metadata(cuda_dir).device_code)}")
            return 0
        print(f"GPU: {cuda_device().device_name} (compute {cuda_device().compute_version})")
        results = [check_pair(cuda_dir, cpu_dir, args.repeat) for cuda_dir, cpu_dir in pairs]
    print(f"{'mode':<5} {'device code':<12} {'load ms':>8} {'max |diff|':>11} {'bound':>9} {'GPU ms':>8} {'CPU ms':>8}")
    for r in results:
        code = (r["device_code"] or {}).get("format", "?")
        print(
            f"{r['mode']:<5} {code:<12} {r['load_ms']:>8.1f} {r['max_abs_diff']:>11.3g} {r['tolerance']:>9.3g} "
            f"{r['gpu_median_ms']:>8.3f} {r['cpu_median_ms']:>8.3f}  {'ok' if r['agrees'] else 'DISAGREES'}"
        )
    if args.json:
        write_atomically(args.json, lambda f: f.write(json.dumps(results, indent=2).encode()))
    return 0 if all(r["agrees"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
