"""What kind of file is this?  From its first bytes, for errors that say what a file is.

A user who passes a JPEG to ``info`` or a checkpoint to ``-m`` should read "a JPEG
image" or "a training checkpoint", not a parser's complaint about a header.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from .bitstream import MAGIC as AEC_MAGIC

_SIGNATURES = [  # (offset, bytes, description)
    (0, AEC_MAGIC, "an aecompress image"),
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (0, b"BM", "a BMP image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"\xff\x0a", "a JPEG XL image"),
    (0, b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (0, b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (0, b"%PDF", "a PDF document"),
    (0, b"\x1f\x8b", "a gzip file"),
    (0, b"\x28\xb5\x2f\xfd", "a zstd file"),
    (0, b"PK\x03\x04", "a zip archive"),
]


def head(path: str | os.PathLike, size: int = 64) -> bytes:
    """The first ``size`` bytes of a file (b"" when it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError:
        return b""


def describe(data: bytes) -> str | None:
    """A short description of the kind of file ``data`` starts, or None when unknown."""
    if not data:
        return "an empty file"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "an AVIF image"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1"):
        return "a HEIF image"
    for offset, magic, text in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return text
    if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
        return "a PNM image"
    if _looks_like_text(data):
        return "a text file"
    return None


def is_image(description: str | None) -> bool:
    return bool(description) and description.endswith(" image") and description != "an aecompress image"


def training_checkpoint(path: str | os.PathLike) -> dict | None:
    """The saved state of a training checkpoint (step, elapsed, config), or None when ``path`` is not one."""
    if head(path, 4) != b"PK\x03\x04":
        return None
    import torch

    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # any zip that torch cannot read is simply not a checkpoint
        return None
    if not isinstance(state, dict) or not {"step", "config", "preset"} <= state.keys():
        return None
    return state


def _looks_like_text(data: bytes) -> bool:
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data)  # a character cut at the end is fine
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)
