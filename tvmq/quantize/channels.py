"""Where a layer's channels are, in the layouts the frontends produce: conv2d reads and writes
NCHW with OIHW weights, matmul multiplies [..., K] activations by [K, N] weights. Weights are
quantized per output channel, biases and batch norms act per output channel, and bias
correction needs the mean of each input channel."""

from __future__ import annotations

import numpy as np


def channel_axis(op: str, ndim: int) -> int:
    """The channel axis of a conv2d's (1: NCHW) or a matmul's (the last) input or output of rank `ndim`."""
    return 1 if op == "conv2d" else ndim - 1


def weight_channel_axis(op: str, ndim: int) -> int:
    """The output-channel axis of a layer's weights: O of conv2d's OIHW, N of matmul's [K, N]."""
    return 0 if op == "conv2d" else ndim - 1


def per_channel_vector(constant: np.ndarray, out_ndim: int, axis: int, channels: int) -> np.ndarray | None:
    """`constant` as a [channels] vector if it broadcasts against the layer output along the
    channel axis only, else None."""
    if constant.ndim > out_ndim:
        return None
    aligned = constant.reshape((1,) * (out_ndim - constant.ndim) + constant.shape)
    if any(size != 1 for i, size in enumerate(aligned.shape) if i != axis):
        return None
    if aligned.shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(aligned.reshape(-1), (channels,)).astype(np.float32)
