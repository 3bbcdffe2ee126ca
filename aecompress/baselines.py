"""Classical codecs through Pillow (and its JPEG XL plugin), in memory, for comparisons.

Settings match the reference figures quoted in BENCHMARKS.md: JPEG with Pillow's defaults (4:2:0), WebP
method 6, AVIF speed 6 tuned for PSNR, JPEG XL effort 7, JPEG 2000 irreversible
with colour transform and a rate sweep.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

try:
    import pillow_jxl  # noqa: F401  (registers JPEG XL with Pillow)

    HAVE_JXL = True
except ImportError:  # pragma: no cover - optional plugin
    HAVE_JXL = False


@dataclass(frozen=True)
class Baseline:
    name: str
    settings: tuple  # the sweep: qualities, or compression ratios for JPEG 2000
    save: Callable[[Image.Image, io.BytesIO, float], None]
    available: Callable[[], bool]


def _jpeg(im, buf, q):
    im.save(buf, "JPEG", quality=int(q))


def _webp(im, buf, q):
    im.save(buf, "WEBP", quality=int(q), method=6)


def _avif(im, buf, q):
    im.save(buf, "AVIF", quality=int(q), speed=6, max_threads=1, advanced={"tune": "psnr"})


def _jxl(im, buf, q):
    im.save(buf, "JXL", quality=int(q), effort=7)


def _jpeg2000(im, buf, ratio):
    im.save(buf, "JPEG2000", irreversible=True, mct=1, quality_mode="rates", quality_layers=[float(ratio)])


BASELINES: dict[str, Baseline] = {
    "jpeg": Baseline("jpeg", (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95), _jpeg, lambda: features.check("jpg")),
    "webp": Baseline("webp", (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100), _webp, lambda: features.check("webp")),
    "avif": Baseline("avif", (10, 20, 30, 40, 50, 60, 70, 80, 90), _avif, lambda: features.check("avif")),
    "jxl": Baseline("jxl", (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95), _jxl, lambda: HAVE_JXL),
    "jpeg2000": Baseline("jpeg2000", (200, 150, 100, 75, 50, 40, 30, 24, 16, 12, 8), _jpeg2000, lambda: features.check("jpg_2000")),
}


def available(name: str) -> bool:
    return name in BASELINES and BASELINES[name].available()


def encode(im: Image.Image, name: str, setting: float) -> bytes:
    buf = io.BytesIO()
    BASELINES[name].save(im, buf, setting)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def encode_at_size(im: Image.Image, name: str, target_bytes: int) -> tuple[bytes, int]:
    """The largest file of quality 1–100 not over ``target_bytes`` (or the smallest one)."""
    low, high, best = 1, 100, None
    while low <= high:
        q = (low + high) // 2
        data = encode(im, name, q)
        if len(data) <= target_bytes:
            best, low = (data, q), q + 1
        else:
            high = q - 1
    return best if best else (encode(im, name, 1), 1)
