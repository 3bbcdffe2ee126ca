"""The factorized prior (Ballé et al. 2018): every channel of y has one fixed table per level."""

from __future__ import annotations

import numpy as np

from ..entropy import StreamDecoder, StreamEncoder
from ..presets import Preset
from .base import LatentCoder


class FactorizedCoder(LatentCoder[np.ndarray]):
    """ŷ = round(y), coded channel by channel with the level's tables (so no qualities between levels)."""

    entropy = "factorized"
    format_version = 1

    @classmethod
    def describe(cls, preset: Preset) -> str:
        return "factorized prior"

    def quantize(self, y: np.ndarray, level: int, z_hat: np.ndarray | None = None) -> np.ndarray:
        return np.round(y, out=y)

    def encode(self, stream: StreamEncoder, latents: np.ndarray, level: int) -> None:
        self.symbol_coder(level).encode_into(stream, latents[0].astype(np.int32))

    def estimate_bits(self, latents: np.ndarray, level: int) -> float:
        return float(self.factorized_bits(latents, level).sum())

    def bit_map(self, latents: np.ndarray, level: int) -> np.ndarray:
        return self.factorized_bits(latents, level)[0].sum(0)

    def dequantize(self, latents: np.ndarray) -> np.ndarray:
        return latents

    def decode(self, stream: StreamDecoder, level: int, h: int, w: int, keep: dict[str, np.ndarray]) -> np.ndarray:
        """``keep`` receives ``y``."""
        keep["y"] = self.symbol_coder(level).decode_from(stream, (self.preset.M, h, w))
        return keep["y"].astype(np.float32)[None]
