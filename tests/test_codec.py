"""The library: public API, exact reconstruction, determinism, modes, sizes, model files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import SAMPLE_PHOTO, gradient, with_alpha
from PIL import Image

from aecompress import Codec, DecodeError, ModelFileError, decode_image, encode_image, load_model
from aecompress.images import Picture, read_image
from aecompress.metrics import psnr

# ---------------------------------------------------------------- the public API


def test_public_api_round_trip_from_a_path(tiny_model, rgb_png):
    model = load_model(tiny_model)
    data = encode_image(rgb_png, model)
    assert isinstance(data, bytes) and data[:4] == b"\x89AEC"
    image = decode_image(data, model)
    assert isinstance(image, Image.Image)
    assert image.size == (96, 64) and image.mode == "RGB"


def test_public_api_accepts_pil_images_and_arrays(tiny_model):
    model = load_model(tiny_model)
    array = gradient(40, 30)
    from_array = encode_image(array, model, quality=1)
    from_pil = encode_image(Image.fromarray(array), model, quality=1)
    assert from_array == from_pil
    assert decode_image(from_array, model).size == (40, 30)


def test_public_api_errors_are_value_errors(tiny_model):
    model = load_model(tiny_model)
    with pytest.raises(DecodeError):
        decode_image(b"not an aec file", model)
    with pytest.raises(TypeError):
        encode_image(12345, model)


def test_load_model_is_cached_and_names_its_id(tiny_model):
    a, b = load_model(tiny_model), load_model(str(tiny_model))
    assert a is b
    assert len(a.model_id) == 16 and int(a.model_id, 16) >= 0
    assert a.qualities == 4  # the tiny preset's ladder


# ---------------------------------------------------------------- exactness and determinism


def encode_decode(codec: Codec, picture: Picture, quality: int | None = None):
    encoded = codec.encode(picture, quality, reconstruct=True)
    decoded = codec.decode(encoded.data)
    return encoded, decoded


def test_reconstruction_is_exactly_what_decode_returns(tiny_codec):
    picture = Picture(gradient())
    for q in range(1, tiny_codec.model.qualities + 1):
        encoded, decoded = encode_decode(tiny_codec, picture, q)
        assert decoded.header == encoded.header
        np.testing.assert_array_equal(decoded.picture.color, encoded.reconstruction.color)
        assert psnr(picture.color, encoded.reconstruction.color) == psnr(picture.color, decoded.picture.color)


def test_encoding_twice_gives_identical_bytes(tiny_model, tiny_codec):
    picture = Picture(gradient(seed=5))
    first = tiny_codec.encode(picture, 2).data
    assert tiny_codec.encode(picture, 2, reconstruct=False).data == first
    fresh = Codec(load_model(tiny_model))
    assert fresh.encode(Picture(gradient(seed=5)), 2).data == first


def test_quality_out_of_range_is_refused(tiny_codec):
    for q in (0, tiny_codec.model.qualities + 1):
        with pytest.raises(ValueError, match="quality"):
            tiny_codec.encode(Picture(gradient(16, 16)), q)


def test_pixel_limit_on_encode(tiny_model):
    codec = Codec(load_model(tiny_model), max_pixels=96 * 64 - 1)
    with pytest.raises(ValueError, match="limit"):
        codec.encode(Picture(gradient()), 1)


_THREAD_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import torch
    torch.set_num_threads(int(sys.argv[1]))
    from aecompress import Codec, load_model
    from aecompress.images import read_image
    codec = Codec(load_model(sys.argv[2]))
    picture = read_image(open(sys.argv[3], "rb").read())
    out = {"threads": torch.get_num_threads()}
    for q in range(1, codec.model.qualities + 1):
        data = codec.encode(picture, q, reconstruct=False).data
        pixels = codec.decode(data).picture.color
        out[q] = [hashlib.sha256(data).hexdigest(), hashlib.sha256(pixels.tobytes()).hexdigest()]
    print(json.dumps(out))
    """
)


def _hashes_with_threads(threads: int, model, image) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _THREAD_SCRIPT, str(threads), str(model), str(image)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result.pop("threads") == threads
    return result


def test_thread_count_changes_neither_bytes_nor_pixels(tiny_model, tmp_path):
    image = tmp_path / "photo.png"
    with Image.open(SAMPLE_PHOTO) as im:  # 384x256: several latent rows and columns
        im.convert("RGB").resize((384, 256)).save(image)
    one = _hashes_with_threads(1, tiny_model, image)
    two = _hashes_with_threads(2, tiny_model, image)
    assert {q: v[0] for q, v in one.items()} == {q: v[0] for q, v in two.items()}, "encoded bytes differ"
    assert {q: v[1] for q, v in one.items()} == {q: v[1] for q, v in two.items()}, "decoded pixels differ"


# ---------------------------------------------------------------- modes


def test_grayscale_decodes_to_grayscale(tiny_codec):
    gray = gradient(channels=1)
    picture = read_image(_png(Image.fromarray(gray, "L")))
    assert picture.mode == "L"
    encoded, decoded = encode_decode(tiny_codec, picture)
    assert encoded.header.channels == 1
    assert decoded.picture.mode == "L" and decoded.picture.to_pil().mode == "L"
    assert decoded.picture.color.shape == (64, 96, 1)
    np.testing.assert_array_equal(decoded.picture.color, encoded.reconstruction.color)


def test_rgba_keeps_alpha_exactly(tiny_codec):
    rgba = with_alpha(gradient(seed=4))
    picture = read_image(_png(Image.fromarray(rgba, "RGBA")))
    encoded, decoded = encode_decode(tiny_codec, picture)
    assert encoded.header.channels == 4
    assert decoded.picture.mode == "RGBA"
    np.testing.assert_array_equal(decoded.picture.alpha, rgba[:, :, 3])
    np.testing.assert_array_equal(np.asarray(decoded.picture.to_pil())[:, :, 3], rgba[:, :, 3])


def test_gray_with_alpha_keeps_both(tiny_codec):
    la = np.dstack([gradient(channels=1), with_alpha(gradient())[:, :, 3]])
    picture = read_image(_png(Image.fromarray(la, "LA")))
    assert picture.mode == "LA"
    _, decoded = encode_decode(tiny_codec, picture)
    assert decoded.picture.mode == "LA"
    np.testing.assert_array_equal(decoded.picture.alpha, la[:, :, 1])


def test_constant_alpha_costs_almost_nothing(tiny_codec):
    rgb = gradient()
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    with_plane = tiny_codec.encode(Picture(opaque[:, :, :3].copy(), opaque[:, :, 3].copy()), 2).data
    without = tiny_codec.encode(Picture(rgb), 2).data
    assert len(without) < len(with_plane) <= len(without) + 64


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- models


def test_decoding_with_another_model_names_both_ids(tiny_model, other_model, tiny_codec):
    other = load_model(other_model)
    assert other.model_id != tiny_codec.model.model_id
    data = tiny_codec.encode(Picture(gradient()), 1, reconstruct=False).data
    with pytest.raises(DecodeError) as info:
        Codec(other).decode(data)
    message = str(info.value)
    assert "\n" not in message
    assert tiny_codec.model.model_id in message and other.model_id in message


# ---------------------------------------------------------------- odd sizes


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 5), (5, 3), (17, 33), (16, 16), (8192, 16), (16, 4100)])
def test_odd_sizes_round_trip(tiny_codec, width, height):
    picture = Picture(gradient(width, height, seed=width))
    encoded, decoded = encode_decode(tiny_codec, picture, 1)
    assert (encoded.header.width, encoded.header.height) == (width, height)
    assert decoded.picture.color.shape == (height, width, 3)
    np.testing.assert_array_equal(decoded.picture.color, encoded.reconstruction.color)


def test_wide_image_is_coded_without_seams(tiny_codec):
    """8192 pixels wide is several tiles: the seams must not be visible in the error."""
    picture = Picture(gradient(8192, 32, noise=0))
    _, decoded = encode_decode(tiny_codec, picture, tiny_codec.model.qualities)
    error = np.abs(decoded.picture.color.astype(np.int64) - picture.color).mean(axis=(0, 2))
    # per-column error near a tile border (every 1024 px) is no worse than elsewhere
    borders = np.concatenate([error[k * 1024 - 4 : k * 1024 + 4] for k in range(1, 8)])
    assert borders.mean() <= error.mean() * 1.5 + 2


# ---------------------------------------------------------------- estimated bits


def test_payload_size_matches_the_models_estimate(tiny_codec):
    picture = read_image(SAMPLE_PHOTO.read_bytes())
    encoded = tiny_codec.encode(picture, tiny_codec.model.qualities, reconstruct=False, estimate=True)
    if encoded.payload_bytes <= 2000:
        pytest.skip(f"payload of {encoded.payload_bytes} bytes is too small to compare")
    estimate = encoded.estimated_bits / 8
    assert abs(encoded.payload_bytes - estimate) <= 0.02 * estimate, (encoded.payload_bytes, estimate)


# ---------------------------------------------------------------- model files


def _copy(src, dst):
    shutil.copyfile(src, dst)
    return dst


def _data_region(path) -> tuple[int, int]:
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    return 8 + header_len, len(data)


def test_tampered_model_is_refused(tiny_model, tmp_path):
    start, end = _data_region(tiny_model)
    original = tiny_model.read_bytes()
    header = json.loads(original[8:start])
    # one position inside every tensor (weights and entropy tables), plus the first and last data byte
    positions = {start, end - 1}
    for name, entry in header.items():
        if name != "__metadata__":
            lo, hi = entry["data_offsets"]
            if hi > lo:
                positions.add(start + (lo + hi) // 2)
    for i, pos in enumerate(sorted(positions)):
        damaged = bytearray(original)
        damaged[pos] ^= 0x10
        path = tmp_path / f"tampered-{i}.safetensors"
        path.write_bytes(bytes(damaged))
        with pytest.raises(ModelFileError) as info:
            load_model(path)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("fraction", [0.0, 0.0001, 0.01, 0.5, 0.999])
def test_truncated_model_is_refused(tiny_model, tmp_path, fraction):
    data = tiny_model.read_bytes()
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_model_file_problems_are_model_file_errors(tiny_model, tmp_path, rgb_png):
    with pytest.raises(ModelFileError, match="no such"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(ModelFileError):
        load_model(tmp_path)  # a directory
    with pytest.raises(ModelFileError):
        load_model(rgb_png)  # an image
    import torch
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    with pytest.raises(ModelFileError, match="not an aecompress model"):
        load_model(plain)


def test_a_copied_model_keeps_its_id(tiny_model, tmp_path):
    copy = _copy(tiny_model, tmp_path / "renamed.safetensors")
    assert load_model(copy).model_id == load_model(tiny_model).model_id
