"""Encoder effort (-e): a refined latent codes smaller for the same decoder, decodes exactly, and works with rate control."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SAMPLE_PHOTO, read_pixels, run, save_image
from PIL import Image

from aecompress import Codec, load_model
from aecompress.images import from_pil
from aecompress.metrics import psnr
from aecompress.quality import MAX_EFFORT


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    with Image.open(SAMPLE_PHOTO) as im:
        array = np.asarray(im.convert("RGB").crop((160, 120, 288, 248)))  # 128×128
    return save_image(tmp_path_factory.mktemp("effort") / "crop.png", array)


def test_a_refined_file_decodes_to_the_encoders_reconstruction(crop, tmp_path):
    aec, png = tmp_path / "e.aec", tmp_path / "e.png"
    enc = run("encode", crop, "-o", aec, "-e", "1", "--json")
    assert enc.returncode == 0, enc.stderr
    record = json.loads(enc.stdout)
    assert record["effort"] == 1
    assert run("decode", aec, "-o", png).returncode == 0
    _, decoded = read_pixels(png)
    _, source = read_pixels(crop)
    assert psnr(source, decoded) == pytest.approx(record["psnr"], abs=1e-3)


def test_effort_0_is_the_plain_encoder(crop, tmp_path):
    assert run("encode", crop, "-o", tmp_path / "a.aec").returncode == 0
    assert run("encode", crop, "-o", tmp_path / "b.aec", "-e", "0").returncode == 0
    assert (tmp_path / "a.aec").read_bytes() == (tmp_path / "b.aec").read_bytes()


def test_refining_lowers_the_rate_distortion_cost_of_the_real_file(crop):
    """What the refinement optimizes, measured on real files: bits + λ·255²·SSE falls."""
    torch.manual_seed(0)
    codec = Codec(load_model())
    with Image.open(crop) as im:
        picture = from_pil(im)
    lam = codec.net.preset.lambdas[5]

    def cost(effort: int) -> float:
        encoded = codec.encode(picture, 6, effort=effort)
        sse = float(np.sum((picture.rgb().astype(np.float64) - encoded.reconstruction.rgb()) ** 2)) / 255**2
        return 8 * len(encoded.data) + lam * 255**2 * sse

    assert cost(2) < cost(0)


def test_rate_control_meets_its_target_with_effort(crop, tmp_path):
    proc = run("encode", crop, "-o", tmp_path / "t.aec", "-e", "1", "--target-size", "1500", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["target"]["met"] and record["bytes"] <= 1500
    assert (tmp_path / "t.aec").stat().st_size == record["bytes"]


def test_effort_out_of_range_is_a_usage_error(crop, tmp_path):
    proc = run("encode", crop, "-o", tmp_path / "x.aec", "-e", str(MAX_EFFORT + 1))
    assert proc.returncode == 2 and not (tmp_path / "x.aec").exists()


def test_a_factorized_model_ignores_effort(tiny_model, crop, tmp_path):
    assert run("encode", "-m", tiny_model, crop, "-o", tmp_path / "a.aec").returncode == 0
    proc = run("encode", "-m", tiny_model, crop, "-o", tmp_path / "b.aec", "-e", "1", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["effort"] == 0
    assert b"needs a model with a hyperprior" in proc.stderr
    assert (tmp_path / "a.aec").read_bytes() == (tmp_path / "b.aec").read_bytes()


def test_refined_files_are_reproducible(crop, tmp_path):
    for name in ("a.aec", "b.aec"):
        assert run("encode", crop, "-o", tmp_path / name, "-e", "1", "-q", "3").returncode == 0
    assert (tmp_path / "a.aec").read_bytes() == (tmp_path / "b.aec").read_bytes()


@pytest.mark.parametrize("quality", [2, 3])
def test_refined_files_beat_plain_ones_at_low_qualities_too(crop, quality):
    """The refined latent is coded against the ẑ it was optimized for (the analysis's); a recomputed ẑ lost here."""
    codec = Codec(load_model())
    with Image.open(crop) as im:
        picture = from_pil(im)
    lam = codec.net.preset.lambdas[quality - 1]
    analysis = codec.analyze(picture)
    plain = codec.encode_analysis(analysis, quality)
    refined = codec.encode_analysis(codec.refine_steps(analysis, quality, 60), quality)

    def cost(encoded) -> float:
        sse = float(np.sum((picture.rgb().astype(np.float64) - encoded.reconstruction.rgb()) ** 2)) / 255**2
        return 8 * len(encoded.data) + lam * 255**2 * sse

    assert cost(refined) < cost(plain)
    plain_z, refined_z = codec.decode_symbols(plain.data)["z"], codec.decode_symbols(refined.data)["z"]
    assert np.array_equal(plain_z, refined_z)
    assert not np.array_equal(codec.decode_symbols(plain.data)["residual"], codec.decode_symbols(refined.data)["residual"])
