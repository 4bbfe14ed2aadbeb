"""How much quantization changed the model: per layer and end to end.

Per quantized layer, the float model's output tensor is compared with the same tensor of the
quantized model on calibration samples: SQNR = 10 log10(sum x^2 / sum (x - x')^2) in dB and
the cosine of the two. Errors accumulate through the network, so later layers show what the
model has lost up to that point; the worst layers come first. End to end, each model output is
compared the same way, plus top-1 agreement for outputs shaped like class scores.
Sums are accumulated batch by batch: no activations are kept.
"""

from __future__ import annotations

from tvm import relax

from tvmq.metrics import ErrorSums, OutputProbe
from tvmq.progress import Progress
from tvmq.quantize.calibrate import ObservedModel


def quantization_error(
    reference: ObservedModel,
    float_tensors: list[relax.Expr],
    approximation: ObservedModel,
    quantized_tensors: list[relax.Expr],
    layer_names: list[str],
    inputs,
    probe: OutputProbe,
) -> dict:
    """Per-layer (worst SQNR first) and per-output errors of the quantized model on the
    probe's batches: the float model's `float_tensors` against the quantized model's
    `quantized_tensors`, both observed."""
    layers = [ErrorSums() for _ in float_tensors]
    outputs = [ErrorSums() for _ in reference.outputs]
    reference.compile()
    approximation.compile()
    progress = Progress("measuring the error per layer", probe.samples, "samples")
    for batch in probe.batches:
        ref, approx = reference.run(batch, inputs), approximation.run(batch, inputs)
        for sums, x, y in zip(layers, float_tensors, quantized_tensors):
            sums.add(ref[x], approx[y])
        for sums, x, y in zip(outputs, reference.outputs, approximation.outputs):
            sums.add_output(ref[x], approx[y])
        progress.advance(probe.samples // len(probe.batches))
    per_layer = [{"layer": name, **sums.to_json()} for name, sums in zip(layer_names, layers)]
    per_layer.sort(key=lambda row: row["sqnr_db"] if row["sqnr_db"] is not None else float("inf"))
    return {
        "samples": probe.samples,
        "layers": per_layer,
        "outputs": [sums.to_json() for sums in outputs],
    }
