"""Reading and writing images with Pillow, including stdin/stdout.

What happens to each kind of input (see README, "Supported inputs"):
EXIF orientation is applied; grayscale stays grayscale; alpha (RGBA, LA, palette
transparency) is kept losslessly; 16-bit images are reduced to 8 bits and
animations to their first frame, each with a warning; CMYK and other colour
spaces are converted to RGB.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 1 << 27  # 134 MP (about Pillow's own bomb limit); --max-pixels / AECOMPRESS_MAX_PIXELS change it

try:  # register JPEG XL with Pillow when the plugin is installed (optional)
    import pillow_jxl  # noqa: F401
except ImportError:  # pragma: no cover - optional plugin
    pass


class ImageError(ValueError):
    """An input that is not a usable image."""


@dataclass
class Picture:
    """An 8-bit image ready for coding: colour (H, W, 3 or 1) and optional alpha."""

    color: np.ndarray  # uint8 (H, W, 3) for RGB or (H, W, 1) for grayscale
    alpha: np.ndarray | None = None  # uint8 (H, W)
    warnings: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.color.shape[0]

    @property
    def width(self) -> int:
        return self.color.shape[1]

    @property
    def channels(self) -> int:
        return self.color.shape[2] + (1 if self.alpha is not None else 0)

    @property
    def mode(self) -> str:
        return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[self.channels]

    def pixels(self) -> np.ndarray:
        """Colour and alpha together, (H, W, channels)."""
        if self.alpha is None:
            return self.color
        return np.concatenate([self.color, self.alpha[:, :, None]], axis=2)

    def to_pil(self) -> Image.Image:
        pixels = self.pixels()
        return Image.fromarray(np.ascontiguousarray(pixels) if pixels.shape[2] > 1 else pixels[:, :, 0], self.mode)

    def rgb(self) -> np.ndarray:
        """Colour as (H, W, 3): grayscale is replicated."""
        return np.repeat(self.color, 3, axis=2) if self.color.shape[2] == 1 else self.color


def from_pil(im: Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS, sixteen_bit: bool | None = None) -> Picture:
    """Turn any Pillow image into a ``Picture`` (see the module docstring).

    ``sixteen_bit``: whether the file stored 16 bits per channel, when the caller
    knows (Pillow forgets it once the pixels are loaded); detected otherwise.
    """
    notes: list[str] = []
    if im.width * im.height > max_pixels:
        raise ImageError(
            f"image is {im.width}x{im.height} ({im.width * im.height} pixels), over the limit of {max_pixels} pixels (--max-pixels)"
        )
    if getattr(im, "n_frames", 1) > 1:
        notes.append(f"animated image: only the first of its {im.n_frames} frames is encoded")
        im.seek(0)
    if sixteen_bit if sixteen_bit is not None else _is_16bit(im):
        notes.append("16-bit image reduced to 8 bits per channel")
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not stop us; the pixels are fine
        notes.append("could not read the EXIF orientation; image used as stored")
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(im, dtype=np.float64)
        scale = 255.0 / 65535.0 if array.max(initial=0) > 255 or mode.startswith("I;16") else 1.0
        color = np.clip(np.round(array * scale), 0, 255).astype(np.uint8)[:, :, None]
        return Picture(color, None, notes)
    if mode == "F":
        notes.append("floating-point image clipped to 0–255")
        color = np.clip(np.round(np.asarray(im, dtype=np.float64)), 0, 255).astype(np.uint8)[:, :, None]
        return Picture(color, None, notes)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in im.info)
    gray = mode in ("1", "L", "LA", "La") or (mode == "P" and _palette_is_gray(im))
    if gray:
        target = "LA" if has_alpha else "L"
    else:
        target = "RGBA" if has_alpha else "RGB"
    if mode == "CMYK":
        notes.append("CMYK image converted to RGB")
    array = np.asarray(im.convert(target), dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if has_alpha:
        return Picture(np.ascontiguousarray(array[:, :, :-1]), np.ascontiguousarray(array[:, :, -1]), notes)
    return Picture(array, None, notes)


def _is_16bit(im: Image.Image) -> bool:
    if im.mode.startswith("I;16") or (im.mode == "I" and im.format in ("PNG", "TIFF")):
        return True
    tile = getattr(im, "tile", None) or []
    return any(";16" in str(t[3]) for t in tile if len(t) > 3)


def _palette_is_gray(im: Image.Image) -> bool:
    palette = im.getpalette() or []
    rgb = np.array(palette[: 3 * 256]).reshape(-1, 3)
    return bool(len(rgb)) and bool(np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2]))


def read_image(data: bytes, name: str = "<stdin>", max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode image bytes; any failure becomes a one-line ``ImageError``."""
    if not data:
        raise ImageError("empty file")
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below is checked before decoding
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > max_pixels:
                    raise ImageError(
                        f"image is {im.width}x{im.height} ({im.width * im.height} pixels), over the limit of {max_pixels} pixels (--max-pixels)"
                    )
                sixteen_bit = _is_16bit(im)  # before load(), which forgets the raw mode
                im.load()
                return from_pil(im, max_pixels, sixteen_bit)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image file (or a format Pillow cannot read)") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"cannot decode image: {reason}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def unreadable_reason(path) -> str | None:
    """Why the image file at ``path`` cannot be read, from its header alone (None when it opens), in ``read_image``'s words."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with open(path, "rb") as fh:
            if not fh.read(1):
                return "empty file"
            fh.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Image.open(fh).close()
    except UnidentifiedImageError:
        return "not an image file (or a format Pillow cannot read)"
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        if isinstance(exc, OSError) and exc.strerror:  # the file itself: permission denied, …
            return exc.strerror
        return f"cannot decode image: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    return None


FORMATS = {  # output suffix → Pillow format
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".ppm": "PPM",
    ".pgm": "PPM",
    ".pnm": "PPM",
    ".gif": "GIF",
    ".tga": "TGA",
}
_NO_ALPHA = {"JPEG", "BMP", "PPM"}


def format_for(suffix: str) -> str:
    """Pillow format for an output suffix such as '.png' (``ImageError`` if unknown)."""
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise ImageError(f"unknown output image format {suffix!r} (use one of {', '.join(sorted(FORMATS))})")
    return fmt


def encode_picture(picture: Picture, fmt: str) -> tuple[bytes, list[str]]:
    """Picture → bytes of an image file in Pillow format ``fmt`` (lossless where the format is)."""
    notes = []
    if fmt == "PNG":
        from .engine import threads_here
        from .png import write_png

        return write_png(picture.pixels(), workers=threads_here()), notes
    im = picture.to_pil()
    if fmt in _NO_ALPHA and picture.alpha is not None:
        notes.append(f"{fmt} has no alpha channel: alpha dropped")
        im = im.convert("L" if picture.mode == "LA" else "RGB")
    options = {"WEBP": {"lossless": True}, "JPEG": {"quality": 95}, "PNG": {"compress_level": 1}}.get(fmt, {})
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue(), notes


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".gif", ".tga"}


class NoImagesError(RuntimeError):
    """A training folder without a single usable image; ``skipped``: the files that could not be read, and why."""

    def __init__(self, message: str, skipped: list[tuple[Path, str]] | None = None):
        super().__init__(message)
        self.skipped = skipped or []


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively, by suffix), in a stable order."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise NoImagesError(f"{root}: no such directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
