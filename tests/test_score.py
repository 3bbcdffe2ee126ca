"""``aecompress score``: outlier scores, their outputs, heat maps and bad inputs."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import assert_one_line_failure, err_lines, gradient, gradient_folder, run, save_image
from PIL import Image, ImageDraw

from aecompress.images import from_pil
from aecompress.score import GAP, box_blur, heatmap, inferno, score_picture

KEYS = {"input", "width", "height", "quality", "bpp", "psnr", "loss", "score"}


def chart(width: int = 96, height: int = 64) -> np.ndarray:
    """Clearly not a gradient: black text and thin lines on white."""
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    for y in range(0, height, 9):
        draw.text((2, y - 2), "text 1234 abc", fill=(0, 0, 0))
    draw.rectangle([width - 36, 10, width - 6, height - 14], outline=(220, 0, 0), width=2)
    return np.asarray(im)


@pytest.fixture(scope="module")
def gradient_model(tmp_path_factory):
    """A tiny model trained here on smooth gradients only (one kind of image)."""
    data = gradient_folder(tmp_path_factory.mktemp("gradients"), 6, 96, 64)
    out = tmp_path_factory.mktemp("gradient-model") / "g.safetensors"
    args = ["--preset", "tiny", "--batch-size", "4", "--patch-size", "32", "--lr", "3e-3", "--steps", "120"]
    proc = run("train", data, "-o", out, *args, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return out


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    save_image(folder / "familiar.png", gradient(96, 64, seed=42))
    save_image(folder / "sub" / "odd.png", chart())
    save_image(folder / "familiar2.jpg", gradient(80, 48, seed=43), quality=95)
    return folder


def rows_of(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def test_training_kind_scores_lower_than_a_different_kind(gradient_model, images):
    proc = run("score", "-m", gradient_model, images, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = rows_of(proc)
    by_name = {r["input"].rsplit("/", 1)[-1]: r for r in rows}
    assert set(by_name) == {"familiar.png", "odd.png", "familiar2.jpg"}  # the folder, searched recursively
    assert by_name["odd.png"]["score"] > max(by_name["familiar.png"]["score"], by_name["familiar2.jpg"]["score"])
    assert rows[0]["input"].endswith("odd.png")  # most unusual first
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)


def test_scores_are_deterministic(tiny_hp_model, images):
    first = run("score", "-m", tiny_hp_model, images, "--json")
    second = run("score", "-m", tiny_hp_model, images, "--json")
    assert first.returncode == 0 and first.stdout == second.stdout
    assert run("score", "-m", tiny_hp_model, images).stdout == run("score", "-m", tiny_hp_model, images).stdout


def test_json_csv_and_table_agree(tiny_hp_model, images):
    rows = rows_of(run("score", "-m", tiny_hp_model, images, "--json", "-q", "2.5"))
    assert all(set(r) == KEYS for r in rows) and all(r["quality"] == 2.5 for r in rows)
    proc = run("score", "-m", tiny_hp_model, images, "--csv", "-q", "2.5")
    table = list(csv.DictReader(io.StringIO(proc.stdout.decode())))
    assert [t["input"] for t in table] == [r["input"] for r in rows]
    assert [float(t["score"]) for t in table] == [r["score"] for r in rows]
    text = run("score", "-m", tiny_hp_model, images, "-q", "2.5").stdout.decode().splitlines()
    assert text[0].split() == ["score", "bpp", "PSNR", "image"]
    assert [line.split()[-1] for line in text[1:]] == [r["input"] for r in rows]


def test_top_and_summary(tiny_hp_model, images):
    proc = run("score", "-m", tiny_hp_model, images, "--json", "--top", "1")
    assert proc.returncode == 0 and len(rows_of(proc)) == 1
    summary = err_lines(proc)[-1]
    assert summary.startswith("3 of 3 images scored") and "mean" in summary and "median" in summary
    assert run("score", "-m", tiny_hp_model, images, "--json", "-s").stderr == b""


def test_heatmaps_have_the_expected_size_and_are_not_overwritten(tmp_path, tiny_hp_model, images):
    out = tmp_path / "maps"
    proc = run("score", "-m", tiny_hp_model, images, "--heatmap", out, "--json")
    assert proc.returncode == 0, proc.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["familiar.heatmap.png", "familiar2.heatmap.png", "sub/odd.heatmap.png"]  # the folder's tree kept
    for row in rows_of(proc):
        with Image.open(row["heatmap"]) as im:
            assert im.size == (3 * row["width"] + 2 * GAP, row["height"]) and im.mode == "RGB"
    again = run("score", "-m", tiny_hp_model, images, "--heatmap", out, "--json")
    assert again.returncode == 1 and b"Traceback" not in again.stderr
    assert sum("already exists" in line for line in err_lines(again)) == 3
    assert run("score", "-m", tiny_hp_model, images, "--heatmap", out, "-f").returncode == 0


def test_heatmap_directory_that_cannot_be_made_fails_before_the_work(tmp_path, tiny_hp_model, images):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = assert_one_line_failure(run("score", "-m", tiny_hp_model, images, "--heatmap", blocker / "maps"))
    assert "not a directory" in line


def test_bad_inputs_give_one_line_each_and_the_rest_are_scored(tmp_path, tiny_hp_model, images):
    (tmp_path / "notes.png").write_text("not an image\n")
    good = save_image(tmp_path / "good.png", gradient(64, 48, seed=5))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:120])
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [tmp_path / "missing.png", tmp_path / "notes.png", truncated, empty, good, images]
    proc = run("score", "-m", tiny_hp_model, *args, "--json")
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr
    errors = [line for line in err_lines(proc) if line.startswith("aecompress: ") and "scored" not in line]
    assert len(errors) == 4, errors
    for name in ("missing.png", "notes.png", "truncated.png", "empty"):
        assert sum(name in line for line in errors) == 1, (name, errors)
    assert len(rows_of(proc)) == 4  # good.png and the folder's three images
    assert err_lines(proc)[-1].startswith("4 of 8 images scored")


def test_usage_errors(tmp_path, tiny_model, images):
    proc = run("score", "-m", tiny_model, images, "--json", "--csv")
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr
    line = assert_one_line_failure(run("score", "-m", tiny_model, images, "-q", "1.5"), code=2)
    assert "factorized" in line


# ---------------------------------------------------------------- the library


def test_bits_are_the_models_own_estimate_of_the_file(hp_codec):
    picture = from_pil(Image.fromarray(gradient(130, 70, seed=9)))
    result = score_picture(hp_codec, picture, 2)
    encoded = hp_codec.encode(picture, 2, estimate=True)
    assert result.bits.shape == (-(-70 // 16), -(-130 // 16))
    assert result.bpp * 130 * 70 == pytest.approx(encoded.estimated_bits, rel=1e-5)
    np.testing.assert_array_equal(hp_codec.rate_map(picture, 2).reconstruction.color, encoded.reconstruction.color)
    lam = hp_codec.net.preset.lambdas[1]
    assert result.loss == pytest.approx(result.bpp + lam * result.mse)
    assert result.score == pytest.approx(lam * result.mse / result.bpp)


def test_factorized_bits_match_the_estimate(tiny_codec):
    picture = from_pil(Image.fromarray(gradient(60, 40, seed=4)))
    result = score_picture(tiny_codec, picture, 1)
    estimate = tiny_codec.encode(picture, 1, estimate=True).estimated_bits
    assert result.bpp * 60 * 40 == pytest.approx(estimate, rel=1e-5)


def test_heatmap_layout(hp_codec):
    picture = from_pil(Image.fromarray(gradient(50, 30, seed=2)))
    picture_map = heatmap(picture, score_picture(hp_codec, picture, 1))
    assert picture_map.shape == (30, 3 * 50 + 2 * GAP, 3) and picture_map.dtype == np.uint8
    np.testing.assert_array_equal(picture_map[:, :50], picture.rgb())
    assert (picture_map[:, 50 : 50 + GAP] == 255).all()


def test_colour_map_and_blur():
    ends = inferno(np.array([0.0, 1.0, -1.0, 2.0]))
    assert ends[0].tolist() == [0, 0, 4] and ends[1].tolist() == [252, 255, 164]
    assert ends[2].tolist() == ends[0].tolist() and ends[3].tolist() == ends[1].tolist()
    luminance = inferno(np.linspace(0, 1, 50)) @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(luminance) > 0)  # brighter all the way
    a = np.random.default_rng(0).random((7, 9))
    blurred = box_blur(a, 1)
    assert blurred[3, 4] == pytest.approx(a[2:5, 3:6].mean())
    assert blurred[0, 0] == pytest.approx(a[0:2, 0:2].mean())
