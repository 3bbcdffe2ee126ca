"""Latent coders, one per entropy model, found by ``Preset.entropy``: the only place the kinds are told apart.

A new kind is one module with a ``LatentCoder`` subclass and one entry in ``CODERS``.
"""

from __future__ import annotations

from .base import LatentCoder
from .channel import ChannelCoder
from .checkerboard import CheckerboardCoder
from .factorized import FactorizedCoder
from .hyperprior import HyperpriorCoder

CODERS: dict[str, type[LatentCoder]] = {c.entropy: c for c in (FactorizedCoder, HyperpriorCoder, CheckerboardCoder, ChannelCoder)}

__all__ = [
    "CODERS",
    "ChannelCoder",
    "CheckerboardCoder",
    "FactorizedCoder",
    "HyperpriorCoder",
    "LatentCoder",
    "coder_class",
    "coder_tensor_prefixes",
    "format_versions",
]


def coder_class(entropy: str) -> type[LatentCoder]:
    """The coder of an entropy model (``Preset.entropy``); ``ValueError`` for one this release does not know."""
    try:
        return CODERS[entropy]
    except KeyError:
        raise ValueError(f"unknown entropy model {entropy!r}") from None


def coder_tensor_prefixes() -> tuple[str, ...]:
    """Names of every tensor any coder adds to a model file: none of them is a float weight."""
    return tuple(dict.fromkeys(p for c in CODERS.values() for p in c.tensor_prefixes))


def format_versions() -> tuple[int, ...]:
    """Every model file / container version some coder writes, ascending."""
    return tuple(sorted({c.format_version for c in CODERS.values()}))
