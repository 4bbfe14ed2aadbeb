"""Scales and zero points (tvmq/quantize/qparams.py): the design's linear mapping, its affine
form with an integer zero point, and the fixed-point multipliers of integer requantization."""

import warnings

import numpy as np
import pytest

from tvmq.quantize.qparams import (
    QuantParams,
    affine_qparams,
    fixed_point_multiplier,
    linear_dequantize,
    linear_quantize,
    linear_scale,
    qrange,
    requantize_reference,
    with_common_shift,
)

DTYPES = ["int8", "uint8"]


def random_ranges(rng, count):
    """Ranges of every kind: around 0, wholly positive, wholly negative, tiny and huge."""
    centre = rng.normal(0.0, 1.0, count) * 10.0 ** rng.uniform(-3, 3, count)
    width = 10.0 ** rng.uniform(-4, 4, count)
    return centre - width / 2, centre + width / 2


# --- the design's linear mapping ---------------------------------------------------------------


def test_half_of_the_unit_range_maps_to_191_and_back_to_0_498039():
    # [-1, 1] at 8 bits: s = 2/255. x = 0.5 gives (x - x_min)/s = 1.5 * 127.5 = 191.25, so x_q = 191
    # and x' = -1 + 191 * 2/255 = 127/255 = 0.498039, an error x - x' = +0.001961 (< s/2 = 0.003922).
    # The original design essay says "191.5 -> 192" and computes the error without x_min: that is
    # an arithmetic slip, not a different convention (192 would give x' = 0.505882, error -0.005882,
    # which is more than s/2).
    s = linear_scale(-1.0, 1.0, 8)
    assert s == pytest.approx(2 / 255, rel=1e-15)
    assert (0.5 - -1.0) / s == pytest.approx(191.25, rel=1e-12)

    x_q = linear_quantize(0.5, -1.0, s)
    assert x_q == 191

    x_back = linear_dequantize(x_q, -1.0, s)
    assert round(float(x_back), 6) == 0.498039
    assert round(0.5 - float(x_back), 6) == 0.001961


def test_the_range_ends_map_to_the_first_and_last_integer():
    # 2^8 - 1 = 255 steps from x_min to x_max.
    s = linear_scale(-3.0, 5.0, 8)
    np.testing.assert_array_equal(linear_quantize([-3.0, 5.0], -3.0, s), [0, 255])
    np.testing.assert_allclose(linear_dequantize([0, 255], -3.0, s), [-3.0, 5.0], rtol=0, atol=1e-12)


def test_the_design_mapping_errs_by_at_most_half_a_step_inside_the_range():
    rng = np.random.default_rng(0)
    lo, hi = random_ranges(rng, 500)
    x = lo[:, None] + (hi - lo)[:, None] * rng.uniform(0, 1, (500, 200))
    for bits in (4, 8):
        s = linear_scale(lo, hi, bits)[:, None]
        x_q = linear_quantize(x, lo[:, None], s)
        assert x_q.min() >= 0 and x_q.max() <= 2**bits - 1
        error = np.abs(x - linear_dequantize(x_q, lo[:, None], s))
        assert np.all(error <= s / 2 * (1 + 1e-9))


# --- the affine form: integer zero point -------------------------------------------------------


@pytest.mark.parametrize("symmetric", [False, True], ids=["asymmetric", "symmetric"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_affine_form_errs_by_at_most_half_a_step_inside_the_widened_range(dtype, symmetric):
    # The range is widened to contain 0 and the grid moved by < s/2 so that 0 lies on it; the
    # rounding error stays within s/2 everywhere in the widened range, ends included. Slack: the
    # scale and the values are float32 (2^-24 relative, times at most 255 steps).
    rng = np.random.default_rng(1)
    for lo, hi in zip(*random_ranges(rng, 300)):
        params = affine_qparams(lo, hi, dtype, symmetric=symmetric)
        wide_lo, wide_hi = min(lo, 0.0), max(hi, 0.0)
        x = np.concatenate([[wide_lo, wide_hi, 0.0], rng.uniform(wide_lo, wide_hi, 200)]).astype(np.float32)
        error = np.abs(x.astype(np.float64) - params.dequantize(params.quantize(x)))
        s = float(params.scale)
        assert np.all(error <= s / 2 + 1e-4 * s), f"[{lo}, {hi}] {dtype}: max error {error.max()} > s/2 = {s / 2}"


@pytest.mark.parametrize("symmetric", [False, True], ids=["asymmetric", "symmetric"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_real_zero_is_exactly_representable(dtype, symmetric):
    # Zero padding and ReLU need real 0 to be an integer of the grid: 0 -> z -> 0 exactly.
    rng = np.random.default_rng(2)
    for lo, hi in zip(*random_ranges(rng, 300)):
        params = affine_qparams(lo, hi, dtype, symmetric=symmetric)
        assert params.quantize(0.0) == params.zero_point
        assert params.dequantize(params.quantize(0.0)) == 0.0


def test_a_range_without_zero_is_widened_to_reach_zero():
    # [2, 4] becomes [0, 4]: s = 4/255, z = 0 (uint8) or -128 (int8); 2 and 4 are still in range.
    for dtype, zero_point in [("uint8", 0), ("int8", -128)]:
        params = affine_qparams(2.0, 4.0, dtype)
        assert params.scale == np.float32(4 / 255)
        assert params.zero_point == zero_point
    # [-6, -1] becomes [-6, 0]: 0 is the last integer.
    params = affine_qparams(-6.0, -1.0, "uint8")
    assert params.scale == np.float32(6 / 255)
    assert params.zero_point == 255
    np.testing.assert_allclose(params.dequantize(params.quantize([-6.0, -1.0])), [-6.0, -1.0], atol=3 / 255)


def test_an_asymmetric_zero_point_is_the_rounded_position_of_zero():
    # [-1, 3] uint8: s = 4/255, -x_min/s = 63.75 -> z = 64 (the grid moves by 0.25 steps).
    params = affine_qparams(-1.0, 3.0, "uint8")
    assert params.scale == np.float32(4 / 255)
    assert params.zero_point == 64
    assert affine_qparams(-1.0, 3.0, "int8").zero_point == 64 - 128


def test_symmetric_int8_has_zero_point_0_and_scale_max_abs_over_127():
    # max|x| = 2.54 over 127 levels on each side: s = 0.02; -2.54 -> -127, 2.54 -> 127.
    params = affine_qparams(-2.54, 1.0, "int8", symmetric=True)
    assert params.zero_point == 0
    assert params.scale == np.float32(2.54 / 127)
    np.testing.assert_array_equal(params.quantize([-2.54, 0.0, 1.0, 2.54]), [-127, 0, 50, 127])


def test_symmetric_uint8_has_zero_point_128():
    # The same scale as int8, grid shifted by 128: -2.54 -> 1, 0 -> 128, 2.54 -> 255.
    params = affine_qparams(-1.0, 2.54, "uint8", symmetric=True)
    assert params.zero_point == 128
    assert params.scale == np.float32(2.54 / 127)
    np.testing.assert_array_equal(params.quantize([-2.54, 0.0, 2.54]), [1, 128, 255])


@pytest.mark.parametrize("symmetric", [False, True], ids=["asymmetric", "symmetric"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_an_all_zero_tensor_gets_scale_1_without_warnings_or_nan(dtype, symmetric):
    # Width-zero range [0, 0]: any positive scale represents it; 1 avoids dividing by zero.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params = affine_qparams(0.0, 0.0, dtype, symmetric=symmetric)
        restored = params.dequantize(params.quantize(np.zeros(4, np.float32)))
    assert params.scale == 1.0
    qmin, qmax = qrange(dtype)
    assert qmin <= params.zero_point <= qmax
    np.testing.assert_array_equal(restored, np.zeros(4))


def test_a_constant_nonzero_tensor_is_widened_to_zero_and_stays_exact():
    # A constant 3 has range [3, 3], widened to [0, 3]: s = 3/255 and 3 is the last integer.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params = affine_qparams(3.0, 3.0, "uint8")
    assert params.scale == np.float32(3 / 255)
    assert params.quantize(3.0) == 255
    assert params.dequantize(params.quantize(3.0)) == pytest.approx(3.0, rel=1e-6)


def test_per_channel_ranges_where_only_some_channels_are_zero_get_scale_1_there():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params = affine_qparams([0.0, -1.0, 0.0], [0.0, 1.0, 0.0], "int8", symmetric=True, axis=0)
    np.testing.assert_array_equal(params.scale, np.float32([1.0, 1 / 127, 1.0]))
    np.testing.assert_array_equal(params.zero_point, [0, 0, 0])


@pytest.mark.parametrize("bounds", [(np.nan, 1.0), (-1.0, np.inf), (-np.inf, 1.0), (0.0, np.nan)])
def test_a_non_finite_bound_is_refused(bounds):
    with pytest.raises(ValueError, match="non-finite"):
        affine_qparams(*bounds, "uint8")


def test_an_unsupported_dtype_is_refused_by_listing_the_supported_ones():
    with pytest.raises(ValueError, match="int8, uint8, int32"):
        affine_qparams(-1.0, 1.0, "int4")


# --- per channel -------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1])
def test_per_channel_scales_quantize_each_channel_with_its_own_scale(axis):
    # Symmetric int8 weights with channels of very different magnitudes: each channel's integers
    # must span about [-127, 127] on its own scale (a shared scale would flatten the small ones).
    rng = np.random.default_rng(3)
    magnitudes = np.array([1e-3, 0.5, 7.0, 300.0])
    weight = (rng.uniform(-1, 1, (4, 16)) * magnitudes[:, None]).astype(np.float32)
    if axis == 1:
        weight = np.ascontiguousarray(weight.T)
    amax = np.abs(weight).max(axis=1 - axis)

    params = affine_qparams(-amax, amax, "int8", symmetric=True, axis=axis)

    # Independent reference: one scale per channel, broadcast by hand.
    scale = (amax.astype(np.float64) / 127).astype(np.float32)
    scale_b = scale[:, None] if axis == 0 else scale[None, :]
    expected = np.clip(np.round(weight.astype(np.float64) / scale_b.astype(np.float64)), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(params.scale, scale)
    np.testing.assert_array_equal(params.zero_point, np.zeros(4))
    quantized = params.quantize(weight)
    np.testing.assert_array_equal(quantized, expected)
    assert np.all(np.abs(quantized).max(axis=1 - axis) == 127)
    np.testing.assert_allclose(params.dequantize(quantized), expected * scale_b, rtol=1e-6)
    assert np.all(np.abs(params.dequantize(quantized) - weight) <= scale_b / 2 * (1 + 1e-4))


def test_per_channel_asymmetric_zero_points_follow_each_channel():
    # Channel 0: [-1, 3] -> z = 64 (see above); channel 1: [0, 2] -> z = 0; channel 2: [-2, 0] -> z = 255.
    params = affine_qparams([-1.0, 0.0, -2.0], [3.0, 2.0, 0.0], "uint8", axis=1)
    np.testing.assert_array_equal(params.zero_point, [64, 0, 255])
    np.testing.assert_array_equal(params.scale, np.float32([4 / 255, 2 / 255, 2 / 255]))
    x = np.array([[0.0, 0.0, 0.0], [3.0, 2.0, -2.0]], np.float32)
    np.testing.assert_array_equal(params.quantize(x), [[64, 0, 255], [255, 255, 0]])


# --- rounding and clipping ---------------------------------------------------------------------


def test_quantize_rounds_half_to_even_and_clips_to_int8():
    params = QuantParams(np.float32(1.0), np.int32(0), "int8")
    x = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, 0.51, 126.5, 127.5, 1000.0, -128.5, -1000.0]
    want = [0, 2, 2, 0, -2, -2, 0, 1, 126, 127, 127, -128, -128]
    quantized = params.quantize(x)
    assert quantized.dtype == np.int8
    np.testing.assert_array_equal(quantized, want)


def test_quantize_clips_to_uint8_around_an_even_zero_point():
    # z = 128: x = 0.5 -> round(0.5) + 128 = 128, x = 1.5 -> 2 + 128 = 130; -200 -> 0, 200 -> 255.
    params = QuantParams(np.float32(1.0), np.int32(128), "uint8")
    quantized = params.quantize([0.5, 1.5, -0.5, -1.5, 127.0, 127.5, -128.0, -128.5, 200.0, -200.0])
    assert quantized.dtype == np.uint8
    np.testing.assert_array_equal(quantized, [128, 130, 128, 126, 255, 255, 0, 0, 255, 0])


def test_quantize_rounds_before_adding_an_odd_zero_point_as_tvm_does():
    # TVM's quantize is clip(round(x / s) + z) (relax legalize_ops/qdq.py), and so is the module
    # docstring. With z = 1: 0.5 -> round(0.5) + 1 = 0 + 1 = 1, 2.5 -> 2 + 1 = 3, -0.5 -> 0 + 1 = 1.
    # Rounding x/s + z instead gives 2, 4, 0: ties go the other way whenever z is odd, so this
    # numpy reference and the compiled quantize disagree by 1 on exact halves.
    params = QuantParams(np.float32(1.0), np.int32(1), "uint8")
    got = params.quantize([0.5, 1.5, 2.5, -0.5]).tolist()
    assert got == [1, 3, 3, 1], (
        f"QuantParams.quantize rounds (x - x_min)/s = x/s + z, not round(x/s) + z as TVM's "
        f"quantize does: got {got} for x = [0.5, 1.5, 2.5, -0.5], s = 1, z = 1"
    )


# --- QuantParams validation --------------------------------------------------------------------


def test_quant_params_refuse_scale_and_zero_point_of_different_shapes():
    with pytest.raises(ValueError, match="must be equal scalars or vectors"):
        QuantParams(np.ones(3, np.float32), np.zeros(2, np.int32), "int8", axis=0)
    with pytest.raises(ValueError, match="must be equal scalars or vectors"):
        QuantParams(np.float32(1.0), np.zeros(1, np.int32), "int8")


def test_quant_params_refuse_matrices_of_scales():
    with pytest.raises(ValueError, match="must be equal scalars or vectors"):
        QuantParams(np.ones((2, 2), np.float32), np.zeros((2, 2), np.int32), "int8", axis=0)


@pytest.mark.parametrize("scale", [0.0, -0.5, np.nan, np.inf])
def test_quant_params_refuse_a_scale_that_is_not_finite_and_positive(scale):
    with pytest.raises(ValueError, match="finite and positive"):
        QuantParams(np.float32(scale), np.int32(0), "int8")
    with pytest.raises(ValueError, match="finite and positive"):
        QuantParams(np.array([1.0, scale], np.float32), np.zeros(2, np.int32), "int8", axis=0)


def test_quant_params_need_an_axis_exactly_when_per_channel():
    with pytest.raises(ValueError, match="need an axis"):
        QuantParams(np.ones(3, np.float32), np.zeros(3, np.int32), "int8")
    with pytest.raises(ValueError, match="per-tensor ones none"):
        QuantParams(np.float32(1.0), np.int32(0), "int8", axis=0)


def test_quant_params_refuse_an_unknown_dtype():
    with pytest.raises(ValueError, match="unsupported quantized dtype 'int4'"):
        QuantParams(np.float32(1.0), np.int32(0), "int4")


def test_quant_params_serialise_to_plain_json():
    params = affine_qparams([-1.0, 0.0], [3.0, 2.0], "uint8", axis=0)
    assert params.to_json() == {
        "scale": [np.float32(4 / 255).item(), np.float32(2 / 255).item()],
        "zero_point": [64, 0],
        "dtype": "uint8",
        "axis": 0,
    }


# --- fixed-point requantization ----------------------------------------------------------------


def test_fixed_point_multipliers_are_31_bit_and_accurate_to_2_to_the_minus_31():
    rng = np.random.default_rng(4)
    real = 10.0 ** rng.uniform(-6, np.log10(8), 5000)
    multiplier, shift = fixed_point_multiplier(real)
    assert np.all(multiplier >= 2**30) and np.all(multiplier < 2**31)
    assert np.all(shift >= 1) and np.all(shift <= 62)
    approx = multiplier / 2.0**shift
    assert np.all(np.abs(approx - real) <= real * 2.0**-31)


@pytest.mark.parametrize("real", [1.0, 0.5, 0.25, 2.0, 8.0])
def test_a_power_of_two_multiplier_is_exact(real):
    multiplier, shift = fixed_point_multiplier(real)
    assert multiplier == 2**30
    assert multiplier / 2.0**shift == real


def test_a_mantissa_that_rounds_up_to_one_carries_into_the_exponent():
    # 1 - 2^-40 rounds to 2^31 / 2^31: the multiplier must stay below 2^31, so it becomes 2^30 / 2^30.
    multiplier, shift = fixed_point_multiplier(1.0 - 2.0**-40)
    assert (int(multiplier), int(shift)) == (2**30, 30)


def test_requantization_rounds_the_accumulator_times_the_real_multiplier():
    # (acc * m + 2^(n-1)) >> n is acc * m / 2^n rounded half up, exactly; against the real
    # multiplier it is off by at most 1 while |acc * real| < 2^30 (the multiplier's 2^-31 relative
    # error stays below half a unit) and exact for nearly all values (at |acc * real| near 2^30 that
    # error is up to 0.5, so about 1 in 80 of these large results lands on the other side of a half).
    rng = np.random.default_rng(5)
    real = 10.0 ** rng.uniform(-6, np.log10(8), 20000)
    acc_i32 = rng.integers(-(2**31), 2**31, 20000, dtype=np.int64)
    multiplier, shift = fixed_point_multiplier(real)

    got = requantize_reference(acc_i32, multiplier, shift)

    # Exact rational rounding in Python integers, on a subset.
    for a, m, n, g in zip(acc_i32[:500].tolist(), multiplier[:500].tolist(), shift[:500].tolist(), got[:500].tolist()):
        assert g == (a * m + (1 << (n - 1))) // (1 << n)
    in_range = np.abs(acc_i32 * real) < 2**30
    assert in_range.sum() > 10000
    diff = got[in_range] - np.round(acc_i32[in_range] * real[in_range])
    assert np.all(np.abs(diff) <= 1)
    assert np.mean(diff == 0) > 0.97


def test_requantizing_small_accumulators_into_int8_is_exact_except_at_ties():
    # The realistic case: int8 x int8 sums requantized into [-128, 127]. Away from exact halves
    # (where >> rounds up and numpy to even) the integer result equals round(acc * real).
    rng = np.random.default_rng(6)
    real = 10.0 ** rng.uniform(-5, -2, 5000)
    acc_i32 = rng.integers(-(2**15), 2**15, 5000)
    multiplier, shift = fixed_point_multiplier(real)
    got = requantize_reference(acc_i32, multiplier, shift)
    exact = acc_i32 * real
    away_from_ties = np.abs(exact - np.floor(exact) - 0.5) > 1e-6
    np.testing.assert_array_equal(got[away_from_ties], np.round(exact[away_from_ties]))


def test_requantization_rounds_exact_halves_up():
    # real = 0.5 is exact (m = 2^30, n = 31): 3 * 0.5 = 1.5 -> 2, -3 * 0.5 = -1.5 -> -1, 5 -> 2.5 -> 3.
    multiplier, shift = fixed_point_multiplier(0.5)
    np.testing.assert_array_equal(requantize_reference([3, -3, 5, -5, 4], multiplier, shift), [2, -1, 3, -2, 2])


@pytest.mark.parametrize("real", [0.0, -0.25, np.inf, -np.inf, np.nan])
def test_a_multiplier_that_is_not_finite_and_positive_is_refused(real):
    with pytest.raises(ValueError, match="finite and positive"):
        fixed_point_multiplier(real)
    with pytest.raises(ValueError, match="finite and positive"):
        fixed_point_multiplier([0.5, real])


def test_a_multiplier_of_2_to_the_40_is_refused():
    # It would need a negative shift: no int32 accumulator can be scaled up that far.
    with pytest.raises(ValueError, match="out of range"):
        fixed_point_multiplier(2.0**40)


def test_a_negligible_multiplier_maps_every_accumulator_to_zero():
    """A dead channel (weights ~1e-9 after BatchNorm folding) has a multiplier far below
    2^-32: even the largest int32 accumulator is less than half a step, so the output is 0."""
    multiplier, shift = fixed_point_multiplier([1e-15, 0.5])
    assert multiplier[0] == 0 and shift[0] == 62
    np.testing.assert_array_equal(requantize_reference([2**31 - 1, -(2**31)], multiplier[0], shift[0]), [0, 0])


def test_one_shift_serves_a_layer_whose_channel_multipliers_span_a_hundredfold():
    """A layer's per-channel multipliers share the smallest shift; the smaller ones keep fewer
    bits, still far more than an int8 result needs: results stay within 1 of the exact ones."""
    rng = np.random.default_rng(7)
    real = 10.0 ** rng.uniform(-5, -3, 64)
    multiplier, shift = with_common_shift(*fixed_point_multiplier(real))
    assert np.ndim(shift) == 0 and multiplier.max() < 2**31
    acc_i32 = rng.integers(-(2**20), 2**20, (1000, 64))
    got = requantize_reference(acc_i32, multiplier, shift)
    assert np.abs(got - np.round(acc_i32 * real)).max() <= 1


def test_a_dead_channel_stays_zero_under_a_common_shift():
    multiplier, shift = with_common_shift(*fixed_point_multiplier([1e-15, 0.5]))
    assert multiplier[0] == 0 and shift == 31
