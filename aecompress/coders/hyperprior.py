"""The mean-scale hyperprior (Minnen et al. 2018): ẑ with the factorized tables, then y by Gaussian tables.

ẑ = round(h_a(y)) is sent first; the integer hyper-synthesis (``aecompress.integer``)
turns it into each y symbol's mean and table, identically on every machine, and y is
sent as residuals round(y − μ).  The tables do not depend on the gains, so a quality
between two levels codes with the lower level's ẑ tables and an interpolated gain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..density import build_gaussian_tables, gaussian_likelihood
from ..entropy import (
    FormatError,
    StreamDecoder,
    StreamEncoder,
    TableModels,
    Tables,
    index_groups,
    scale_table,
)
from ..integer import IntegerHyperSynthesis
from ..model import AutoEncoder, Preset
from .base import LatentCoder

if TYPE_CHECKING:
    from ..modelfile import LoadedModel


@dataclass
class HyperLatents:
    """What a hyperprior codes: ẑ, and y as residuals with each symbol's mean and table."""

    z: torch.Tensor  # (1, Nz, hz, wz) float, rounded
    z_symbols: np.ndarray  # int32 (Nz, hz, wz): the same, as coded
    residual: torch.Tensor  # (M, h, w) float: round(y − μ), in y's memory
    mean: np.ndarray  # float32 (M, h, w)
    index: np.ndarray  # uint8 (M, h, w): the table of each symbol


class HyperpriorCoder(LatentCoder[HyperLatents]):
    """ẑ, then every y symbol with the Gaussian table the integer hyper-synthesis picks for it."""

    entropy = "hyperprior"
    format_version = 2
    fractional = True
    integer_modules = ("h_s.",)  # h_s is stored once, as the integers that coding uses
    tensor_prefixes = ("gaussian.", "hyper_int.")

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(model)
        self.gaussian = TableModels(model.parts["gaussian"])
        self.hyper: IntegerHyperSynthesis = model.parts["hyper"]

    @classmethod
    def describe(cls, preset: Preset) -> str:
        return f"mean-scale hyperprior (Nz={preset.Nz})"

    @classmethod
    def model_tensors(cls, net: AutoEncoder) -> dict[str, torch.Tensor]:
        return {**build_gaussian_tables().tensors("gaussian"), **IntegerHyperSynthesis.from_float(net.h_s).tensors()}

    @classmethod
    def restore(cls, tensors: dict[str, torch.Tensor], net: AutoEncoder) -> dict[str, Any]:
        gaussian = Tables.from_tensors(tensors, "gaussian")
        hyper = IntegerHyperSynthesis.from_tensors(tensors)
        expected = [tuple(c.weight.shape) for c in net.h_s.convs]
        if [w.shape for w in hyper.weights] != expected:
            raise FormatError("integer hyper-synthesis does not match the architecture")
        hyper.to_float(net.h_s)
        return {"gaussian": gaussian, "hyper": hyper}

    def hyper_latent(self, y: torch.Tensor) -> torch.Tensor:
        """ẑ = round(h_a(y)) (1, Nz, hz, wz): what ``quantize`` codes unless given another."""
        return torch.round(self._hyper_analysis(y))

    def quantize(self, y: torch.Tensor, level: int, z_hat: torch.Tensor | None = None) -> HyperLatents:
        z = self.hyper_latent(y) if z_hat is None else z_hat
        if not bool(torch.isfinite(z).all()) or float(z.abs().max()) >= 2**30:
            raise ValueError("the model produced latents out of range (a broken model?)")
        z_symbols = z[0].to(torch.int32).numpy()
        mean, index = self.hyper(z_symbols, y.shape[2], y.shape[3])
        residual = self._quantize_residuals(y[0].sub_(torch.from_numpy(mean)), mean, index)
        return HyperLatents(z, z_symbols, residual, mean, index)

    def encode(self, stream: StreamEncoder, latents: HyperLatents, level: int) -> None:
        self.symbol_coder(level).encode_into(stream, latents.z_symbols)
        self._encode_residuals(stream, latents.residual.to(torch.int32).numpy(), latents.index)

    def estimate_bits(self, latents: HyperLatents, level: int) -> float:
        """ẑ's and y's residuals' bits (continuous densities, the tables' scales)."""
        z_bits, y_bits = self._element_bits(latents, level)
        return float(z_bits.sum() + y_bits.sum())

    def bit_map(self, latents: HyperLatents, level: int) -> np.ndarray:
        z_bits, y_bits = self._element_bits(latents, level)
        h, w = latents.residual.shape[1:]
        return y_bits.double().sum(0).numpy() + _spread(z_bits[0].double().sum(0).numpy(), h, w)

    def dequantize(self, latents: HyperLatents) -> torch.Tensor:
        """ŷ = round(y − μ) + μ, exactly as the decoder forms it (in the residuals' memory)."""
        return latents.residual.add_(torch.from_numpy(latents.mean))[None]

    def decode(self, stream: StreamDecoder, level: int, h: int, w: int, keep: dict[str, np.ndarray]) -> torch.Tensor:
        """``keep`` receives ``z``, ``index`` and ``residual``."""
        keep["z"] = self.symbol_coder(level).decode_from(stream, (self.net.preset.Nz, -(-h // 4), -(-w // 4)))
        mean, index = self.hyper(keep["z"], h, w)
        residual = self._decode_residuals(stream, mean, index)
        keep["index"], keep["residual"] = index, residual
        return torch.from_numpy(residual).float().add_(torch.from_numpy(mean))[None]

    def _quantize_residuals(self, residual: torch.Tensor, mean: np.ndarray, index: np.ndarray) -> torch.Tensor:
        """y − μ (M, h, w) → round(y − μ), in place; a context may move ``mean`` and ``index`` (in place) first."""
        return residual.round_()

    def _encode_residuals(self, stream: StreamEncoder, values: np.ndarray, index: np.ndarray) -> None:
        """y's residuals (int32), grouped by table."""
        stream.encode(values, index_groups(index), self.gaussian)

    def _decode_residuals(self, stream: StreamDecoder, mean: np.ndarray, index: np.ndarray) -> np.ndarray:
        """y's residuals (int32, M × h × w); a context may move ``mean`` and ``index`` (in place)."""
        return stream.decode(index.size, index_groups(index), self.gaussian).reshape(index.shape)

    def _element_bits(self, latents: HyperLatents, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """−log₂ p of every symbol: ẑ's (1, Nz, hz, wz) and y's residuals' (M, h, w)."""
        z_bits = self.factorized_bits(latents.z, level)
        log_scale = torch.from_numpy(np.log(scale_table())[latents.index]).float()
        y_bits = -torch.log2(gaussian_likelihood(latents.residual, log_scale))
        return z_bits, y_bits

    def _hyper_analysis(self, y: torch.Tensor, band: int = 64, halo: int = 16) -> torch.Tensor:
        """h_a over bands of ``band`` z rows with ``halo`` y rows of context (receptive field: 13).

        Bounded memory on huge images; the band size is fixed, so the result depends only on
        the image (an encoder's choice in any case: ẑ is sent).
        """
        h = y.shape[2]
        hz = -(-h // 4)
        if hz <= band:
            return self.net.h_a(y)
        parts = []
        for top in range(0, hz, band):
            lo = max(0, 4 * top - halo)
            hi = min(h, 4 * (top + band) + halo)
            z = self.net.h_a(y[:, :, lo:hi])
            first = top - lo // 4
            parts.append(z[:, :, first : first + min(band, hz - top)])
        return torch.cat(parts, dim=2)


def _spread(z_bits: np.ndarray, h: int, w: int) -> np.ndarray:
    """ẑ's bits per position (hz, wz) shared out over the (up to 4×4) y positions each predicts; the total is kept."""
    hz, wz = z_bits.shape
    rows = np.minimum(4, h - 4 * np.arange(hz))
    cols = np.minimum(4, w - 4 * np.arange(wz))
    share = z_bits / np.outer(rows, cols)
    return np.repeat(np.repeat(share, 4, axis=0), 4, axis=1)[:h, :w]
