"""The report as a PNG: latency and library size beside the baseline's, and the per-layer
quantization error. matplotlib is optional (`pip install 'tvmq[report]'`): only the chart needs it."""

from __future__ import annotations

import io
from pathlib import Path

from tvmq.errors import TvmqError
from tvmq.files import write_atomically
from tvmq.report.package_report import PackageReport

LAYERS_SHOWN = 20  # the worst ones; a deep model's full list would be unreadable


class MissingDependencyError(TvmqError):
    """An optional dependency that the requested feature needs is not installed."""


def check_chart_dependency() -> None:
    """Raise MissingDependencyError unless matplotlib is importable (checked before measuring)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "the chart needs matplotlib, which is not installed: pip install 'tvmq[report]' (or matplotlib)"
        ) from None


def write_chart(report: PackageReport, path: str | Path) -> None:
    """Draw the report and write it to `path` as a PNG (atomically)."""
    check_chart_dependency()
    from matplotlib.figure import Figure  # a bare Figure draws with Agg: no pyplot, no display

    layers = ((report.quantization or {}).get("error") or {}).get("layers", [])[:LAYERS_SHOWN]
    figure = Figure(figsize=(11 if layers else 8, 4), layout="constrained")
    axes = figure.subplots(1, 3 if layers else 2, squeeze=True)
    measured = [m for m in (report.package, report.baseline) if m is not None]
    names = ["package" if m is report.package else "baseline" for m in measured]
    _latency_bars(axes[0], names, [m.latency for m in measured])
    axes[1].bar(names, [m.metadata.library.size_bytes / 1024 for m in measured], color=["C0", "C7"][: len(names)])
    axes[1].set_title("library size")
    axes[1].set_ylabel("KiB")
    if layers:
        _layer_bars(axes[2], layers)
    figure.suptitle(_title(report))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_atomically(path, lambda f: f.write(buffer.getvalue()))


def _latency_bars(axis, names: list[str], latencies: list) -> None:
    axis.set_title("latency (median; bar: min-max)")
    axis.set_ylabel("ms")
    for index, latency in enumerate(latencies):
        if latency is None:
            axis.text(index, 0, "not measured", ha="center", va="bottom", rotation=90)
            continue
        spread = [[latency.median_ms - latency.min_ms], [latency.max_ms - latency.median_ms]]
        axis.bar(index, latency.median_ms, yerr=spread, capsize=4, color="C0" if index == 0 else "C7")
    axis.set_xticks(range(len(names)), names)


def _layer_bars(axis, layers: list[dict]) -> None:
    names = [row["layer"].split()[0] for row in layers]
    finite = [row["sqnr_db"] for row in layers if row["sqnr_db"] is not None]
    exact = max(finite, default=0.0) + 10  # an error-free layer (infinite SQNR) drawn past the rest
    sqnrs = [exact if row["sqnr_db"] is None else row["sqnr_db"] for row in layers]
    axis.barh(range(len(layers)), sqnrs, color="C3")
    axis.set_yticks(range(len(layers)), names, fontsize=7)
    axis.invert_yaxis()  # worst first, at the top
    axis.set_xlabel("SQNR dB (higher is better)")
    axis.set_title(f"quantization error, worst {len(layers)} layers")


def _title(report: PackageReport) -> str:
    metadata = report.package.metadata
    title = f"{Path(metadata.model['source']).name} on {metadata.target['name']}"
    if report.outputs:
        first = report.outputs[0]
        title += f" | {first['name']} vs baseline: cosine {first['cosine']:.5f}"
        if "top1_agreement" in first:
            title += f", top-1 agreement {100 * first['top1_agreement']:.1f}%"
    return title
