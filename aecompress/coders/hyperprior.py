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

from ..entropy import FormatError, StreamDecoder, StreamEncoder, TableModels, Tables, index_groups, scale_table
from ..integer import IntegerHyperSynthesis
from ..presets import Preset, integer_shapes
from .base import HyperAnalysis, LatentCoder

if TYPE_CHECKING:
    from ..model import AutoEncoder
    from ..modelfile import LoadedModel

LATENT_LIMIT = 2**30  # |ẑ| and |y| beyond this: a broken model (the coder's integers would overflow)


@dataclass
class HyperLatents:
    """What a hyperprior codes: ẑ, and y as residuals with each symbol's mean and table."""

    z: np.ndarray  # float32 (1, Nz, hz, wz), rounded
    z_symbols: np.ndarray  # int32 (Nz, hz, wz): the same, as coded
    residual: np.ndarray  # float32 (M, h, w): round(y − μ), in y's memory
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
    def model_tensors(cls, net: AutoEncoder) -> dict:
        from ..density import build_gaussian_tables

        return {**build_gaussian_tables().tensors("gaussian"), **IntegerHyperSynthesis.from_float(net.h_s).tensors()}

    @classmethod
    def restore(cls, tensors: dict, preset: Preset) -> dict[str, Any]:
        gaussian = Tables.from_tensors(tensors, "gaussian")
        hyper = IntegerHyperSynthesis.from_tensors(tensors)
        if [w.shape for w in hyper.weights] != integer_shapes(preset)["hyper"]:
            raise FormatError("integer hyper-synthesis does not match the architecture")
        return {"gaussian": gaussian, "hyper": hyper}

    @classmethod
    def apply_parts(cls, parts: dict[str, Any], net: AutoEncoder) -> None:
        parts["hyper"].to_float(net.h_s)

    def hyper_latent(self, y: np.ndarray, hyper_analysis: HyperAnalysis) -> np.ndarray:
        """ẑ = round(h_a(y)) (1, Nz, hz, wz): what ``quantize`` codes unless given another."""
        return np.round(self._hyper_analysis(y, hyper_analysis))

    def quantize(self, y: np.ndarray, level: int, z_hat: np.ndarray | None = None) -> HyperLatents:
        if z_hat is None:
            raise ValueError("a hyperprior codes y with its ẑ: give z_hat (hyper_latent)")
        if not np.isfinite(z_hat).all() or float(np.abs(z_hat).max(initial=0)) >= LATENT_LIMIT:
            raise ValueError("the model produced latents out of range (a broken model?)")
        z = np.asarray(z_hat, np.float32)
        z_symbols = z[0].astype(np.int32)
        mean, index = self.hyper(z_symbols, y.shape[2], y.shape[3])
        residual = np.subtract(y[0], mean, out=y[0])
        residual = self._quantize_residuals(residual, mean, index)
        return HyperLatents(z, z_symbols, residual, mean, index)

    def encode(self, stream: StreamEncoder, latents: HyperLatents, level: int) -> None:
        self.symbol_coder(level).encode_into(stream, latents.z_symbols)
        self._encode_residuals(stream, latents.residual.astype(np.int32), latents.index)

    def estimate_bits(self, latents: HyperLatents, level: int) -> float:
        """ẑ's and y's residuals' bits (continuous densities, the tables' scales)."""
        z_bits, y_bits = self._element_bits(latents, level)
        return float(z_bits.sum() + y_bits.sum())

    def bit_map(self, latents: HyperLatents, level: int) -> np.ndarray:
        z_bits, y_bits = self._element_bits(latents, level)
        h, w = latents.residual.shape[1:]
        return y_bits.sum(0) + _spread(z_bits[0].sum(0), h, w)

    def dequantize(self, latents: HyperLatents) -> np.ndarray:
        """ŷ = round(y − μ) + μ, exactly as the decoder forms it (in the residuals' memory)."""
        return np.add(latents.residual, latents.mean, out=latents.residual)[None]

    def decode(self, stream: StreamDecoder, level: int, h: int, w: int, keep: dict[str, np.ndarray]) -> np.ndarray:
        """``keep`` receives ``z``, ``index`` and ``residual``."""
        keep["z"] = self.symbol_coder(level).decode_from(stream, (self.preset.Nz, -(-h // 4), -(-w // 4)))
        mean, index = self.hyper(keep["z"], h, w)
        residual = self._decode_residuals(stream, mean, index)
        keep["index"], keep["residual"] = index, residual
        y = residual.astype(np.float32)
        return np.add(y, mean, out=y)[None]

    def _quantize_residuals(self, residual: np.ndarray, mean: np.ndarray, index: np.ndarray) -> np.ndarray:
        """y − μ (M, h, w) → round(y − μ), in place; a context may move ``mean`` and ``index`` (in place) first."""
        return np.round(residual, out=residual)

    def _encode_residuals(self, stream: StreamEncoder, values: np.ndarray, index: np.ndarray) -> None:
        """y's residuals (int32), grouped by table."""
        stream.encode(values, index_groups(index), self.gaussian)

    def _decode_residuals(self, stream: StreamDecoder, mean: np.ndarray, index: np.ndarray) -> np.ndarray:
        """y's residuals (int32, M × h × w); a context may move ``mean`` and ``index`` (in place)."""
        return stream.decode(index.size, index_groups(index), self.gaussian).reshape(index.shape)

    def _element_bits(self, latents: HyperLatents, level: int) -> tuple[np.ndarray, np.ndarray]:
        """−log₂ p of every symbol (float64): ẑ's (1, Nz, hz, wz) and y's residuals' (M, h, w)."""
        import torch

        from ..density import gaussian_likelihood

        z_bits = self.factorized_bits(latents.z, level)
        log_scale = torch.from_numpy(np.log(scale_table())[latents.index]).float()
        with torch.no_grad():
            p = gaussian_likelihood(torch.from_numpy(latents.residual), log_scale)
        return z_bits, -np.log2(p.double().numpy())

    def _hyper_analysis(self, y: np.ndarray, hyper_analysis: HyperAnalysis, band: int = 64, halo: int = 16) -> np.ndarray:
        """h_a over bands of ``band`` z rows with ``halo`` y rows of context (receptive field: 13).

        Bounded memory on huge images; the band size is fixed, so the result depends only on
        the image (an encoder's choice in any case: ẑ is sent).
        """
        h = y.shape[2]
        hz = -(-h // 4)
        if hz <= band:
            return hyper_analysis(y)
        parts = []
        for top in range(0, hz, band):
            lo = max(0, 4 * top - halo)
            hi = min(h, 4 * (top + band) + halo)
            z = hyper_analysis(y[:, :, lo:hi])
            first = top - lo // 4
            parts.append(z[:, :, first : first + min(band, hz - top)])
        return np.concatenate(parts, axis=2)


def _spread(z_bits: np.ndarray, h: int, w: int) -> np.ndarray:
    """ẑ's bits per position (hz, wz) shared out over the (up to 4×4) y positions each predicts; the total is kept."""
    hz, wz = z_bits.shape
    rows = np.minimum(4, h - 4 * np.arange(hz))
    cols = np.minimum(4, w - 4 * np.arange(wz))
    share = z_bits / np.outer(rows, cols)
    return np.repeat(np.repeat(share, 4, axis=0), 4, axis=1)[:h, :w]
