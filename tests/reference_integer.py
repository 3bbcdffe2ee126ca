"""Independent numpy int64 versions of the integer networks, for the tests to check the coding paths against.

Written separately from ``aecompress.integer`` (whole image at once, no bands, int64 instead of
float64): agreement with them, to the bit, is the evidence that the coding paths are exact.
"""

from __future__ import annotations

import numpy as np

from aecompress.entropy import scale_index_from_q8
from aecompress.integer import (
    ACT_LIMIT,
    FRACTION,
    Y_LIMIT,
    Z_LIMIT,
    IntegerChannelContext,
    IntegerContext,
    IntegerHyperSynthesis,
    index_log_scale_q8,
    mean_q8,
)


def hyper_synthesis_reference(net: IntegerHyperSynthesis, z_hat: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``net(z_hat, height, width)``: means (float64, M × height × width) and table indices."""
    x = np.clip(np.asarray(z_hat, np.int64), -Z_LIMIT, Z_LIMIT)
    last = len(net.weights) - 1
    for i, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        C, H, W = x.shape
        padded = np.zeros((C, H + 2, W + 2), np.int64)
        padded[:, 1:-1, 1:-1] = x
        acc = np.repeat(b.astype(np.int64)[:, None], H * W, axis=1).reshape(-1, H, W)
        for dy in range(3):
            for dx in range(3):
                acc = acc + np.einsum("oc,chw->ohw", w[:, :, dy, dx].astype(np.int64), padded[:, dy : dy + H, dx : dx + W])
        if i < last:
            x = np.clip(_shift(acc, net.shifts[i]), 0, ACT_LIMIT - 1)
            Co = x.shape[0] // 4
            x = x.reshape(Co, 2, 2, H, W).transpose(0, 3, 1, 4, 2).reshape(Co, 2 * H, 2 * W)
    M = net.mean_channels
    k = net.shifts[last]
    mean = acc[:M].astype(np.float64) / 2.0 ** (k + FRACTION)
    log_scale = _shift(acc[M:], k)
    return mean[:, :height, :width], scale_index_from_q8(log_scale[:, :height, :width])


def context_reference(net: IntegerContext, residual: np.ndarray, mean: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``net(residual, mean, index)``: the non-anchors' new means (float32) and table indices, flat."""
    M, h, w = residual.shape
    anchor = (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0
    y = np.where(anchor, np.asarray(residual, np.int64) * 256 + mean_q8(mean), 0).clip(-Y_LIMIT, Y_LIMIT)
    padded = np.zeros((M, h + 4, w + 4), np.int64)
    padded[:, 2:-2, 2:-2] = y
    acc = np.repeat(net.biases[0].astype(np.int64)[:, None], h * w, axis=1).reshape(M, h, w)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            tap = net.weights[0][:, :, dy + 2, dx + 2].astype(np.int64)
            if tap.any():
                acc = acc + np.einsum("oc,chw->ohw", tap, padded[:, 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w])
    x = np.concatenate([mean_q8(mean), index_log_scale_q8(index), _shift(acc, net.scale_bits[0])])
    x = x.clip(-(ACT_LIMIT - 1), ACT_LIMIT - 1)
    for i in (1, 2, 3):
        acc = np.einsum("oc,chw->ohw", net.weights[i][:, :, 0, 0].astype(np.int64), x) + net.biases[i][:, None, None]
        if i < 3:
            x = _shift(acc, net.scale_bits[i]).clip(0, ACT_LIMIT - 1)
    k = net.scale_bits[3]
    new_mean = (np.asarray(mean, np.float32).astype(np.float64) + acc[:M] / 2.0 ** (k + FRACTION)).astype(np.float32)
    new_index = scale_index_from_q8(index_log_scale_q8(index) + _shift(acc[M:], k))
    return new_mean[:, ~anchor], new_index[:, ~anchor]


def decoded_reference(residual: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """ŷ = residual + μ in fixed point (8 fractional bits, μ rounded half up), clamped to ±Y_LIMIT, int64."""
    return (np.asarray(residual, np.int64) * 256 + mean_q8(mean)).clip(-Y_LIMIT, Y_LIMIT)


def channel_reference(
    net: IntegerChannelContext, group: int, before_q8: np.ndarray, mean: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``net(group, before_q8, mean, index)``: the group's new means (float32) and table indices, all P positions at once.

    The group's network (three 1×1 layers) reads, at each position, the earlier groups'
    ŷ, the group's mean and its table ln σ (8 fractional bits each, clamped to
    ±(ACT_LIMIT − 1)); hidden layers are shifted back to 8 fractional bits and clamped to
    [0, ACT_LIMIT); the last layer's first half is Δmean, its second half Δln σ.
    """
    layers = net.nets[group - 1]
    own_log_scale = index_log_scale_q8(index)
    x = np.concatenate([np.asarray(before_q8, np.int64), mean_q8(mean), own_log_scale]).clip(-(ACT_LIMIT - 1), ACT_LIMIT - 1)
    for i, (w, b) in enumerate(zip(layers.weights, layers.biases, strict=True)):
        acc = np.einsum("oc,cp->op", w[:, :, 0, 0].astype(np.int64), x) + b.astype(np.int64)[:, None]
        if i < 2:
            x = _shift(acc, layers.scale_bits[i]).clip(0, ACT_LIMIT - 1)
    C, k = mean.shape[0], layers.scale_bits[2]
    assert acc.shape[0] == 2 * C and int(np.abs(acc).max(initial=0)) < 2**53  # Δmean below is exact
    new_mean = (np.asarray(mean, np.float32).astype(np.float64) + acc[:C].astype(np.float64) / 2.0 ** (k + FRACTION)).astype(np.float32)
    new_index = scale_index_from_q8(own_log_scale + _shift(acc[C:], k))
    return new_mean, new_index


def _shift(acc: np.ndarray, k: int) -> np.ndarray:
    """Rounding right shift (half up) of int64 values."""
    return (acc + (1 << (k - 1) if k else 0)) >> k
