"""The factorized prior (Ballé et al. 2018): every channel of y has one fixed table per level."""

from __future__ import annotations

import numpy as np
import torch

from ..entropy import StreamDecoder, StreamEncoder
from ..model import Preset
from .base import LatentCoder


class FactorizedCoder(LatentCoder[torch.Tensor]):
    """ŷ = round(y), coded channel by channel with the level's tables (so no qualities between levels)."""

    entropy = "factorized"
    format_version = 1

    @classmethod
    def describe(cls, preset: Preset) -> str:
        return "factorized prior"

    def quantize(self, y: torch.Tensor, level: int, z_hat: torch.Tensor | None = None) -> torch.Tensor:
        return torch.round(y)

    def encode(self, stream: StreamEncoder, latents: torch.Tensor, level: int) -> None:
        self.symbol_coder(level).encode_into(stream, latents[0].to(torch.int32).numpy())

    def estimate_bits(self, latents: torch.Tensor, level: int) -> float:
        return float(self.factorized_bits(latents, level).sum())

    def bit_map(self, latents: torch.Tensor, level: int) -> np.ndarray:
        return self.factorized_bits(latents, level)[0].double().sum(0).numpy()

    def dequantize(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def decode(self, stream: StreamDecoder, level: int, h: int, w: int, keep: dict[str, np.ndarray]) -> torch.Tensor:
        """``keep`` receives ``y``."""
        keep["y"] = self.symbol_coder(level).decode_from(stream, (self.net.preset.M, h, w))
        return torch.from_numpy(keep["y"]).float()[None]
