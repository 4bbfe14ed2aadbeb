"""FP16 mode: the model's convolutions, matrix products and the operators between them run in
float16 (half the weight bytes and memory traffic; native arithmetic on GPUs and ARMv8.2+ CPUs),
while each convolution and matmul accumulates in float32 and operators that lose accuracy in
half precision (softmax, normalization, reductions) stay float32: Relax's ToMixedPrecision.
Inputs and outputs keep their float32 types, so callers see no difference but the error,
which tvmq measures against the float32 model (`tvmq compile --verify`)."""

from __future__ import annotations

import dataclasses

from tvmq.errors import TvmqError
from tvmq.frontend import ImportedModel
from tvmq.quantize import has_qdq

# Agreement with float32 that FP16 mode must reach: max |fp16 - fp32| <= atol + rtol * max |fp32|.
# float16 keeps 11 significant bits (relative step 1e-3); a few layers of float32-accumulated
# products stay well inside 1% of the output's range.
FP16_TOLERANCE = {"rtol": 1e-2, "atol": 1e-3}


def to_fp16(model: ImportedModel) -> ImportedModel:
    """`model` with float16 compute and float32 accumulation (see the module docstring)."""
    import tvm
    from tvm import relax

    if has_qdq(model.mod):
        raise TvmqError("fp16 mode applies to a float model; this one is int8-quantized")
    passes = [relax.transform.ToMixedPrecision(out_dtype="float32"), relax.transform.FoldConstant()]
    mod = tvm.ir.transform.Sequential(passes)(model.mod)
    record = {"mode": "fp16", "source": "ToMixedPrecision: float16 compute, float32 accumulation"}
    return dataclasses.replace(model, mod=mod, quantization=record)


def is_fp16(quantization: dict | None) -> bool:
    return bool(quantization) and quantization.get("mode") == "fp16"
