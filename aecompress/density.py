"""The continuous densities that training uses, and their rounding into integer tables.

``FactorizedDensity`` (learned, per channel) and ``gaussian_likelihood`` (the
hyperprior's conditionals) give the rate term of the loss; ``build_tables`` and
``build_gaussian_tables`` turn them, once, when a model file is written, into the
integer ``entropy.Tables`` that coding uses.  Coding itself never needs this module.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .entropy import (
    GAUSSIAN_TAIL,
    LIKELIHOOD_BOUND,
    LOG_SCALE_HIGH,
    LOG_SCALE_LOW,
    MAX_SUPPORT,
    SCALES,
    TAIL_MASS,
    Tables,
    quantize_pmf,
    scale_table,
)


class FactorizedDensity(nn.Module):
    """One learned, non-parametric density per channel (Ballé et al. 2018, app. 6.1).

    A monotone chain of small per-channel layers models the cumulative
    distribution; its difference at ±½ gives the likelihood of a unit bin.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, x: Tensor, index: Tensor) -> Tensor:
        """Logit of the CDF at ``x`` (B, M, 1, S) for channels ``index`` (B, M)."""
        logits = x
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            logits = F.softplus(matrix[index]) @ logits + bias[index]
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i][index]) * torch.tanh(logits)
        return logits

    def likelihood(self, y: Tensor, index: Tensor) -> Tensor:
        """Probability mass of the unit bin around each value of ``y`` (B, M, H, W)."""
        B, M, H, W = y.shape
        x = y.reshape(B, M, 1, H * W)
        lower = self.logits_cdf(x - 0.5, index)
        upper = self.logits_cdf(x + 0.5, index)
        # Work in the tail that keeps precision: 1 - σ(t) = σ(-t).
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.clamp_min(LIKELIHOOD_BOUND).reshape(B, M, H, W)


@torch.no_grad()
def build_tables(density: FactorizedDensity, max_range: int = 4096) -> Tables:
    """Turn every channel's density into an integer table (float64, done once)."""
    density = _to_double(density)
    C = density.matrices[0].shape[0]
    edges = torch.arange(-max_range, max_range + 2, dtype=torch.float64) - 0.5  # k - ½ for k in [-R, R+1]
    x = edges.expand(1, C, 1, -1).contiguous()
    cdf = torch.sigmoid(density.logits_cdf(x, torch.arange(C)[None])).reshape(C, -1).numpy()
    cdf = np.maximum.accumulate(cdf, axis=1)  # guard monotonicity against rounding
    freqs, offsets, lengths = [], np.zeros(C, np.int32), np.zeros(C, np.int32)
    for c in range(C):
        lo = int(np.searchsorted(cdf[c], TAIL_MASS, side="right")) - 1  # first k with cdf(k+½) > tail
        hi = int(np.searchsorted(cdf[c], 1 - TAIL_MASS, side="left")) - 1  # last k with cdf(k-½) < 1-tail
        lo = max(lo, 0)
        hi = min(max(hi, lo), cdf.shape[1] - 2)
        if hi - lo + 1 > MAX_SUPPORT:  # keep the most probable window
            centre = int(np.argmax(np.diff(cdf[c])))
            lo = max(0, min(centre - MAX_SUPPORT // 2, cdf.shape[1] - 1 - MAX_SUPPORT))
            hi = lo + MAX_SUPPORT - 1
        pmf = np.diff(cdf[c, lo : hi + 2])
        escape = max(cdf[c, lo] + 1.0 - cdf[c, hi + 1], 0.0)
        freqs.append(quantize_pmf(np.append(pmf, escape)))
        offsets[c] = lo - max_range
        lengths[c] = hi - lo + 1
    table = np.zeros((C, int(lengths.max()) + 1), np.int32)
    for c, f in enumerate(freqs):
        table[c, : len(f)] = f
    return Tables(table, offsets, lengths)


def _to_double(density: FactorizedDensity) -> FactorizedDensity:
    copy = FactorizedDensity.__new__(FactorizedDensity)
    nn.Module.__init__(copy)
    copy.matrices = nn.ParameterList([nn.Parameter(p.detach().double()) for p in density.matrices])
    copy.biases = nn.ParameterList([nn.Parameter(p.detach().double()) for p in density.biases])
    copy.factors = nn.ParameterList([nn.Parameter(p.detach().double()) for p in density.factors])
    return copy


class _Bound(torch.autograd.Function):
    """Clamp whose gradient passes only where it moves the value back inside the bounds.

    A plain straight-through clamp lets the many symbols that would like an ever smaller
    σ push the raw log-scale without limit below the table's smallest σ (measured: to
    −160 in 5,000 steps), where no gradient brings it back when a larger σ is needed;
    a hard clamp kills the gradient.  This is CompressAI's ``LowerBound`` idea, both ends.
    """

    @staticmethod
    def forward(ctx, x: Tensor, low: float, high: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.low, ctx.high = low, high
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        passes = ((x >= ctx.low) | (grad < 0)) & ((x <= ctx.high) | (grad > 0))
        return grad * passes, None, None


def bound(x: Tensor, low: float, high: float) -> Tensor:
    return _Bound.apply(x, low, high)


def gaussian_likelihood(residual: Tensor, log_scale: Tensor) -> Tensor:
    """Mass of the unit bin around ``residual`` under N(0, σ²), σ = exp(log_scale).

    The log-scale is bounded to the table's range (``bound``): training sees the σ
    that coding will use, and the raw value cannot drift out of reach.
    """
    log_scale = bound(log_scale, LOG_SCALE_LOW, LOG_SCALE_HIGH)
    inv = torch.exp(-log_scale) * (1 / math.sqrt(2))
    r = residual.abs()
    upper = torch.erfc((r - 0.5) * inv)  # 2·(1 − Φ((r − ½)/σ))
    lower = torch.erfc((r + 0.5) * inv)
    return (0.5 * (upper - lower)).clamp_min(LIKELIHOOD_BOUND)


def build_gaussian_tables() -> Tables:
    """One integer table per σ of ``scale_table()`` for round(y − μ) (float64, done once per model file)."""
    C = SCALES
    freqs, offsets, lengths = [], np.zeros(C, np.int32), np.zeros(C, np.int32)
    for i, sigma in enumerate(scale_table()):
        R = int(math.ceil(GAUSSIAN_TAIL * sigma + 0.5))
        k = torch.arange(-R, R + 2, dtype=torch.float64) - 0.5
        cdf = (0.5 * torch.erfc(-k / (sigma * math.sqrt(2)))).numpy()
        pmf = np.diff(cdf)
        escape = max(cdf[0] + 1.0 - cdf[-1], 0.0)
        freqs.append(quantize_pmf(np.append(pmf, escape)))
        offsets[i], lengths[i] = -R, 2 * R + 1
    table = np.zeros((C, int(lengths.max()) + 1), np.int32)
    for c, f in enumerate(freqs):
        table[c, : len(f)] = f
    return Tables(table, offsets, lengths)
