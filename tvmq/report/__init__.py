"""`tvmq report`: what a package costs and what it buys, beside a baseline package.

    report = build_report("out-int8/", baseline_dir="out-fp32/")   # measures on this machine
    print(format_report(report))
    write_json(report, "report.json")
    write_chart(report, "report.png")                              # needs matplotlib

Latency (median/min/max), library size, output agreement with the baseline (SQNR, cosine, max
|diff|, top-1 agreement), top-1 accuracy on labelled inputs, and the per-layer quantization
error recorded in the package's metadata at build time.
"""

from tvmq.report.chart import MissingDependencyError, check_chart_dependency, write_chart
from tvmq.report.package_report import PackageReport, build_report, write_json
from tvmq.report.text import LAYERS_NOT_MEASURED, format_error, format_report

__all__ = [
    "LAYERS_NOT_MEASURED",
    "MissingDependencyError",
    "PackageReport",
    "build_report",
    "check_chart_dependency",
    "format_error",
    "format_report",
    "write_chart",
    "write_json",
]
