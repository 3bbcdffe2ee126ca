"""The PNG writer: every mode, every band split, read back by Pillow and by zlib (which checks the checksum)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from aecompress.png import write_png


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def _smooth(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    return np.cumsum(rng.integers(0, 4, shape), axis=0).astype(np.uint8)  # wraps past 255: every byte value occurs


@pytest.mark.parametrize("channels, mode", [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
@pytest.mark.parametrize("band_bytes, workers", [(4 << 20, 1), (64, 1), (64, 3), (1, 2)])
def test_every_mode_and_band_split_reads_back_exactly(channels, mode, band_bytes, workers):
    pixels = _smooth(np.random.default_rng(channels), (37, 23, channels))
    data = write_png(pixels, workers=workers, band_bytes=band_bytes)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == mode and im.size == (23, 37)
        back = np.asarray(im).reshape(pixels.shape)
    assert np.array_equal(back, pixels)
    chunks = _chunks(data)
    assert [k for k, _ in chunks if k != b"IDAT"] == [b"IHDR", b"IEND"]
    stream = b"".join(body for kind, body in chunks if kind == b"IDAT")
    raw = zlib.decompress(stream)  # raises on a wrong Adler-32 of the joined bands
    assert len(raw) == 37 * (23 * channels + 1)
    if band_bytes == 1:
        assert sum(kind == b"IDAT" for kind, _ in chunks) == 37  # a band per row


def test_a_single_pixel_and_a_single_row():
    for shape in [(1, 1, 3), (1, 500, 4), (500, 1, 1)]:
        pixels = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
        with Image.open(io.BytesIO(write_png(pixels, workers=2, band_bytes=7))) as im:
            assert np.array_equal(np.asarray(im).reshape(shape), pixels)


def test_what_it_refuses():
    with pytest.raises(ValueError, match="uint8"):
        write_png(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        write_png(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_png(np.zeros((0, 2, 3), np.uint8))
