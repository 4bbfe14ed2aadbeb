"""The report as text: the package, its latency and size beside the baseline's, how far its
outputs are from the baseline's, then the quantization settings and per-layer error (last,
worst layer first, as the table a reader scrolls to)."""

from __future__ import annotations

from tvmq.report.latency import Latency
from tvmq.report.package_report import Measured, PackageReport

# What the report and the compile summary print when only the outputs were measured.
LAYERS_NOT_MEASURED = "  per layer     not measured (--error-report full measures every layer)"


def format_error(row: dict) -> str:
    """One error row of the quantization report (a layer or an output) in words."""
    sqnr = "inf" if row.get("sqnr_db") is None else f"{row['sqnr_db']:.1f}"
    text = f"SQNR {sqnr} dB, cosine {row['cosine']:.5f}"
    if "top1_agreement" in row:
        text += f", top-1 agreement {100 * row['top1_agreement']:.1f}%"
    return text


def format_report(report: PackageReport) -> str:
    package = report.package
    metadata = package.metadata
    lines = [
        f"package   {package.path}",
        f"model     {metadata.model['source']}",
        f"target    {metadata.target['name']}",
        f"library   {metadata.library.file}, {_kib(metadata.library.size_bytes)}",
        f"latency   {_describe_latency(package)}",
    ]
    if package.accuracy is not None:
        lines.append(f"accuracy  top-1 {_percent(package.accuracy)} on {report.inputs}")
    if report.baseline is not None:
        lines += _baseline_lines(report)
    return "\n".join(lines + _quantization_lines(report.quantization))


def _kib(size_bytes: int) -> str:
    return f"{size_bytes / 1024:.0f} KiB"


def _describe_latency(measured: Measured) -> str:
    latency = measured.latency
    if latency is None:
        return f"not measured: {measured.skipped}"
    return (
        f"median {latency.median_ms:.3f} ms (min {latency.min_ms:.3f}, max {latency.max_ms:.3f}), "
        f"{latency.threads} thread(s), {latency.repeat} measurements, {latency.source}"
    )


def _ratio(ours: float | None, theirs: float | None, smaller: str, larger: str) -> str:
    if ours is None or theirs is None or ours <= 0:
        return "-"
    ratio = theirs / ours
    return f"{ratio:.2f}x {smaller}" if ratio >= 1 else f"{1 / ratio:.2f}x {larger}"


def _median(latency: Latency | None) -> float | None:
    return None if latency is None else latency.median_ms


def _ms(latency: Latency | None) -> str:
    return "-" if latency is None else f"{latency.median_ms:.3f} ms"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _baseline_lines(report: PackageReport) -> list[str]:
    package, baseline = report.package, report.baseline
    ours_size, their_size = package.metadata.library.size_bytes, baseline.metadata.library.size_bytes
    rows = [
        ("library", _kib(ours_size), _kib(their_size), _ratio(ours_size, their_size, "smaller", "larger")),
        (
            "latency",
            _ms(package.latency),
            _ms(baseline.latency),
            _ratio(_median(package.latency), _median(baseline.latency), "faster", "slower"),
        ),
    ]
    if package.accuracy is not None and baseline.accuracy is not None:
        delta = f"{100 * (package.accuracy - baseline.accuracy):+.2f} points"
        rows.append(("top-1 accuracy", _percent(package.accuracy), _percent(baseline.accuracy), delta))
    lines = [f"baseline  {baseline.path}", f"  {'':<16}{'package':>12}{'baseline':>12}  package vs baseline"]
    lines += [f"  {name:<16}{ours:>12}{theirs:>12}  {ratio}" for name, ours, theirs, ratio in rows]
    if baseline.latency is None:
        lines.append(f"  baseline latency not measured: {baseline.skipped}")
    if report.outputs is None:
        reason = package.skipped or baseline.skipped
        lines.append(f"  outputs not compared: {reason}")
        return lines
    lines.append(f"  outputs vs baseline on {report.inputs}:")
    for row in report.outputs:
        lines.append(f"  {row['name']:<16}{format_error(row)}, max |diff| {row['max_abs_diff']:.4g}")
    return lines


def _quantization_lines(record: dict | None) -> list[str]:
    if record is None:
        return ["quantization  none (float model)"]
    lines = [f"quantization  {record['mode']}"]
    if "config" not in record:
        return lines + [f"  {record.get('source', '')}"]
    config = record["config"]
    settings = ", ".join(f"{k}={v}" for k, v in config.items() if v not in (None, [], False))
    weights = record["weights"]
    kept = ", ".join(f"{op} x{n}" for op, n in sorted(record["float_ops"].items())) or "none"
    error = record["error"]
    lines += [
        f"  settings      {settings}",
        f"  calibration   {record['calibration']['samples']} samples from {record['calibration']['source']}",
        f"  weights       {_kib(weights['float32'])} float32 -> {_kib(weights['quantized'])} stored",
        f"  float ops     {kept}",
    ]
    if error is None:
        return lines + ["  error         not measured (--error-report none)"]
    of = error.get("outputs_of", "compiled model")
    lines += [
        f"  output {index}      {format_error(row)} on {error['samples']} calibration samples ({of})"
        for index, row in enumerate(error.get("outputs", []))
    ]
    if "outputs_not_measured" in error:
        lines.append(f"  outputs       not measured: {error['outputs_not_measured']}")
    if not error["layers"]:
        return lines + [LAYERS_NOT_MEASURED]
    width = max((len(row["layer"]) for row in error["layers"]), default=len("layer"))
    lines += ["", "  per layer, worst first (error accumulated up to each layer's output)"]
    lines.append(f"  {'layer':<{width}}  {'SQNR dB':>8}  {'cosine':>8}")
    for row in error["layers"]:
        sqnr = "inf" if row["sqnr_db"] is None else f"{row['sqnr_db']:.1f}"
        lines.append(f"  {row['layer']:<{width}}  {sqnr:>8}  {row['cosine']:>8.5f}")
    return lines
