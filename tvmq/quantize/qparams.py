"""Scales and zero points: the one place where real values meet integers.

The design's linear mapping takes a range [x_min, x_max] onto b-bit integers:

    s   = (x_max - x_min) / (2^b - 1)
    x_q = round((x - x_min) / s)
    x'  = x_min + x_q * s

so |x - x'| <= s / 2 inside the range. Integer operators also need real 0 to map to an integer
exactly (zero padding, ReLU, the zero-point corrections of integer convolution), so tvmq first
widens the range to contain 0 and then moves x_min by less than s/2 so that 0 lies on the grid:
the zero point z = round(-x_min / s) is an integer and x_q = round(x / s) + z. Symmetric
quantization centres the grid on 0 instead (z = 0 for int8, 128 for uint8).

Rounding is half to even everywhere, as TVM's quantize operator does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int32": (-(2**31), 2**31 - 1)}


def qrange(dtype: str) -> tuple[int, int]:
    """The smallest and largest integer of a quantized dtype."""
    try:
        return _RANGES[dtype]
    except KeyError:
        raise ValueError(f"unsupported quantized dtype {dtype!r}; expected one of {', '.join(_RANGES)}") from None


def linear_scale(x_min, x_max, bits: int):
    """s = (x_max - x_min) / (2^b - 1)."""
    return (np.asarray(x_max, np.float64) - np.asarray(x_min, np.float64)) / (2**bits - 1)


def linear_quantize(x, x_min, scale) -> np.ndarray:
    """x_q = round((x - x_min) / s), unclipped."""
    return np.round((np.asarray(x, np.float64) - x_min) / scale)


def linear_dequantize(x_q, x_min, scale) -> np.ndarray:
    """x' = x_min + x_q * s."""
    return x_min + np.asarray(x_q, np.float64) * scale


@dataclass(frozen=True, eq=False)
class QuantParams:
    """Affine quantization x = scale * (x_q - zero_point), per tensor (scalar scale) or per
    channel (1-D scale along `axis`)."""

    scale: np.ndarray  # float32, scalar or 1-D
    zero_point: np.ndarray  # int32, same shape as scale
    dtype: str  # "int8", "uint8" or "int32"
    axis: int | None = None  # the channel axis of per-channel parameters

    def __post_init__(self):
        scale = np.asarray(self.scale, np.float32)
        zero_point = np.asarray(self.zero_point, np.int32)
        if scale.shape != zero_point.shape or scale.ndim > 1:
            raise ValueError(f"scale {scale.shape} and zero point {zero_point.shape} must be equal scalars or vectors")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"scales must be finite and positive, got {scale}")
        if (scale.ndim == 1) != (self.axis is not None):
            raise ValueError("per-channel parameters need an axis, per-tensor ones none")
        qrange(self.dtype)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero_point)

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def _broadcast(self, values: np.ndarray, ndim: int) -> np.ndarray:
        if not self.per_channel:
            return values
        shape = [1] * ndim
        shape[self.axis] = -1
        return values.reshape(shape)

    def quantize(self, x) -> np.ndarray:
        """clip(round(x / s) + z): the design's mapping from 0 then shifted by the integer z,
        which rounds ties exactly as TVM's quantize does."""
        x = np.asarray(x, np.float32)
        scale = self._broadcast(self.scale, x.ndim).astype(np.float64)
        zero_point = self._broadcast(self.zero_point, x.ndim)
        x_q = linear_quantize(x, 0.0, scale) + zero_point
        return np.clip(x_q, *qrange(self.dtype)).astype(self.dtype)

    def dequantize(self, x_q) -> np.ndarray:
        x_q = np.asarray(x_q)
        scale = self._broadcast(self.scale, x_q.ndim).astype(np.float64)
        zero_point = self._broadcast(self.zero_point, x_q.ndim)
        return linear_dequantize(x_q.astype(np.int64) - zero_point, 0.0, scale).astype(np.float32)

    def to_json(self) -> dict:
        return {
            "scale": self.scale.tolist(),
            "zero_point": self.zero_point.tolist(),
            "dtype": self.dtype,
            "axis": self.axis,
        }


def affine_qparams(x_min, x_max, dtype: str, symmetric: bool = False, axis: int | None = None) -> QuantParams:
    """Quantization parameters covering [x_min, x_max] (scalars, or vectors per channel).

    The range is widened to contain 0. Asymmetric: the design's scale over the full integer
    range, zero point rounded onto the integers. Symmetric: s = max|x| / ((qmax - qmin) // 2),
    zero point in the middle. A range of zero width (a constant tensor) gets scale 1.
    """
    qmin, qmax = qrange(dtype)
    bits = int(np.log2(qmax - qmin + 1))
    lo = np.minimum(np.asarray(x_min, np.float64), 0.0)
    hi = np.maximum(np.asarray(x_max, np.float64), 0.0)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"cannot quantize a range with non-finite bounds [{x_min}, {x_max}]")
    if symmetric:
        half_levels = (qmax - qmin) // 2
        scale = np.maximum(-lo, hi) / half_levels
        zero_point = np.full(scale.shape, (qmin + qmax + 1) // 2)
    else:
        scale = linear_scale(lo, hi, bits)
        safe = np.where(scale > 0, scale, 1.0)
        zero_point = np.clip(qmin + np.round(-lo / safe), qmin, qmax)
    empty = scale <= np.finfo(np.float32).tiny
    scale = np.where(empty, 1.0, scale)
    zero_point = np.where(empty, (qmin + qmax + 1) // 2 if symmetric else max(qmin, 0), zero_point)
    return QuantParams(scale.astype(np.float32), zero_point.astype(np.int32), dtype, axis)


def fixed_point_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """Integers (m, n) with real ~= m / 2^n and 2^30 <= m < 2^31, so that int32 x real becomes
    (acc * m + 2^(n-1)) >> n in int64 arithmetic. Accurate to 2^-31 relative.

    Multipliers below 2^-32 (channels whose weights are all but zero) turn any int32 into less
    than half a step: they become m = 0, so those channels output their zero point."""
    real = np.asarray(real, np.float64)
    if np.any(real <= 0) or not np.all(np.isfinite(real)):
        raise ValueError(f"requantization multipliers must be finite and positive, got {real}")
    mantissa, exponent = np.frexp(real)  # real = mantissa * 2^exponent, mantissa in [0.5, 1)
    multiplier = np.round(mantissa * 2.0**31).astype(np.int64)
    carry = multiplier == 2**31  # mantissa rounded up to 1.0
    multiplier = np.where(carry, 2**30, multiplier)
    shift = 31 - exponent - carry.astype(np.int64)
    if np.any(shift < 1):
        raise ValueError(f"requantization multiplier out of range (>= 2^30): {real}")
    negligible = shift > 62
    return np.where(negligible, 0, multiplier), np.where(negligible, 62, shift)


def with_common_shift(multiplier, shift) -> tuple[np.ndarray, int]:
    """The same fixed-point multipliers over one shift, the smallest: m_i * 2^(n - n_i), rounded.
    One shift serves a whole layer (a scalar constant instead of one per channel); a channel
    whose multiplier is k times smaller than the largest keeps log2(k) fewer of its 31 bits."""
    multiplier, shift = np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
    common = int(shift.min())
    return np.round(multiplier / 2.0 ** (shift - common)).astype(np.int64), common


def requantize_reference(acc, multiplier, shift) -> np.ndarray:
    """The integer requantization (acc * m + 2^(n-1)) >> n in numpy: the reference the Relax
    version is tested against."""
    acc = np.asarray(acc, np.int64)
    return (acc * multiplier + (np.int64(1) << (shift - 1))) >> shift
