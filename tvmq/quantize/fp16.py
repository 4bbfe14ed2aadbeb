"""FP16 mode: the model's convolutions, matrix products and the operators between them run in
float16 (half the weight bytes and memory traffic; native arithmetic on GPUs and ARMv8.2+ CPUs),
while each convolution and matmul accumulates in float32 and operators that lose accuracy in
half precision (softmax, normalization, reductions) stay float32: Relax's ToMixedPrecision.
Inputs and outputs keep their float32 types, so callers see no difference but the error,
which tvmq measures against the float32 model (`tvmq compile --verify`)."""

from __future__ import annotations

import dataclasses

from tvmq.codegen.lower import ClipAsMinMax
from tvmq.errors import TvmqError
from tvmq.frontend import ImportedModel
from tvmq.quantize import has_qdq


def to_fp16(model: ImportedModel) -> ImportedModel:
    """`model` with float16 compute and float32 accumulation (see the module docstring)."""
    import tvm
    from tvm import relax

    if has_qdq(model.mod):
        raise TvmqError("fp16 mode applies to a float model; this one is int8-quantized")
    # ToMixedPrecision fails on clip's scalar (float64) bounds, which every ReLU6 network has.
    mod = ClipAsMinMax()(model.mod)
    passes = [relax.transform.ToMixedPrecision(out_dtype="float32"), relax.transform.FoldConstant()]
    mod = tvm.ir.transform.Sequential(passes)(mod)
    record = {"mode": "fp16", "source": "ToMixedPrecision: float16 compute, float32 accumulation"}
    return dataclasses.replace(model, mod=mod, quantization=record)


def is_fp16(quantization: dict | None) -> bool:
    return bool(quantization) and quantization.get("mode") == "fp16"
