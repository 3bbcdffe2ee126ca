"""PNG writing for decoded images: faster than Pillow's, and split across cores for big ones.

Pillow chooses a filter for every row by trying them all; at ``compress_level=1`` that
choice costs about as much as the compression (kodim23: 38 ms against 25 ms here, for a
file 0.5% smaller here; a 24 MP image: 1.64 s against 0.39 s on two cores).  Decoded
images are smooth, so one filter, Up (each row minus the row above), serves them well and
is one numpy subtraction.

A big image is compressed in bands, one zlib compressor per band on a thread of its
own (zlib releases the GIL), each band ending on a byte boundary with a sync flush, as
pigz does: the bands' outputs, one IDAT chunk each, form a single valid zlib stream
whose checksum is computed over the whole image.  Any PNG reader reads it.
"""

from __future__ import annotations

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels → PNG colour type: L, LA, RGB, RGBA
FILTER_UP = 2
LEVEL = 1  # zlib level: decoded outputs are written often and kept rarely
BAND_BYTES = 4 << 20  # filtered bytes per band: bands only pay off on big images
ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KB window, "fastest" level flag


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _filtered(pixels: np.ndarray, top: int, bottom: int) -> bytes:
    """Rows ``top:bottom`` with filter Up: a filter byte, then each byte minus the one above (mod 256)."""
    rows = pixels[top:bottom].reshape(bottom - top, -1)
    out = np.empty((bottom - top, rows.shape[1] + 1), np.uint8)
    out[:, 0] = FILTER_UP
    above = pixels[top - 1].reshape(-1) if top else np.zeros(rows.shape[1], np.uint8)
    np.subtract(rows[0], above, out=out[0, 1:])
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    return out.tobytes()


def _deflate(data: bytes, last: bool) -> bytes:
    """Raw deflate of one band; all but the last end with a sync flush (byte-aligned, not final)."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def write_png(pixels: np.ndarray, workers: int = 1, band_bytes: int = BAND_BYTES) -> bytes:
    """uint8 (H, W, C) with C = 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA) → the bytes of an 8-bit PNG file.

    ``workers`` threads compress bands of about ``band_bytes`` filtered bytes each.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in COLOR_TYPES or 0 in pixels.shape:
        raise ValueError(f"write_png takes uint8 (H, W, 1–4) pixels, not {pixels.dtype} {pixels.shape}")
    height, width, channels = pixels.shape
    row_bytes = width * channels + 1
    rows_per_band = max(1, band_bytes // row_bytes)
    bands = [(top, min(height, top + rows_per_band)) for top in range(0, height, rows_per_band)]

    def band(index: int) -> tuple[bytes, int]:
        data = _filtered(pixels, *bands[index])
        return _deflate(data, index == len(bands) - 1), zlib.adler32(data)

    if workers > 1 and len(bands) > 1:
        with ThreadPoolExecutor(min(workers, len(bands))) as pool:
            parts = list(pool.map(band, range(len(bands))))
    else:
        parts = [band(i) for i in range(len(bands))]
    checksum = _combined_adler32([(a, (bands[i][1] - bands[i][0]) * row_bytes) for i, (_, a) in enumerate(parts)])
    header = struct.pack(">IIBBBBB", width, height, 8, COLOR_TYPES[channels], 0, 0, 0)
    segments = [deflated for deflated, _ in parts]
    segments[0] = ZLIB_HEADER + segments[0]
    segments[-1] += struct.pack(">I", checksum)
    idat = b"".join(_chunk(b"IDAT", segment) for segment in segments)
    return SIGNATURE + _chunk(b"IHDR", header) + idat + _chunk(b"IEND", b"")


ADLER_MOD = 65521


def _combined_adler32(parts: list[tuple[int, int]]) -> int:
    """Adler-32 of concatenated data from each part's (Adler-32, length), as zlib's adler32_combine computes it."""
    a, b = 1, 0
    for checksum, length in parts:
        a2, b2 = checksum & 0xFFFF, checksum >> 16
        # Appending data of ``length`` bytes: A = a + (a2 - 1), B = b + length·a + b2 - length (all mod 65521).
        b = (b + length % ADLER_MOD * a + b2 - length % ADLER_MOD) % ADLER_MOD
        a = (a + a2 - 1) % ADLER_MOD
    return b << 16 | a
