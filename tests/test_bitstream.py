"""The .aec container: layout, round trip, and every way a file can be broken."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from conftest import gradient, with_alpha
from hypothesis import given, settings
from hypothesis import strategies as st

from aecompress import Codec, DecodeError
from aecompress.bitstream import (
    FLAG_ALPHA,
    HEADER_SIZE,
    MAGIC,
    OVERHEAD,
    VERSION,
    ContainerError,
    Header,
    pack,
    read_header,
    unpack,
)
from aecompress.images import Picture

_LAYOUT = struct.Struct(">4sB8sIIBBBI")


def raw_container(
    *,
    magic=MAGIC,
    version=VERSION,
    model_id="0123456789abcdef",
    width=16,
    height=16,
    channels=3,
    quality=1,
    flags=0,
    length=None,
    payload=b"",
    crc=None,
) -> bytes:
    """Any header fields (valid or not), with a correct CRC unless ``crc`` is given."""
    length = len(payload) if length is None else length
    body = _LAYOUT.pack(magic, version, bytes.fromhex(model_id), width, height, channels, quality, flags, length) + payload
    return body + struct.pack(">I", zlib.crc32(body) if crc is None else crc)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    return message


# ---------------------------------------------------------------- layout and round trip


def test_layout_matches_the_spec():
    assert MAGIC == b"\x89AEC"
    assert HEADER_SIZE == 28 and OVERHEAD == 32
    header = Header("0123456789abcdef", 640, 480, 3, 5, 0)
    data = pack(header, b"xyz")
    assert len(data) == OVERHEAD + 3
    assert data[:4] == MAGIC and data[4] == 1  # factorized payloads keep version 1
    assert pack(Header("0123456789abcdef", 640, 480, 3, 5, 0, version=VERSION), b"xyz")[4] == VERSION == 4
    assert data[5:13] == bytes.fromhex("0123456789abcdef")
    assert struct.unpack(">II", data[13:21]) == (640, 480)
    assert tuple(data[21:24]) == (3, 5, 0)
    assert struct.unpack(">I", data[24:28]) == (3,)
    assert data[28:31] == b"xyz"
    assert struct.unpack(">I", data[31:]) == (zlib.crc32(data[:31]),)


headers = st.builds(
    lambda channels, **kw: Header(channels=channels, flags=FLAG_ALPHA if channels in (2, 4) else 0, **kw),
    model_id=st.binary(min_size=8, max_size=8).map(bytes.hex),
    width=st.integers(1, 2**32 - 1),
    height=st.integers(1, 2**32 - 1),
    channels=st.sampled_from([1, 2, 3, 4]),
    quality=st.integers(1, 255),
)


@settings(max_examples=200, deadline=None)
@given(headers, st.binary(max_size=300))
def test_pack_unpack_round_trip(header, payload):
    data = pack(header, payload)
    assert len(data) == OVERHEAD + len(payload)
    assert unpack(data) == (header, payload)
    assert read_header(data) == header


def test_header_pixels():
    assert Header("00" * 8, 7, 9, 3, 1).pixels == 63


# ---------------------------------------------------------------- a real file, damaged in every way


@pytest.fixture(scope="module")
def real_files(tiny_codec) -> dict[str, bytes]:
    rgb = tiny_codec.encode(Picture(gradient(48, 32)), 2, reconstruct=False).data
    rgba_array = with_alpha(gradient(40, 24, seed=3))
    rgba = tiny_codec.encode(Picture(rgba_array[:, :, :3].copy(), rgba_array[:, :, 3].copy()), 1, reconstruct=False).data
    return {"rgb": rgb, "rgba": rgba}


@pytest.mark.parametrize("kind", ["rgb", "rgba"])
def test_real_file_decodes(tiny_codec, real_files, kind):
    decoded = tiny_codec.decode(real_files[kind])
    assert decoded.header.quality == (2 if kind == "rgb" else 1)
    assert decoded.picture.mode == ("RGB" if kind == "rgb" else "RGBA")


@pytest.mark.parametrize("kind", ["rgb", "rgba"])
def test_truncation_at_every_length_is_a_one_line_error(tiny_codec, real_files, kind):
    data = real_files[kind]
    for cut in range(len(data)):
        with pytest.raises(ContainerError) as info:
            unpack(data[:cut])
        one_line(info.value)
        with pytest.raises(DecodeError) as info:
            tiny_codec.decode(data[:cut])
        one_line(info.value)


def test_truncated_message_says_truncated(tiny_codec, real_files):
    data = real_files["rgb"]
    for cut in (5, HEADER_SIZE - 1, HEADER_SIZE, len(data) - 1):
        with pytest.raises(DecodeError, match="truncated"):
            tiny_codec.decode(data[:cut])


@pytest.mark.parametrize("kind", ["rgb", "rgba"])
@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipping_any_byte_is_a_one_line_error(tiny_codec, real_files, kind, mask):
    data = real_files[kind]
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= mask
        with pytest.raises(DecodeError) as info:
            tiny_codec.decode(bytes(damaged))
        one_line(info.value)


def test_trailing_bytes_are_an_error(tiny_codec, real_files):
    with pytest.raises(DecodeError, match="trailing"):
        tiny_codec.decode(real_files["rgb"] + b"\x00")


def test_not_an_aec_file(tiny_codec):
    for data in (b"", b"\x89PNG\r\n\x1a\n" + bytes(40), b"hello world, this is text" * 3, b"\x89AE"):
        with pytest.raises(DecodeError) as info:
            tiny_codec.decode(data)
        one_line(info.value)


# ---------------------------------------------------------------- payload corruption behind a valid CRC


def _repack(data: bytes, payload: bytes, flags: int | None = None) -> bytes:
    header = bytearray(data[:HEADER_SIZE])
    header[24:28] = struct.pack(">I", len(payload))
    if flags is not None:
        header[23] = flags
    return with_crc(bytes(header) + payload)


@pytest.mark.parametrize("kind", ["rgb", "rgba"])
def test_payload_truncated_or_extended_behind_a_valid_crc(tiny_codec, real_files, kind):
    data = real_files[kind]
    payload = data[HEADER_SIZE:-4]
    for cut in range(len(payload)):
        with pytest.raises(DecodeError) as info:
            tiny_codec.decode(_repack(data, payload[:cut]))
        one_line(info.value)
    for extra in (b"\x00", b"\x01\x02\x03\x04"):
        with pytest.raises(DecodeError) as info:
            tiny_codec.decode(_repack(data, payload + extra))
        one_line(info.value)


@pytest.mark.parametrize("kind", ["rgb", "rgba"])
def test_alpha_flag_toggled_behind_a_valid_crc(tiny_codec, real_files, kind):
    data = real_files[kind]
    flags = data[23] ^ FLAG_ALPHA
    with pytest.raises(DecodeError) as info:
        tiny_codec.decode(_repack(data, data[HEADER_SIZE:-4], flags))
    one_line(info.value)


@pytest.mark.parametrize(("kind", "channels"), [("rgb", 4), ("rgb", 2), ("rgba", 3), ("rgba", 1)])
def test_channel_count_must_agree_with_the_alpha_flag(tiny_codec, real_files, kind, channels):
    """Channels 2 and 4 have alpha, 1 and 3 do not: a header that contradicts its alpha flag is corrupt."""
    data = bytearray(real_files[kind])
    data[21] = channels
    forged = with_crc(bytes(data[:-4]))
    with pytest.raises(DecodeError) as info:
        tiny_codec.decode(forged)
    one_line(info.value)


@pytest.mark.parametrize("kind", ["rgb", "rgba"])
def test_random_payload_damage_behind_a_valid_crc_never_crashes(tiny_codec, real_files, kind):
    """Corrupt payloads with a correct checksum: a one-line DecodeError or a picture of the right size."""
    data = real_files[kind]
    header = read_header(data)
    payload = data[HEADER_SIZE:-4]
    rng = np.random.default_rng(11)
    for _ in range(150):
        damaged = bytearray(payload)
        for i in rng.choice(len(damaged), size=int(rng.integers(1, 4)), replace=False):
            damaged[i] = int(rng.integers(0, 256))
        try:
            decoded = tiny_codec.decode(_repack(data, bytes(damaged)))
        except DecodeError as exc:
            one_line(exc)
            continue
        assert (decoded.picture.width, decoded.picture.height) == (header.width, header.height)


# ---------------------------------------------------------------- absurd headers (valid CRC)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"width": 0}, "dimensions"),
        ({"height": 0}, "dimensions"),
        ({"width": 0, "height": 0}, "dimensions"),
        ({"width": 2**32 - 1, "height": 2**32 - 1}, "limit"),
        ({"width": 2**32 - 1, "height": 1}, "limit"),
        ({"width": 1 << 16, "height": 1 << 16}, "limit"),
        ({"channels": 0}, "channel"),
        ({"channels": 5}, "channel"),
        ({"channels": 255}, "channel"),
        ({"quality": 0}, "quality"),
        ({"flags": 4}, "flags"),  # bit 1 is the fractional quality (tests/test_ratecontrol.py); bit 2 is unknown
        ({"flags": 0x80}, "flags"),
        ({"flags": 0xFF}, "flags"),
        ({"version": 0}, "version"),
        ({"version": 5}, "version"),
        ({"version": 255}, "version"),
        ({"length": 2**32 - 1}, "truncated"),
        ({"length": 1000}, "truncated"),
        ({"magic": b"\x89PNG"}, "magic"),
        ({"crc": 0}, "checksum"),
    ],
)
def test_absurd_headers_are_refused(tiny_codec, fields, needle):
    data = raw_container(model_id=tiny_codec.model.model_id, **fields)
    with pytest.raises(ContainerError) as info:
        unpack(data, max_pixels=tiny_codec.max_pixels)
    assert needle in one_line(info.value)
    with pytest.raises(DecodeError) as info:
        tiny_codec.decode(data)
    assert needle in one_line(info.value)


def test_pixel_limit_is_checked_before_decoding(tiny_model):
    from aecompress import load_model

    codec = Codec(load_model(tiny_model), max_pixels=1000)
    data = raw_container(model_id=codec.model.model_id, width=40, height=26)  # 1040 pixels
    with pytest.raises(DecodeError, match="limit"):
        codec.decode(data)
    # right at the limit the header is accepted (the empty payload is then the problem)
    with pytest.raises(DecodeError) as info:
        codec.decode(raw_container(model_id=codec.model.model_id, width=40, height=25))
    assert "limit" not in str(info.value)


def test_quality_beyond_the_model(tiny_codec):
    q = tiny_codec.model.qualities + 1
    data = raw_container(model_id=tiny_codec.model.model_id, quality=q)
    assert unpack(data)[0].quality == q  # the container cannot know the model's levels…
    with pytest.raises(DecodeError, match="quality"):  # …the codec can
        tiny_codec.decode(data)


def test_unknown_model_id(tiny_codec):
    data = raw_container(model_id="00" * 8)
    with pytest.raises(DecodeError) as info:
        tiny_codec.decode(data)
    message = one_line(info.value)
    assert "0000000000000000" in message and tiny_codec.model.model_id in message
