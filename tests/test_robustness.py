"""Robustness: fuzzed .aec input, tiled transforms, killed training runs, pixel limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import AECOMPRESS, SAMPLE_DATA, SAMPLE_PHOTO, TINY_TRAIN, assert_one_line_failure, gradient, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aecompress import Codec, DecodeError, load_model
from aecompress.bitstream import HEADER_SIZE, Header, pack
from aecompress.images import Picture, read_image
from aecompress.metrics import psnr


@pytest.fixture(scope="module")
def seed_file(tiny_codec) -> bytes:
    return tiny_codec.encode(Picture(gradient(40, 24)), 1, reconstruct=False).data


def _decode_or_error(codec: Codec, data: bytes) -> None:
    """A fuzzed file must give a picture or a one-line DecodeError, nothing else."""
    try:
        picture = codec.decode(data).picture
    except DecodeError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert picture.width >= 1 and picture.height >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_fuzz_random_bytes(tiny_codec, data):
    _decode_or_error(tiny_codec, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_valid_crc_garbage_inside(tiny_codec, seed_file, data):
    """Damage behind a recomputed CRC reaches the header checks and the range decoder."""
    w = data.draw(st.integers(1, 300))
    h = data.draw(st.integers(1, 300))
    channels = data.draw(st.sampled_from([1, 2, 3, 4]))
    quality = data.draw(st.integers(1, 6))
    flags = data.draw(st.sampled_from([0, 1]))
    payload = data.draw(st.one_of(st.binary(max_size=600), st.just(seed_file[HEADER_SIZE:-4])))
    model_id = data.draw(st.sampled_from([tiny_codec.model.model_id, "0123456789abcdef"]))
    _decode_or_error(Codec(tiny_codec.model, max_pixels=1 << 20), pack(Header(model_id, w, h, channels, quality, flags), payload))


@pytest.mark.parametrize("width,height", [(10**6, 10**6), (2**32 - 1, 1), (70000, 70000)])
def test_absurd_dimensions_rejected_before_allocation(tiny_codec, width, height):
    data = pack(Header(tiny_codec.model.model_id, width, height, 3, 1), b"\x00")
    with pytest.raises(DecodeError, match="over the limit"):
        tiny_codec.decode(data)


def test_pixel_limit_on_encode_input(tiny_model, tmp_path):
    from conftest import save_image

    src = save_image(tmp_path / "big.png", gradient(200, 100))
    proc = run("encode", "-m", tiny_model, "--max-pixels", "10000", src, "-o", tmp_path / "big.aec")
    line = assert_one_line_failure(proc)
    assert "limit" in line and not (tmp_path / "big.aec").exists()
    env = dict(os.environ, AECOMPRESS_MAX_PIXELS="10000")
    proc = run("encode", "-m", tiny_model, src, "-o", tmp_path / "big.aec", env=env)
    assert_one_line_failure(proc)


def test_tiles_join_without_seams(tiny_model):
    """Tiled and whole-image transforms give the same rate and PSNR within 0.05 dB."""
    model = load_model(tiny_model)
    picture = read_image(SAMPLE_PHOTO.read_bytes())
    whole = Codec(model, tile=4096)
    tiled = Codec(model, tile=128, margin=64)
    a = whole.decode(whole.encode(picture, 2, reconstruct=False).data).picture
    enc = tiled.encode(picture, 2)
    b = tiled.decode(enc.data).picture
    assert abs(psnr(picture.color, a.color) - psnr(picture.color, b.color)) < 0.05
    assert abs(len(enc.data) / len(whole.encode(picture, 2, reconstruct=False).data) - 1) < 0.01
    # No block edges: the error along tile borders is no larger than elsewhere.
    err = np.abs(b.color.astype(np.int16) - a.color.astype(np.int16)).sum(axis=2)
    border_rows = [r for r in range(128, err.shape[0], 128)]
    assert err[border_rows].mean() <= max(1.0, 2 * err.mean())


def test_tiled_encoding_is_deterministic(tiny_model):
    model = load_model(tiny_model)
    picture = read_image(SAMPLE_PHOTO.read_bytes())
    assert Codec(model, tile=128).encode(picture, 3).data == Codec(model, tile=128).encode(picture, 3).data


def _steps(model_path) -> int:
    proc = run("info", "--json", model_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["training"]["steps"]


def test_sigkill_then_resume_loses_at_most_one_interval(tmp_path):
    """A run killed with SIGKILL resumes from its last checkpoint with --resume."""
    out = tmp_path / "m.safetensors"
    ckpt = tmp_path / "m.ckpt"
    proc = subprocess.Popen(
        [
            AECOMPRESS,
            "train",
            str(SAMPLE_DATA),
            "-o",
            str(out),
            *TINY_TRAIN,
            "--batch-size",
            "2",
            "--patch-size",
            "32",
            "--steps",
            "100000",
            "--checkpoint",
            str(ckpt),
            "--checkpoint-every",
            "1s",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not ckpt.exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # a few more checkpoints
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ckpt.exists(), "no checkpoint was written"
    assert not out.exists(), "SIGKILL leaves no model: only the checkpoint survives"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "a temporary file was left behind"
    import torch

    saved_step = torch.load(ckpt, weights_only=True)["step"]
    assert saved_step > 0
    proc = run("train", SAMPLE_DATA, "-o", out, "--resume", ckpt, "--steps", saved_step + 3)
    assert proc.returncode == 0, proc.stderr.decode()[-1500:]
    assert _steps(out) == saved_step + 3


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    proc = run("train", SAMPLE_DATA, "-o", tmp_path / "m.safetensors", "--resume", bad, "--steps", "2")
    line = assert_one_line_failure(proc)
    assert "checkpoint" in line


QUICK_REFUSAL = 120  # seconds: a refused option never starts the work
COMMAND_ARGS = {  # enough arguments for each command to reach its work
    "encode": ["{image}", "-o", "{tmp}/x.aec"],
    "decode": ["{tmp}/x.aec", "-o", "{tmp}/x.png"],
    "eval": ["{data}", "--baselines", ""],
    "score": ["{image}"],
    "train": ["{data}", "-o", "{tmp}/m.safetensors", "--steps", "1"],
    "demo": [],
    "info": ["default"],
}


def test_a_bad_device_is_a_usage_error_in_one_line_for_every_command_that_has_device(tmp_path):
    from conftest import save_image

    image = save_image(tmp_path / "a.png", gradient(32, 32))
    with_device = [c for c in COMMAND_ARGS if "--device" in run(c, "--help").stdout.decode()]
    assert "train" in with_device
    for command in with_device:
        args = [a.format(image=image, tmp=tmp_path, data=SAMPLE_DATA) for a in COMMAND_ARGS[command]]
        line = assert_one_line_failure(run(command, *args, "--device", "tpu", timeout=QUICK_REFUSAL), code=2)
        assert line == "aecompress: error: --device tpu: not a device (use auto, cpu, cuda or cuda:N)", (command, line)
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_the_default_margin_covers_the_receptive_fields(tiny_model, engine, monkeypatch):
    """Tiles of 64 pixels with the default margin: the same symbols (float rounding aside) and, decoding one file, pixels within one level."""
    monkeypatch.setenv("AECOMPRESS_ENGINE", engine)
    model = load_model(tiny_model)
    picture = read_image(SAMPLE_PHOTO.read_bytes())
    whole, tiled = Codec(model, tile=4096), Codec(model, tile=64)
    assert tiled.margin == 32
    symbols = [c.decode_symbols(c.encode(picture, 3, reconstruct=False).data)["y"] for c in (whole, tiled)]
    assert np.mean(symbols[0] != symbols[1]) < 1e-3
    data = whole.encode(picture, 3, reconstruct=False).data
    a, b = (c.decode(data).picture.color.astype(int) for c in (whole, tiled))
    assert np.abs(a - b).max() <= 1
