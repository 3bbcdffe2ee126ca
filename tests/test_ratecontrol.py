"""Fractional qualities and rate control (`--target-size`, `--target-bpp`, `--target-psnr`)."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch
from conftest import SAMPLE_DATA, assert_one_line_failure, err_lines, gradient, psnr_numpy, read_pixels, run, save_image
from PIL import Image

from aecompress import Codec, DecodeError, load_model
from aecompress.bitstream import FLAG_FRACTION, HEADER_SIZE, ContainerError, Header, pack, unpack
from aecompress.images import from_pil
from aecompress.metrics import psnr
from aecompress.quality import format_quality, parse_quality, quality_value
from aecompress.ratecontrol import Target, choose, last_good

PHOTOS = sorted(SAMPLE_DATA.glob("*.jpg"))


def photo(index: int = 0, size: tuple[int, int] = (128, 96)):
    """A real photo, small: the tiny models code it in milliseconds."""
    with Image.open(PHOTOS[index]) as im:
        return from_pil(im.convert("RGB").resize(size, Image.Resampling.LANCZOS))


@pytest.fixture
def photo_png(tmp_path):
    return save_image(tmp_path / "photo.png", photo(1, (160, 112)).color)


# ---------------------------------------------------------------- the quality grid


@pytest.mark.parametrize(
    "text, hundredths", [("5", 500), ("5.37", 537), ("5.5", 550), ("5.50", 550), (7, 700), (2.25, 225), ("10.00", 1000)]
)
def test_qualities_are_exact_hundredths(text, hundredths):
    assert parse_quality(text) == hundredths
    assert parse_quality(format_quality(hundredths)) == hundredths


@pytest.mark.parametrize("text", ["5.375", "5.001", "abc", "nan", "inf", ""])
def test_qualities_off_the_grid_are_refused(text):
    with pytest.raises(ValueError):
        parse_quality(text)


def test_quality_values_in_json_stay_integers_for_levels():
    assert quality_value(600) == 6 and isinstance(quality_value(600), int)
    assert quality_value(537) == 5.37


def test_integer_quality_is_the_old_computation(hp_codec):
    """The gain moved after g_a and out of the tiles: for integer levels, bit for bit the old formula (torch engine)."""
    from aecompress import Codec
    from aecompress.transforms import TorchTransforms

    picture = photo()
    net = hp_codec.net
    codec = Codec(hp_codec.model, transforms=TorchTransforms(net))
    x = torch.from_numpy(picture.rgb().copy()).permute(2, 0, 1)[None].float().div(255.0)
    with torch.inference_mode():
        for level in range(1, hp_codec.model.qualities + 1):
            q = torch.tensor([level - 1])
            gain, inverse = net.gains(level - 1)
            old = net.analysis(x.contiguous(memory_format=torch.channels_last), q)
            new = torch.from_numpy(codec.analyze(picture).features) * gain[None, :, None, None]
            assert torch.equal(old, new)
            y = torch.round(new)
            assert torch.equal(net.synthesis(y, q), net.g_s(y * inverse[None, :, None, None]))


def test_the_coders_gains_are_the_networks_within_two_ulp(hp_codec):
    """The coding path computes gains without torch (float64, rounded once); torch's float32 gains agree to 2 ulp."""
    net, model = hp_codec.net, hp_codec.model
    with torch.no_grad():
        for level in range(model.qualities - 1):
            for t in (0.0, 0.01, 0.3, 0.5, 0.77, 0.99):
                for ours, theirs in zip(model.gains(level, t), net.gains(level, t), strict=True):
                    assert ours.dtype == np.float32
                    np.testing.assert_array_max_ulp(ours, theirs.numpy(), maxulp=2)


def test_integer_quality_writes_no_fraction(hp_codec):
    data = hp_codec.encode(photo(), 2, reconstruct=False).data
    assert data == hp_codec.encode(photo(), "2.00", reconstruct=False).data
    header, _ = unpack(data)
    assert (header.quality, header.fraction, header.flags & FLAG_FRACTION) == (2, 0, 0)
    assert len(data) == HEADER_SIZE + struct.unpack(">I", data[24:28])[0] + 4


# ---------------------------------------------------------------- fractional qualities


def test_fractional_quality_round_trip(hp_codec):
    picture = photo()
    encoded = hp_codec.encode(picture, "2.37")
    header, payload = unpack(encoded.data)
    assert (header.quality, header.fraction, header.hundredths) == (2, 37, 237)
    assert encoded.data[22] == 2 and encoded.data[23] & FLAG_FRACTION and encoded.data[HEADER_SIZE] == 37
    decoded = hp_codec.decode(encoded.data)
    np.testing.assert_array_equal(decoded.picture.rgb(), encoded.reconstruction.rgb())
    # its own setting: neither neighbouring level's file
    assert encoded.data not in (hp_codec.encode(picture, 2).data, hp_codec.encode(picture, 3).data)


def test_fraction_changes_only_the_gains(hp_codec):
    """Symbols decode with level L's tables; the fraction reaches the synthesis alone."""
    encoded = hp_codec.encode(photo(), "1.5", reconstruct=False)
    header, _ = unpack(encoded.data)
    body = bytearray(encoded.data[:-4])
    body[23] &= ~FLAG_FRACTION  # the same symbols recorded as the integer level 1 (fraction byte removed)
    del body[HEADER_SIZE]
    body[24:28] = struct.pack(">I", len(body) - HEADER_SIZE)
    as_level = bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))
    symbols = hp_codec.decode_symbols(encoded.data)
    for key, value in hp_codec.decode_symbols(as_level).items():
        np.testing.assert_array_equal(value, symbols[key])
    assert not np.array_equal(hp_codec.decode(as_level).picture.rgb(), hp_codec.decode(encoded.data).picture.rgb())


def test_gains_interpolate_geometrically(hp_codec):
    net = hp_codec.net
    gain, inverse = net.gains(1, 0.25)
    expected = torch.exp(0.75 * net.log_gain[1] + 0.25 * net.log_gain[2])
    torch.testing.assert_close(gain, expected)
    torch.testing.assert_close(inverse, torch.exp(0.75 * net.log_inverse_gain[1] + 0.25 * net.log_inverse_gain[2]))


def test_fraction_above_the_top_level_is_refused(hp_codec):
    top = hp_codec.model.qualities
    with pytest.raises(ValueError, match="out of range"):
        hp_codec.encode(photo(), f"{top}.01")
    # a file claiming it (made by hand): refused by the decoder, in one line
    data = hp_codec.encode(photo(), f"{top - 1}.5", reconstruct=False).data
    body = bytearray(data[:-4])
    body[22] = top
    forged = bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))
    with pytest.raises(DecodeError, match="out of range"):
        hp_codec.decode(forged)


def _rewrite(data: bytes, at: int, value: int | None, version: int | None = None) -> bytes:
    """A copy of a file with one byte changed (or the fraction byte cut), CRC recomputed."""
    body = bytearray(data[:-4])
    if value is None:
        del body[at]
        body[24:28] = struct.pack(">I", len(body) - HEADER_SIZE)
    else:
        body[at] = value
    if version is not None:
        body[4] = version
    return bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))


@pytest.mark.parametrize(
    "change, message",
    [
        ((HEADER_SIZE, 0), "invalid quality fraction 0"),
        ((HEADER_SIZE, 100), "invalid quality fraction 100"),
        ((HEADER_SIZE, 255), "invalid quality fraction 255"),
        ((4, 1), "format-version-1"),
    ],
    ids=["fraction 0", "fraction 100", "fraction 255", "version 1"],
)
def test_container_refuses_a_malformed_fraction(hp_codec, change, message):
    data = hp_codec.encode(photo(), "2.5", reconstruct=False).data
    bad = _rewrite(data, *change)
    with pytest.raises(ContainerError, match=message):
        unpack(bad)
    with pytest.raises(DecodeError) as caught:
        hp_codec.decode(bad)
    assert "\n" not in str(caught.value)


def test_container_refuses_a_flag_without_its_byte():
    header = Header("00" * 8, 4, 4, 3, 2, 0, 2)
    data = bytearray(pack(header, b""))
    data[23] |= FLAG_FRACTION
    body = bytes(data[:-4])
    with pytest.raises(ContainerError, match="fraction byte is missing"):
        unpack(body + struct.pack(">I", zlib.crc32(body)))


def test_pack_refuses_inconsistent_fraction_fields():
    with pytest.raises(ValueError):
        pack(Header("00" * 8, 4, 4, 3, 2, FLAG_FRACTION, 2, 0), b"x")
    with pytest.raises(ValueError):
        pack(Header("00" * 8, 4, 4, 3, 2, 0, 2, 37), b"x")
    with pytest.raises(ValueError):
        pack(Header("00" * 8, 4, 4, 3, 2, FLAG_FRACTION, 1, 37), b"x")


def test_cli_fractional_quality_round_trip(tmp_path, tiny_hp_model, photo_png):
    aec, out = tmp_path / "p.aec", tmp_path / "p.png"
    proc = run("encode", "-m", tiny_hp_model, photo_png, "-o", aec, "-q", "2.37", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["quality"] == 2.37 and report["bytes"] == aec.stat().st_size
    info = json.loads(run("info", aec, "--json").stdout)
    assert info["quality"] == 2.37 and info["overhead_bytes"] == 33
    proc = run("decode", "-m", tiny_hp_model, aec, "-o", out)
    assert proc.returncode == 0 and b"q2.37" in proc.stderr
    _, pixels = read_pixels(out)
    _, original = read_pixels(photo_png)
    assert abs(psnr_numpy(original, pixels) - report["psnr"]) < 1e-3


def test_cli_factorized_model_refuses_a_fraction(tmp_path, tiny_model, photo_png):
    line = assert_one_line_failure(run("encode", "-m", tiny_model, photo_png, "-o", tmp_path / "x.aec", "-q", "1.5"), code=2)
    assert "factorized" in line and "1.5" in line
    assert not (tmp_path / "x.aec").exists()


def test_cli_off_grid_quality_is_a_usage_error(tmp_path, tiny_hp_model, photo_png):
    proc = run("encode", "-m", tiny_hp_model, photo_png, "-o", tmp_path / "x.aec", "-q", "2.375")
    assert proc.returncode == 2 and b"two decimals" in proc.stderr and b"Traceback" not in proc.stderr


# ---------------------------------------------------------------- the search


def _brute_last_good(flags: list[bool]) -> int:
    """The answer for a predicate true on a prefix: its last index (−1 when empty)."""
    return (flags.index(False) if False in flags else len(flags)) - 1


@pytest.mark.parametrize("seed", range(40))
def test_search_equals_a_sweep_when_the_measure_is_monotone(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    metric = np.cumsum(rng.exponential(1.0, n))  # increasing, like file size with quality
    limit = float(rng.uniform(metric[0] - 5, metric[-1] + 5))
    flags = list(metric <= limit)
    probes = []

    def good(i):
        probes.append(i)
        return bool(metric[i] <= limit)

    def guess(a, b):
        return (limit - metric[a]) / (metric[b] - metric[a])

    for g in (None, guess):
        probes.clear()
        assert last_good(list(range(n)), good, g) == _brute_last_good(flags)
        assert len(set(probes)) <= 2 * (np.log2(n + 1) + 2)
    if 0 < _brute_last_good(flags) < n - 1:  # the bracket known: as in the second stage
        assert last_good(list(range(n)), good, guess, ends_known=True) == _brute_last_good(flags)


@pytest.mark.parametrize("seed", range(40))
def test_search_always_ends_on_a_boundary(seed):
    """Even when the measure wobbles: a point that passes, the next one failing (both tried)."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 150))
    metric = np.cumsum(rng.normal(1.0, 3.0, n))  # noisy: many local dips
    limit = float(rng.uniform(metric.min(), metric.max()))
    seen = {}

    def good(i):
        seen[i] = bool(metric[i] <= limit)
        return seen[i]

    def guess(a, b):
        return (limit - metric[a]) / (metric[b] - metric[a]) if metric[b] != metric[a] else float("nan")

    k = last_good(list(range(n)), good, guess)
    assert k == -1 or seen[k] is True
    assert k == n - 1 or seen[k + 1] is False


def _sweep(codec: Codec, picture) -> dict[int, tuple[int, float]]:
    analysis = codec.analyze(picture)
    result = {}
    for h in codec.grid():
        encoded = codec.encode_analysis(analysis, format_quality(h))
        result[h] = (len(encoded.data), psnr(picture.color, encoded.reconstruction.color))
    return result


def _sweep_best(sweep: dict[int, tuple[int, float]], target: Target, pixels: int) -> int | None:
    """Brute force: the largest file not over the target; the smallest file reaching a PSNR."""
    if target.kind == "psnr":
        ok = [h for h, (_, db) in sweep.items() if db >= target.value]
        return min(ok, key=lambda h: (sweep[h][0], h)) if ok else None
    budget = target.value if target.kind == "size" else target.value * pixels / 8
    ok = [h for h, (n, _) in sweep.items() if n <= budget]
    return max(ok, key=lambda h: (sweep[h][0], h)) if ok else None


def _targets(sweep: dict[int, tuple[int, float]], pixels: int) -> list[Target]:
    sizes = sorted({n for n, _ in sweep.values()})
    dbs = sorted(db for _, db in sweep.values())
    picks = np.linspace(0, 1, 9)[1:-1]
    targets = [Target("size", sizes[int(p * (len(sizes) - 1))] + 1) for p in picks]
    targets += [Target("bpp", 8 * sizes[int(p * (len(sizes) - 1))] / pixels + 1e-6) for p in picks[::2]]
    targets += [Target("psnr", dbs[int(p * (len(dbs) - 1))] - 1e-6) for p in picks]
    return targets


@pytest.fixture(params=["factorized", "hyperprior"])
def any_codec(request, tiny_model, tiny_hp_model):
    return Codec(load_model(tiny_model if request.param == "factorized" else tiny_hp_model))


def test_choice_equals_a_sweep_when_size_and_psnr_grow_with_quality(any_codec):
    """The search against brute force over the whole grid (the levels, or every hundredth), on a
    codec whose files grow and whose PSNR rises strictly with the quality: the real codec's
    files, padded, with a reconstruction that loses one value less at each step."""
    codec = _MonotoneCodec(any_codec)
    for index in range(2):
        picture = photo(index)
        pixels = picture.width * picture.height
        sweep = codec.sweep(picture)
        for target in _targets(sweep, pixels):
            choice = choose(codec, picture, target)
            assert choice.met and choice.hundredths == _sweep_best(sweep, target, pixels), target
            assert choice.tried <= 2 * (np.log2(len(sweep)) + 3)


def test_choice_on_real_photos_meets_the_target_at_a_boundary(any_codec):
    """The real tiny models, whose file size and PSNR wobble from one hundredth to the next: the
    choice meets the target and its neighbour towards better quality does not; where the
    sweep does grow with quality it is the brute-force answer (README: rate control)."""
    step = any_codec.grid()[1] - any_codec.grid()[0]
    for index in range(2):
        picture = photo(index)
        pixels = picture.width * picture.height
        sweep = _sweep(any_codec, picture)
        for target in _targets(sweep, pixels):
            choice = choose(any_codec, picture, target)
            n, db = sweep[choice.hundredths]
            assert len(choice.encoded.data) == n and psnr(picture.color, choice.encoded.reconstruction.color) == db
            if not choice.met:  # declared out of reach: only when the closest level itself fails
                assert choice.hundredths == (100 * any_codec.model.qualities if target.kind == "psnr" else 100)
                assert not target.met(choice.encoded, db, picture)
                continue
            assert target.met(choice.encoded, db, picture)
            neighbour = choice.hundredths + (-step if target.kind == "psnr" else step)
            if neighbour in sweep:
                assert not target.met(_Sized(sweep[neighbour][0]), sweep[neighbour][1], picture), (target, choice.hundredths)
            if _monotone(sweep, "psnr" if target.kind == "psnr" else "size"):
                assert choice.hundredths == _sweep_best(sweep, target, pixels), target


def _monotone(sweep, kind: str) -> bool:
    values = [sweep[h][1] if kind == "psnr" else sweep[h][0] for h in sorted(sweep)]
    return all(b > a for a, b in zip(values, values[1:], strict=False))


class _Sized:
    def __init__(self, n: int) -> None:
        self.data = b"\0" * n


class _MonotoneCodec:
    """A real codec's files made monotone: size grows by 4 bytes per grid step, PSNR rises strictly."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.top = codec.grid()[-1]

    def grid(self):
        return self.codec.grid()

    def analyze(self, picture):
        return self.codec.analyze(picture)

    def encode_analysis(self, analysis, quality, reconstruct=True, estimate=False, keep_latent=False):
        from dataclasses import replace

        from aecompress.images import Picture

        h = parse_quality(quality)
        encoded = self.codec.encode_analysis(analysis, quality, reconstruct=False)
        color = analysis.picture.color.copy()
        color.reshape(-1)[: self.top - h + 1] ^= 1  # one changed value fewer at each step up
        reconstruction = Picture(color)
        return replace(
            encoded,
            data=b"\0" * (4 * h + len(encoded.data) % 4),
            reconstruction=reconstruction if reconstruct else None,
            synthesize=(lambda: reconstruction) if keep_latent else None,
        )

    def sweep(self, picture):
        return _sweep(self, picture)


def test_unreachable_targets_give_the_closest_setting(hp_codec):
    picture = photo()
    smallest = hp_codec.encode(picture, 1)
    choice = choose(hp_codec, picture, Target("size", 10))
    assert not choice.met and choice.hundredths == 100 and choice.encoded.data == smallest.data
    np.testing.assert_array_equal(choice.encoded.reconstruction.color, smallest.reconstruction.color)
    top = hp_codec.model.qualities
    choice = choose(hp_codec, picture, Target("psnr", 99.0))
    assert not choice.met and choice.hundredths == 100 * top
    assert choice.encoded.data == hp_codec.encode(picture, top).data


def test_a_target_every_quality_meets_gives_the_best(hp_codec):
    picture = photo()
    top = hp_codec.model.qualities
    assert choose(hp_codec, picture, Target("size", 10**9)).hundredths == 100 * top
    assert choose(hp_codec, picture, Target("psnr", 1.0)).hundredths == 100


# ---------------------------------------------------------------- the CLI


def test_cli_target_size_never_exceeds_the_target(tmp_path, tiny_hp_model):
    images = [save_image(tmp_path / f"p{i}.png", photo(i, (200, 150)).color) for i in range(2)]
    for image in images:
        plain = run("encode", "-m", tiny_hp_model, image, "-c", "-q", "3")
        assert plain.returncode == 0
        for budget in (len(plain.stdout), len(plain.stdout) - 40):
            out = tmp_path / f"{image.stem}-{budget}.aec"
            proc = run("encode", "-m", tiny_hp_model, image, "-o", out, "--target-size", budget, "--json")
            assert proc.returncode == 0, proc.stderr
            report = json.loads(proc.stdout)
            assert out.stat().st_size == report["bytes"] <= budget
            assert report["target"] == {"kind": "size", "value": budget, "met": True, "tried": report["target"]["tried"]}
            assert parse_quality(report["quality"]) >= 100


def test_cli_target_psnr_is_reached(tmp_path, tiny_hp_model):
    image = save_image(tmp_path / "p.png", photo(2, (200, 150)).color)
    _, original = read_pixels(image)
    for goal in (22.0, 25.0):
        aec, png = tmp_path / f"{goal}.aec", tmp_path / f"{goal}.png"
        proc = run("encode", "-m", tiny_hp_model, image, "-o", aec, "--target-psnr", goal, "--json")
        if proc.returncode == 3:  # this tiny model cannot reach it: then it must really be out of reach
            assert json.loads(proc.stdout)["psnr"] < goal
            continue
        assert proc.returncode == 0, proc.stderr
        assert run("decode", "-m", tiny_hp_model, aec, "-o", png).returncode == 0
        _, decoded = read_pixels(png)
        assert psnr_numpy(original, decoded) >= goal
        assert json.loads(proc.stdout)["psnr"] >= goal


def test_cli_unreachable_target_warns_writes_the_closest_and_exits_3(tmp_path, tiny_hp_model, photo_png):
    out = tmp_path / "x.aec"
    proc = run("encode", "-m", tiny_hp_model, photo_png, "-o", out, "--target-size", "100")
    assert proc.returncode == 3, proc.stderr
    lines = err_lines(proc)
    assert any("warning" in line and "100 bytes" in line for line in lines), lines
    assert "Traceback" not in proc.stderr.decode()
    assert out.read_bytes() == run("encode", "-m", tiny_hp_model, photo_png, "-c", "-q", "1").stdout
    proc = run("encode", "-m", tiny_hp_model, photo_png, "-o", out, "-f", "--target-psnr", "80", "--json")
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["target"]["met"] is False
    top = load_model(tiny_hp_model).qualities
    assert out.read_bytes() == run("encode", "-m", tiny_hp_model, photo_png, "-c", "-q", top).stdout


def test_cli_targets_in_a_batch_and_a_pipeline(tmp_path, tiny_hp_model):
    images = [save_image(tmp_path / f"b{i}.png", gradient(120, 90, seed=i)) for i in range(2)]
    proc = run("encode", "-m", tiny_hp_model, "-d", tmp_path / "out", *images, "--target-bpp", "1.5", "--json")
    assert proc.returncode == 0, proc.stderr
    reports = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(reports) == 2 and all(r["bpp"] <= 1.5 and r["target"]["kind"] == "bpp" for r in reports)
    assert "target met by 2 of 2" in proc.stderr.decode()
    encoded = run("encode", "-m", tiny_hp_model, "-", "--target-size", "1k", input=images[0].read_bytes())
    assert encoded.returncode == 0 and len(encoded.stdout) <= 1024
    assert b"target 1,024 bytes met" in encoded.stderr
    decoded = run("decode", "-m", tiny_hp_model, "-", input=encoded.stdout)
    assert decoded.returncode == 0 and decoded.stdout[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_factorized_model_targets_pick_a_level(tmp_path, tiny_model, photo_png):
    proc = run("encode", "-m", tiny_model, photo_png, "-o", tmp_path / "x.aec", "--target-size", "100000", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert isinstance(report["quality"], int) and report["target"]["met"]


@pytest.mark.parametrize(
    "args",
    [
        ["--target-size", "1k", "--target-bpp", "1"],
        ["--target-psnr", "30", "-q", "2"],
        ["--target-psnr", "30", "--no-psnr"],
        ["--target-size", "lots"],
        ["--target-size", "0"],
        ["--target-bpp", "-1"],
        ["--target-psnr", "nan"],
    ],
    ids=["two targets", "target and -q", "psnr target without psnr", "bad size", "zero size", "negative bpp", "nan psnr"],
)
def test_cli_target_usage_errors(tmp_path, tiny_hp_model, photo_png, args):
    proc = run("encode", "-m", tiny_hp_model, photo_png, "-o", tmp_path / "x.aec", *args)
    assert proc.returncode == 2, proc.stderr
    assert b"Traceback" not in proc.stderr and not (tmp_path / "x.aec").exists()


def test_size_suffixes_are_powers_of_1024():
    from aecompress.cli.options import parse_bytes

    assert parse_bytes("50k") == 51200 and parse_bytes("1.5M") == 1572864 and parse_bytes("777") == 777
    assert parse_bytes("2KiB") == 2048 and parse_bytes("2kb") == 2048
    for bad in ("inf", "nan", "-5", "0", "k"):
        with pytest.raises(ValueError):
            parse_bytes(bad)
