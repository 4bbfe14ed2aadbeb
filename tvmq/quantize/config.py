"""Quantization settings, validated when created."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from tvmq.quantize.observers import RANGE_METHODS

CALIBRATION_METHODS = tuple(RANGE_METHODS)
ACTIVATION_DTYPES = ("uint8", "int8")
# How much of the quantization error is measured (tvmq.quantize.quantize_model's error_report).
ERROR_REPORTS = ("none", "quick", "full")


@dataclass(frozen=True)
class QConfig:
    """How to quantize a model to int8.

    Weights are always symmetric int8: per output channel by default, per tensor with
    `per_channel=False`; `reduce_range` keeps them within 7 bits ([-63, 63]), which lets x86
    CPUs without VNNI use their fast u8 x s8 instruction exactly (vpmaddubsw adds two u8 x s8
    products in int16, which full-range weights can overflow). None decides by the target the
    model is quantized for (tvmq.target.int8_weights_need_7_bits: x86 with AVX2 or AVX-512BW but
    no VNNI), False without one.
    Activations are `activation_dtype`, asymmetric unless `symmetric_activations`; None decides
    by the target (tvmq.target.int8_activation_dtype: int8 on ARM, whose dot products are
    signed x signed; uint8 elsewhere and without one). Their ranges come from calibration with
    `method` (`percentile` and `bins` tune it) over at most `num_samples` samples. `skip` keeps layers in float, by
    layer name (as `tvmq report` lists them, or the model's node name) or op type (`conv2d`,
    `Conv`, `matmul`, ...). `bias_correction` folds the mean output shift that rounding the
    weights causes into each layer's bias.
    """

    activation_dtype: str | None = None
    symmetric_activations: bool = False
    per_channel: bool = True
    reduce_range: bool | None = None
    method: str = "minmax"
    percentile: float = 99.99
    bins: int = 2048
    num_samples: int | None = None
    skip: tuple[str, ...] = field(default_factory=tuple)
    keep_first_float: bool = False
    keep_last_float: bool = False
    bias_correction: bool = True

    def for_target(self, target) -> QConfig:
        """This config with what it leaves open (None) settled for a TVM target, or for no
        target (None)."""
        from tvmq.target import int8_activation_dtype, int8_weights_need_7_bits

        settled = {}
        if self.reduce_range is None:
            settled["reduce_range"] = target is not None and int8_weights_need_7_bits(target)
        if self.activation_dtype is None:
            settled["activation_dtype"] = int8_activation_dtype(target) if target is not None else "uint8"
        return replace(self, **settled)

    def __post_init__(self):
        if self.activation_dtype is not None and self.activation_dtype not in ACTIVATION_DTYPES:
            raise ValueError(
                f"activation dtype must be one of {', '.join(ACTIVATION_DTYPES)}, got {self.activation_dtype!r}"
            )
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}")
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.bins < 128:
            raise ValueError(f"bins must be at least 128, got {self.bins}")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {self.num_samples}")
        object.__setattr__(self, "skip", tuple(self.skip))

    def to_json(self) -> dict:
        return asdict(self) | {"skip": list(self.skip)}
