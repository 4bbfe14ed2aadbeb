"""The `tvmq` command: a thin layer over the Python API (tvmq.frontend, quantize, compiler, tune, runtime)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np

import tvmq
from tvmq.errors import InputError, TvmqError
from tvmq.files import save_npz_atomically, write_atomically
from tvmq.quantize.config import ACTIVATION_DTYPES, CALIBRATION_METHODS, ERROR_REPORTS, QConfig
from tvmq.target import this_machine

log = logging.getLogger("tvmq")

USER_TARGETS_DIR = Path.home() / ".config" / "tvmq" / "targets"
CALIBRATION_CACHE = Path.home() / ".cache" / "tvmq" / "calibration"


class UsageError(TvmqError):
    """Command-line arguments that do not fit together."""


def _target_dirs(args) -> list[Path]:
    """Preset directories: --targets-dir flags first, then ~/.config/tvmq/targets."""
    return [*args.targets_dir, *([USER_TARGETS_DIR] if USER_TARGETS_DIR.is_dir() else [])]


def _cmd_targets(args) -> None:
    from tvmq.runtime.devices import cannot_run_here
    from tvmq.target import list_presets

    presets = list_presets(_target_dirs(args))
    if args.json:
        print(json.dumps([{**p.to_json(), "setup": p.setup, "source": p.source} for p in presets], indent=2))
        return
    width = max(len(p.name) for p in presets)
    for preset in presets:
        reason = cannot_run_here(preset)
        runs = "runs here" if reason is None else "cross"
        print(f"{preset.name:<{width}}  {preset.kind:<4}  {preset.arch:<7}  {runs:<9}  {preset.description}")


def _parse_input_shapes(items) -> dict:
    from tvmq.frontend import parse_shape_assignment

    return dict(parse_shape_assignment(item) for item in items)


def _qconfig(args):
    from tvmq.quantize import QConfig

    try:
        return QConfig(
            activation_dtype=args.activation_dtype,
            symmetric_activations=args.symmetric_activations,
            per_channel=not args.per_tensor,
            reduce_range=args.reduce_range,
            method=args.calib_method,
            percentile=args.percentile,
            bins=args.bins,
            num_samples=args.calib_samples,
            skip=tuple(args.skip),
            keep_first_float=args.keep_first_float,
            keep_last_float=args.keep_last_float,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None


def _load_model(args):
    """The target preset and the model (quantized if asked) that compile and tune work on."""
    from tvmq.frontend import load_model
    from tvmq.quantize import quantize_model
    from tvmq.target import load_target

    if args.quantize == "int8" and not args.calib:
        raise UsageError("--quantize int8 needs calibration data: --calib DATA.npz (or a folder of .npz)")
    if args.calib and args.quantize != "int8":
        raise UsageError("--calib is only used with --quantize int8")
    config = _qconfig(args) if args.quantize == "int8" else None
    preset = load_target(args.target, _target_dirs(args))
    model = load_model(args.model, input_shapes=_parse_input_shapes(args.input_shape))
    if args.quantize == "fp16":
        from tvmq.quantize.fp16 import to_fp16

        model = to_fp16(model)
    if config is not None:
        cache = None if args.calib_cache.lower() == "none" else Path(args.calib_cache).expanduser()
        model = quantize_model(
            model, args.calib, config, cache_dir=cache, target=preset, error_report=args.error_report
        )
    return preset, model


def _cmd_compile(args) -> None:
    from tvmq.compiler import compile_model
    from tvmq.quantize import has_qdq

    preset, model = _load_model(args)
    if args.simulate and not has_qdq(model.mod):
        raise UsageError("--simulate needs a quantized model: add --quantize int8 --calib DATA")
    metadata = compile_model(model, preset, args.output, simulate=args.simulate, tuning_log=args.tuning_log)
    print(
        f"wrote {args.output}: {metadata.library.file} ({metadata.library.size_bytes / 1024:.0f} KiB) for {preset.name}"
    )
    for spec in metadata.inputs:
        print(f"  input   {spec}")
    for spec in metadata.outputs:
        print(f"  output  {spec}")
    if metadata.quantization:
        _print_quantization_summary(metadata.quantization)
    if metadata.device_code:
        code = metadata.device_code
        built = f"{code['bytes'] / 1024:.0f} KiB, {code['compiler']}" if code["compiler"] else code["note"]
        print(f"  device code   {code['format']} for {code['arch']} ({built})")
    if metadata.tuning:
        tuned, untuned = metadata.tuning["tuned"], metadata.tuning["untuned"]
        print(f"  tuning        {len(tuned)} of {len(tuned) + len(untuned)} kernels from {metadata.tuning['log']}")
        if untuned:
            print(f"  untuned       {', '.join(untuned)}")
    if args.verify:
        _verify(args.output, model, preset, metadata.quantization)


def _verify(package_dir, model, preset, quantization: dict | None) -> None:
    from tvmq.quantize.fp16 import is_fp16
    from tvmq.tolerance import FP16_TOLERANCE
    from tvmq.verify import compare_with_reference

    if quantization and not is_fp16(quantization):
        print("--verify skipped: a quantized model differs from the float original by design; see `tvmq report`")
        return
    package, how = _package_to_verify(package_dir, preset)
    if package is None:
        print(f"--verify skipped: {how}")
        return
    tolerance = FP16_TOLERANCE if is_fp16(quantization) else {}
    framework = "onnxruntime" if model.source.format == "onnx" else "PyTorch"
    comparisons = compare_with_reference(package, model.reference, **tolerance)
    worst = max(c.max_abs_diff for c in comparisons)
    within = "within fp16 tolerance" if tolerance else "within tolerance"
    print(f"verified{how} against {framework} on random inputs: max |diff| {worst:.3g} ({within})")


def _package_to_verify(package_dir, preset):
    """The built package loaded here, or run by the C++ runner under emulation for a CPU this
    machine emulates; else None and why it cannot run."""
    from tvmq.runtime import load_package
    from tvmq.runtime.cpp_runner import EmulationError, RunnerPackage, toolchain
    from tvmq.runtime.devices import cannot_run_here

    reason = cannot_run_here(preset)
    if reason is None:
        return load_package(package_dir), ""
    if preset.kind != "llvm" or preset.arch == this_machine():
        return None, reason
    try:
        missing = toolchain(preset.arch).missing()
    except EmulationError as err:
        return None, f"{reason}; {err}"
    if missing:
        return None, f"{reason}, and it cannot be emulated: {missing}"
    return RunnerPackage(package_dir), f" under {preset.arch} emulation"


def _print_quantization_summary(record: dict) -> None:
    from tvmq.report import LAYERS_NOT_MEASURED, format_error

    error = record.get("error")
    if not error:
        print(f"  quantization  {record['mode']} ({record.get('source', 'tvmq')})")
        return
    if "outputs" in error:
        outputs = "output " + ", ".join(format_error(o) for o in error["outputs"])
    else:
        outputs = f"output error not measured: {error.get('outputs_not_measured', 'not compiled')}"
    print(f"  quantization  {record['mode']}, {len(record['layers'])} layers; {outputs}")
    if error["layers"]:
        worst = error["layers"][0]
        print(f"  worst layer   {worst['layer']}: {format_error(worst)} (tvmq report for all)")
    else:
        print(LAYERS_NOT_MEASURED)


def _cmd_report(args) -> None:
    from tvmq.report import build_report, check_chart_dependency, format_report, write_chart, write_json

    if args.chart:
        check_chart_dependency()  # before minutes of measuring, not after
    report = build_report(
        args.package,
        baseline_dir=args.baseline_dir,
        inputs=args.inputs,
        random_sets=args.random_inputs,
        repeat=args.repeat,
        threads=args.threads,
        stored_latency=args.bench_json,
    )
    print(format_report(report))
    for path, write in ((args.json, write_json), (args.chart, write_chart)):
        if path:
            write(report, path)
            log.info("wrote %s", path)


def _default_log_dir(preset) -> Path:
    return Path("tuning_logs") / preset.name


def _cmd_tune(args) -> None:
    from tvmq.tune.tuner import tune_model

    preset, model = _load_model(args)
    log_dir = args.log or _default_log_dir(preset)
    try:
        result = tune_model(model, preset, log_dir, args.trials, args.time_budget, runner=_rpc_runner(args))
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(
        f"tuned {model.source.description} for {preset.name}: {result.trials} trials in {result.seconds / 60:.1f} min"
    )
    print(
        f"  ({result.trials_per_minute:.1f} trials/min; {result.remeasured} best schedules measured again),"
        f" log {result.log_dir}"
    )
    width = max(len(task.name) for task in result.tasks)
    print(f"  {'kernel':<{width}}  {'runs':>4}  {'best':>10}")
    for task in result.tasks:
        best = "untuned" if task.best_us is None else f"{task.best_us:.1f} us"
        print(f"  {task.name:<{width}}  {task.weight:>4.0f}  {best:>10}")
    estimate = result.estimated_latency_ms
    print(f"  estimated latency {estimate:.3f} ms" if estimate is not None else "  some kernels have no record yet")


def _rpc_runner(args):
    if not args.rpc_tracker:
        return None
    from tvmq.tune.remote import rpc_runner

    return rpc_runner(args.rpc_tracker, args.rpc_key)


def _cmd_logs_show(args) -> None:
    from tvmq.kernels.log import summarize

    if not args.log.is_dir():
        raise UsageError(f"tuning log {args.log} does not exist")
    summaries = summarize(args.log)
    if not summaries:
        print(f"{args.log}: no workloads")
        return
    width = max(len(s.blocks) for s in summaries)
    print(f"  {'kernel blocks':<{width}}  {'records':>7}  {'best':>10}  target")
    for summary in sorted(summaries, key=lambda s: s.blocks):
        best = "-" if summary.best_us is None else f"{summary.best_us:.1f} us"
        targets = "; ".join(_short_target(t) for t in summary.targets) or "-"
        print(f"  {summary.blocks:<{width}}  {summary.records:>7}  {best:>10}  {targets}")


def _short_target(key: str) -> str:
    target = json.loads(key)
    return " ".join(f"{k}={v}" for k, v in target.items() if k in ("kind", "mcpu", "mtriple", "arch", "num-cores"))


def _cmd_logs_merge(args) -> None:
    from tvmq.kernels.log import merge

    try:
        count = merge(args.logs, args.output, top=args.top)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    print(f"wrote {args.output}: {count} records")


def _read_inputs(items, package) -> dict:
    """`NAME=FILE.npy` items (or a lone FILE.npy for a one-input model) as arrays by name."""
    inputs = {}
    for item in items:
        name, sep, path = item.rpartition("=")
        if not sep:
            if len(package.inputs) != 1:
                names = ", ".join(s.name for s in package.inputs)
                raise InputError(f"--input {item}: give NAME=FILE.npy (the inputs are {names})")
            name = package.inputs[0].name
        try:
            inputs[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read input {name!r} from {path}: {err}") from None
    return inputs


def _summary(array: np.ndarray) -> str:
    if array.size <= 10:
        return np.array2string(array.reshape(-1), precision=4, separator=", ")
    flat = array.reshape(-1)
    return f"min {flat.min():.4g}  max {flat.max():.4g}  mean {flat.mean(dtype=np.float64):.4g}"


def _open_package(args):
    """The package to run: loaded here, on an RPC server (--rpc), or in the C++ runner under
    emulation (--emulate)."""
    if getattr(args, "emulate", False):
        if args.rpc:
            raise UsageError("--emulate and --rpc exclude each other")
        from tvmq.runtime.cpp_runner import RunnerPackage

        package = RunnerPackage(args.package)
        if not package.emulated:
            raise UsageError(f"--emulate is for packages built for another CPU; {args.package} runs here")
        return package
    if args.rpc:
        from tvmq.runtime.remote import RemotePackage

        return RemotePackage.connect(args.package, args.rpc)
    from tvmq.runtime import load_package

    return load_package(args.package)


def _cmd_run(args) -> None:
    package = _open_package(args)
    outputs = package.run(_read_inputs(args.input, package))
    where = f" on {args.rpc}" if args.rpc else f" under {package.arch} emulation" if args.emulate else ""
    for name, array in outputs.items():
        print(f"{name}: {array.dtype}{list(array.shape)}  {_summary(array)}")
    if where:
        print(f"(ran{where})")
    if args.output:
        save_npz_atomically(args.output, outputs)
        print(f"saved {len(outputs)} output(s) to {args.output}")


def _write_json(path, report: dict) -> None:
    write_atomically(path, lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))


def _cmd_bench(args) -> None:
    package = _open_package(args)
    result = package.benchmark(repeat=args.repeat, threads=args.threads)
    target = package.metadata.target
    print(f"package  {args.package} ({target['name']}: {target['description']})")
    if args.rpc:
        print(f"server   {args.rpc}")
    print(f"threads  {result.threads}")
    print(f"repeat   {result.repeat} measurements of >= {result.min_repeat_ms} ms each")
    print(f"median   {result.median_ms:.4f} ms")
    print(f"min/max  {result.min_ms:.4f} / {result.max_ms:.4f} ms")
    if args.json:
        report = {**result.to_json(), "package": str(args.package), "target": target["name"]}
        if args.rpc:
            report["rpc"] = args.rpc
        _write_json(args.json, report)


PROFILE_ROWS = 25  # kernels `tvmq profile` lists; the rest it sums in one line


def _cmd_profile(args) -> None:
    from tvmq.runtime import load_package

    package = load_package(args.package)
    inputs = _read_inputs(args.input, package) if args.input else None
    profile = package.profile(inputs, threads=args.threads)
    target = package.metadata.target
    print(f"package  {args.package} ({target['name']}), {profile.threads} threads")
    print(
        f"one inference {profile.end_to_end_ms:.3f} ms (median); its kernels, each timed alone, "
        f"{profile.kernels_ms:.3f} ms; the VM's own work the rest"
    )
    print(f"{'ms/call':>9} {'calls':>5} {'total ms':>9} {'share':>6}  {'schedule':<20} kernel")
    for kernel in profile.kernels[:PROFILE_ROWS]:
        print(
            f"{kernel.ms_per_call:9.4f} {kernel.calls:5d} {kernel.total_ms:9.3f} "
            f"{100 * profile.share(kernel):5.1f}%  {kernel.schedule:<20} {kernel.name}"
        )
    rest = profile.kernels[PROFILE_ROWS:]
    if rest:
        rest_ms = sum(k.total_ms for k in rest)
        print(f"{'':9} {'':5} {rest_ms:9.3f} {100 * rest_ms / profile.end_to_end_ms:5.1f}%  {len(rest)} more kernels")
    print("by schedule: " + ", ".join(f"{source} {ms:.2f} ms" for source, ms in profile.by_schedule().items()))
    if args.json:
        report = {**profile.to_json(), "package": str(args.package), "target": target["name"]}
        _write_json(args.json, report)


def _cmd_demo(args) -> None:
    from tvmq.demo import run_demo

    result = run_demo(args.output, target=args.target)
    print(result.describe())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tvmq", description="Quantize, tune and deploy models with Apache TVM.")
    parser.add_argument("--version", action="version", version=f"tvmq {tvmq.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    targets_dir = argparse.ArgumentParser(add_help=False)
    targets_dir.add_argument(
        "--targets-dir",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help=f"extra directory of target preset files (repeatable; {USER_TARGETS_DIR} is always read)",
    )

    p = commands.add_parser("targets", parents=[targets_dir], help="list the target presets")
    p.add_argument("--json", action="store_true", help="print the presets as JSON")
    p.set_defaults(func=_cmd_targets)

    model_args = argparse.ArgumentParser(add_help=False, parents=[targets_dir])
    model_args.add_argument("model", help="an ONNX (.onnx) or torch.export (.pt2) model file")
    model_args.add_argument(
        "-t", "--target", required=True, help="a preset name (see `tvmq targets`), preset file or target JSON"
    )
    model_args.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="static shape of an input with dynamic dimensions (repeatable)",
    )
    q = model_args.add_argument_group("quantization")
    q.add_argument(
        "--quantize",
        choices=["int8", "fp16"],
        help="int8 (needs --calib), or fp16: float16 compute with float32 accumulation (GPUs, ARM)",
    )
    q.add_argument(
        "--calib", metavar="DATA", help=".npz of arrays keyed by input name (first axis = samples), or a folder of them"
    )
    q.add_argument(
        "--calib-method",
        choices=CALIBRATION_METHODS,
        default=QConfig.method,
        help=f"activation range method (default {QConfig.method})",
    )
    q.add_argument(
        "--percentile",
        type=float,
        default=QConfig.percentile,
        help=f"for --calib-method percentile (default {QConfig.percentile})",
    )
    q.add_argument(
        "--bins", type=int, default=QConfig.bins, help=f"histogram bins of the statistics (default {QConfig.bins})"
    )
    q.add_argument("--calib-samples", type=int, metavar="N", help="use at most N calibration samples")
    q.add_argument(
        "--activation-dtype",
        choices=ACTIVATION_DTYPES,
        help="default: what the target's int8 dot products take (int8 on ARM, uint8 elsewhere)",
    )
    q.add_argument(
        "--symmetric-activations", action="store_true", help="symmetric activation ranges (zero point in the middle)"
    )
    q.add_argument(
        "--per-tensor", action="store_true", help="one weight scale per tensor instead of per output channel"
    )
    q.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        help="7-bit weights (default: on x86 targets, whose fast int8 instruction can overflow with 8-bit ones)",
    )
    q.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="NAME_OR_OP",
        help="keep a layer (name from `tvmq report`) or op type (Conv, MatMul, ...) in float; repeatable",
    )
    q.add_argument("--keep-first-float", action="store_true", help="keep the first conv/matmul layer in float")
    q.add_argument("--keep-last-float", action="store_true", help="keep the last conv/matmul layer in float")
    q.add_argument(
        "--calib-cache",
        default=str(CALIBRATION_CACHE),
        metavar="DIR",
        help="where calibration statistics are cached ('none' to disable)",
    )
    q.add_argument(
        "--error-report",
        choices=ERROR_REPORTS,
        default="quick",
        help="quick (default): the compiled model's output error on 16 calibration samples; "
        "full: also every layer's, measured on the simulated model (builds and runs it); none",
    )

    p = commands.add_parser("compile", parents=[model_args], help="compile a model into a deployable package")
    p.add_argument("-o", "--output", required=True, type=Path, help="the package directory to write")
    p.add_argument("--verify", action="store_true", help="compare with the original framework on random inputs")
    p.add_argument(
        "--simulate", action="store_true", help="fake-quant in float instead of integer operators (debugging)"
    )
    p.add_argument("--tuning-log", type=Path, metavar="DIR", help="use the tuned kernels of this log (see tvmq tune)")
    p.set_defaults(func=_cmd_compile)

    p = commands.add_parser("tune", parents=[model_args], help="autotune a model's kernels for a target")
    p.add_argument("--trials", type=int, required=True, help="measurements in all (spread over the kernels)")
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="end the search after this many minutes (the best schedules are then measured again)",
    )
    p.add_argument("--log", type=Path, metavar="DIR", help="tuning log to add to (default tuning_logs/TARGET)")
    p.add_argument("--rpc-tracker", metavar="HOST:PORT", help="measure on boards registered with this RPC tracker")
    p.add_argument("--rpc-key", help="the boards' key at the tracker")
    p.set_defaults(func=_cmd_tune)

    logs = commands.add_parser("logs", help="inspect and merge tuning logs").add_subparsers(
        dest="logs_command", required=True, metavar="ACTION"
    )
    p = logs.add_parser("show", help="list a log's kernels, record counts, best latencies and targets")
    p.add_argument("log", type=Path)
    p.set_defaults(func=_cmd_logs_show)
    p = logs.add_parser("merge", help="merge logs into a new one")
    p.add_argument("logs", nargs="+", type=Path)
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("--top", type=int, help="keep only the best N records per kernel and target")
    p.set_defaults(func=_cmd_logs_merge)

    p = commands.add_parser(
        "report", help="a package's latency, size, quantization error and agreement with a baseline package"
    )
    p.add_argument("package", type=Path)
    p.add_argument("--baseline-dir", type=Path, metavar="DIR", help="compare with this package (e.g. the fp32 build)")
    p.add_argument(
        "--inputs",
        type=Path,
        metavar="DATA.npz",
        help="compare on these samples (keyed by input name; 'label' optional)",
    )
    p.add_argument("--random-inputs", type=int, metavar="N", help="compare on N random input sets (default 8)")
    p.add_argument("--repeat", type=int, default=10, help="latency measurements per package (default 10)")
    p.add_argument("--threads", type=int, help="CPU threads for the latency (default: all available)")
    p.add_argument("--bench-json", type=Path, metavar="FILE", help="the package's latency from `tvmq bench --json`")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    p.add_argument("--chart", type=Path, metavar="FILE.png", help="also draw it as a PNG (needs matplotlib)")
    p.set_defaults(func=_cmd_report)

    p = commands.add_parser("run", help="run a package on inputs from .npy files")
    p.add_argument("package", type=Path)
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input (repeatable)")
    p.add_argument("-o", "--output", help="save the outputs by name to this .npz file")
    p.add_argument(
        "--emulate",
        action="store_true",
        help="run a package built for another CPU (ARM) with the C++ runner under qemu (correctness, not speed)",
    )
    p.add_argument("--rpc", metavar="HOST:PORT", help="run on the TVM RPC server at HOST:PORT (a board)")
    p.set_defaults(func=_cmd_run)

    p = commands.add_parser("bench", help="measure a package's latency")
    p.add_argument("package", type=Path)
    p.add_argument("--repeat", type=int, default=20, help="number of measurements (default 20)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all available)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--rpc", metavar="HOST:PORT", help="measure on the TVM RPC server at HOST:PORT (a board)")
    p.set_defaults(func=_cmd_bench)

    p = commands.add_parser("profile", help="time each kernel of a package: where the time goes")
    p.add_argument("package", type=Path)
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input (default: random)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all available)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.set_defaults(func=_cmd_profile)

    p = commands.add_parser("demo", help="compile, run and benchmark the bundled example")
    p.add_argument(
        "-o", "--output", type=Path, default=Path("tvmq-demo"), help="package directory (default ./tvmq-demo)"
    )
    p.add_argument("-t", "--target", default="host", help="target preset (default host)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[tvmq] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.debug else logging.INFO)
    if not args.debug:
        warnings.filterwarnings("ignore")
    try:
        args.func(args)
    except TvmqError as err:
        if args.debug:
            raise
        print(f"tvmq: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tvmq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`tvmq report ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # a bug in tvmq: still one line, with the way to the traceback
        if args.debug:
            raise
        print(
            f"tvmq: internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback)", file=sys.stderr
        )
        return 1
    finally:
        log.removeHandler(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
