"""The checkerboard context: exact integer table choice, two-pass coding, golden files, growth from a hyperprior."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAMPLE_DATA, across_thread_counts, assert_one_line_failure, check_damaged_payload, check_golden_files, gradient, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reference_integer import context_reference

from aecompress import Codec, load_model
from aecompress.bitstream import unpack
from aecompress.entropy import SCALES, FormatError
from aecompress.images import from_pil
from aecompress.integer import ACT_LIMIT, IntegerContext
from aecompress.layout import CONTEXT_TAPS
from aecompress.model import AutoEncoder, CheckerboardContext, anchor_mask, table_log_scale
from aecompress.modelfile import save_model
from aecompress.presets import PRESETS

GOLDEN = Path(__file__).parent / "golden"


def _random_context(seed: int, M: int = 20, spread: float = 1.0) -> CheckerboardContext:
    torch.manual_seed(seed)
    context = CheckerboardContext(M)
    with torch.no_grad():
        for conv in [context.context, *context.params]:
            conv.weight.normal_(0, spread / conv.weight[0].numel() ** 0.5)
            conv.bias.uniform_(-2, 2)
    return context


def _inputs(rng: np.random.Generator, M: int, h: int, w: int):
    residual = rng.integers(-40, 41, size=(M, h, w)).astype(np.int32)
    residual[rng.random(residual.shape) < 0.02] = 2**30  # beyond the clamp: both paths must clamp alike
    mean = (rng.standard_normal((M, h, w)) * 5).astype(np.float32)
    index = rng.integers(0, SCALES, size=(M, h, w)).astype(np.uint8)
    return residual, mean, index


@pytest.fixture(scope="module")
def cb_model(tmp_path_factory, tiny_hp_model) -> Path:
    """The tiny hyperprior model given a context with random (non-trivial) weights."""
    hp = load_model(tiny_hp_model)
    net = AutoEncoder(PRESETS["tiny-cb"])
    net.load_transforms(hp.net)
    random = _random_context(5, M=net.preset.M, spread=0.5)
    net.context.load_state_dict(random.state_dict())
    path = tmp_path_factory.mktemp("cb") / "cb.safetensors"
    save_model(net, path)
    return path


@pytest.fixture(scope="module")
def cb_codec(cb_model) -> Codec:
    return Codec(load_model(cb_model))


# ---------------------------------------------------------------- the integer path


@pytest.mark.parametrize("seed", range(6))
def test_torch_and_numpy_context_paths_agree_exactly(seed):
    rng = np.random.default_rng(seed)
    net = IntegerContext.from_float(_random_context(seed, spread=[0.3, 1.0, 4.0][seed % 3]))
    h, w = int(rng.integers(1, 14)), int(rng.integers(1, 14))
    residual, mean, index = _inputs(rng, 20, h, w)
    ref_mean, ref_index = context_reference(net, residual, mean, index)
    assert ref_index.shape == (20, int((~anchor_mask(h, w)).sum()))
    for band in (1, 2, 3, 5, 32):
        got_mean, got_index = net(residual, mean, index, band=band)
        np.testing.assert_array_equal(got_index, ref_index)
        np.testing.assert_array_equal(got_mean, ref_mean)
    assert 0 <= ref_index.min(initial=0) and ref_index.max(initial=0) < SCALES


def test_context_reads_the_anchors_only():
    """What the decoder does not have yet (the non-anchors' residuals) cannot change anything."""
    rng = np.random.default_rng(1)
    net = IntegerContext.from_float(_random_context(1))
    residual, mean, index = _inputs(rng, 20, 9, 10)
    before = net(residual, mean, index)
    scrambled = residual.copy()
    others = ~anchor_mask(9, 10).numpy()
    scrambled[:, others] = rng.integers(-99, 99, size=scrambled[:, others].shape)
    after = net(scrambled, mean, index)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    # ...while an anchor's residual does move its neighbours' tables
    moved = residual.copy()
    moved[:, ~others] += 7
    assert not np.array_equal(net(moved, mean, index)[1], before[1])


def test_context_ignores_thread_count():
    rng = np.random.default_rng(2)
    net = IntegerContext.from_float(_random_context(2, spread=2.0))
    residual, mean, index = _inputs(rng, 20, 12, 13)
    results = across_thread_counts(lambda: net(residual, mean, index, band=4))
    for got_mean, got_index in results[1:]:
        np.testing.assert_array_equal(got_mean, results[0][0])
        np.testing.assert_array_equal(got_index, results[0][1])


def test_integer_context_is_close_to_the_float_one():
    """Rounding to integers moves the non-anchors' means and scales by far less than a table step."""
    context = _random_context(3, spread=0.5)
    net = IntegerContext.from_float(context)
    rng = np.random.default_rng(3)
    residual, mean, index = _inputs(rng, 20, 8, 9)
    residual = np.clip(residual, -40, 40)
    got_mean, got_index = net(residual, mean, index)
    anchor = anchor_mask(8, 9)
    table = torch.from_numpy((-565 + index.astype(np.float64) * 32) / 256).float()[None]
    anchors = (torch.from_numpy(residual).float() + torch.from_numpy(mean)) * anchor
    with torch.no_grad():
        delta_mean, delta_log_scale = context(anchors[None], torch.from_numpy(mean)[None], table)
    float_mean = (torch.from_numpy(mean) + delta_mean[0])[:, ~anchor].numpy()
    float_q8 = np.round(((table + delta_log_scale)[0][:, ~anchor]).numpy() * 256).astype(np.int64)
    assert np.abs(got_mean - float_mean).max() < 1e-2
    from aecompress.entropy import scale_index_from_q8

    assert np.mean(scale_index_from_q8(float_q8) == got_index) > 0.99


def test_training_cannot_push_the_hyperpriors_scales_below_the_table():
    """A first checkerboard run: the non-anchors' rate pushed h_s's log-scales to −450 through the table.

    With every log-scale below the table's smallest σ and y near zero, a smaller σ would
    still lower the bits; no gradient may push further down (the anchors would then be
    coded at the floor even where they need more).
    """
    torch.manual_seed(0)
    net = AutoEncoder(PRESETS["tiny-cb"])
    M = net.preset.M
    with torch.no_grad():
        net.h_s.convs[-1].bias[M:] = -10.0  # ln σ far below the table's floor (ln 0.11 ≈ −2.2)
        net.log_gain.fill_(-3.0)  # small latents: most residuals round to 0
    x = torch.rand(2, 3, 64, 64)
    _, bits = net(x, torch.tensor([0, 0]))
    bits.sum().backward()
    grad = net.h_s.convs[-1].bias.grad[M:]
    assert float(grad.max()) <= 0.0  # gradient descent may only raise them
    ls = torch.tensor([-10.0, -1.0, 10.0], requires_grad=True)
    table_log_scale(ls).sum().backward()
    assert ls.grad.tolist() == [0.0, 1.0, 1.0]


def test_a_context_that_peeks_is_refused():
    net = IntegerContext.from_float(_random_context(4))
    net.weights[0][:, :, 2, 2] = 1  # the symbol's own position: the decoder does not have it
    with pytest.raises(FormatError, match="does not have yet"):
        net.validate()
    assert (0, 0) not in CONTEXT_TAPS and len(CONTEXT_TAPS) == 12


def test_integer_context_bounds_keep_every_sum_exact():
    net = IntegerContext.from_float(_random_context(6, M=32))
    net.validate()
    assert ACT_LIMIT < 2**25
    net.biases[1][0] = 2**53  # a bias alone past float64's exact integers
    with pytest.raises(FormatError, match="2\\^53"):
        net.validate()


# ---------------------------------------------------------------- coding


def test_checkerboard_models_write_format_3(cb_codec, cb_model):
    assert cb_codec.net.checkerboard and cb_codec.model.metadata["format_version"] == 3
    proc = run("info", cb_model)
    assert proc.returncode == 0 and b"checkerboard context" in proc.stdout


@pytest.mark.parametrize("size", [(1, 1), (2, 1), (17, 5), (96, 64), (130, 70)])
def test_round_trip_matches_the_encoders_reconstruction(cb_codec, size):
    width, height = size
    picture = from_pil(Image.fromarray(gradient(width, height, seed=width)))
    for quality in [*range(1, cb_codec.model.qualities + 1), "2.5"]:
        encoded = cb_codec.encode(picture, quality, estimate=True)
        assert unpack(encoded.data)[0].version == 3
        decoded = cb_codec.decode(encoded.data)
        np.testing.assert_array_equal(decoded.picture.rgb(), encoded.reconstruction.rgb())
        assert encoded.estimated_bits > 0


def test_the_context_picks_other_tables_than_the_hyperprior(cb_codec):
    """The non-anchors' tables come from the context: with non-zero weights, many differ."""
    picture = from_pil(Image.fromarray(gradient(128, 96, seed=9)))
    symbols = cb_codec.decode_symbols(cb_codec.encode(picture, 3, reconstruct=False).data)
    h, w = symbols["index"].shape[1:]
    hyper_mean, hyper_index = cb_codec.model.hyper(symbols["z"], h, w)
    others = ~anchor_mask(h, w).numpy()
    np.testing.assert_array_equal(symbols["index"][:, ~others], hyper_index[:, ~others])
    assert np.mean(symbols["index"][:, others] != hyper_index[:, others]) > 0.1


def test_rate_map_matches_the_coded_file(cb_codec):
    picture = from_pil(Image.fromarray(gradient(80, 48, seed=4)))
    encoded = cb_codec.encode(picture, 2, estimate=True)
    rate = cb_codec.rate_map(picture, 2)
    assert rate.total_bits == pytest.approx(encoded.estimated_bits, rel=1e-6)
    np.testing.assert_array_equal(rate.reconstruction.rgb(), encoded.reconstruction.rgb())


def test_tiling_and_threads_change_nothing(cb_model):
    model = load_model(cb_model)
    picture = from_pil(Image.fromarray(gradient(200, 150, seed=3)))
    whole = Codec(model).encode(picture, 2)
    tiled_codec = Codec(model, tile=64, margin=64)
    assert tiled_codec.encode(picture, 2).data == whole.data
    tiled = tiled_codec.decode(whole.data).picture.rgb().astype(int)
    assert np.abs(tiled - whole.reconstruction.rgb()).max() <= 1  # the float synthesis, on other tile sizes
    one, two = across_thread_counts(lambda: Codec(model).encode(picture, 3).data, counts=(1, 2))
    assert one == two


def test_a_silent_context_codes_like_its_hyperprior(tiny_hp_model, tmp_path):
    """A hyperprior model given a fresh context (last layer zero): same pixels, about the same bytes."""
    hp = load_model(tiny_hp_model)
    net = AutoEncoder(PRESETS["tiny-cb"])
    net.load_transforms(hp.net)
    save_model(net, tmp_path / "cb.safetensors")
    cb = load_model(tmp_path / "cb.safetensors")
    picture = from_pil(Image.fromarray(gradient(160, 96, seed=2)))
    for quality in (1, 4):
        a = Codec(hp).encode(picture, quality)
        b = Codec(cb).encode(picture, quality)
        np.testing.assert_array_equal(a.reconstruction.rgb(), b.reconstruction.rgb())
        assert abs(len(a.data) - len(b.data)) <= 8  # the same symbols and tables, in another order


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_garbage_behind_a_valid_crc(cb_codec, data):
    """Damage reaches the range decoder of both passes: a picture or a one-line DecodeError."""
    seed = cb_codec.encode(from_pil(Image.fromarray(gradient(40, 24))), 2, reconstruct=False).data
    check_damaged_payload(cb_codec, seed, data, [2, 3])


# ---------------------------------------------------------------- the CLI, old files


def test_cli_adds_a_context_to_a_hyperprior_model_and_codes_with_it(tmp_path, tiny_hp_model):
    short = ("--steps", "2", "--batch-size", "4", "--patch-size", "64", "--threads", "1")
    hp = tmp_path / "hp.safetensors"  # a hyperprior model with a λ ladder of its own
    ladder = "0.001,0.002,0.004,0.008"
    assert run("train", SAMPLE_DATA, "-o", hp, "--init", tiny_hp_model, "--lambda", ladder, *short).returncode == 0
    out = tmp_path / "cb.safetensors"
    proc = run("train", SAMPLE_DATA, "-o", out, "--init", hp, "--preset", "tiny-cb", *short)
    assert proc.returncode == 0, proc.stderr
    assert b"added a checkerboard context" in proc.stderr
    info = json.loads(run("info", out, "--json").stdout)
    assert info["entropy"] == "checkerboard"
    assert info["lambdas"] == [float(v) for v in ladder.split(",")]  # the init model's gains were trained for these
    image = tmp_path / "a.png"
    Image.fromarray(gradient(120, 90)).save(image)
    proc = run("encode", "-m", out, image, "-o", tmp_path / "a.aec", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bytes"] == (tmp_path / "a.aec").stat().st_size
    assert b"format version 3" in run("info", tmp_path / "a.aec").stdout
    assert run("decode", "-m", out, tmp_path / "a.aec", "-o", tmp_path / "b.png").returncode == 0
    # a checkerboard file given to the hyperprior model: a one-line error, nothing written
    proc = run("decode", "-m", tiny_hp_model, tmp_path / "a.aec", "-o", tmp_path / "c.png")
    assert_one_line_failure(proc)
    assert not (tmp_path / "c.png").exists()


def test_tampered_context_weights_are_refused(tmp_path, cb_model):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(cb_model))
    weight = tensors["context_int.weight0"].clone()
    weight[:, :, 2, 2] = 5  # looks at the symbol being decoded
    tensors["context_int.weight0"] = weight
    with open(cb_model, "rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=header["__metadata__"])
    assert_one_line_failure(run("info", bad))


def test_context_weights_are_stored_as_int16_and_float_ones_are_refused(tmp_path, cb_model):
    """int16 halves the context's share of a model file; the golden model (int32) still loads below."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(cb_model))
    assert {tensors[f"context_int.weight{i}"].dtype for i in range(4)} == {torch.int16}
    assert tensors["hyper_int.weight0"].dtype == torch.int32  # hyperprior (v2) files stay as they were
    assert load_model(cb_model).context is not None
    golden = load_file(str(GOLDEN / "golden-cb-model.safetensors"))  # written as int32 before int16: still reads
    assert golden["context_int.weight0"].dtype == torch.int32 and load_model(GOLDEN / "golden-cb-model.safetensors").context
    tensors["context_int.weight1"] = tensors["context_int.weight1"].float() + 0.5  # would truncate silently
    with open(cb_model, "rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    bad = tmp_path / "float.safetensors"
    save_file(tensors, str(bad), metadata=header["__metadata__"])
    assert "not integers" in assert_one_line_failure(run("info", bad))


# ---------------------------------------------------------------- golden files (cross-CPU)


def test_golden_checkerboard_files_decode_to_the_recorded_symbols_and_pixels():
    """Encoded once and committed: whatever CPU runs this, the symbols are identical, pixels ±1."""
    codec, _ = check_golden_files("golden-cb.json", version=3)
    assert codec.net.checkerboard
