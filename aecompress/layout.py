"""Where the latent's symbols sit: the downsampling factor, the checkerboard of anchors, the context's taps.

Shared by the networks (torch, ``model``) and the exact coding paths (numpy, ``integer``
and the coders), which must agree on them to the symbol; kept free of torch so that the
coding paths load without it.
"""

from __future__ import annotations

import numpy as np

DOWNSAMPLING = 16  # four stride-2 layers

# Where a non-anchor's context comes from: the anchors of a 5×5 window (dy + dx odd, 12 taps).
CONTEXT_TAPS = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy + dx) % 2)


def anchor_grid(height: int, width: int) -> np.ndarray:
    """True at the anchors, the half of y's positions coded first: (row + column) even."""
    return (np.arange(height)[:, None] + np.arange(width)[None, :]) % 2 == 0
