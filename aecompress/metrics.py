"""Quality and size measures, with the field's conventions.

PSNR: 8-bit images, MSE over all pixels and channels of one image.  bpp: 8 × file
bytes (header included) / pixels.  Compression ratio: raw 8-bit pixel bytes / file bytes.
"""

from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of the same shape (``inf`` when identical).

    Summed in row blocks of int64, so a 50-megapixel image needs no float copy.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("empty images")
    total = 0
    rows = max(1, (1 << 22) // max(1, a[0].size))
    for start in range(0, a.shape[0], rows):
        d = a[start : start + rows].astype(np.int64) - b[start : start + rows].astype(np.int64)
        total += int(np.vdot(d.ravel(), d.ravel()))
    return math.inf if total == 0 else 10 * math.log10(255.0**2 * a.size / total)


def bpp(n_bytes: int, width: int, height: int) -> float:
    return 8.0 * n_bytes / (width * height)


def ratio(raw_bytes: int, n_bytes: int) -> float:
    return raw_bytes / n_bytes if n_bytes else math.inf


_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (Wang et al. 2003) of two uint8 (H, W, C) images, 5 scales, 11×11 Gaussian σ=1.5.

    Images too small for 5 scales use as many as fit (weights renormalized; the
    coarsest of them then measures contrast–structure only).  Separable float32
    filtering: fast enough to run on every image of an evaluation.  Uses torch (its convolutions).
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
    y = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1)[None]
    C = x.shape[1]
    coords = torch.arange(11, dtype=torch.float32) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    gh = g.view(1, 1, 1, 11).expand(C, 1, 1, 11).contiguous()
    gv = g.view(1, 1, 11, 1).expand(C, 1, 11, 1).contiguous()

    def blur(t):
        return F.conv2d(F.conv2d(t, gh, groups=C), gv, groups=C)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for level in range(5):
        if min(x.shape[2], x.shape[3]) < 11:
            break
        mu_x, mu_y = blur(x), blur(y)
        sxx = blur(x * x) - mu_x**2
        syy = blur(y * y) - mu_y**2
        sxy = blur(x * y) - mu_x * mu_y
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if level == 4:
            ssim = ((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)) * cs
            values.append(ssim.mean().clamp_min(0).item())
        else:
            values.append(cs.mean().clamp_min(0).item())
            x = F.avg_pool2d(x, 2)
            y = F.avg_pool2d(y, 2)
    if not values:
        return float(psnr(a, b) == math.inf)
    weights = np.array(_MS_WEIGHTS[: len(values)])
    weights = weights / weights.sum()
    return float(np.prod(np.array(values) ** weights))


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives of the monotone piecewise-cubic Hermite interpolant (Fritsch–Carlson)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    d = np.zeros(n)
    if n == 2:
        return np.full(2, delta[0])
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])

    def edge(h0, h1, m0, m1):
        value = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(value) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(value) > 3 * abs(m0):
            return 3 * m0
        return value

    d[0] = edge(h[0], h[1], delta[0], delta[1])
    d[-1] = edge(h[-1], h[-2], delta[-1], delta[-2])
    return d


def pchip(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Evaluate the PCHIP interpolant of (x, y) (x strictly increasing) at ``at``."""
    d = _pchip_slopes(x, y)
    k = np.clip(np.searchsorted(x, at, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    t = (at - x[k]) / h
    h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
    h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2
    return h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1]


def bd_rate(
    anchor: list[tuple[float, float]], test: list[tuple[float, float]], samples: int = 4001, min_psnr: float | None = None
) -> float:
    """Bjøntegaard delta rate (%) of ``test`` against ``anchor``: negative means fewer bits.

    Points are (bpp, PSNR).  Log-rate is interpolated over PSNR with PCHIP and
    averaged over the overlapping PSNR range, or only its part at or above
    ``min_psnr`` (the qualities people use: full-range figures reward the very low
    end, where JPEG falls apart); ``nan`` when the curves do not overlap there.
    """
    curves = []
    for points in (anchor, test):
        pts = sorted((q, math.log(r)) for r, q in points if r > 0 and math.isfinite(q))
        xs, ys = [], []
        for q, lr in pts:  # keep PSNR strictly increasing
            if not xs or q > xs[-1]:
                xs.append(q)
                ys.append(lr)
        if len(xs) < 2:
            return math.nan
        curves.append((np.array(xs), np.array(ys)))
    lo = max(curves[0][0][0], curves[1][0][0], -math.inf if min_psnr is None else min_psnr)
    hi = min(curves[0][0][-1], curves[1][0][-1])
    if hi <= lo:
        return math.nan
    grid = np.linspace(lo, hi, samples)
    mean_a, mean_t = (np.trapezoid(pchip(x, y, grid), grid) / (hi - lo) for x, y in curves)
    return float((math.exp(mean_t - mean_a) - 1) * 100)
