"""How much quantization changed the model: per layer and end to end.

Per quantized layer, the float model's output tensor is compared with the same tensor of the
quantized model on calibration samples: SQNR = 10 log10(sum x^2 / sum (x - x')^2) in dB and
the cosine of the two. Errors accumulate through the network, so later layers show what the
model has lost up to that point; the worst layers come first. End to end, each model output is
compared the same way, plus top-1 agreement for outputs shaped like class scores.
Sums are accumulated batch by batch: no activations are kept.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tvmq.metrics import ErrorSums
from tvmq.quantize.calibrate import observation_module


def _run_all(module: tvm.IRModule, batches, inputs) -> list[list[np.ndarray]]:
    from tvmq.target import load_target

    vm = relax.VirtualMachine(tvm.compile(module, target=load_target("host").tvm_target()), tvm.cpu())
    results = []
    for batch in batches:
        values = vm["main"](*[tvm.runtime.tensor(batch[spec.name]) for spec in inputs])
        results.append([v.numpy() for v in values])
    return results


def quantization_error(
    float_mod, float_tensors, quantized_mod, quantized_tensors, layer_names, inputs, batches
) -> dict:
    """Per-layer (worst SQNR first) and per-output errors of the quantized model."""
    float_outputs = _output_exprs(float_mod["main"])
    quantized_outputs = _output_exprs(quantized_mod["main"])
    reference = _run_all(observation_module(float_mod, [*float_tensors, *float_outputs]), batches, inputs)
    approximation = _run_all(
        observation_module(quantized_mod, [*quantized_tensors, *quantized_outputs]), batches, inputs
    )
    count = len(float_tensors)
    layers = [ErrorSums() for _ in range(count)]
    outputs = [ErrorSums() for _ in float_outputs]
    for ref, approx in zip(reference, approximation):
        for sums, x, y in zip(layers, ref[:count], approx[:count]):
            sums.add(x, y)
        for sums, x, y in zip(outputs, ref[count:], approx[count:]):
            sums.add_output(x, y)
    per_layer = [{"layer": name, **sums.to_json()} for name, sums in zip(layer_names, layers)]
    per_layer.sort(key=lambda row: row["sqnr_db"] if row["sqnr_db"] is not None else float("inf"))
    return {
        "samples": sum(len(next(iter(b.values()))) for b in batches),
        "layers": per_layer,
        "outputs": [sums.to_json() for sums in outputs],
    }


def _output_exprs(func: relax.Function) -> list[relax.Expr]:
    body = func.body.body
    bindings = {b.var: b.value for b in func.body.blocks[0].bindings}
    value = bindings.get(body, body)
    while isinstance(value, relax.Var) and value in bindings:
        value = bindings[value]
    if isinstance(value, relax.Tuple):
        return list(value.fields)
    return [body]
