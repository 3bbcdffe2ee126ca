"""What every latent coder does: the one place that knows an entropy model's kind.

A ``Codec`` runs the transforms, the gains and the container; in between, the latents
of one quality become a payload section and back, and how depends on the entropy
model (a factorized prior, a hyperprior, a context).  Each kind is one ``LatentCoder``
subclass, registered by its ``Preset.entropy`` name in ``aecompress.coders``.  A model
file asks the same class which tensors it stores beyond the float weights and the
factorized tables (which every kind has), and how to rebuild its parts from them.

Coding runs on numpy arrays and integers only, without torch: a file decodes, and an
image's latent is coded, with the torch networks never loaded.  Only the model's own
bit estimates (``estimate_bits``, ``bit_map``: continuous densities, as trained) and
the writing of model files use torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np

from ..entropy import StreamDecoder, StreamEncoder, SymbolCoder

if TYPE_CHECKING:
    from ..model import AutoEncoder
    from ..modelfile import LoadedModel
    from ..presets import Preset

Latents = TypeVar("Latents")  # what ``quantize`` hands the other steps: the symbols to code and what forms ŷ
HyperAnalysis = Callable[[np.ndarray], np.ndarray]  # y (1, M, h, w) → z (1, Nz, h/4, w/4), float32


class LatentCoder(ABC, Generic[Latents]):
    """One entropy model's coding of the latents; built once per ``Codec`` from a loaded model.

    The encoder calls ``hyper_latent`` (its side information, if any), ``quantize``, then
    ``encode`` (and ``estimate_bits`` or ``bit_map``), then ``dequantize``; the decoder
    calls ``decode``, which must return the same ŷ.  Latents are float32 numpy arrays.
    """

    entropy: ClassVar[str]  # the ``Preset.entropy`` this class codes
    format_version: ClassVar[int]  # of its model files and ``.aec`` files: the oldest that can hold it (older releases read it)
    fractional: ClassVar[bool] = False  # qualities between levels: only if its tables do not depend on the gains
    integer_modules: ClassVar[tuple[str, ...]] = ()  # state-dict prefixes stored as integers instead of floats
    tensor_prefixes: ClassVar[tuple[str, ...]] = ()  # names of the tensors ``model_tensors`` adds

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.preset: Preset = model.preset
        self._symbol_coders: dict[int, SymbolCoder] = {}

    @classmethod
    @abstractmethod
    def describe(cls, preset: Preset) -> str:
        """The entropy model in words, for ``info`` and error messages ("factorized prior")."""

    @classmethod
    def model_tensors(cls, net: AutoEncoder) -> dict:
        """Tensors a model file holds for this coder (coding must not depend on float arithmetic)."""
        return {}

    @classmethod
    def restore(cls, tensors: dict, preset: Preset) -> dict[str, Any]:
        """Read and check ``model_tensors``' output (numpy arrays) against the architecture; return the parts.

        The parts become ``LoadedModel.parts``.  Any inconsistency raises (``FormatError``, ``KeyError``).
        """
        return {}

    @classmethod
    def apply_parts(cls, parts: dict[str, Any], net: AutoEncoder) -> None:
        """Set ``net``'s ``integer_modules`` (the float networks training uses) from the parts."""

    def symbol_coder(self, level: int) -> SymbolCoder:
        """Coder of the factorized part at an integer level: y's channels, or z's with a hyperprior."""
        if level not in self._symbol_coders:
            C = self.preset.coded_channels
            self._symbol_coders[level] = SymbolCoder(self.model.tables, np.arange((level - 1) * C, level * C))
        return self._symbol_coders[level]

    def factorized_bits(self, symbols: np.ndarray, level: int) -> np.ndarray:
        """−log₂ p of symbols (1, C, h, w) under the level's factorized density (continuous, as trained; float64)."""
        import torch

        net = self.model.net
        with torch.no_grad():
            p = net.density.likelihood(torch.from_numpy(np.ascontiguousarray(symbols)), net.channel_index(torch.tensor([level - 1])))
        return -np.log2(p.double().numpy())

    def hyper_latent(self, y: np.ndarray, hyper_analysis: HyperAnalysis) -> np.ndarray | None:
        """The side information ẑ sent before y (rounded, float32), or None for a coder without one."""
        return None

    @abstractmethod
    def quantize(self, y: np.ndarray, level: int, z_hat: np.ndarray | None = None) -> Latents:
        """y · gain (1, M, h, w) → what will be coded; may overwrite ``y`` (memory for huge images).

        ``z_hat``: the side information to code with y (``hyper_latent``'s, or a refined
        latent's own); coders without side information ignore it.
        """

    @abstractmethod
    def encode(self, stream: StreamEncoder, latents: Latents, level: int) -> None:
        """Append the latents' symbols to the payload."""

    @abstractmethod
    def estimate_bits(self, latents: Latents, level: int) -> float:
        """The model's own −Σ log₂ p of the coded symbols."""

    @abstractmethod
    def bit_map(self, latents: Latents, level: int) -> np.ndarray:
        """−log₂ p at each latent position (h, w), float64, side information spread over what it predicts."""

    @abstractmethod
    def dequantize(self, latents: Latents) -> np.ndarray:
        """ŷ (1, M, h, w) exactly as ``decode`` forms it; may reuse the latents' memory, so call it last."""

    @abstractmethod
    def decode(self, stream: StreamDecoder, level: int, h: int, w: int, keep: dict[str, np.ndarray]) -> np.ndarray:
        """The payload's symbols → ŷ (1, M, h, w) float32, from integers only; ``keep`` receives the decoded integers."""
