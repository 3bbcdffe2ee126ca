"""The hyperprior plus a checkerboard context (He et al. 2021): the anchors first, then the rest.

The anchors, half of y's positions, are coded with the hyperprior's means and tables;
the integer context (``aecompress.integer``), fed their residuals, then picks the means
and tables of the other half, the same on every machine.  Two passes, not one per
symbol, so decoding stays parallel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..entropy import FormatError, StreamDecoder, StreamEncoder, index_groups
from ..integer import IntegerContext
from ..layout import anchor_grid
from ..presets import Preset, integer_shapes
from .hyperprior import HyperpriorCoder

if TYPE_CHECKING:
    from ..model import AutoEncoder
    from ..modelfile import LoadedModel


class CheckerboardCoder(HyperpriorCoder):
    """ẑ, then the anchors with the hyperprior's tables, then the others with the tables their context picks."""

    entropy = "checkerboard"
    format_version = 3
    integer_modules = (*HyperpriorCoder.integer_modules, "context.")  # so is the context
    tensor_prefixes = (*HyperpriorCoder.tensor_prefixes, "context_int.")

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(model)
        self.context: IntegerContext = model.parts["context"]

    @classmethod
    def describe(cls, preset: Preset) -> str:
        return f"{super().describe(preset)} with a checkerboard context"

    @classmethod
    def model_tensors(cls, net: AutoEncoder) -> dict:
        return {**super().model_tensors(net), **IntegerContext.from_float(net.context).tensors()}

    @classmethod
    def restore(cls, tensors: dict, preset: Preset) -> dict[str, Any]:
        parts = super().restore(tensors, preset)
        context = IntegerContext.from_tensors(tensors)
        if [w.shape for w in context.weights] != integer_shapes(preset)["context"]:
            raise FormatError("integer context does not match the architecture")
        return {**parts, "context": context}

    @classmethod
    def apply_parts(cls, parts: dict[str, Any], net: AutoEncoder) -> None:
        super().apply_parts(parts, net)
        parts["context"].to_float(net.context)

    def _quantize_residuals(self, residual: np.ndarray, mean: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The anchors round against the hyperprior's μ; the context, fed their residuals, picks the others' (as the decoder will)."""
        anchor = anchor_grid(residual.shape[1], residual.shape[2])
        others = ~anchor
        residual[:, anchor] = np.round(residual[:, anchor])
        other_mean, other_index = self.context(residual, mean, index)
        residual[:, others] = np.round(residual[:, others] + (mean[:, others] - other_mean))
        mean[:, others], index[:, others] = other_mean, other_index
        return residual

    def _encode_residuals(self, stream: StreamEncoder, values: np.ndarray, index: np.ndarray) -> None:
        """The anchors first: the decoder needs them to find the others' tables."""
        anchor = anchor_grid(*index.shape[1:])
        for part in (anchor, ~anchor):
            stream.encode(values[:, part], index_groups(index[:, part]), self.gaussian)

    def _decode_residuals(self, stream: StreamDecoder, mean: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The anchors with the hyperprior's tables; then the rest with the tables their context picks."""
        anchor = anchor_grid(*index.shape[1:])
        residual = np.zeros(index.shape, np.int32)
        anchors = index[:, anchor]
        residual[:, anchor] = stream.decode(anchors.size, index_groups(anchors), self.gaussian).reshape(anchors.shape)
        other_mean, other_index = self.context(residual, mean, index)
        mean[:, ~anchor], index[:, ~anchor] = other_mean, other_index
        residual[:, ~anchor] = stream.decode(other_index.size, index_groups(other_index), self.gaussian).reshape(other_index.shape)
        return residual
