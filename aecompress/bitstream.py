"""The ``.aec`` container: header, payload, CRC32.  Byte layout in docs/FORMAT.md.

Every way a file can be wrong (not ours, newer version, truncated, corrupted,
absurd dimensions) raises ``ContainerError`` with a one-line reason, and the
dimensions are checked before anything is allocated.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .quality import STEPS

MAGIC = b"\x89AEC"
VERSION = 4  # 4: a channel-wise context too (ẑ, then anchors and the rest group by group); 3: a checkerboard context
# (ẑ, y's anchors, the rest); 2: a hyperprior (ẑ, then y by scale); 1: factorized
READABLE_VERSIONS = (1, 2, 3, 4)
_HEADER = struct.Struct(">4sB8sIIBBBI")  # magic, version, model id, width, height, channels, quality, flags, payload length
HEADER_SIZE = _HEADER.size
TRAILER_SIZE = 4  # CRC32
OVERHEAD = HEADER_SIZE + TRAILER_SIZE

FLAG_ALPHA = 1  # an 8-bit alpha plane follows the latent payload (zlib, lossless)
FLAG_FRACTION = 2  # the payload starts with one byte: the quality's hundredths above its level (1–99)
KNOWN_FLAGS = FLAG_ALPHA | FLAG_FRACTION
CHANNELS = (1, 2, 3, 4)  # L, LA, RGB, RGBA


class ContainerError(ValueError):
    """A byte string that is not a valid ``.aec`` file."""


@dataclass(frozen=True)
class Header:
    model_id: str  # 16 hex digits
    width: int
    height: int
    channels: int
    quality: int  # 1-based quality level (the integer part of a fractional quality)
    flags: int = 0
    version: int = 1  # factorized models write 1 (readable by every release), hyperprior models 2, checkerboard 3, channel-wise 4
    fraction: int = 0  # hundredths above ``quality`` (0–99); non-zero only with FLAG_FRACTION, version 2

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def hundredths(self) -> int:
        """The quality in hundredths (``537`` for 5.37)."""
        return STEPS * self.quality + self.fraction

    @property
    def overhead(self) -> int:
        """Container bytes around the coded sections: header, CRC and the fraction byte if any."""
        return OVERHEAD + (1 if self.fraction else 0)


def pack(header: Header, payload: bytes) -> bytes:
    """Header + payload + CRC32 of both (the fraction byte, if any, first in the payload)."""
    if bool(header.flags & FLAG_FRACTION) != (header.fraction != 0) or not 0 <= header.fraction < 100:
        raise ValueError(f"fraction {header.fraction} does not agree with flags {header.flags:#x}")
    if header.fraction and header.version < 2:
        raise ValueError("a fractional quality needs format version 2")
    if header.fraction:
        payload = bytes([header.fraction]) + payload
    body = (
        _HEADER.pack(
            MAGIC,
            header.version,
            bytes.fromhex(header.model_id),
            header.width,
            header.height,
            header.channels,
            header.quality,
            header.flags,
            len(payload),
        )
        + payload
    )
    return body + struct.pack(">I", zlib.crc32(body))


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, bytes]:
    """Parse and verify a container; return its header and payload."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise ContainerError("not an aecompress file (bad magic bytes)")
    if len(data) < 5:
        raise ContainerError("file is truncated (header incomplete)")
    if data[4] not in READABLE_VERSIONS:
        raise ContainerError(
            f"format version {data[4]} is not supported (this aecompress reads versions {READABLE_VERSIONS[0]} to {READABLE_VERSIONS[-1]})"
        )
    if len(data) < HEADER_SIZE:
        raise ContainerError("file is truncated (header incomplete)")
    _, _, mid, width, height, channels, quality, flags, length = _HEADER.unpack_from(data)
    expected = HEADER_SIZE + length + TRAILER_SIZE
    if len(data) < expected:
        raise ContainerError(f"file is truncated ({len(data)} of {expected} bytes)")
    if len(data) > expected:
        raise ContainerError(f"file has {len(data) - expected} unexpected trailing bytes")
    (crc,) = struct.unpack_from(">I", data, expected - TRAILER_SIZE)
    if zlib.crc32(data[: expected - TRAILER_SIZE]) != crc:
        raise ContainerError("file is corrupted (checksum mismatch)")
    if width == 0 or height == 0:
        raise ContainerError(f"invalid dimensions {width}x{height}")
    if channels not in CHANNELS:
        raise ContainerError(f"invalid channel count {channels}")
    if quality == 0:
        raise ContainerError("invalid quality 0")
    if flags & ~KNOWN_FLAGS:
        raise ContainerError(f"unknown flags {flags:#x} (made by a newer aecompress?)")
    if bool(flags & FLAG_ALPHA) != (channels in (2, 4)):
        raise ContainerError(f"channel count {channels} does not agree with the alpha flag")
    if max_pixels is not None and width * height > max_pixels:
        raise ContainerError(f"image is {width}x{height} ({width * height} pixels), over the limit of {max_pixels} pixels")
    payload = data[HEADER_SIZE : HEADER_SIZE + length]
    fraction = 0
    if flags & FLAG_FRACTION:
        if data[4] < 2:
            raise ContainerError("fractional quality in a format-version-1 file (factorized models have integer levels only)")
        if not payload:
            raise ContainerError("fractional-quality flag set but the fraction byte is missing")
        fraction, payload = payload[0], payload[1:]
        if not 1 <= fraction <= 99:
            raise ContainerError(f"invalid quality fraction {fraction} (must be 1–99 hundredths)")
    header = Header(mid.hex(), width, height, channels, quality, flags, data[4], fraction)
    return header, payload


def read_header(data: bytes) -> Header:
    """Header fields of a complete, verified container (for ``info``)."""
    return unpack(data)[0]
