"""The checkerboard plus a channel-wise context (He et al. 2022, ELIC): y's channels in groups, each predicting the next.

y's channels are split into groups of 16, 16, 32 and 96 (``presets.channel_groups``).
The anchors are coded group by group, each group's means and tables refined by the
integer channel context (``aecompress.integer``) from the groups before it at the same
position; then the checkerboard context picks the non-anchors' from all the anchors, and
the non-anchors are coded group by group with the same refinement.  Eight passes, each
over a whole group, so decoding stays parallel within each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..entropy import FormatError, StreamDecoder, StreamEncoder, index_groups
from ..integer import IntegerChannelContext, decoded_q8
from ..layout import anchor_grid
from ..presets import Preset, channel_groups, integer_shapes
from .checkerboard import CheckerboardCoder

if TYPE_CHECKING:
    from ..model import AutoEncoder
    from ..modelfile import LoadedModel


class ChannelCoder(CheckerboardCoder):
    """ẑ; the anchors group by group; the non-anchors group by group: each group's tables refined from the groups before."""

    entropy = "channel"
    format_version = 4
    integer_modules = (*CheckerboardCoder.integer_modules, "channel_context.")
    tensor_prefixes = (*CheckerboardCoder.tensor_prefixes, "channel_int")

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(model)
        self.channel: IntegerChannelContext = model.parts["channel"]

    @classmethod
    def describe(cls, preset: Preset) -> str:
        sizes = ", ".join(str(g) for g in channel_groups(preset.M))
        return f"{super().describe(preset)} and a channel-wise context (groups of {sizes})"

    @classmethod
    def model_tensors(cls, net: AutoEncoder) -> dict:
        return {**super().model_tensors(net), **IntegerChannelContext.from_float(net.channel_context).tensors()}

    @classmethod
    def restore(cls, tensors: dict, preset: Preset) -> dict[str, Any]:
        parts = super().restore(tensors, preset)
        channel = IntegerChannelContext.from_tensors(tensors, channel_groups(preset.M))
        if [w.shape for net in channel.nets for w in net.weights] != integer_shapes(preset)["channel"]:
            raise FormatError("integer channel context does not match the architecture")
        return {**parts, "channel": channel}

    @classmethod
    def apply_parts(cls, parts: dict[str, Any], net: AutoEncoder) -> None:
        super().apply_parts(parts, net)
        parts["channel"].to_float(net.channel_context)

    def _group_slices(self) -> list[slice]:
        bounds = np.cumsum((0, *self.channel.groups))
        return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _refine_group(self, g: int, part: slice, where: np.ndarray, residual: np.ndarray, mean: np.ndarray, index: np.ndarray) -> None:
        """Move group ``g``'s means and tables at ``where`` (in place) by the channel context, from the decoded groups before it."""
        if g == 0:
            return
        before = decoded_q8(residual[: part.start][:, where], mean[: part.start][:, where])
        new_mean, new_index = self.channel(g, before, mean[part][:, where], index[part][:, where])
        mean[part][:, where], index[part][:, where] = new_mean, new_index

    def _round_groups(self, residual: np.ndarray, mean: np.ndarray, index: np.ndarray, where: np.ndarray) -> None:
        """Round y − μ at ``where``, group by group, each against the mean the channel context gives it (as the decoder will)."""
        for g, part in enumerate(self._group_slices()):
            old = mean[part][:, where]
            self._refine_group(g, part, where, residual, mean, index)
            r = residual[part]
            r[:, where] = np.round(r[:, where] + (old - mean[part][:, where]))

    def _quantize_residuals(self, residual: np.ndarray, mean: np.ndarray, index: np.ndarray) -> np.ndarray:
        anchor = anchor_grid(residual.shape[1], residual.shape[2])
        others = ~anchor
        self._round_groups(residual, mean, index, anchor)
        other_mean, other_index = self.context(residual, mean, index)
        residual[:, others] += mean[:, others] - other_mean
        mean[:, others], index[:, others] = other_mean, other_index
        self._round_groups(residual, mean, index, others)
        return residual

    def _encode_residuals(self, stream: StreamEncoder, values: np.ndarray, index: np.ndarray) -> None:
        """The anchors group by group, then the others: the order in which the decoder finds the tables."""
        anchor = anchor_grid(*index.shape[1:])
        for where in (anchor, ~anchor):
            for part in self._group_slices():
                stream.encode(values[part][:, where], index_groups(index[part][:, where]), self.gaussian)

    def _decode_residuals(self, stream: StreamDecoder, mean: np.ndarray, index: np.ndarray) -> np.ndarray:
        anchor = anchor_grid(*index.shape[1:])
        residual = np.zeros(index.shape, np.int32)
        for where in (anchor, ~anchor):
            if where is not anchor:
                other_mean, other_index = self.context(residual, mean, index)
                mean[:, where], index[:, where] = other_mean, other_index
            for g, part in enumerate(self._group_slices()):
                self._refine_group(g, part, where, residual, mean, index)
                tables = index[part][:, where]
                decoded = stream.decode(tables.size, index_groups(tables), self.gaussian)
                residual[part][:, where] = decoded.reshape(tables.shape)
        return residual
