"""Training data: find images, decode each once into memory, cut random patches.

Images are decoded once per run (JPEGs at a reduced DCT scale when they are to be
downscaled anyway), kept as uint8 tensors, and every step cuts its patches from
that cache: data loading stays a small part of a training step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".gif", ".tga"}


class NoImagesError(RuntimeError):
    """A training folder without a single usable image."""


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively, by suffix), in a stable order."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise NoImagesError(f"{root}: no such directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_for_training(path: Path, reduce: int = 1) -> torch.Tensor:
    """Decode one image to a uint8 (3, H, W) tensor, shrunk by the integer ``reduce``."""
    with Image.open(path) as im:
        target_width = max(1, im.width // reduce)
        if reduce > 1 and im.format == "JPEG":
            im.draft("RGB", (target_width, max(1, im.height // reduce)))  # DCT-domain downscale: fast
        factor = im.width // target_width
        im = ImageOps.exif_transpose(im)
        im = (im.reduce(factor) if factor > 1 else im).convert("RGB")
        array = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class PatchSampler:
    """Random patches from a cache of decoded images.

    Each patch comes from an image chosen with probability proportional to its
    area, downscaled by a random factor in ``downscale`` (antialiased), randomly
    flipped.  Images smaller than a patch are stretched to fit.
    """

    def __init__(self, paths: Iterable[Path], patch: int, downscale: tuple[float, float] = (1.0, 1.0), seed: int = 0):
        self.patch = patch
        low, high = downscale
        self.reduce = max(1, int(math.floor(low)))  # applied once when decoding
        self.scale = (low / self.reduce, high / self.reduce)  # applied per patch
        self.images: list[torch.Tensor] = []
        self.skipped: list[tuple[Path, str]] = []
        for path in paths:
            try:
                self.images.append(load_for_training(path, self.reduce))
            except Exception as exc:  # any unreadable file is skipped, never fatal
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.skipped.append((path, reason))
                warnings.warn(f"skipping {path}: {reason}", stacklevel=2)
        if not self.images:
            raise NoImagesError("no usable image in the training data")
        areas = torch.tensor([im.shape[1] * im.shape[2] for im in self.images], dtype=torch.float64)
        self.weights = areas / areas.sum()
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int) -> torch.Tensor:
        """A float batch (B, 3, patch, patch) in [0, 1]."""
        g = self.generator
        picks = torch.multinomial(self.weights, batch, replacement=True, generator=g)
        out = torch.empty(batch, 3, self.patch, self.patch)
        low, high = self.scale
        for i, k in enumerate(picks.tolist()):
            image = self.images[k]
            _, H, W = image.shape
            s = low + (high - low) * torch.rand((), generator=g).item()
            size = min(max(1, round(self.patch * s)), H, W)
            top = int(torch.randint(0, H - size + 1, (), generator=g))
            left = int(torch.randint(0, W - size + 1, (), generator=g))
            crop = image[None, :, top : top + size, left : left + size].float()
            if size != self.patch:
                crop = F.interpolate(crop, size=(self.patch, self.patch), mode="bilinear", antialias=size > self.patch, align_corners=False)
            if torch.rand((), generator=g) < 0.5:
                crop = crop.flip(3)
            out[i] = crop[0]
        return out.div_(255.0).clamp_(0.0, 1.0)
