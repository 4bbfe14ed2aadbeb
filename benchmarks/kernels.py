"""Int8 kernels against tuned fp32 kernels, one layer at a time, on this CPU.

Two layers, as ONNX models made here: a 512 x 512 x 512 MatMul and a ResNet-style 3x3 Conv
(1x64x56x56 -> 64 channels, pad 1, bias). For each x86 target preset this CPU can run (by
default x86-avx2, x86-avx512 and x86-vnni: one per int8 intrinsic) each layer is tuned with
`tvmq tune` in fp32 and in int8 (tvmq's quantization with its defaults for that target:
uint8 activations, per-channel int8 weights, 7-bit ones where the kernels use vpmaddubsw,
requantized uint8 output) for --trials trials, compiled with its log and timed at 1 and 2
threads, beside onnxruntime fp32 and int8 (quantize_static QDQ, per-channel) of the same
layer. Each cell is the median of --rounds round medians, the systems interleaved.

Reports milliseconds, GOP/s (2 x multiply-accumulates / time) and, per target, the int8
speed-up over tuned fp32 (issue bar: >= 2x). Writes --output (JSON) and a markdown table
beside it. Tuning logs go to --workdir, so a second run with the same --workdir reuses them
(and adds --trials more).

    python -m benchmarks.kernels [--targets x86-avx2 x86-vnni] [--layers matmul conv3x3]
        [--trials 64] [--threads 1 2] [--rounds 3] [--runs 20] [--workdir DIR] [--output FILE.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import tvmq
from tvmq.quantize import quantize_model
from tvmq.runtime.devices import cannot_run_here
from tvmq.target import int8_dot_isa, load_target
from tvmq.tune.tuner import tune_model

from . import zoo
from .peers import onnxruntime_int8_static
from .timing import RESULTS_DIR, interleaved_rounds, machine, onnxruntime_timer, package_timer, spread, write_results

CALIBRATION_SAMPLES = 8


def matmul_layer() -> tuple[onnx.ModelProto, dict[str, np.ndarray], int]:
    """512^3 MatMul with constant weights; returns the model, an input and its MAC count."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(0, 0.05, (512, 512)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512, 512])],
        [weights],
    )
    return _model(graph), {"x": rng.normal(0, 1, (1, 512, 512)).astype(np.float32)}, 512**3


def conv3x3_layer() -> tuple[onnx.ModelProto, dict[str, np.ndarray], int]:
    """ResNet-18's layer1 convolution: 64 -> 64 channels, 3x3, pad 1, on 56x56."""
    rng = np.random.default_rng(1)
    initializers = [
        numpy_helper.from_array(rng.normal(0, 0.05, (64, 64, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 64).astype(np.float32), "b"),
    ]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], name="conv")],
        "conv3x3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 56, 56])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 56, 56])],
        initializers,
    )
    return _model(graph), {"x": rng.normal(0, 1, (1, 64, 56, 56)).astype(np.float32)}, 64 * 56 * 56 * 64 * 9


def _model(graph) -> onnx.ModelProto:
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", zoo.OPSET)])


LAYERS = {"matmul": matmul_layer, "conv3x3": conv3x3_layer}


def calibration(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Random samples for batch-1 inputs, stacked along the batch axis."""
    rng = np.random.default_rng(2)
    return {
        name: rng.normal(0, 1, (CALIBRATION_SAMPLES, *a.shape[1:])).astype(np.float32) for name, a in inputs.items()
    }


def build_systems(layer: str, args, workdir: Path) -> tuple[dict, dict, dict[str, np.ndarray], int]:
    """Timers and descriptions of every system for one layer."""
    proto, inputs, macs = LAYERS[layer]()
    onnx_path = workdir / f"{layer}.onnx"
    onnx.save(proto, onnx_path)
    ort_int8 = workdir / f"{layer}-ort-int8.onnx"
    onnxruntime_int8_static(onnx_path, calibration(inputs), ort_int8, method="MinMax")
    builds = {"onnxruntime fp32": onnx_path, "onnxruntime int8": ort_int8}
    notes = {}
    model = tvmq.load_model(onnx_path)
    for target in args.targets:
        reason = cannot_run_here(load_target(target))
        if reason:
            print(f"skipping {target}: {reason}", file=sys.stderr)
            continue
        for precision in ("fp32", "int8"):
            variant = model if precision == "fp32" else quantize_model(model, calibration(inputs), target=target)
            log_dir = workdir / "logs" / f"{layer}-{precision}-{target}"
            result = tune_model(variant, target, log_dir, trials=args.trials)
            name = f"tvmq {precision} {target}"
            builds[name] = workdir / "packages" / name.replace(" ", "-")
            metadata = tvmq.compile_model(variant, target, builds[name], tuning_log=log_dir)
            notes[name] = {
                "isa": int8_dot_isa(load_target(target).tvm_target()) if precision == "int8" else None,
                "tuning": {"trials": result.trials, "minutes": round(result.seconds / 60, 1)},
                "coverage": metadata.tuning,
            }
    return builds, notes, inputs, macs


def measure(builds: dict, inputs: dict[str, np.ndarray], threads: int, args) -> dict[str, dict]:
    timers = {}
    for name, path in builds.items():
        if name.startswith("onnxruntime"):
            timers[name] = onnxruntime_timer(path, inputs, threads, args.runs)
        else:
            timers[name] = package_timer(path, inputs, threads, args.runs)
    return {name: spread(medians) for name, medians in interleaved_rounds(timers, args.rounds).items()}


def table(results: dict) -> str:
    lines = []
    for layer, layer_results in results["layers"].items():
        macs = layer_results["macs"]
        lines += [f"### {layer} ({macs / 1e6:.0f} M multiply-accumulates)", ""]
        threads = list(layer_results["threads"])
        header = " | ".join(f"{t} thread{'s' if t != '1' else ''}: ms, GOP/s" for t in threads)
        lines += [f"| system | {header} | int8 / fp32 speed-up |", "|---" * (len(threads) + 2) + "|"]
        for system in layer_results["threads"][threads[0]]:
            cells = []
            for t in threads:
                ms = layer_results["threads"][t][system]["median_ms"]
                cells.append(f"{ms:.3f}, {2 * macs / ms / 1e6:.0f}")
            speedup = ""
            if system.startswith("tvmq int8"):
                fp32 = system.replace("int8", "fp32")
                speedup = " / ".join(
                    f"{layer_results['threads'][t][fp32]['median_ms'] / layer_results['threads'][t][system]['median_ms']:.2f}x"
                    for t in threads
                )
            lines.append(f"| {system} | {' | '.join(cells)} | {speedup} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", default=["x86-avx2", "x86-avx512", "x86-vnni"])
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--trials", type=int, default=64, help="tuning trials per layer, precision and target")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workdir", help="keeps models, tuning logs and packages (default: a temporary folder)")
    parser.add_argument("--output", help="results JSON (default benchmarks/results/<date>-kernels.json)")
    args = parser.parse_args(argv)
    output = Path(args.output or RESULTS_DIR / f"{datetime.date.today()}-kernels.json")
    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-kernels-")))
        results = {
            "date": str(datetime.date.today()),
            "machine": machine(),
            "command": "python -m benchmarks.kernels " + " ".join(sys.argv[1:] if argv is None else argv),
            "layers": {},
        }
        for layer in args.layers:
            (workdir / layer).mkdir(parents=True, exist_ok=True)
            builds, notes, inputs, macs = build_systems(layer, args, workdir / layer)
            per_thread = {str(t): measure(builds, inputs, t, args) for t in args.threads}
            results["layers"][layer] = {"macs": macs, "systems": notes, "threads": per_thread}
    markdown = table(results)
    print(markdown)
    write_results(output, results, markdown)
    print(f"wrote {output} and {output.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
