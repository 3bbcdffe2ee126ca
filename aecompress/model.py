"""The autoencoder: analysis/synthesis transforms with GDN, gains per quality, presets.

The transforms follow Ballé et al. (2018, factorized prior): four 5×5 stride-2
convolutions with (simplified) GDN between them, so the latent has 1/16 of the
image's resolution.  One model serves several qualities through per-channel gain
vectors on the latent (Cui et al. 2021): ``y * gain[q]`` is rounded for coding and
``ŷ * inverse_gain[q]`` goes to the synthesis transform.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .density import FactorizedDensity, bound, gaussian_likelihood
from .entropy import LOG_SCALE_HIGH, LOG_SCALE_LOW, LOG_SCALE_MIN_Q8, LOG_SCALE_STEP_Q8, SCALES
from .layout import CONTEXT_TAPS
from .presets import Preset, channel_groups, context_width, hyper_widths

# Start of γ_raw's off-diagonal: γ = γ_raw² ≈ 1e-6, no visible change to the layer, but a
# non-zero gradient (Adam scales the step, not the gradient, so the terms learn at full speed).
GDN_CROSS_TERM_START = 1e-3


class GDN(nn.Module):
    """Simplified generalized divisive normalization (Johnston et al. 2019).

    ``x / (β + γ·|x|)`` instead of ``x / sqrt(β + γ·x²)``: same quality in the
    literature, cheaper (no square, no square root).  ``inverse=True`` multiplies
    instead, for the synthesis transform.  γ = γ_raw² keeps γ ≥ 0; its off-diagonal
    (one channel normalizing another) must not start at exactly 0, where the square
    has no gradient and the layer would stay per-channel forever.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_raw = nn.Parameter(torch.ones(channels))
        eye = torch.eye(channels)
        self.gamma_raw = nn.Parameter(math.sqrt(0.1) * eye + GDN_CROSS_TERM_START * (1 - eye))

    def free_cross_terms(self) -> int:
        """Move off-diagonal γ_raw entries that are exactly 0 (stuck) to a tiny value; count them.

        γ once started diagonal, and then its off-diagonal never moved (the square has no
        gradient at 0): such a model's GDN layers normalize each channel by itself only.
        """
        with torch.no_grad():
            off_diagonal = ~torch.eye(self.gamma_raw.shape[0], dtype=torch.bool, device=self.gamma_raw.device)
            stuck = off_diagonal & (self.gamma_raw == 0)
            self.gamma_raw[stuck] = GDN_CROSS_TERM_START
        return int(stuck.sum())

    def forward(self, x: Tensor) -> Tensor:
        beta = self.beta_raw.square() + 1e-6
        gamma = self.gamma_raw.square()[:, :, None, None]
        norm = F.conv2d(x.abs(), gamma, beta)
        return x * norm if self.inverse else x / norm


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=1, padding=1)


class HyperAnalysis(nn.Sequential):
    """Latent y (1/16) → hyper-latent z (1/64): where y's statistics change."""

    def __init__(self, M: int, N: int, Nz: int) -> None:
        super().__init__(_conv3(M, N), nn.ReLU(), _conv(N, N), nn.ReLU(), _conv(N, Nz))


class HyperSynthesis(nn.Module):
    """Quantized ẑ (1/64) → mean and log-scale of every y symbol (1/16).

    Only 3×3 convolutions, pixel shuffles and ReLUs: layers that run exactly in
    integer arithmetic at coding time (``aecompress.integer``), so the choice of
    each symbol's table never depends on the machine.  Output channels: M means,
    then M natural-log scales.
    """

    def __init__(self, Nz: int, M: int) -> None:
        super().__init__()
        self.widths = hyper_widths(M)
        h1, h2 = self.widths
        self.convs = nn.ModuleList([_conv3(Nz, 4 * h1), _conv3(h1, 4 * h2), _conv3(h2, 2 * M)])

    def forward(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        x = z_hat
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.relu(F.pixel_shuffle(x, 2))
        mean, log_scale = x.chunk(2, dim=1)
        return mean, log_scale


def anchor_mask(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """``layout.anchor_grid`` as a tensor: True at the anchors, the half of y's positions coded first."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return (rows + cols) % 2 == 0


class CheckerboardContext(nn.Module):
    """Decoded anchors and the hyperprior's estimates → corrections to the other half's mean and log-scale.

    He et al. (2021): the anchors (a checkerboard, half of y's positions) are coded with
    the hyperprior's mean and scale.  The decoder then knows them, and a masked 5×5
    convolution over them, followed by three 1×1 layers that also see the hyperprior's
    estimates, refines the mean and scale of the other half: two passes, not one per
    symbol, so decoding stays parallel.  These layers pick tables, so at coding time
    they run in exact integer arithmetic (``aecompress.integer``).  The last layer starts
    at zero: a hyperprior model given a context codes exactly as before, then learns.
    """

    def __init__(self, M: int) -> None:
        super().__init__()
        self.context = nn.Conv2d(M, M, 5, padding=2)
        mask = torch.zeros(1, 1, 5, 5)
        for dy, dx in CONTEXT_TAPS:
            mask[0, 0, dy + 2, dx + 2] = 1
        self.register_buffer("mask", mask, persistent=False)
        width = context_width(M)
        self.params = nn.ModuleList([nn.Conv2d(3 * M, width, 1), nn.Conv2d(width, width, 1), nn.Conv2d(width, 2 * M, 1)])
        nn.init.zeros_(self.params[-1].weight)
        nn.init.zeros_(self.params[-1].bias)

    def forward(self, anchors: Tensor, mean: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
        """``anchors``: ŷ with every non-anchor zeroed.  Returns Δmean and Δlog-scale (used at non-anchors)."""
        context = F.conv2d(anchors, self.context.weight * self.mask, self.context.bias, padding=2)
        x = torch.cat([mean, log_scale, context], dim=1)
        for i, conv in enumerate(self.params):
            x = conv(x)
            if i < len(self.params) - 1:
                x = F.relu(x)
        delta_mean, delta_log_scale = x.chunk(2, dim=1)
        return delta_mean, delta_log_scale


class ChannelContext(nn.Module):
    """Decoded groups of y's channels → corrections to the next group's mean and log-scale (ELIC, He et al. 2022).

    y's channels are coded in groups (``presets.channel_groups``), each group's anchors and
    then its non-anchors after the groups before it.  At each position, a small network per
    group (three 1×1 layers) sees the ŷ of every earlier group there and the group's own
    mean and table ln σ so far, and refines them.  Being 1×1, one network serves both the
    anchors' and the non-anchors' pass.  Exact integer arithmetic at coding time, like the
    checkerboard context; each network's last layer starts at zero, so a checkerboard model
    given this context codes exactly as before, then learns.
    """

    def __init__(self, M: int) -> None:
        super().__init__()
        self.groups = channel_groups(M)
        self.nets = nn.ModuleList()
        for g in range(1, len(self.groups)):
            before, width = sum(self.groups[:g]), 2 * self.groups[g]
            layers = nn.ModuleList([nn.Conv2d(before + width, width, 1), nn.Conv2d(width, width, 1), nn.Conv2d(width, width, 1)])
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
            self.nets.append(layers)

    def forward(self, group: int, before: Tensor, mean: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
        """Δmean and Δlog-scale of ``group`` (≥ 1) from ``before`` (ŷ of the groups before it) and its estimates."""
        x = torch.cat([before, mean, log_scale], dim=1)
        layers = self.nets[group - 1]
        for i, conv in enumerate(layers):
            x = conv(x)
            if i < len(layers) - 1:
                x = F.relu(x)
        delta_mean, delta_log_scale = x.chunk(2, dim=1)
        return delta_mean, delta_log_scale


def _round_ste(x: Tensor) -> Tensor:
    """Rounded values with the identity's gradient (straight-through)."""
    return x + (torch.round(x) - x).detach()


def table_log_scale(log_scale: Tensor) -> Tensor:
    """ln σ of the table entry coding picks for ``log_scale`` (straight-through gradient).

    The context sees the hyperprior's scale as coding has it, through the table index
    (``entropy.scale_index_from_q8``), and builds its non-anchor scales on top of it.
    The gradient is ``density.bound``'s: outside the table's range it only flows back
    towards it.  (A plain straight-through gradient let the non-anchors' rate push the
    hyperprior's log-scales down without limit: −450 after 3,400 steps, and the anchors,
    coded at the table's smallest σ, cost three times their bits at the lowest quality.)
    """
    bounded = bound(log_scale, LOG_SCALE_LOW, LOG_SCALE_HIGH)
    steps = ((bounded.detach() * 256 - LOG_SCALE_MIN_Q8) / LOG_SCALE_STEP_Q8).clamp(0, SCALES - 1)
    table = (LOG_SCALE_MIN_Q8 + torch.floor(steps + 0.5) * LOG_SCALE_STEP_Q8) / 256
    return bounded + (table - bounded).detach()


class AutoEncoder(nn.Module):
    """Transforms, per-quality gains and the entropy model (factorized or hyperprior).

    With a hyperprior, ``density`` is the factorized prior of z (one per quality
    and z channel), and y is coded with Gaussian conditionals whose mean and scale
    come from ``h_s(ẑ)``.
    """

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
        if self.hyperprior:
            self.h_a = HyperAnalysis(M, N, preset.Nz)
            self.h_s = HyperSynthesis(preset.Nz, M)
            self.density = FactorizedDensity(Q * preset.Nz)
            if self.checkerboard:
                self.context = CheckerboardContext(M)
            if self.preset.channel:
                self.channel_context = ChannelContext(M)
        else:
            self.density = FactorizedDensity(Q * M)

    @property
    def hyperprior(self) -> bool:
        """True for every model with a hyper-latent z (the checkerboard ones too)."""
        return self.preset.hyperprior

    @property
    def checkerboard(self) -> bool:
        return self.preset.checkerboard

    @property
    def qualities(self) -> int:
        return len(self.preset.lambdas)

    @property
    def coded_channels(self) -> int:
        """Channels coded with the factorized density: y's, or z's with a hyperprior."""
        return self.preset.coded_channels

    def channel_index(self, quality: Tensor) -> Tensor:
        """Index of each (sample, channel) into the density's Q·C channels."""
        C = self.coded_channels
        return quality[:, None] * C + torch.arange(C, device=quality.device)[None, :]

    def gains(self, index: int, t: float = 0.0) -> tuple[Tensor, Tensor]:
        """Gain and inverse gain (M,) of level ``index`` (0-based), or ``t`` of the way to the next.

        Between levels the log-gains are interpolated linearly (geometric in the gains,
        Cui et al. 2021): a continuous quality from a model trained on its levels only.
        ``t == 0`` gives exactly the level's own vectors.
        """
        if t == 0:
            return self.log_gain[index].exp(), self.log_inverse_gain[index].exp()
        log_gain = torch.lerp(self.log_gain[index], self.log_gain[index + 1], t)
        log_inverse = torch.lerp(self.log_inverse_gain[index], self.log_inverse_gain[index + 1], t)
        return log_gain.exp(), log_inverse.exp()

    def analysis(self, x: Tensor, quality: Tensor) -> Tensor:
        """Image in [0, 1] → scaled latent (before rounding)."""
        return self.g_a(x) * self.log_gain[quality].exp()[:, :, None, None]

    def synthesis(self, y_hat: Tensor, quality: Tensor) -> Tensor:
        """Quantized scaled latent → image (not clamped)."""
        return self.g_s(y_hat * self.log_inverse_gain[quality].exp()[:, :, None, None])

    def hyper_parameters(self, z_hat: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Float mean and log-scale of y from ẑ, cropped to y's size (training, estimates)."""
        mean, log_scale = self.h_s(z_hat)
        return mean[:, :, :height, :width], log_scale[:, :, :height, :width]

    def forward(self, x: Tensor, quality: Tensor) -> tuple[Tensor, Tensor]:
        """Training pass: reconstruction and bits per sample.

        Noise stands in for rounding in the rate term; the synthesis sees rounded
        values with a straight-through gradient (a better decoder than with noise).
        Under autocast (bf16) the transforms run in low precision, but the entropy
        model (hyper-networks included) always runs in float32: its likelihoods
        need the precision, and at coding time it runs in exact integers.
        """
        y = self.analysis(x, quality).float()
        low_precision = torch.is_autocast_enabled(y.device.type)
        with torch.autocast(device_type=y.device.type, enabled=False):
            if not self.hyperprior:
                noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
                likelihood = self.density.likelihood(noisy, self.channel_index(quality))
                bits = -torch.log2(likelihood).sum(dim=(1, 2, 3))
                y_hat = _round_ste(y)
            else:
                z = self.h_a(y)
                z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
                z_bits = -torch.log2(self.density.likelihood(z_noisy, self.channel_index(quality))).sum(dim=(1, 2, 3))
                z_hat = _round_ste(z)
                mean, log_scale = self.hyper_parameters(z_hat, y.shape[2], y.shape[3])
                if self.checkerboard:
                    mean, log_scale = self.with_context(y, mean, log_scale, low_precision)
                residual = y - mean
                noisy = residual + torch.empty_like(residual).uniform_(-0.5, 0.5)
                y_bits = -torch.log2(gaussian_likelihood(noisy, log_scale)).sum(dim=(1, 2, 3))
                bits = y_bits + z_bits
                y_hat = mean + _round_ste(residual)
        return self.synthesis(y_hat, quality).float(), bits

    def with_context(self, y: Tensor, mean: Tensor, log_scale: Tensor, low_precision: bool = False) -> tuple[Tensor, Tensor]:
        """Mean and log-scale of every symbol: the hyperprior's at the anchors, refined by the context elsewhere.

        The anchors' ŷ is formed as the decoder forms it, round(y − μ) + μ.  With a
        channel-wise context, each group's anchors are first refined from the groups before
        (``with_channels``), and its non-anchors again after the checkerboard context.  With
        ``low_precision`` (training under bf16 autocast) the contexts' layers run in bf16
        too; their outputs, and everything after them, are float32.
        """
        anchor = anchor_mask(y.shape[2], y.shape[3], y.device)
        if self.preset.channel:
            mean, log_scale = self.with_channels(y, mean, log_scale, anchor, low_precision)
        anchors = (mean + _round_ste(y - mean)) * anchor
        table = table_log_scale(log_scale)
        with torch.autocast(device_type=y.device.type, dtype=torch.bfloat16, enabled=low_precision):
            delta_mean, delta_log_scale = self.context(anchors, mean, table)
        mean = torch.where(anchor, mean, mean + delta_mean.float())
        log_scale = torch.where(anchor, log_scale, table + delta_log_scale.float())
        if self.preset.channel:
            mean, log_scale = self.with_channels(y, mean, log_scale, ~anchor, low_precision)
        return mean, log_scale

    def with_channels(self, y: Tensor, mean: Tensor, log_scale: Tensor, where: Tensor, low_precision: bool) -> tuple[Tensor, Tensor]:
        """One pass of the channel-wise context over the positions ``where``: group by group, each from the ŷ before it.

        The networks are 1×1, so their outputs at ``where`` depend only on the inputs there,
        where the earlier groups' ŷ is what the decoder has at that point.
        """
        means, log_scales, decoded = [], [], []
        start = 0
        for g, size in enumerate(self.channel_context.groups):
            part = slice(start, start + size)
            m, s = mean[:, part], log_scale[:, part]
            if g > 0:
                table = table_log_scale(s)
                with torch.autocast(device_type=y.device.type, dtype=torch.bfloat16, enabled=low_precision):
                    delta_mean, delta_log_scale = self.channel_context(g, torch.cat(decoded, dim=1), m, table)
                m = torch.where(where, m + delta_mean.float(), m)
                s = torch.where(where, table + delta_log_scale.float(), s)
            decoded.append(m + _round_ste(y[:, part] - m))
            means.append(m)
            log_scales.append(s)
            start += size
        return torch.cat(means, dim=1), torch.cat(log_scales, dim=1)

    def free_gdn_cross_terms(self) -> int:
        """Unstick the cross-channel terms of every GDN layer (see ``GDN.free_cross_terms``); count the layers."""
        return sum(1 for layer in self.modules() if isinstance(layer, GDN) and layer.free_cross_terms() > 0)

    def load_transforms(self, other: AutoEncoder) -> list[str]:
        """Copy every tensor whose name and shape match (fine-tuning across entropy models).

        A model with more hidden channels (larger N, same M and Nz) is grown from the
        other: see ``grown_from``.  Returns the names of the tensors taken from ``other``.
        """
        mine = self.state_dict()
        copied = {k: v for k, v in other.state_dict().items() if k in mine and mine[k].shape == v.shape}
        if self.hyperprior != other.hyperprior:
            copied = {k: v for k, v in copied.items() if not k.startswith("density.")}
        if self.can_grow_from(other):
            copied.update(self.grown_from(other))
        mine.update(copied)
        self.load_state_dict(mine)
        return sorted(copied)

    def can_grow_from(self, other: AutoEncoder) -> bool:
        """True if this model is ``other`` with more hidden channels (N), everything else alike."""
        a, b = self.preset, other.preset
        return a.N > b.N and (a.M, a.Nz, self.hyperprior) == (b.M, b.Nz, other.hyperprior)

    def grown_from(self, other: AutoEncoder) -> dict[str, Tensor]:
        """The transforms of a narrower model, in the first channels of this one's (function-preserving).

        Each layer gets the other's weights in its leading block.  Weights from a new
        channel into an old one start at zero, so the grown model computes what the
        other did (up to GDN's near-zero cross terms); weights into the new channels keep
        this model's fresh initialization, so they learn from the first step.  This tests
        capacity without throwing away hours of training.
        """
        grown: dict[str, Tensor] = {}
        theirs = dict(other.named_modules())
        for name, layer in self.named_modules():
            source = theirs.get(name)
            if not name.startswith(("g_a.", "g_s.", "h_a.")) or source is None:
                continue
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                weight = layer.weight.detach().clone()
                src = source.weight.detach()
                if isinstance(layer, nn.Conv2d):  # (out, in, k, k): old outputs ignore new inputs
                    out, cin = src.shape[:2]
                    weight[:out, :cin] = src
                    weight[:out, cin:] = 0
                else:  # ConvTranspose2d: (in, out, k, k)
                    cin, out = src.shape[:2]
                    weight[:cin, :out] = src
                    weight[cin:, :out] = 0
                bias = layer.bias.detach().clone()
                bias[:out] = source.bias.detach()
                grown[f"{name}.weight"], grown[f"{name}.bias"] = weight, bias
            elif isinstance(layer, GDN):
                n = source.beta_raw.shape[0]
                beta, gamma = layer.beta_raw.detach().clone(), layer.gamma_raw.detach().clone()
                beta[:n] = source.beta_raw.detach()
                gamma[:n, :n] = source.gamma_raw.detach()  # old by new channels: GDN_CROSS_TERM_START
                grown[f"{name}.beta_raw"], grown[f"{name}.gamma_raw"] = beta, gamma
        return grown
