"""The channel-wise context: exact integer refinement group by group, eight-pass coding, growth from a checkerboard model, golden files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    SAMPLE_DATA,
    across_thread_counts,
    assert_one_line_failure,
    check_damaged_payload,
    check_golden_files,
    gradient,
    read_pixels,
    run,
    save_image,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reference_integer import channel_reference, decoded_reference

import aecompress.integer
from aecompress import Codec, load_model
from aecompress.bitstream import unpack
from aecompress.coders import ChannelCoder
from aecompress.entropy import LOG_SCALE_MIN_Q8, LOG_SCALE_STEP_Q8, SCALES, FormatError, scale_index_from_q8
from aecompress.images import from_pil
from aecompress.integer import ACT_LIMIT, WEIGHT_LIMIT, Y_LIMIT, IntegerChannelContext, decoded_q8
from aecompress.layout import anchor_grid
from aecompress.metrics import psnr
from aecompress.model import AutoEncoder, ChannelContext
from aecompress.modelfile import save_model
from aecompress.presets import PRESETS, channel_groups, integer_shapes

GOLDEN = Path(__file__).parent / "golden"
CB_MODEL = GOLDEN / "golden-cb-model.safetensors"  # a trained tiny checkerboard model (tiny-cb)


def _random_channel_context(seed: int, M: int = 20, spread: float = 1.0) -> ChannelContext:
    """A float channel context with random weights in every layer (the last ones included)."""
    torch.manual_seed(seed)
    context = ChannelContext(M)
    with torch.no_grad():
        for layers in context.nets:
            for conv in layers:
                conv.weight.normal_(0, spread / conv.weight[0].numel() ** 0.5)
                conv.bias.uniform_(-2, 2)
    return context


def _group_inputs(rng: np.random.Generator, groups: tuple[int, ...], g: int, positions: int, extreme: bool = True):
    """Residuals and means of the groups before ``g``, and ``g``'s own means and tables, at ``positions`` positions."""
    before, size = sum(groups[:g]), groups[g]
    residual = rng.integers(-40, 41, size=(before, positions)).astype(np.int32)
    before_mean = (rng.standard_normal((before, positions)) * 5).astype(np.float32)
    mean = (rng.standard_normal((size, positions)) * 5).astype(np.float32)
    index = rng.integers(0, SCALES, size=(size, positions)).astype(np.uint8)
    if extreme:  # beyond the clamps: both paths must clamp alike
        huge = rng.random(residual.shape) < 0.02
        residual[huge] = rng.choice([-(2**30), 2**30], size=int(huge.sum()))  # ŷ past ±Y_LIMIT
        far = rng.random(mean.shape) < 0.02
        mean[far] = rng.choice([-1e6, 1e6], size=int(far.sum()))  # 256·μ past ±ACT_LIMIT
    return residual, before_mean, mean, index


# ---------------------------------------------------------------- the integer path


def test_decoded_symbols_in_fixed_point_are_clamped():
    rng = np.random.default_rng(0)
    residual, mean, _, _ = _group_inputs(rng, (6, 6), 1, 300)
    got = decoded_q8(residual, mean)
    np.testing.assert_array_equal(got, decoded_reference(residual, mean))
    assert got.dtype == np.int64 and (int(got.min()), int(got.max())) == (-Y_LIMIT, Y_LIMIT)
    assert decoded_q8(np.array([[2]]), np.array([[0.25]], np.float32))[0, 0] == 2 * 256 + 64


@pytest.mark.parametrize("seed", range(6))
def test_integer_channel_context_matches_the_int64_reference_exactly(seed, monkeypatch):
    """Whatever the chunks of positions the products run in, every group's means and tables are the reference's, bit for bit."""
    rng = np.random.default_rng(seed)
    net = IntegerChannelContext.from_float(_random_channel_context(seed, spread=[0.3, 1.0, 4.0][seed % 3]))
    groups = channel_groups(20)
    assert net.groups == groups and len(net.nets) == len(groups) - 1
    for g in range(1, len(groups)):
        positions = int(rng.integers(1, 300))
        residual, before_mean, mean, index = _group_inputs(rng, groups, g, positions)
        before_q8 = decoded_q8(residual, before_mean)
        before_q8[:, rng.random(positions) < 0.05] = -(2**40)  # past the activations' clamp too
        ref_mean, ref_index = channel_reference(net, g, before_q8, mean, index)
        assert ref_mean.dtype == np.float32 and ref_index.dtype == np.uint8 and ref_index.shape == index.shape
        assert np.mean(ref_index != index) > 0.2 and np.mean(ref_mean != mean) > 0.5  # the context does move them
        for chunk in (1, 7, aecompress.integer.POSITIONS_PER_PRODUCT):
            monkeypatch.setattr(aecompress.integer, "POSITIONS_PER_PRODUCT", chunk)
            got_mean, got_index = net(g, before_q8, mean, index)
            assert got_mean.dtype == np.float32 and got_index.dtype == np.uint8
            np.testing.assert_array_equal(got_index, ref_index)
            np.testing.assert_array_equal(got_mean, ref_mean)


def test_channel_context_ignores_thread_count_over_several_chunks():
    rng = np.random.default_rng(2)
    net = IntegerChannelContext.from_float(_random_channel_context(2, spread=2.0))
    positions = 2 * aecompress.integer.POSITIONS_PER_PRODUCT + 5
    residual, before_mean, mean, index = _group_inputs(rng, net.groups, 3, positions)
    before_q8 = decoded_q8(residual, before_mean)
    results = across_thread_counts(lambda: net(3, before_q8, mean, index))
    ref_mean, ref_index = channel_reference(net, 3, before_q8, mean, index)
    for got_mean, got_index in results:
        np.testing.assert_array_equal(got_mean, ref_mean)
        np.testing.assert_array_equal(got_index, ref_index)


def test_integer_channel_context_is_close_to_the_float_one():
    """Rounding to integers moves each group's means and scales by far less than a table step."""
    context = _random_channel_context(3, spread=0.5)
    net = IntegerChannelContext.from_float(context)
    rng = np.random.default_rng(3)
    for g in range(1, len(context.groups)):
        residual, before_mean, mean, index = _group_inputs(rng, context.groups, g, 500, extreme=False)
        got_mean, got_index = net(g, decoded_q8(residual, before_mean), mean, index)
        table = (LOG_SCALE_MIN_Q8 + index.astype(np.float64) * LOG_SCALE_STEP_Q8) / 256

        def image(a: np.ndarray) -> torch.Tensor:  # (C, P) → (1, C, P, 1), float32
            return torch.from_numpy(np.asarray(a, np.float32))[None, :, :, None]

        with torch.no_grad():
            delta_mean, delta_log_scale = context(g, image(residual + before_mean), image(mean), image(table))
        float_mean = mean + delta_mean[0, :, :, 0].numpy()
        float_q8 = np.round((table + delta_log_scale[0, :, :, 0].numpy()) * 256).astype(np.int64)
        assert np.abs(got_mean - float_mean).max() < 1e-2
        assert np.mean(scale_index_from_q8(float_q8) == got_index) > 0.99
        assert np.mean(got_index != index) > 0.2  # not trivially close: the tables did move


def test_a_fresh_channel_context_leaves_means_and_tables_as_they_were():
    """Each group's last layer starts at zero: a model given the context codes exactly as before."""
    net = IntegerChannelContext.from_float(ChannelContext(20))
    rng = np.random.default_rng(4)
    for g in range(1, len(net.groups)):
        residual, before_mean, mean, index = _group_inputs(rng, net.groups, g, 200)
        index[:, :SCALES] = np.arange(SCALES)  # every table
        got_mean, got_index = net(g, decoded_q8(residual, before_mean), mean, index)
        np.testing.assert_array_equal(got_mean, mean)
        np.testing.assert_array_equal(got_index, index)


def test_integer_channel_context_bounds_keep_every_sum_exact():
    net = IntegerChannelContext.from_float(_random_channel_context(6, M=32))
    for group in net.nets:
        group.validate()
    assert ACT_LIMIT < 2**25
    net.nets[1].biases[1][0] = 2**53  # a bias alone past float64's exact integers
    with pytest.raises(FormatError, match="2\\^53"):
        net.nets[1].validate()
    net = IntegerChannelContext.from_float(_random_channel_context(6, M=32))
    net.nets[2].weights[0][0, 0, 0, 0] = WEIGHT_LIMIT
    with pytest.raises(FormatError, match="out of range"):
        net.nets[2].validate()


def test_integer_channel_context_must_match_its_groups():
    tensors = IntegerChannelContext.from_float(_random_channel_context(7, M=32)).tensors()
    groups = channel_groups(32)
    read = IntegerChannelContext.from_tensors(tensors, groups)
    assert [w.shape for net in read.nets for w in net.weights] == integer_shapes(PRESETS["tiny-cc"])["channel"]
    assert {tensors[f"channel_int{g}.weight{i}"].dtype for g in (1, 2, 3) for i in range(3)} == {torch.int16}
    for other in [(3, 3, 8, 18), (4, 2, 6, 20), (2, 4, 6, 20)]:  # 32 channels, other groups
        assert sum(other) == 32
        with pytest.raises(FormatError, match="does not match its groups"):
            IntegerChannelContext.from_tensors(tensors, other)
    with pytest.raises(KeyError):  # one more group than the file holds a network for
        IntegerChannelContext.from_tensors(tensors, (*groups[:-1], 10, 10))
    broken = dict(tensors)
    broken["channel_int2.weight1"] = tensors["channel_int2.weight1"][:, :-1]
    with pytest.raises(FormatError, match="do not chain"):
        IntegerChannelContext.from_tensors(broken, groups)


# ---------------------------------------------------------------- coding


@pytest.fixture(scope="module")
def cc_model(tmp_path_factory) -> Path:
    """The tiny checkerboard model grown into tiny-cc, its channel context given random (non-trivial) weights."""
    net = AutoEncoder(PRESETS["tiny-cc"])
    net.load_transforms(load_model(CB_MODEL).net)
    net.channel_context.load_state_dict(_random_channel_context(5, M=net.preset.M, spread=0.5).state_dict())
    path = tmp_path_factory.mktemp("cc") / "cc.safetensors"
    save_model(net, path)
    return path


@pytest.fixture(scope="module")
def cc_codec(cc_model) -> Codec:
    return Codec(load_model(cc_model))


@pytest.fixture(scope="module")
def cb_codec() -> Codec:
    return Codec(load_model(CB_MODEL))


def _picture(width: int, height: int, seed: int = 0):
    return from_pil(Image.fromarray(gradient(width, height, seed=seed)))


def test_channel_models_write_format_4(cc_codec, cc_model):
    assert cc_codec.net.preset.channel and cc_codec.net.checkerboard and cc_codec.net.hyperprior
    assert cc_codec.model.metadata["format_version"] == 4 and cc_codec.format_version == 4
    proc = run("info", cc_model)
    assert proc.returncode == 0, proc.stderr
    assert b"checkerboard context" in proc.stdout and b"channel-wise context (groups of 3, 3, 6, 20)" in proc.stdout
    assert json.loads(run("info", cc_model, "--json").stdout)["entropy"] == "channel"


def test_parameter_count_includes_the_channel_context(cc_model):
    added = sum(p.numel() for p in ChannelContext(32).parameters())
    assert added > 0
    assert load_model(cc_model).parameter_count == load_model(CB_MODEL).parameter_count + added


@pytest.mark.parametrize("size", [(1, 1), (2, 1), (17, 5), (96, 64), (130, 70)])
def test_round_trip_matches_the_encoders_reconstruction(cc_codec, size):
    width, height = size
    picture = _picture(width, height, seed=width)
    for quality in [*range(1, cc_codec.model.qualities + 1), "2.5"]:
        encoded = cc_codec.encode(picture, quality, estimate=True)
        assert unpack(encoded.data)[0].version == 4
        decoded = cc_codec.decode(encoded.data)
        np.testing.assert_array_equal(decoded.picture.rgb(), encoded.reconstruction.rgb())
        assert encoded.estimated_bits > 0


def test_a_silent_channel_context_codes_like_its_checkerboard_model(cb_codec, tmp_path):
    """A checkerboard model given a fresh channel context (last layers zero): the same symbols, tables and pixels.

    Only the order of the symbols in the range-coded stream differs (group by group), so
    the files differ in their bytes but not, beyond a few bytes, in their size.
    """
    net = AutoEncoder(PRESETS["tiny-cc"])
    net.load_transforms(cb_codec.net)
    save_model(net, tmp_path / "cc.safetensors")
    cc_codec = Codec(load_model(tmp_path / "cc.safetensors"))
    assert cc_codec.model.model_id != cb_codec.model.model_id
    picture = _picture(160, 96, seed=2)
    for quality in (1, 4, "2.5"):
        a = cb_codec.encode(picture, quality)
        b = cc_codec.encode(picture, quality)
        np.testing.assert_array_equal(a.reconstruction.rgb(), b.reconstruction.rgb())
        (header_a, payload_a), (header_b, payload_b) = unpack(a.data), unpack(b.data)
        assert (header_a.version, header_b.version) == (3, 4)
        assert header_b == replace(header_a, model_id=cc_codec.model.model_id, version=4)  # the rest of the header alike
        assert abs(len(payload_a) - len(payload_b)) <= 8
        symbols_a, symbols_b = cb_codec.decode_symbols(a.data), cc_codec.decode_symbols(b.data)
        assert sorted(symbols_a) == sorted(symbols_b) == ["index", "residual", "z"]
        for name in symbols_a:
            np.testing.assert_array_equal(symbols_a[name], symbols_b[name])
        np.testing.assert_array_equal(cc_codec.decode(b.data).picture.rgb(), a.reconstruction.rgb())


def test_the_channel_context_picks_other_tables_than_the_checkerboard(cc_codec, cb_codec):
    """Same transforms, same ẑ: the first group's anchors keep the hyperprior's tables; later groups' tables move."""
    picture = _picture(128, 96, seed=9)
    mine = cc_codec.decode_symbols(cc_codec.encode(picture, 3, reconstruct=False).data)
    theirs = cb_codec.decode_symbols(cb_codec.encode(picture, 3, reconstruct=False).data)
    np.testing.assert_array_equal(mine["z"], theirs["z"])
    h, w = mine["index"].shape[1:]
    anchor = anchor_grid(h, w)
    first = channel_groups(cc_codec.net.preset.M)[0]
    _, hyper_index = cc_codec.model.hyper(mine["z"], h, w)
    np.testing.assert_array_equal(mine["index"][:first][:, anchor], hyper_index[:first][:, anchor])
    np.testing.assert_array_equal(mine["index"][:first][:, anchor], theirs["index"][:first][:, anchor])
    later = mine["index"][first:] != theirs["index"][first:]
    assert np.mean(later[:, anchor]) > 0.1 and np.mean(later[:, ~anchor]) > 0.1


def test_the_channel_context_reads_only_the_groups_before(cc_codec):
    """What the decoder does not have yet (this group's and later groups' residuals, other positions) changes nothing."""
    coder = cc_codec.latent_coder
    assert isinstance(coder, ChannelCoder)
    rng = np.random.default_rng(1)
    M, h, w = cc_codec.net.preset.M, 9, 10
    residual = rng.integers(-20, 21, size=(M, h, w)).astype(np.int32)
    mean = (rng.standard_normal((M, h, w)) * 3).astype(np.float32)
    index = rng.integers(0, SCALES, size=(M, h, w)).astype(np.uint8)
    anchor = anchor_grid(h, w)
    slices = coder._group_slices()
    assert [s.stop - s.start for s in slices] == list(channel_groups(M)) and slices[-1].stop == M

    def refined(g: int, where: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, i = mean.copy(), index.copy()
        coder._refine_group(g, slices[g], where, residual, m, i)
        np.testing.assert_array_equal(np.delete(m, np.s_[slices[g]], axis=0), np.delete(mean, np.s_[slices[g]], axis=0))
        np.testing.assert_array_equal(m[slices[g]][:, ~where], mean[slices[g]][:, ~where])  # only ``where`` moves
        return m[slices[g]], i[slices[g]]

    for where in (anchor, ~anchor):
        m0, i0 = refined(0, where, residual)
        np.testing.assert_array_equal(m0, mean[slices[0]])  # the first group has nothing before it
        np.testing.assert_array_equal(i0, index[slices[0]])
        for g in range(1, len(slices)):
            m, i = refined(g, where, residual)
            assert np.mean(i[:, where] != index[slices[g]][:, where]) > 0.1
            scrambled = residual.copy()
            scrambled[slices[g].start :] = rng.integers(-99, 99, size=scrambled[slices[g].start :].shape)
            scrambled[: slices[g].start][:, ~where] = rng.integers(-99, 99, size=scrambled[: slices[g].start][:, ~where].shape)
            m_scrambled, i_scrambled = refined(g, where, scrambled)
            np.testing.assert_array_equal(m_scrambled, m)
            np.testing.assert_array_equal(i_scrambled, i)
            moved = residual.copy()  # ...while an earlier group's residual there does move the tables
            moved[: slices[g].start][:, where] += 7
            assert not np.array_equal(refined(g, where, moved)[1], i)


def test_rate_map_matches_the_coded_file(cc_codec):
    picture = _picture(80, 48, seed=4)
    encoded = cc_codec.encode(picture, 2, estimate=True)
    rate = cc_codec.rate_map(picture, 2)
    assert rate.total_bits == pytest.approx(encoded.estimated_bits, rel=1e-6)
    np.testing.assert_array_equal(rate.reconstruction.rgb(), encoded.reconstruction.rgb())


def test_tiling_and_threads_change_nothing(cc_model):
    model = load_model(cc_model)
    picture = _picture(200, 150, seed=3)
    whole = Codec(model).encode(picture, 2)
    assert Codec(model, tile=64, margin=64).encode(picture, 2).data == whole.data
    one, two = across_thread_counts(lambda: Codec(model).encode(picture, 3).data, counts=(1, 2))
    assert one == two


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_garbage_behind_a_valid_crc(cc_codec, data):
    """Damage reaches the range decoder of all eight passes: a picture or a one-line DecodeError."""
    seed = cc_codec.encode(_picture(40, 24), 2, reconstruct=False).data
    check_damaged_payload(cc_codec, seed, data, [3, 4])


# ---------------------------------------------------------------- model files and the CLI


def _rewritten(source: Path, target: Path, change) -> Path:
    """A copy of a model file with ``change`` applied to its tensors, metadata (and so the recorded id) kept."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(source))
    change(tensors)
    with open(source, "rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    save_file(tensors, str(target), metadata=header["__metadata__"])
    return target


def _huge_bias(tensors: dict) -> None:
    bias = tensors["channel_int2.bias1"].clone()
    bias[0] = 2**53
    tensors["channel_int2.bias1"] = bias


def _float_weights(tensors: dict) -> None:
    tensors["channel_int1.weight0"] = tensors["channel_int1.weight0"].float() + 0.5  # would truncate silently


def _wrong_width(tensors: dict) -> None:
    for name in ("weight2", "bias2"):  # the last group's network, one output pair short: consistent in itself
        tensors[f"channel_int3.{name}"] = tensors[f"channel_int3.{name}"][:-2].clone()


def _missing_group(tensors: dict) -> None:
    del tensors["channel_int3.weight2"]


@pytest.mark.parametrize(
    "change, needle",
    [(_huge_bias, "2^53"), (_float_weights, "not integers"), (_wrong_width, "does not match its groups"), (_missing_group, "inconsistent")],
    ids=["bias past 2^53", "float weights", "wrong width", "missing tensor"],
)
def test_tampered_channel_context_weights_are_refused(tmp_path, cc_model, change, needle):
    bad = _rewritten(cc_model, tmp_path / "bad.safetensors", change)
    assert needle in assert_one_line_failure(run("info", bad))
    image = save_image(tmp_path / "a.png", gradient(32, 32))
    assert needle in assert_one_line_failure(run("encode", "-m", bad, image, "-o", tmp_path / "a.aec"))
    assert not (tmp_path / "a.aec").exists()


def test_cli_adds_a_channel_context_to_a_checkerboard_model_and_codes_with_it(tmp_path):
    out = tmp_path / "cc.safetensors"
    short = ("--steps", "5", "--batch-size", "4", "--patch-size", "64", "--threads", "1")
    proc = run("train", SAMPLE_DATA, "-o", out, "--init", CB_MODEL, "--preset", "tiny-cc", *short)
    assert proc.returncode == 0, proc.stderr
    assert b"added a channel-wise context" in proc.stderr
    assert b"added a checkerboard context" not in proc.stderr
    info = json.loads(run("info", out, "--json").stdout)
    assert info["entropy"] == "channel" and info["preset"] == "tiny-cc"
    trained = load_model(out).parts["channel"]
    assert any(net.weights[-1].any() for net in trained.nets)  # the context learned from its silent start
    image = save_image(tmp_path / "a.png", gradient(120, 90))
    _, source = read_pixels(image)
    for effort in ("0", "1"):
        aec, png = tmp_path / f"e{effort}.aec", tmp_path / f"e{effort}.png"
        proc = run("encode", "-m", out, image, "-o", aec, "-e", effort, "--json")
        assert proc.returncode == 0, proc.stderr
        record = json.loads(proc.stdout)
        assert record["effort"] == int(effort) and record["bytes"] == aec.stat().st_size
        assert b"format version 4" in run("info", aec).stdout
        proc = run("decode", "-m", out, aec, "-o", png)
        assert proc.returncode == 0, proc.stderr
        _, decoded = read_pixels(png)
        assert psnr(source, decoded) == pytest.approx(record["psnr"], abs=1e-3)  # the decoder's pixels are the encoder's
    # a channel-wise file given the checkerboard model it grew from: a one-line error, nothing written
    assert_one_line_failure(run("decode", "-m", CB_MODEL, tmp_path / "e0.aec", "-o", tmp_path / "c.png"))
    assert not (tmp_path / "c.png").exists()


# ---------------------------------------------------------------- golden files (cross-CPU)


def test_golden_channel_files_decode_to_the_recorded_symbols_and_pixels():
    """Encoded once and committed: whatever CPU runs this, the symbols are identical, pixels ±1."""
    codec, record = check_golden_files("golden-cc.json", version=4)
    assert codec.net.preset.channel
    assert all(net.weights[-1].any() for net in codec.model.parts["channel"].nets)  # the files exercise every group's network
    assert len(record["files"]) == codec.model.qualities
