"""Training data: the bounded decode cache and streaming through it."""

from __future__ import annotations

import warnings

import pytest
from conftest import SAMPLE_DATA, err_lines, gradient, run, save_image

from aecompress.data import NoImagesError, PatchSampler, decoded_size, find_images


@pytest.fixture
def folder(tmp_path):
    for i in range(6):
        save_image(tmp_path / f"im{i}.png", gradient(200, 150, seed=i))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    return tmp_path


def test_a_folder_that_fits_is_decoded_once(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = PatchSampler(find_images(folder), 64)
    assert len(sampler) == 6 and not sampler.streaming
    assert len(sampler.skipped) == 1 and sampler.skipped[0][0].name == "broken.png"
    batch = sampler.sample(5)
    assert batch.shape == (5, 3, 64, 64) and 0 <= float(batch.min()) and float(batch.max()) <= 1


def test_a_folder_larger_than_the_cache_is_streamed_within_the_budget(folder):
    paths = [p for p in find_images(folder) if p.name != "broken.png"]
    budget = 2 * decoded_size(paths[0]) + 10
    sampler = PatchSampler(paths, 32, cache_bytes=budget, refresh_every=1, seed=3)
    assert sampler.streaming and len(sampler.images) == 2
    seen = set(sampler.cached)
    for _ in range(200):
        sampler.sample(2)
        assert sampler.cached_bytes() <= budget
        seen.update(sampler.cached)
    assert seen == set(paths)  # over time every image is used


def test_streaming_is_reproducible(folder):
    paths = [p for p in find_images(folder) if p.name != "broken.png"]
    budget = 3 * decoded_size(paths[0])
    a = PatchSampler(paths, 32, cache_bytes=budget, refresh_every=2, seed=5)
    b = PatchSampler(paths, 32, cache_bytes=budget, refresh_every=2, seed=5)
    for _ in range(20):
        assert a.sample(3).equal(b.sample(3))


def test_no_usable_image_is_an_error(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"nope")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NoImagesError):
            PatchSampler(find_images(tmp_path), 32)


def test_cli_says_how_many_images_it_loads_and_when_it_streams(tmp_path):
    out = tmp_path / "m.safetensors"
    proc = run(
        "train", SAMPLE_DATA, "-o", out, "--preset", "tiny", "--steps", "2", "--batch-size", "2", "--patch-size", "32", "--cache-size", "2M"
    )
    assert proc.returncode == 0, proc.stderr
    lines = err_lines(proc)
    assert any("loading 12 images" in line for line in lines), lines
    assert any("streaming" in line and "--cache-size" in line for line in lines), lines


@pytest.mark.parametrize("size", ["lots", "0.1k", "-5G"])
def test_cli_refuses_a_bad_cache_size(tmp_path, size):
    proc = run("train", SAMPLE_DATA, "-o", tmp_path / "m.safetensors", "--preset", "tiny", "--steps", "1", "--cache-size", size)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr and not (tmp_path / "m.safetensors").exists()
