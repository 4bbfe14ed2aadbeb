"""Calibration statistics: a streaming histogram per tensor, and the clipping ranges chosen from it.

Calibration runs the float model batch by batch and shows every tensor to be quantized to a
`HistogramObserver`. Its statistics (exact min, max and count, and a histogram of at most `bins`
bins) are all a range method reads, so they can be cached (`state`) and a range recomputed with
another method, percentile or number of levels without running the model again.

The range methods return a clipping range (lo, hi); `qparams.affine_qparams` then widens it to
contain 0 and turns it into a scale and zero point. `entropy_range` and `mse_range` choose a
threshold T on each side of 0 for a grid of `levels` steps between 0 and T: pass 255 for uint8
over non-negative data and 127 for one half of symmetric int8.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Signed data whose shorter side reaches this fraction of the longer side shares one symmetric
# threshold (see `_search_sides`).
_SYMMETRIC_SIDE_RATIO = 0.5
# The most thresholds the entropy search compares; histograms with more bins are subsampled.
_MAX_ENTROPY_CANDIDATES = 2048
# The mass, in observations, that the entropy search gives an empty bucket of Q (the smoothing
# constant of MXNet, TVM and onnxruntime).
_EMPTY_BUCKET_COUNT = 1e-4
# Values binned at a time by HistogramObserver.observe (256 KB of float64).
_CHUNK = 1 << 15
# Thresholds the MSE search compares: extent * k / _MSE_CANDIDATES for k = 1 .. _MSE_CANDIDATES.
_MSE_CANDIDATES = 200


class HistogramObserver:
    """Exact min, max and count of every value seen, and a histogram of them in at most `bins` bins.

    Bin i covers [i * width, (i + 1) * width); the histogram holds the bins i = start, ...,
    start + len(counts) - 1 that contain min and max, so it always covers [min, max]. The first
    batch that is not all zeros fixes width = 2a / (bins - 1), a = max|x|, so that [-a, a] fits in
    `bins` bins with room to grow on the side the data has not reached. When later values fall so
    far out that [min, max] needs more than `bins` bins, the width doubles: new bin j is the sum
    of old bins 2j and 2j + 1, exactly, because every edge is a multiple of the width. Memory is
    O(bins) however many values are observed.

    Until a non-zero value arrives every value is 0 and the histogram is the single bin 0 of a
    width still to be fixed (width = 0).
    """

    def __init__(self, bins: int = 2048):
        if bins < 2:
            raise ValueError(f"a histogram needs at least 2 bins, got {bins}")
        self.bins = bins
        self.min = np.inf
        self.max = -np.inf
        self.width = 0.0
        self.start = 0
        self.counts = np.zeros(0, np.int64)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @property
    def edges(self) -> np.ndarray:
        """The len(counts) + 1 bin edges, (start + i) * width."""
        return (self.start + np.arange(self.counts.size + 1)) * self.width

    def observe(self, x: np.ndarray) -> None:
        """Add the values of one batch (any shape) to the statistics."""
        values = np.asarray(x).ravel(order="K")  # in memory order: a view of a transposed array
        if values.size == 0:
            return
        batch_min, batch_max = float(values.min()), float(values.max())
        if not (np.isfinite(batch_min) and np.isfinite(batch_max)):
            raise ValueError("cannot calibrate on non-finite values (NaN or infinity)")
        self.min, self.max = min(self.min, batch_min), max(self.max, batch_max)
        if self.width == 0:
            self.width = 2 * max(-self.min, self.max) / (self.bins - 1)
        if self.width == 0:  # all zeros so far: they belong in bin 0 whatever the width will be
            self.counts = np.array([self.count + values.size], np.int64)
            return
        self._cover_min_to_max()
        # In float64 (exact edges), a chunk at a time: the passes over a chunk stay in cache.
        for start in range(0, values.size, _CHUNK):
            chunk = values[start : start + _CHUNK].astype(np.float64)
            index = self._bin_index(chunk).astype(np.int64)
            index -= self.start
            self.counts += np.bincount(index, minlength=self.counts.size)

    def state(self) -> dict[str, np.ndarray]:
        """The statistics as arrays, e.g. for np.savez; `from_state` restores them."""
        return {
            "bins": np.array(self.bins),
            "min": np.array(self.min),
            "max": np.array(self.max),
            "width": np.array(self.width),
            "start": np.array(self.start),
            "counts": self.counts.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> HistogramObserver:
        observer = cls(int(state["bins"]))
        observer.min, observer.max = float(state["min"]), float(state["max"])
        observer.width, observer.start = float(state["width"]), int(state["start"])
        observer.counts = np.asarray(state["counts"], np.int64).copy()
        return observer

    def _bin_index(self, values: np.ndarray) -> np.ndarray:
        """floor(x / width), corrected so that x lies in [i * width, (i + 1) * width) as those
        edges are computed in float64 (the division alone can round across an edge)."""
        index = np.floor(values / self.width)
        index -= values < index * self.width
        index += values >= (index + 1) * self.width
        return index

    def _cover_min_to_max(self) -> None:
        """Double the width until [min, max] fits in `bins` bins, then pad the counts with empty
        bins so that they span exactly the bins of min and max."""
        first, last = self._bin_index(np.array([self.min, self.max]))
        while last - first + 1 > self.bins:
            self._merge_bin_pairs()
            first, last = self._bin_index(np.array([self.min, self.max]))
        first, last = int(first), int(last)
        if self.counts.size == 0:
            self.start = first
        self.counts = np.pad(self.counts, (self.start - first, last + 1 - self.start - self.counts.size))
        self.start = first

    def _merge_bin_pairs(self) -> None:
        """Double the width: bin j of width 2w holds bins 2j and 2j + 1 of width w."""
        odd_start = self.start % 2  # an odd first bin pairs with the empty bin before it
        counts = np.pad(self.counts, (odd_start, (odd_start + self.counts.size) % 2))
        self.counts = counts.reshape(-1, 2).sum(axis=1)
        self.start //= 2
        self.width *= 2


class ChannelMeanObserver:
    """The mean of every channel along `axis` (1 for NCHW activations, the last axis for dense
    ones): E[x_c], what bias correction needs to undo the shift that rounding the weights
    gives each output channel."""

    def __init__(self, axis: int):
        self.axis = axis
        self.sums = np.zeros(0, np.float64)
        self.count = 0

    def observe(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        axis = self.axis % x.ndim
        sums = x.sum(axis=tuple(i for i in range(x.ndim) if i != axis))
        self.sums = sums if self.count == 0 else self.sums + sums
        self.count += x.size // x.shape[axis]

    @property
    def mean(self) -> np.ndarray:
        return self.sums / max(self.count, 1)

    def state(self) -> dict[str, np.ndarray]:
        return {"axis": np.array(self.axis), "sums": self.sums, "count": np.array(self.count)}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> ChannelMeanObserver:
        observer = cls(int(state["axis"]))
        observer.sums, observer.count = np.asarray(state["sums"], np.float64), int(state["count"])
        return observer


def minmax_range(obs: HistogramObserver) -> tuple[float, float]:
    """(min, max): every observed value is representable, outliers stretch the grid."""
    _require_values(obs)
    return obs.min, obs.max


def percentile_range(obs: HistogramObserver, percentile: float = 99.99) -> tuple[float, float]:
    """(lo, hi) = the (100 - p)-th and p-th percentiles of the observed values.

    The histogram's cumulative counts are interpolated linearly within a bin (values assumed
    uniform in it), with the end bins cut to [min, max]. For non-negative data lo = min, and for
    non-positive data hi = max: the bound next to 0 stays exact (0 after a ReLU).
    """
    if not 50 <= percentile <= 100:
        raise ValueError(f"percentile must be in [50, 100], got {percentile}")
    _require_values(obs)
    lo = obs.min if obs.min >= 0 else _quantile(obs, 1 - percentile / 100)
    hi = obs.max if obs.max <= 0 else _quantile(obs, percentile / 100)
    return lo, hi


def entropy_range(obs: HistogramObserver, levels: int) -> tuple[float, float]:
    """The threshold T minimizing KL(P || Q) between the histogram and its quantized version
    (TensorRT's calibration), per side of 0 as `_search_sides` describes.

    For the magnitude histogram h_0 .. h_{n-1} of a side, each candidate threshold T = i * width
    (i = levels .. n bins) gives
      P = h_0 .. h_{i-1} with the clipped mass sum(h_i ..) added to bin i - 1,
      Q = h_0 .. h_{i-1} merged into `levels` buckets of near-equal width (floor(b * i / levels)
          .. floor((b + 1) * i / levels)), each bucket's mass spread evenly over the bins where
          P is non-zero,
    both normalized, and KL(P || Q) = sum_k P_k log(P_k / Q_k); the smallest divergence wins.
    Q is built from the bins inside the threshold, without the clipped mass, as TensorRT does:
    quantizing P itself would give Q = P at i = levels (one bin per bucket), so clipping would
    never be penalized. Two details follow NVIDIA's and MXNet's calibrators: bin 0 counts as
    much as bin 1, because 0 is exact on the grid and a spike of zeros (ReLU, padding) would
    otherwise favour the thresholds with the fewest bins per bucket; and an empty bucket of Q
    gets 1e-4 of an observation, so that a threshold in an empty stretch below c far outliers
    (of N values) costs about (c / N) log(c / 1e-4) instead of an infinite divergence.
    Candidates keep at least half the values inside (i >= the median's bin): below that P
    collapses into its last few bins, Q with it, and the divergence goes to 0 however badly
    the values are clipped (e.g. data in [5, 6] "fits" a threshold of 5.0001).
    """
    return _search_sides(obs, levels, _kl_threshold)


def mse_range(obs: HistogramObserver, levels: int) -> tuple[float, float]:
    """The threshold T minimizing the expected squared quantization error, clipping included,
    per side of 0 as `_search_sides` describes.

    Candidates T = extent * k / 200 (k = 1 .. 200), extent = max |x| of the side; each is scored
    by `_squared_errors` with each bin's mass placed at its centre (within 2% of quantizing the
    samples themselves in the tests, where a step spans a few bins).
    """
    return _search_sides(obs, levels, _mse_threshold)


def expected_squared_error(obs: HistogramObserver, lo: float, hi: float, levels: int) -> float:
    """Mean of (x - x')^2 over the observed values, estimated from the histogram, where x' rounds
    x >= 0 onto {0, s, ..., levels * s} with s = hi / levels and x < 0 onto the mirrored grid
    with s = -lo / levels (the grid `entropy_range` and `mse_range` assume; clipped at T)."""
    _require_values(obs)
    total = 0.0
    for histogram, extent, threshold in (
        (_side_histogram(obs, negative=False), obs.max, hi),
        (_side_histogram(obs, negative=True), -obs.min, -lo),
    ):
        if histogram.sum() > 0:
            total += _squared_errors(histogram, obs.width, extent, np.array([threshold]), levels)[0]
    return total / obs.count


# Each range method as (statistics, percentile, levels) -> (lo, hi), taking what it uses.
RANGE_METHODS = {
    "minmax": lambda obs, _percentile, _levels: minmax_range(obs),
    "percentile": lambda obs, percentile, _levels: percentile_range(obs, percentile),
    "entropy": lambda obs, _percentile, levels: entropy_range(obs, levels),
    "mse": lambda obs, _percentile, levels: mse_range(obs, levels),
}


def compute_range(
    obs: HistogramObserver, method: str, *, percentile: float = 99.99, levels: int = 255
) -> tuple[float, float]:
    """The clipping range of one of RANGE_METHODS; `percentile` is used by "percentile",
    `levels` by "entropy" and "mse"."""
    if method not in RANGE_METHODS:
        raise ValueError(f"unknown range method {method!r}; expected one of {', '.join(RANGE_METHODS)}")
    lo, hi = RANGE_METHODS[method](obs, percentile, levels)
    return float(lo), float(hi)


def _require_values(obs: HistogramObserver) -> None:
    if obs.count == 0:
        raise ValueError("no values were observed, so there is no range to choose")


def _quantile(obs: HistogramObserver, q: float) -> float:
    """The value below which a fraction q of the observed values lie."""
    edges = np.clip(obs.edges, obs.min, obs.max)
    cumulative = np.cumsum(obs.counts)
    target = q * cumulative[-1]
    i = int(np.searchsorted(cumulative, target))  # the first bin reaching the target: non-empty
    fraction = (target - (cumulative[i] - obs.counts[i])) / obs.counts[i]
    return float(edges[i] + fraction * (edges[i + 1] - edges[i]))


def _side_histogram(obs: HistogramObserver, negative: bool) -> np.ndarray:
    """Counts of |x| over [k * width, (k + 1) * width), k = 0, 1, ..., for the values on one side
    of 0: bin k >= 0 holds x >= 0, and bin -k - 1 holds x < 0 with |x| in (k * width, (k + 1) * width]."""
    index = obs.start + np.arange(obs.counts.size)
    if negative:
        index = -index - 1
    on_side = index >= 0
    return np.bincount(index[on_side], weights=obs.counts[on_side])


# threshold_of(histogram of |x| over bins of `width`, extent = max |x|, levels) -> threshold
_ThresholdSearch = Callable[[np.ndarray, float, float, int], float]


def _search_sides(obs: HistogramObserver, levels: int, threshold_of: _ThresholdSearch) -> tuple[float, float]:
    """Apply a one-sided threshold search to the sides of 0 the data occupies.

    Non-negative data: (min, T) (non-positive data mirrored), since the grid starts at 0 anyway.
    Signed data whose sides reach comparable extents (the shorter at least half the longer): the
    negative side is folded onto the positive one and a single T is searched on the histogram of
    |x|, returning (-T, T). This is the objective of a symmetric grid and pools both sides'
    counts. Signed data far from symmetric (e.g. GELU outputs, [-0.17, 10]): each side is searched
    alone, because a symmetric grid would waste most of the short side's levels and the folded
    tail would belong to the long side only. Each side gets `levels` steps in every case.
    """
    if levels < 1:
        raise ValueError(f"levels must be a positive number of quantization steps, got {levels}")
    _require_values(obs)
    if obs.min == obs.max:
        return obs.min, obs.max
    positive, negative = _side_histogram(obs, negative=False), _side_histogram(obs, negative=True)
    if obs.min >= 0:
        return obs.min, threshold_of(positive, obs.width, obs.max, levels)
    if obs.max <= 0:
        return -threshold_of(negative, obs.width, -obs.min, levels), obs.max
    if min(-obs.min, obs.max) >= _SYMMETRIC_SIDE_RATIO * max(-obs.min, obs.max):
        folded = np.zeros(max(positive.size, negative.size))
        folded[: positive.size] += positive
        folded[: negative.size] += negative
        threshold = threshold_of(folded, obs.width, max(-obs.min, obs.max), levels)
        return -threshold, threshold
    return -threshold_of(negative, obs.width, -obs.min, levels), threshold_of(positive, obs.width, obs.max, levels)


def _kl_threshold(histogram: np.ndarray, width: float, extent: float, levels: int) -> float:
    """The KL-minimizing threshold of `entropy_range` on one magnitude histogram, all candidates
    at once: bucket sums come from cumulative sums, so the work is O(candidates * levels)."""
    n = histogram.size
    if n <= levels:  # every bin already has its own level: nothing to trade
        return extent
    histogram = histogram.copy()
    histogram[0] = histogram[1]  # 0 is exact on the grid: a spike of zeros must not pull T down
    total = histogram.sum()
    p = histogram / total
    cumulative = np.concatenate([[0.0], np.cumsum(histogram)]) / total  # exactly 1 at the end
    first = max(levels, int(np.searchsorted(cumulative, 0.5)))  # keep at least half inside
    stops = np.unique(np.linspace(first, n, min(n - first + 1, _MAX_ENTROPY_CANDIDATES)).round().astype(np.int64))
    cumulative_nonzero = np.concatenate([[0], np.cumsum(p > 0)])
    cumulative_plogp = np.concatenate([[0.0], np.cumsum(_xlogx(p))])

    bounds = np.arange(levels + 1) * stops[:, None] // levels  # bucket b: bins bounds[b] .. bounds[b+1] - 1
    q_mass = np.diff(cumulative[bounds], axis=1)  # m_b
    clipped = 1.0 - cumulative[stops]
    p_mass = q_mass.copy()  # P(b): the clipped mass sits in the last bucket
    p_mass[:, -1] += clipped
    p_nonzero = np.diff(cumulative_nonzero[bounds], axis=1)  # n_b
    p_nonzero[:, -1] += (p[stops - 1] == 0) & (clipped > 0)
    q_mass = np.maximum(q_mass, _EMPTY_BUCKET_COUNT / total)

    # With C = cumulative[stops] the mass inside, Q_k = m_b / (n_b C) on P's non-zero bins, so
    # KL = sum_k P_k log P_k - sum_b P(b) log(m_b / n_b) + log C.
    p_log_p = cumulative_plogp[stops - 1] + _xlogx(p[stops - 1] + clipped)
    cross = (p_mass * (np.log(q_mass) - np.log(np.maximum(p_nonzero, 1)))).sum(axis=1)
    divergence = p_log_p - cross + np.log(cumulative[stops])
    return min(stops[np.argmin(divergence)] * width, extent)


def _mse_threshold(histogram: np.ndarray, width: float, extent: float, levels: int) -> float:
    thresholds = extent * np.arange(1, _MSE_CANDIDATES + 1) / _MSE_CANDIDATES
    return float(thresholds[np.argmin(_squared_errors(histogram, width, extent, thresholds, levels))])


def _squared_errors(
    histogram: np.ndarray, width: float, extent: float, thresholds: np.ndarray, levels: int
) -> np.ndarray:
    """sum_k h_k (c_k - q(c_k))^2 for each threshold T, where c_k is the centre of magnitude bin k
    (its top edge cut at `extent`) and q(c) = s * min(round(c / s), levels), s = T / levels:
    rounding error inside [0, T] and clipping error beyond it in one formula."""
    edges = np.minimum(np.arange(histogram.size + 1) * width, extent)
    centres = (edges[:-1] + edges[1:]) / 2
    steps = thresholds[:, None] / levels
    safe_steps = np.where(steps > 0, steps, 1.0)  # T = 0 clips everything to 0
    quantized = np.where(steps > 0, steps * np.minimum(np.round(centres / safe_steps), levels), 0.0)
    return ((centres - quantized) ** 2 * histogram).sum(axis=1)


def _xlogx(x: np.ndarray) -> np.ndarray:
    """x log x, with 0 log 0 = 0."""
    return x * np.log(np.where(x > 0, x, 1.0))
