"""Training data: find images, decode them into a bounded cache, cut random patches.

Images are decoded once (JPEGs at a reduced DCT scale when they are to be
downscaled anyway) and kept as uint8 tensors, up to a memory budget; every step
cuts its patches from that cache, so data loading stays a small part of a step.
A folder larger than the budget is streamed: cached images are swapped for new
ones as training goes, and memory stays flat.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm import tqdm

from .images import IMAGE_SUFFIXES, NoImagesError, find_images  # noqa: F401  (the training data's, found as everywhere)
from .training.config import DEFAULT_CACHE_BYTES


def load_for_training(path: Path, reduce: int = 1) -> torch.Tensor:
    """Decode one image to a uint8 (3, H, W) tensor, shrunk by the integer ``reduce``."""
    with Image.open(path) as im:
        target_width = max(1, im.width // reduce)
        if reduce > 1 and im.format == "JPEG":
            im.draft("RGB", (target_width, max(1, im.height // reduce)))  # DCT-domain downscale: fast
        factor = im.width // target_width
        im = ImageOps.exif_transpose(im)
        im = (im.reduce(factor) if factor > 1 else im).convert("RGB")
        array = np.array(im, dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def decoded_size(path: Path, reduce: int = 1) -> int:
    """Bytes that ``load_for_training`` will take for ``path``, from the header alone (no decoding)."""
    with Image.open(path) as im:
        return 3 * max(1, im.width // reduce) * max(1, im.height // reduce)


class PatchSampler:
    """Random patches from a bounded cache of decoded images.

    Each patch comes from an image chosen with probability proportional to its
    area, downscaled by a random factor in ``downscale`` (antialiased), randomly
    flipped.  Images smaller than a patch are stretched to fit.

    Memory is bounded: when the decoded images would take more than ``cache_bytes``,
    a random subset that fits is kept, and every ``refresh_every`` batches one cached
    image is swapped for another, so a run sees the whole folder over time while RAM
    stays flat (a folder of thousands of phone photos trains on a laptop).
    """

    def __init__(
        self,
        paths: Iterable[Path],
        patch: int,
        downscale: tuple[float, float] = (1.0, 1.0),
        seed: int = 0,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        refresh_every: int = 4,
        progress: bool = False,
    ):
        self.patch = patch
        low, high = downscale
        self.reduce = max(1, int(math.floor(low)))  # applied once when decoding
        self.scale = (low / self.reduce, high / self.reduce)  # applied per patch
        self.generator = torch.Generator().manual_seed(seed)
        self.cache_bytes, self.refresh_every = cache_bytes, refresh_every
        self.skipped: list[tuple[Path, str]] = []
        self.sizes: dict[Path, int] = {}
        for path in paths:
            try:
                self.sizes[path] = decoded_size(path, self.reduce)
            except Exception as exc:  # any unreadable file is skipped, never fatal
                self._skip(path, exc)
        self.pool = list(self.sizes)  # every usable image; the cache holds some or all of them
        self.images: list[torch.Tensor] = []
        self.cached: list[Path] = []
        candidates = [self.pool[k] for k in torch.randperm(len(self.pool), generator=self.generator).tolist()]
        total = 0
        bar = tqdm(total=len(candidates), desc="decoding images", unit="img", disable=not progress, file=sys.stderr, leave=False)
        for path in candidates:
            if self.images and total + self.sizes[path] > cache_bytes:
                continue
            image = self._load(path)
            bar.update(1)
            if image is not None:
                self.images.append(image)
                self.cached.append(path)
                total += image.numel()
        bar.close()
        if not self.images:
            raise NoImagesError(_none_readable(len(self.skipped)), self.skipped)
        self.batches = 0
        self._reweight()

    @property
    def streaming(self) -> bool:
        """True when the folder does not fit in the cache (images are swapped in and out)."""
        return len(self.cached) < len(self.pool)

    def __len__(self) -> int:
        return len(self.pool)

    def cached_bytes(self) -> int:
        return sum(im.numel() for im in self.images)

    def _skip(self, path: Path, exc: Exception) -> None:
        from PIL import UnidentifiedImageError

        if isinstance(exc, UnidentifiedImageError):  # in the words encode and eval use
            reason = "not an image file (or a format Pillow cannot read)"
        else:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self.skipped.append((path, reason))
        warnings.warn(f"skipping {path}: {reason}", stacklevel=3)

    def _load(self, path: Path) -> torch.Tensor | None:
        try:
            return load_for_training(path, self.reduce)
        except Exception as exc:
            self._skip(path, exc)
            if path in self.sizes:
                del self.sizes[path]
                self.pool.remove(path)
            return None

    def _reweight(self) -> None:
        areas = torch.tensor([im.shape[1] * im.shape[2] for im in self.images], dtype=torch.float64)
        self.weights = areas / areas.sum()

    def _refresh(self) -> None:
        """Swap one cached image for a random one that is not cached (streaming mode only)."""
        outside = [p for p in self.pool if p not in set(self.cached)]
        if not outside:
            return
        incoming = outside[int(torch.randint(0, len(outside), (), generator=self.generator))]
        victim = int(torch.randint(0, len(self.images), (), generator=self.generator))
        budget = self.cache_bytes - (self.cached_bytes() - self.images[victim].numel())
        if self.sizes.get(incoming, 0) > budget:
            return  # too large to fit in place of this one; another turn will pick another pair
        image = self._load(incoming)
        if image is None:
            return
        self.images[victim], self.cached[victim] = image, incoming
        self._reweight()

    def sample(self, batch: int, generator: torch.Generator | None = None, patch: int | None = None) -> torch.Tensor:
        """A float batch (B, 3, patch, patch) in [0, 1].

        With a ``generator`` of its own (and any ``patch`` side) the batch leaves the sampler's
        sequence untouched: the batches after it are those it would have drawn anyway.
        """
        if generator is None:
            self.batches += 1
            if self.streaming and self.batches % self.refresh_every == 0:
                self._refresh()
        g = generator or self.generator
        side = patch or self.patch
        picks = torch.multinomial(self.weights, batch, replacement=True, generator=g)
        out = torch.empty(batch, 3, side, side)
        low, high = self.scale
        for i, k in enumerate(picks.tolist()):
            image = self.images[k]
            _, H, W = image.shape
            s = low + (high - low) * torch.rand((), generator=g).item()
            size = min(max(1, round(side * s)), H, W)
            top = int(torch.randint(0, H - size + 1, (), generator=g))
            left = int(torch.randint(0, W - size + 1, (), generator=g))
            crop = image[None, :, top : top + size, left : left + size].float()
            if size != side:
                crop = F.interpolate(crop, size=(side, side), mode="bilinear", antialias=size > side, align_corners=False)
            if torch.rand((), generator=g) < 0.5:
                crop = crop.flip(3)
            out[i] = crop[0]
        return out.div_(255.0).clamp_(0.0, 1.0)


def _none_readable(skipped: int) -> str:
    if skipped == 0:
        return "no usable image in the training data"
    if skipped == 1:
        return "the one image file of the training data could not be read"
    return f"none of the {skipped} image files of the training data could be read"
