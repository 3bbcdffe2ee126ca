"""The mean-scale hyperprior: exact integer table choice, golden files, round trips, old files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAMPLE_DATA, across_thread_counts, check_golden_files, gradient, run
from PIL import Image
from reference_integer import hyper_synthesis_reference

from aecompress import Codec, load_model
from aecompress.bitstream import unpack
from aecompress.density import build_gaussian_tables
from aecompress.entropy import LOG_SCALE_MIN_Q8, LOG_SCALE_STEP_Q8, SCALES, scale_index_from_q8
from aecompress.images import from_pil
from aecompress.integer import IntegerHyperSynthesis
from aecompress.model import AutoEncoder, HyperSynthesis
from aecompress.presets import PRESETS

GOLDEN = Path(__file__).parent / "golden"


def _random_integer_net(seed: int, Nz: int = 12, M: int = 20, spread: float = 1.0) -> IntegerHyperSynthesis:
    torch.manual_seed(seed)
    h_s = HyperSynthesis(Nz, M)
    with torch.no_grad():
        for conv in h_s.convs:
            conv.weight.mul_(spread)
            conv.bias.uniform_(-2, 2)
    return IntegerHyperSynthesis.from_float(h_s)


# ---------------------------------------------------------------- the integer path


@pytest.mark.parametrize("seed", range(6))
def test_torch_and_numpy_integer_paths_agree_exactly(seed):
    rng = np.random.default_rng(seed)
    net = _random_integer_net(seed, spread=[0.5, 1.0, 4.0][seed % 3])
    h, w = int(rng.integers(1, 14)), int(rng.integers(1, 14))
    z = rng.integers(-60, 61, size=(12, h, w))
    z[rng.random(z.shape) < 0.02] = 10_000  # beyond the clamp: both paths must clamp alike
    height, width = 4 * h - int(rng.integers(0, 4)), 4 * w - int(rng.integers(0, 4))
    ref_mean, ref_index = hyper_synthesis_reference(net, z, height, width)
    for band in (1, 2, 3, 5, 16):
        mean, index = net(z, height, width, band=band)
        assert index.shape == (20, height, width)
        np.testing.assert_array_equal(index, ref_index)
        np.testing.assert_array_equal(mean, ref_mean.astype(np.float32))
    assert 0 <= ref_index.min() and ref_index.max() < SCALES


def test_integer_path_ignores_thread_count_and_batching():
    net = _random_integer_net(7)
    z = np.random.default_rng(7).integers(-30, 31, size=(12, 9, 11))
    results = across_thread_counts(lambda: net(z, 36, 44, band=4))
    for mean, index in results[1:]:
        np.testing.assert_array_equal(index, results[0][1])
        np.testing.assert_array_equal(mean, results[0][0])


def test_integer_network_is_close_to_the_float_one():
    """Rounding to integers changes the means by far less than a quantization step."""
    torch.manual_seed(3)
    h_s = HyperSynthesis(12, 20)
    net = IntegerHyperSynthesis.from_float(h_s)
    z = torch.randint(-8, 9, (1, 12, 5, 6)).float()
    with torch.no_grad():
        mean, log_scale = h_s(z)
    int_mean, int_index = net(z[0].long().numpy(), 20, 24)
    assert np.abs(int_mean - mean[0].numpy()).max() < 1e-2
    float_index = scale_index_from_q8(np.round(log_scale[0].numpy() * 256).astype(np.int64))
    assert np.mean(float_index == int_index) > 0.99


def test_scale_index_is_nearest_table_scale_and_clamped():
    q8 = np.array(
        [-10_000, LOG_SCALE_MIN_Q8, LOG_SCALE_MIN_Q8 + LOG_SCALE_STEP_Q8 // 2, LOG_SCALE_MIN_Q8 + 5 * LOG_SCALE_STEP_Q8 + 3, 10**9]
    )
    assert scale_index_from_q8(q8).tolist() == [0, 0, 1, 5, SCALES - 1]


def test_gaussian_tables_are_valid_and_cover_the_scales():
    tables = build_gaussian_tables()
    tables.validate()
    assert tables.freqs.shape[0] == SCALES
    assert np.all(np.diff(tables.lengths) >= 0)  # wider scales, wider support


def test_tampered_integer_weights_are_refused(tmp_path, tiny_hp_model):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tiny_hp_model))
    tensors["hyper_int.scale_bits"] = torch.tensor([2, 60, 3], dtype=torch.int32)
    bad = tmp_path / "bad.safetensors"
    with open(tiny_hp_model, "rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    save_file(tensors, str(bad), metadata=header["__metadata__"])
    proc = run("info", bad)
    assert proc.returncode != 0 and b"Traceback" not in proc.stderr


# ---------------------------------------------------------------- golden files (cross-CPU)


def test_golden_files_decode_to_the_recorded_symbols_and_pixels():
    """Encoded once and committed: whatever CPU runs this, the symbols are identical, pixels ±1."""
    codec, _ = check_golden_files("golden.json", version=2)
    assert codec.net.hyperprior


def test_golden_files_decode_through_the_cli(tmp_path):
    record = json.loads((GOLDEN / "golden.json").read_text())
    entry = record["files"][-1]
    out = tmp_path / "g.png"
    proc = run("decode", "-m", GOLDEN / record["model"], GOLDEN / entry["aec"], "-o", out)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as a, Image.open(GOLDEN / entry["png"]) as b:
        assert np.abs(np.asarray(a).astype(int) - np.asarray(b.convert("RGB")).astype(int)).max() <= 1


# ---------------------------------------------------------------- round trips


def test_preset_is_a_hyperprior_with_its_own_file_version(hp_codec):
    assert hp_codec.net.hyperprior and hp_codec.model.metadata["format_version"] == 2
    assert PRESETS["small-hp"].entropy == "hyperprior" and PRESETS["small"].entropy == "factorized"


@pytest.mark.parametrize("size", [(1, 1), (17, 5), (96, 64), (130, 70)])
def test_round_trip_matches_the_encoders_reconstruction(hp_codec, size):
    width, height = size
    picture = from_pil(Image.fromarray(gradient(width, height, seed=width)))
    for quality in range(1, hp_codec.model.qualities + 1):
        encoded = hp_codec.encode(picture, quality, estimate=True)
        header, _ = unpack(encoded.data)
        assert header.version == 2
        decoded = hp_codec.decode(encoded.data)
        np.testing.assert_array_equal(decoded.picture.rgb(), encoded.reconstruction.rgb())
        assert encoded.estimated_bits > 0


def test_tiling_changes_nothing(tiny_hp_model):
    model = load_model(tiny_hp_model)
    picture = from_pil(Image.fromarray(gradient(200, 150, seed=3)))
    whole = Codec(model).encode(picture, 2)
    tiled_codec = Codec(model, tile=64, margin=64)
    tiled = tiled_codec.encode(picture, 2)
    assert tiled.data == whole.data
    # The float synthesis on other tile sizes: on some CPUs (AMD EPYC, 2026-12-02) a pixel moves by 1.
    decoded = tiled_codec.decode(whole.data).picture.rgb().astype(int)
    assert np.abs(decoded - whole.reconstruction.rgb()).max() <= 1


def test_bytes_and_symbols_do_not_depend_on_thread_count(tiny_hp_model):
    model = load_model(tiny_hp_model)
    with Image.open(SAMPLE_DATA / "james-yarema-P2X7NDx_GP0.jpg") as im:
        picture = from_pil(im.convert("RGB").resize((160, 120)))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = Codec(model).encode(picture, 3).data
        torch.set_num_threads(2)
        two = Codec(model).encode(picture, 3).data
        symbols_two = Codec(model).decode_symbols(one)
        torch.set_num_threads(1)
        symbols_one = Codec(model).decode_symbols(one)
    finally:
        torch.set_num_threads(before)
    assert one == two
    for key in symbols_one:
        np.testing.assert_array_equal(symbols_one[key], symbols_two[key])


def test_factorized_files_still_decode_and_say_version_1(tmp_path, tiny_model, tiny_hp_model):
    image = tmp_path / "a.png"
    Image.fromarray(gradient()).save(image)
    assert run("encode", "-m", tiny_model, image, "-o", tmp_path / "f.aec").returncode == 0
    assert (tmp_path / "f.aec").read_bytes()[4] == 1
    assert run("decode", "-m", tiny_model, tmp_path / "f.aec", "-o", tmp_path / "f.png").returncode == 0
    # a factorized file given to a hyperprior model: a one-line error, not garbage
    proc = run("decode", "-m", tiny_hp_model, tmp_path / "f.aec", "-o", tmp_path / "g.png")
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr and not (tmp_path / "g.png").exists()


def test_cli_trains_and_codes_a_hyperprior_model(tmp_path, tiny_hp_model):
    image = tmp_path / "a.png"
    Image.fromarray(gradient(120, 90)).save(image)
    proc = run("encode", "-m", tiny_hp_model, image, "-o", tmp_path / "a.aec", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["bytes"] == (tmp_path / "a.aec").stat().st_size
    proc = run("info", tmp_path / "a.aec")
    assert b"format version 2" in proc.stdout


def test_init_from_factorized_copies_the_transforms(tmp_path, tiny_model):
    out = tmp_path / "hp.safetensors"
    proc = run(
        "train",
        SAMPLE_DATA,
        "-o",
        out,
        "--init",
        tiny_model,
        "--preset",
        "tiny-hp",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--patch-size",
        "64",
    )
    assert proc.returncode == 0, proc.stderr
    assert b"initialized" in proc.stderr
    a, b = load_model(tiny_model).net, load_model(out).net
    assert b.hyperprior and not a.hyperprior
    assert a.g_s[0].weight.shape == b.g_s[0].weight.shape


def test_scale_bound_lets_gradients_back_in_but_never_further_out():
    """The log-scale bound: no drift beyond the table (the failure that ruined a 5,000-step run)."""
    from aecompress.density import bound
    from aecompress.entropy import LOG_SCALE_HIGH, LOG_SCALE_LOW

    x = torch.tensor([LOG_SCALE_LOW - 50, 0.0, LOG_SCALE_HIGH + 50], requires_grad=True)
    y = bound(x, LOG_SCALE_LOW, LOG_SCALE_HIGH)
    assert y.tolist() == pytest.approx([LOG_SCALE_LOW, 0.0, LOG_SCALE_HIGH])
    y.sum().backward()  # gradient descent would lower every value
    assert x.grad.tolist() == [0.0, 1.0, 1.0]  # below the low end: blocked; above the high end: passes (back inside)
    x.grad = None
    (-bound(x, LOG_SCALE_LOW, LOG_SCALE_HIGH)).sum().backward()  # would raise every value
    assert x.grad.tolist() == [-1.0, -1.0, 0.0]


def test_training_keeps_the_scales_in_the_tables_range():
    """Hundreds of steps on nearly flat patches: the raw log-scales stay near the table."""
    from aecompress.entropy import LOG_SCALE_LOW

    torch.manual_seed(0)
    net = AutoEncoder(PRESETS["tiny-hp"])
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    x = torch.rand(4, 3, 64, 64) * 0.05 + 0.5  # nearly flat: every symbol wants the smallest σ
    for _ in range(400):  # a plain straight-through clamp drifts to about -60 here; the bound stays near -4.4
        x_hat, bits = net(x, torch.zeros(4, dtype=torch.long))
        loss = (0.0035 * 255**2 * (x_hat - x).square().mean(dim=(1, 2, 3)) + bits / 64**2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        z_hat = torch.round(net.h_a(net.analysis(x, torch.zeros(4, dtype=torch.long))))
        _, log_scale = net.h_s(z_hat)
    assert float(log_scale.min()) > LOG_SCALE_LOW - 3


def test_corrupted_hyperprior_payloads_fail_cleanly():
    """Bytes flipped inside the payload (CRC recomputed, so the decoder itself must cope)."""
    import struct
    import zlib

    from aecompress import DecodeError

    record = json.loads((GOLDEN / "golden.json").read_text())
    codec = Codec(load_model(GOLDEN / record["model"]))
    data = bytearray((GOLDEN / record["files"][-1]["aec"]).read_bytes())
    rng = np.random.default_rng(0)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(300):
        body = bytearray(data[:-4])
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(28, len(body)))
            body[pos] ^= 1 << int(rng.integers(0, 8))
        if rng.random() < 0.3:  # and sometimes a payload cut short (length field fixed to match)
            cut = int(rng.integers(29, len(body)))
            body = body[:cut]
            body[24:28] = struct.pack(">I", cut - 28)
        corrupted = bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))
        try:
            picture = codec.decode(corrupted).picture
            assert picture.rgb().shape == (100, 150, 3)
            outcomes["decoded"] += 1
        except DecodeError as exc:
            assert str(exc) and "\n" not in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0
