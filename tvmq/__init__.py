"""tvmq: quantize, autotune and deploy ONNX and PyTorch models with Apache TVM.

The pipeline, one subpackage a stage: frontend (model -> Relax) -> quantize (calibrated QDQ
model, realized into integer operators) -> codegen, with kernels (lower the module, build it
with default schedules or a tuning log) -> compiler (write a deployable package) -> runtime
(load, run, benchmark). tune searches kernels' schedules into tuning logs; report and cli sit
on top.

    model = tvmq.load_model("model.onnx", input_shapes={"image": (1, 3, 224, 224)})
    tvmq.compile_model(model, "x86-avx2", "out/")
    outputs = tvmq.load_package("out/").run({"image": x})
"""

__version__ = "0.1.0"

_API = {
    "load_model": "tvmq.frontend",
    "compile_model": "tvmq.compiler",
    "load_package": "tvmq.runtime",
    "Package": "tvmq.runtime",
    "load_target": "tvmq.target",
    "list_presets": "tvmq.target",
    "compare_with_reference": "tvmq.verify",
    "TvmqError": "tvmq.errors",
}

__all__ = sorted(_API)


def __getattr__(name):
    # Imported on first use: TVM takes seconds to import, which `tvmq --help` need not pay.
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'tvmq' has no attribute {name!r}")
