"""The float networks of coding behind one interface, on numpy arrays: analysis, synthesis, hyper-analysis.

``Codec`` tiles the image and calls these; how they run is the engine's business.
``TorchTransforms`` runs the model's torch networks (and, for the encoder's analysis,
bf16 autocast on request).  Their outputs are floats: the analysis's become integers
by rounding (the encoder's choice, sent in the file), the synthesis's become pixels,
which every engine reproduces to within one level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from .model import AutoEncoder


class Transforms(Protocol):
    """Float32 arrays in, float32 arrays out, batch of one."""

    def analysis(self, x: np.ndarray) -> np.ndarray:
        """Image (1, 3, H, W) in [0, 1] → latent (1, M, H/16, W/16), before any gain."""

    def synthesis(self, y: np.ndarray) -> np.ndarray:
        """Latent ŷ · inverse gain (1, M, h, w) → image (1, 3, 16h, 16w), not yet clamped."""

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        """Gained latent (1, M, h, w) → hyper-latent z (1, Nz, h/4, w/4), before rounding."""

    def release(self) -> None:
        """Return memory kept for the next run to the system (after the last tile of a large image)."""


class TorchTransforms:
    """The model's torch networks; ``precision`` "bf16" runs the analysis under bf16 autocast (the encoder's choice)."""

    def __init__(self, net: AutoEncoder, precision: str = "fp32") -> None:
        import torch

        self.torch = torch
        self.net = net.eval().to(memory_format=torch.channels_last)
        self.precision = precision

    def _run(self, module, x: np.ndarray, low_precision: bool = False) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=low_precision):
            out = module(torch.from_numpy(np.ascontiguousarray(x)).contiguous(memory_format=torch.channels_last))
        return out.float().numpy()

    def analysis(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.net.g_a, x, self.precision == "bf16")

    def synthesis(self, y: np.ndarray) -> np.ndarray:
        return self._run(self.net.g_s, y)

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            return self.net.h_a(torch.from_numpy(np.ascontiguousarray(y))).numpy()

    def release(self) -> None:
        """Nothing to do: torch's CPU allocator returns large blocks when they are freed."""
