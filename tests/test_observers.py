"""Calibration statistics: the streaming histogram, and the four ways to choose a range from it."""

import numpy as np
import pytest

from tvmq.quantize.observers import (
    RANGE_METHODS,
    ChannelMeanObserver,
    HistogramObserver,
    compute_range,
    entropy_range,
    expected_squared_error,
    minmax_range,
    mse_range,
    percentile_range,
)


def observed(*batches, bins=2048):
    observer = HistogramObserver(bins)
    for batch in batches:
        observer.observe(batch)
    return observer


def sampled_squared_error(x, lo, hi, levels):
    """The grid `expected_squared_error` models, applied to the samples themselves: x >= 0 rounds
    onto multiples of hi / levels up to hi, x < 0 onto multiples of -lo / levels down to lo."""
    x = x.astype(np.float64)
    step = np.where(x >= 0, hi, -lo) / levels
    quantized = np.sign(x) * step * np.minimum(np.round(np.abs(x) / step), levels)
    return np.mean((x - quantized) ** 2)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def laplace(rng):
    return rng.laplace(0.0, 1.0, 100_000).astype(np.float32)


# The streaming histogram


def test_batches_of_growing_range_stream_into_the_one_shot_histogram(rng):
    # Batch k spans about [-2^(k/3), 2^(k/3)]; the first reaches exactly 1 and the last exactly 8,
    # so the streamed width doubles three times and ends at the one-shot width 2 * 8 / 2047.
    batches = [rng.uniform(-1, 1, 5000).astype(np.float32) * np.float32(2 ** (k / 3)) for k in range(10)]
    batches[0][0], batches[-1][0] = 1.0, -8.0
    streamed = observed(batches[0])
    first_width = streamed.width
    for batch in batches[1:]:
        streamed.observe(batch)
        assert streamed.counts.size <= 2048
    once = observed(np.concatenate(batches))

    assert streamed.width == 8 * first_width == once.width
    assert (streamed.min, streamed.max, streamed.count) == (once.min, once.max, once.count)
    assert streamed.count == 50_000 and streamed.min == -8.0
    assert streamed.start == once.start
    np.testing.assert_array_equal(streamed.counts, once.counts)


def test_merged_bins_hold_exactly_what_np_histogram_counts_between_their_edges(rng):
    # Off-centre batches 3x wider each time: many merges, bins starting at odd indices too.
    batches = [(rng.standard_normal(20_000) * 3.0**k + 2.0).astype(np.float32) for k in range(6)]
    data = np.concatenate(batches)
    obs = observed(*batches)

    assert obs.width > 200 * observed(batches[0]).width
    np.testing.assert_array_equal(obs.counts, np.histogram(data, obs.edges)[0])
    for first, last in [(0, obs.counts.size), (10, 11), (100, 1000), (obs.counts.size // 2, obs.counts.size)]:
        assert obs.counts[first:last].sum() == np.histogram(data, obs.edges[[first, last]])[0][0]


def test_zeros_before_real_data_wait_in_bin_zero_until_the_width_is_known(rng):
    zeros, data = np.zeros(1000, np.float32), rng.standard_normal(1000).astype(np.float32)
    streamed = observed(zeros)
    assert (streamed.width, streamed.count, minmax_range(streamed)) == (0.0, 1000, (0.0, 0.0))

    streamed.observe(data)
    once = observed(np.concatenate([zeros, data]))
    assert (streamed.width, streamed.start, streamed.count) == (once.width, once.start, 2000)
    np.testing.assert_array_equal(streamed.counts, once.counts)


@pytest.mark.parametrize("value", [0.0, 3.0, -2.5])
def test_a_constant_tensor_has_its_value_as_range_with_every_method(value):
    obs = observed(np.full((4, 5), value, np.float32), np.full(7, value, np.float32))
    for method in RANGE_METHODS:
        assert compute_range(obs, method) == (value, value)


def test_empty_batches_change_nothing_and_no_values_means_no_range():
    obs = observed(np.zeros((0, 3), np.float32))
    assert obs.count == 0
    with pytest.raises(ValueError, match="no values were observed"):
        compute_range(obs, "minmax")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_before_they_touch_the_statistics(bad):
    obs = observed(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="non-finite values"):
        obs.observe(np.array([0.5, bad], np.float32))
    assert (obs.count, obs.max) == (3, 1.0)


def test_state_survives_an_npz_round_trip_and_keeps_accumulating(tmp_path, laplace):
    obs = observed(laplace[:50_000])
    np.savez(tmp_path / "stats.npz", **obs.state())
    with np.load(tmp_path / "stats.npz") as stored:
        restored = HistogramObserver.from_state(dict(stored))

    for method in RANGE_METHODS:
        assert compute_range(restored, method) == compute_range(obs, method)
    obs.observe(laplace[50_000:] * 4)
    restored.observe(laplace[50_000:] * 4)
    assert (restored.width, restored.start) == (obs.width, obs.start)
    np.testing.assert_array_equal(restored.counts, obs.counts)


def test_an_unknown_method_is_rejected_with_the_valid_ones_listed(laplace):
    with pytest.raises(ValueError, match="unknown range method 'kl'; expected one of minmax, percentile, entropy, mse"):
        compute_range(observed(laplace), "kl")


# Range methods


def test_minmax_is_the_exact_min_and_max(laplace):
    assert minmax_range(observed(laplace[:1000], laplace[1000:])) == (float(laplace.min()), float(laplace.max()))


def test_percentile_of_uniform_data_is_within_one_bin_and_keeps_lo_at_min(rng):
    data = rng.uniform(0, 1, 100_000).astype(np.float32)
    obs = observed(data)
    lo, hi = percentile_range(obs, 99)
    assert lo == float(data.min())
    assert abs(hi - np.percentile(data, 99)) <= obs.width
    assert abs(hi - 0.99) <= obs.width


def test_percentile_clips_rare_huge_outliers(rng):
    data = np.concatenate([rng.standard_normal(100_000), [50.0, -50.0, 45.0]]).astype(np.float32)
    obs = observed(data)
    lo, hi = compute_range(obs, "percentile", percentile=99.99)
    assert abs(lo - np.percentile(data, 0.01)) <= obs.width
    assert abs(hi - np.percentile(data, 99.99)) <= obs.width
    assert -4.5 < lo < -3 and 3 < hi < 4.5  # N(0, 1)'s 99.99th percentile is 3.72


@pytest.mark.parametrize("outlier", [20.0, 50.0])
def test_entropy_clips_a_few_extreme_outliers_of_a_gaussian_but_not_its_body(rng, outlier):
    data = np.concatenate([rng.standard_normal(100_000), [outlier, -outlier, 0.9 * outlier]]).astype(np.float32)
    lo, hi = entropy_range(observed(data), levels=127)
    assert lo == -hi  # a symmetric distribution searches one threshold on |x|
    assert 2.5 < hi < 0.35 * outlier


def test_entropy_keeps_the_whole_range_of_uniform_data(rng):
    assert entropy_range(observed(rng.uniform(-1, 1, 100_000)), levels=127)[1] > 0.97
    lo, hi = entropy_range(observed(rng.uniform(0, 1, 100_000)), levels=255)
    assert lo >= 0 and hi > 0.97


def test_entropy_is_not_pulled_down_by_a_spike_of_zeros(rng):
    relu = np.maximum(rng.standard_normal(100_000), 0).astype(np.float32)  # half of it exactly 0
    lo, hi = entropy_range(observed(relu), levels=255)
    assert lo == 0.0 and 3.0 < hi <= relu.max()


def test_entropy_of_data_away_from_zero_does_not_collapse_onto_its_minimum(rng):
    # A threshold just above 5 clips everything into one bin, where P and Q agree perfectly:
    # the search only considers thresholds that keep at least half the values inside.
    lo, hi = entropy_range(observed(rng.uniform(5, 6, 10_000)), levels=255)
    assert lo >= 5 and hi > 5.9


@pytest.mark.parametrize("range_method", [entropy_range, mse_range])
def test_far_from_symmetric_signed_data_gets_a_threshold_per_side(rng, range_method):
    x = rng.standard_normal(100_000)
    gelu_like = np.where(x < 0, 0.05 * x, x).astype(np.float32)  # about [-0.2, 4.5]
    lo, hi = range_method(observed(gelu_like), 127)
    assert gelu_like.min() <= lo < -0.1  # not -hi, as one symmetric threshold would give
    assert 3.0 < hi <= gelu_like.max()


def test_mse_shrinks_the_range_of_laplace_data_but_not_of_uniform_data(rng, laplace):
    lo, hi = mse_range(observed(laplace), 127)
    assert lo == -hi and hi < np.abs(laplace).max()
    assert 8.5 < hi < 11  # near 9.89, the analytic optimum for Laplace(b = 1) and 8 bits (ACIQ)
    uniform = rng.uniform(-1, 1, 100_000).astype(np.float32)
    assert mse_range(observed(uniform), 127)[1] > 0.98


def test_the_histogram_estimates_the_squared_error_of_quantizing_the_samples(laplace):
    obs = observed(laplace)
    top = float(np.abs(laplace).max())
    for threshold in [2.0, 6.0, top]:  # mostly clipping error, both, mostly rounding error
        estimate = expected_squared_error(obs, -threshold, threshold, 127)
        assert estimate == pytest.approx(sampled_squared_error(laplace, -threshold, threshold, 127), rel=0.02)

    # So the range mse_range picks quantizes the real samples better than min/max does.
    chosen = sampled_squared_error(laplace, *mse_range(obs, 127), 127)
    assert chosen < 0.9 * sampled_squared_error(laplace, -top, top, 127)


def test_channel_means_are_streamed_along_the_channel_axis():
    observer = ChannelMeanObserver(axis=1)
    batches = [np.full((2, 3, 4, 4), v, np.float32) * np.array([1, 2, 3]).reshape(1, 3, 1, 1) for v in (1.0, 3.0)]
    for batch in batches:
        observer.observe(batch)
    np.testing.assert_allclose(observer.mean, [2.0, 4.0, 6.0])
    restored = ChannelMeanObserver.from_state(observer.state())
    np.testing.assert_allclose(restored.mean, observer.mean)
