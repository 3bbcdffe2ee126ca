"""What a finished run is measured on: a small fixed set of patches it did not train on, coded for real.

A folder of ``HOLD_OUT_FROM`` images or more gives up a few of them (chosen by a hash of
their paths, so the same ones whatever the seed, and on resume); the run never trains on
them.  At the end the saved model codes ``PATCHES`` patches of them at its middle quality
through the real codec (rounding, entropy coding, headers), and the bpp and PSNR go into
the model's training summary.  A smaller folder keeps every image for training, and the
patches come from the training images (the summary says so).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..data import NoImagesError, PatchSampler

HOLD_OUT_FROM = 20  # images in the folder: below this, every image is trained on
MAX_HELD_OUT = 8  # images held out at most (one per HOLD_OUT_FROM)
PATCHES, SIDE, SEED = 8, 128, 0  # the measured patches: their number, side, and the seed that cuts them
USABLE_PSNR, USABLE_BPP = 22.0, 2.0  # at the middle quality: a model below this PSNR or above this rate is far from usable
JPEG_QUALITIES = (2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)  # the reference a usable model must beat


def split(paths: list[Path], root: Path) -> tuple[list[Path], list[Path]]:
    """(held out, trained on): one image in ``HOLD_OUT_FROM`` held out, at most ``MAX_HELD_OUT``; none from a smaller folder."""
    count = min(MAX_HELD_OUT, len(paths) // HOLD_OUT_FROM)
    if count == 0:
        return [], paths

    def key(path: Path) -> str:
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        return hashlib.sha256(name.encode()).hexdigest()

    held = set(sorted(paths, key=key)[:count])
    return [p for p in paths if p in held], [p for p in paths if p not in held]


def cut(held: list[Path], sampler: PatchSampler, downscale: tuple[float, float], cache_bytes: int) -> tuple[torch.Tensor, int]:
    """The patches to measure, as uint8 (N, 3, SIDE, SIDE), and how many held-out images they come from (0: training images).

    Cut once, before training, with a generator of their own: the training patches are the
    same with or without them.
    """
    if held:
        try:
            source = PatchSampler(held, SIDE, downscale, seed=SEED, cache_bytes=cache_bytes)
            return _as_pixels(source.sample(PATCHES)), len(source)
        except NoImagesError:  # not one of them readable: measure on training images rather than not at all
            pass
    generator = torch.Generator().manual_seed(SEED)
    return _as_pixels(sampler.sample(PATCHES, generator=generator, patch=SIDE)), 0


def _as_pixels(batch: torch.Tensor) -> torch.Tensor:
    return batch.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def measure(model_path: Path, patches: torch.Tensor, held_images: int) -> dict:
    """Code every patch with the saved model at its middle quality: bytes as written, PSNR of what decode returns."""
    from PIL import Image

    from ..codec import Codec, default_quality
    from ..images import from_pil
    from ..metrics import psnr
    from ..modelfile import load_model

    model = load_model(model_path)
    codec, quality = Codec(model), default_quality(model)
    originals, decoded, total = [], [], 0
    for rgb in patches.permute(0, 2, 3, 1).numpy():
        encoded = codec.encode(from_pil(Image.fromarray(rgb)), quality)
        total += len(encoded.data)
        originals.append(rgb)
        decoded.append(encoded.reconstruction.color)
    n, side = patches.shape[0], patches.shape[-1]
    bpp = 8 * total / (n * side * side)
    jpeg = jpeg_psnr_at(np.concatenate(originals), bpp)
    return {
        "patches": n,
        "side": side,
        "held_out_images": held_images,  # 0: the patches come from training images (too few images to hold any out)
        "quality": quality,
        "bpp": round(bpp, 4),
        "psnr": round(psnr(np.concatenate(originals), np.concatenate(decoded)), 2),
        "jpeg_psnr": None if jpeg is None else round(jpeg, 2),  # JPEG at the same rate; None outside its range
    }


def jpeg_psnr_at(pixels: np.ndarray, bpp: float) -> float | None:
    """PSNR of Pillow's JPEG at ``bpp`` on ``pixels`` (uint8, H × W × 3: the patches stacked), interpolated
    between qualities in log-rate; None where JPEG's range does not reach ``bpp``.

    One image of all the patches (they are multiples of 16 on a side), so the JPEG header
    costs its share once, as the model's file header does per patch (a few bytes)."""
    import io

    from PIL import Image

    from ..metrics import psnr

    points = []
    for quality in JPEG_QUALITIES:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, optimize=True)
        rate = 8 * buffer.tell() / (pixels.shape[0] * pixels.shape[1])
        with Image.open(buffer) as im:
            points.append((rate, psnr(pixels, np.asarray(im.convert("RGB")))))
    rates = np.log([r for r, _ in points])
    if not rates[0] <= np.log(bpp) <= rates[-1]:
        return None
    return float(np.interp(np.log(bpp), rates, [q for _, q in points]))


def summary_line(training: dict) -> str | None:
    """One line for the end of a run: steps, time, and the measured bpp and PSNR (None without a measure)."""
    measured = training.get("held_out")
    if not isinstance(measured, dict) or not isinstance(training.get("steps"), int):
        return None
    if measured.get("held_out_images"):
        images = measured["held_out_images"]
        where = f"{measured['patches']} held-out patches ({images} image{'s' if images != 1 else ''} not trained on)"
    else:
        where = f"{measured['patches']} training patches (a folder of under {HOLD_OUT_FROM} images holds none out)"
    steps = training["steps"]
    return (
        f"trained {steps:,} step{'s' if steps != 1 else ''} in {_duration(float(training.get('seconds') or 0))}; "
        f"{where} at q{measured['quality']}: {measured['bpp']:.3f} bpp, {measured['psnr']:.2f} dB"
    )


def far_from_usable(training: dict) -> str | None:
    """What to expect and what to do when the measure is far from a usable codec; None when it is not."""
    measured = training.get("held_out")
    if not isinstance(measured, dict):
        return None
    jpeg = measured.get("jpeg_psnr")
    below_jpeg = jpeg is not None and measured["psnr"] < jpeg
    if not below_jpeg and measured["psnr"] >= USABLE_PSNR and measured["bpp"] <= USABLE_BPP:
        return None
    advice = "train longer (--time-budget 2h or more)"
    if not training.get("init"):
        advice += " or fine-tune the shipped model (--init default)"
    reference = f", where JPEG gives {jpeg:.1f} dB at that rate on the same patches" if jpeg is not None else ""
    return (
        f"this model is far from usable ({measured['psnr']:.1f} dB at {measured['bpp']:.2f} bpp at q{measured['quality']}"
        f"{reference}); {advice}"
    )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
