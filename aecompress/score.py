"""Outlier scores: how unfamiliar an image is to a model, from the model's own rate and distortion.

An autoencoder trained on one kind of image codes other kinds worse.  The score is the
**distortion per bit**, ``λ·MSE / bpp``: the two terms of the loss the model was trained
to minimise (``bpp + λ·MSE``, λ of the chosen quality, MSE over 8-bit values) as a ratio.
Training makes the model trade bits for error at a steady rate on images like its
training data; on unfamiliar images each bit buys less, and the ratio rises.  Unlike the
loss itself, the ratio does not grow with how busy a familiar image is (a busy photo
needs more bits *and* leaves more error), which is what made the loss a weaker detector
in the demonstration (BENCHMARKS.md: rendered charts against photos, ROC-AUC 0.94 for
the ratio, 0.78 for the loss, 0.84 for PSNR alone, at the default quality).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .codec import Codec
from .images import Picture
from .metrics import psnr
from .quality import interpolated_lambda, parse_quality

GAP = 4  # pixels between the panels of a heat map
# Inferno (matplotlib's perceptually uniform map), ten evenly spaced stops, linearly interpolated.
_INFERNO = np.array(
    [
        (0x00, 0x00, 0x04),
        (0x1B, 0x0C, 0x42),
        (0x4B, 0x0C, 0x6B),
        (0x78, 0x1C, 0x6D),
        (0xA5, 0x2C, 0x60),
        (0xCF, 0x44, 0x46),
        (0xED, 0x69, 0x25),
        (0xFB, 0x9A, 0x06),
        (0xF7, 0xD0, 0x3C),
        (0xFC, 0xFF, 0xA4),
    ],
    np.float64,
)


@dataclass
class ImageScore:
    """One image under one model and quality."""

    bpp: float  # the model's own −log₂ p of the latents, per pixel (no file, no container)
    psnr: float  # of the reconstruction decode would return
    mse: float  # 8-bit units, all channels
    loss: float  # bpp + λ·MSE: the training loss of this image
    score: float  # λ·MSE / bpp: distortion per bit, the outlier score
    bits: np.ndarray  # (h, w) bits at each latent position (16×16 pixels)
    error: np.ndarray  # (H, W) squared error per pixel, mean over channels


def score_picture(codec: Codec, picture: Picture, quality: int | float | str) -> ImageScore:
    """Rate, distortion, their loss and their ratio for one picture (nothing is coded)."""
    rate = codec.rate_map(picture, quality)
    lam = interpolated_lambda(codec.net.preset.lambdas, parse_quality(quality))
    error = squared_error(picture.color, rate.reconstruction.color)
    mse = float(error.sum(dtype=np.float64) / error.size)
    bpp = rate.total_bits / (picture.width * picture.height)
    quality_db = psnr(picture.color, rate.reconstruction.color)
    return ImageScore(bpp, quality_db, mse, bpp + lam * mse, lam * mse / max(bpp, 1e-9), rate.bits, error)


def squared_error(a: np.ndarray, b: np.ndarray, rows: int = 256) -> np.ndarray:
    """(H, W) float32 squared error per pixel, mean over channels; in row blocks (bounded memory on huge images)."""
    out = np.empty(a.shape[:2], np.float32)
    for top in range(0, a.shape[0], rows):
        d = a[top : top + rows].astype(np.int32) - b[top : top + rows].astype(np.int32)
        out[top : top + rows] = (d * d).mean(axis=2)
    return out


def heatmap(picture: Picture, result: ImageScore) -> np.ndarray:
    """uint8 (H, 3W + 2·GAP, 3): the original | where the bits go | where the error is.

    Bits: per latent position, spread evenly over its 16×16 pixels.  Error: squared error
    per pixel, box-blurred over 9×9 pixels so that scattered error reads as a region.
    Each map is scaled to its own 99th percentile (bright: where this image's bits or
    error concentrate), in the inferno colour map (dark → bright is perceptually even).
    """
    H, W = picture.height, picture.width
    bits = np.repeat(np.repeat(result.bits, 16, axis=0), 16, axis=1)[:H, :W] / 256.0
    panels = [picture.rgb(), inferno(_normalize(bits)), inferno(_normalize(box_blur(result.error, 4)))]
    out = np.full((H, 3 * W + 2 * GAP, 3), 255, np.uint8)
    for i, panel in enumerate(panels):
        out[:, i * (W + GAP) : i * (W + GAP) + W] = panel
    return out


def inferno(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] → uint8 RGB in the inferno colour map."""
    x = np.clip(values, 0.0, 1.0) * (len(_INFERNO) - 1)
    low = np.minimum(np.floor(x).astype(np.int64), len(_INFERNO) - 2)
    t = (x - low)[..., None]
    rgb = _INFERNO[low] * (1 - t) + _INFERNO[low + 1] * t
    return np.round(rgb).astype(np.uint8)


def box_blur(a: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window (edges: the window's part inside the image), by summed-area tables."""
    padded = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    H, W = a.shape
    r0 = np.clip(np.arange(H) - radius, 0, H)
    r1 = np.clip(np.arange(H) + radius + 1, 0, H)
    c0 = np.clip(np.arange(W) - radius, 0, W)
    c1 = np.clip(np.arange(W) + radius + 1, 0, W)
    total = padded[r1][:, c1] - padded[r0][:, c1] - padded[r1][:, c0] + padded[r0][:, c0]
    return total / np.outer(r1 - r0, c1 - c0)


def _normalize(a: np.ndarray) -> np.ndarray:
    top = float(np.percentile(a, 99))
    return a / top if top > 0 and math.isfinite(top) else np.zeros_like(a)


def summary(scores: list[float]) -> tuple[float, float]:
    """Mean and median of the scores."""
    return float(np.mean(scores)), float(np.median(scores))
