"""The autoencoder: analysis/synthesis transforms with GDN, gains per quality, presets.

The transforms follow Ballé et al. (2018, factorized prior): four 5×5 stride-2
convolutions with (simplified) GDN between them, so the latent has 1/16 of the
image's resolution.  One model serves several qualities through per-channel gain
vectors on the latent (Cui et al. 2021): ``y * gain[q]`` is rounded for coding and
``ŷ * inverse_gain[q]`` goes to the synthesis transform.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .entropy import FactorizedDensity

DOWNSAMPLING = 16  # four stride-2 layers


@dataclass(frozen=True)
class Preset:
    """Architecture hyper-parameters; stored in every model file."""

    N: int  # channels of the hidden layers
    M: int  # channels of the latent
    lambdas: tuple[float, ...]  # rate-distortion trade-off of each quality level
    name: str = "custom"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        return d

    @staticmethod
    def from_dict(d: dict) -> Preset:
        return Preset(N=int(d["N"]), M=int(d["M"]), lambdas=tuple(float(x) for x in d["lambdas"]), name=str(d.get("name", "custom")))


def lambda_ladder(low: float, high: float, levels: int) -> tuple[float, ...]:
    """Geometric ladder of λ values from ``low`` to ``high`` (one per quality level)."""
    if levels == 1:
        return (float(high),)
    ratio = (high / low) ** (1 / (levels - 1))
    return tuple(round(low * ratio**i, 6) for i in range(levels))


# λ ladder of the field (CompressAI's qualities 1–8 span 0.0018–0.0932).
DEFAULT_LAMBDAS = lambda_ladder(0.0018, 0.0932, 8)

PRESETS: dict[str, Preset] = {
    # Tests and demos: trains in seconds on a CPU.
    "tiny": Preset(N=16, M=32, lambdas=lambda_ladder(0.0035, 0.05, 4), name="tiny"),
    # The shipped default: sized for training on a 2-core CPU.
    "small": Preset(N=64, M=160, lambdas=DEFAULT_LAMBDAS, name="small"),
    # Ballé 2018's size, for GPUs.
    "base": Preset(N=128, M=192, lambdas=DEFAULT_LAMBDAS, name="base"),
}


class GDN(nn.Module):
    """Simplified generalized divisive normalization (Johnston et al. 2019).

    ``x / (β + γ·|x|)`` instead of ``x / sqrt(β + γ·x²)``: same quality in the
    literature, cheaper (no square, no square root).  ``inverse=True`` multiplies
    instead, for the synthesis transform.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_raw = nn.Parameter(torch.ones(channels))
        self.gamma_raw = nn.Parameter(math.sqrt(0.1) * torch.eye(channels))

    def forward(self, x: Tensor) -> Tensor:
        beta = self.beta_raw.square() + 1e-6
        gamma = self.gamma_raw.square()[:, :, None, None]
        norm = F.conv2d(x.abs(), gamma, beta)
        return x * norm if self.inverse else x / norm


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class AutoEncoder(nn.Module):
    """Transforms, per-quality gains and the factorized entropy model."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset
        N, M, Q = preset.N, preset.M, len(preset.lambdas)
        self.g_a = nn.Sequential(_conv(3, N), GDN(N), _conv(N, N), GDN(N), _conv(N, N), GDN(N), _conv(N, M))
        self.g_s = nn.Sequential(
            _deconv(M, N),
            GDN(N, inverse=True),
            _deconv(N, N),
            GDN(N, inverse=True),
            _deconv(N, N),
            GDN(N, inverse=True),
            _deconv(N, 3),
        )
        # Step size ∝ 1/sqrt(λ) at the rate–distortion optimum: start the gains there.
        lam = torch.tensor(preset.lambdas)
        log_gain = 0.5 * torch.log(lam / lam[len(lam) // 2])
        self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, M).contiguous())
        self.log_inverse_gain = nn.Parameter(-log_gain[:, None].repeat(1, M).contiguous())
        self.density = FactorizedDensity(Q * M)

    @property
    def qualities(self) -> int:
        return len(self.preset.lambdas)

    def channel_index(self, quality: Tensor) -> Tensor:
        """Index of each (sample, channel) into the density's Q·M channels."""
        M = self.preset.M
        return quality[:, None] * M + torch.arange(M, device=quality.device)[None, :]

    def analysis(self, x: Tensor, quality: Tensor) -> Tensor:
        """Image in [0, 1] → scaled latent (before rounding)."""
        return self.g_a(x) * self.log_gain[quality].exp()[:, :, None, None]

    def synthesis(self, y_hat: Tensor, quality: Tensor) -> Tensor:
        """Quantized scaled latent → image (not clamped)."""
        return self.g_s(y_hat * self.log_inverse_gain[quality].exp()[:, :, None, None])

    def forward(self, x: Tensor, quality: Tensor) -> tuple[Tensor, Tensor]:
        """Training pass: reconstruction and bits per sample.

        Noise stands in for rounding in the rate term; the synthesis sees rounded
        values with a straight-through gradient (a better decoder than with noise).
        Under autocast (bf16 on GPUs) the transforms run in low precision, but the
        entropy model always runs in float32: its likelihoods need the precision.
        """
        y = self.analysis(x, quality).float()
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        with torch.autocast(device_type=y.device.type, enabled=False):
            likelihood = self.density.likelihood(noisy, self.channel_index(quality))
        bits = -torch.log2(likelihood).sum(dim=(1, 2, 3))
        y_hat = y + (torch.round(y) - y).detach()
        return self.synthesis(y_hat, quality).float(), bits
