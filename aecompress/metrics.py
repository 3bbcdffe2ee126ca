"""Quality and size measures, with the field's conventions.

PSNR: 8-bit images, MSE over all pixels and channels of one image.  bpp: 8 × file
bytes (header included) / pixels.  Compression ratio: raw 8-bit pixel bytes / file bytes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of the same shape (``inf`` when identical)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def bpp(n_bytes: int, width: int, height: int) -> float:
    return 8.0 * n_bytes / (width * height)


def ratio(raw_bytes: int, n_bytes: int) -> float:
    return raw_bytes / n_bytes if n_bytes else math.inf


_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (Wang et al. 2003) of two uint8 (H, W, C) images, 5 scales, 11×11 Gaussian σ=1.5.

    Images too small for 5 scales use as many as fit (weights renormalized; the
    coarsest of them then measures contrast–structure only).
    """
    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[None]
    y = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1)[None]
    C = x.shape[1]
    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(C, 1, 11, 11).contiguous()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    levels = 0
    for level in range(5):
        if min(x.shape[2], x.shape[3]) < 11:
            break
        levels += 1
        mu_x = F.conv2d(x, window, groups=C)
        mu_y = F.conv2d(y, window, groups=C)
        sxx = F.conv2d(x * x, window, groups=C) - mu_x**2
        syy = F.conv2d(y * y, window, groups=C) - mu_y**2
        sxy = F.conv2d(x * y, window, groups=C) - mu_x * mu_y
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
    weights = np.array(_MS_WEIGHTS[:levels])
    weights = weights / weights.sum()
    return float(np.prod(np.array(values) ** weights))
