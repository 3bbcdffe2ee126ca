"""Folders as inputs: `encode` and `decode` search them as `train`, `eval` and `score` do, and -d keeps their tree."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_failure, err_lines, gradient, read_pixels, run, save_image


@pytest.fixture
def dcim(tmp_path):
    """A camera card: the same file name in two folders, a subfolder, and a file that is no image."""
    root = tmp_path / "DCIM"
    (root / "100").mkdir(parents=True)
    (root / "101" / "sub").mkdir(parents=True)
    save_image(root / "100" / "IMG_0001.png", gradient(64, 48, seed=1))
    save_image(root / "101" / "IMG_0001.png", gradient(80, 32, seed=2))
    save_image(root / "101" / "sub" / "x.jpg", gradient(48, 48, seed=3), quality=95)
    (root / "notes.txt").write_text("not an image, not searched\n")
    return root


def tree(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_encode_and_decode_of_folders_keep_the_tree_under_d(tiny_model, dcim, tmp_path):
    out, back = tmp_path / "OUT", tmp_path / "BACK"
    enc = run("encode", "-m", tiny_model, dcim, "-d", out)
    assert enc.returncode == 0, enc.stderr.decode()
    assert tree(out) == ["100/IMG_0001.aec", "101/IMG_0001.aec", "101/sub/x.aec"]  # equal names, no collision
    assert err_lines(enc)[-1].startswith("3 of 3 files encoded")
    dec = run("decode", "-m", tiny_model, out, "-d", back)
    assert dec.returncode == 0, dec.stderr.decode()
    assert tree(back) == ["100/IMG_0001.png", "101/IMG_0001.png", "101/sub/x.png"]
    assert read_pixels(back / "100" / "IMG_0001.png")[1].shape == (48, 64, 3)
    assert read_pixels(back / "101" / "IMG_0001.png")[1].shape == (32, 80, 3)
    again = run("encode", "-m", tiny_model, dcim, "-d", out)  # a re-run refuses each existing output
    assert again.returncode == 1
    assert sum("already exists" in line for line in err_lines(again)) == 3


def test_folders_without_d_write_beside_each_input(tiny_model, dcim):
    assert run("encode", "-m", tiny_model, dcim).returncode == 0
    assert (dcim / "100" / "IMG_0001.aec").is_file() and (dcim / "101" / "sub" / "x.aec").is_file()
    dec = run("decode", "-m", tiny_model, dcim)  # takes the .aec files only, not the images beside them
    assert dec.returncode == 0, dec.stderr.decode()
    assert sorted(p.name for p in dcim.rglob("*.decoded.png")) == ["IMG_0001.decoded.png", "IMG_0001.decoded.png", "x.decoded.png"]
    assert np.array_equal(read_pixels(dcim / "100" / "IMG_0001.decoded.png")[1].shape, (48, 64, 3))


def test_a_folder_and_files_together(tiny_model, dcim, tmp_path):
    loose = save_image(tmp_path / "loose.png", gradient(seed=4))
    proc = run("encode", "-m", tiny_model, loose, dcim / "101", "-d", tmp_path / "OUT", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    assert tree(tmp_path / "OUT") == ["IMG_0001.aec", "loose.aec", "sub/x.aec"]


@pytest.mark.parametrize("command", ["encode", "decode"])
@pytest.mark.parametrize("option", [["-o", "out.png"], ["-c"]])
def test_a_folder_with_o_or_c_is_a_usage_error(tiny_model, dcim, command, option):
    proc = run(command, "-m", tiny_model, dcim, *option)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr and proc.stdout == b""
    assert b"folder" in proc.stderr and b"-d DIR" in proc.stderr


def test_folders_with_nothing_to_do(tiny_model, dcim, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = assert_one_line_failure(run("encode", "-m", tiny_model, empty))
    assert line == f"aecompress: {empty}: no images found (searched recursively for PNG, JPEG, WebP, TIFF, BMP, GIF…)"
    line = assert_one_line_failure(run("decode", "-m", tiny_model, dcim))
    assert line == f"aecompress: {dcim}: no .aec files found (searched recursively)"


def test_an_empty_folder_among_inputs_fails_alone(tiny_model, dcim, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run("encode", "-m", tiny_model, empty, dcim / "100", "-d", tmp_path / "OUT")
    assert proc.returncode == 1
    lines = err_lines(proc)
    assert lines[0].endswith("no images found (searched recursively for PNG, JPEG, WebP, TIFF, BMP, GIF…)")
    assert lines[-1].startswith("1 of 2 files encoded")
    assert tree(tmp_path / "OUT") == ["IMG_0001.aec"]


def test_a_file_where_a_subfolder_must_go_fails_that_input_alone(tiny_model, dcim, tmp_path):
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "100").write_text("a file, not a folder")
    proc = run("encode", "-m", tiny_model, dcim, "-d", out)
    assert proc.returncode == 1
    errors = [line for line in err_lines(proc) if line.startswith("aecompress:")]
    assert len(errors) == 1 and "100" in errors[0] and "not a directory" in errors[0], errors
    assert tree(out) == ["100", "101/IMG_0001.aec", "101/sub/x.aec"]


def test_score_heatmaps_keep_the_tree(tiny_model, dcim, tmp_path):
    maps = tmp_path / "maps"
    proc = run("score", "-m", tiny_model, dcim, "--heatmap", maps, "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    assert tree(maps) == ["100/IMG_0001.heatmap.png", "101/IMG_0001.heatmap.png", "101/sub/x.heatmap.png"]


def test_encoding_a_folder_again_skips_the_images_decode_wrote_beside_its_inputs(tiny_model, dcim):
    assert run("encode", "-m", tiny_model, dcim).returncode == 0
    assert run("decode", "-m", tiny_model, dcim).returncode == 0  # x.decoded.png beside each x.aec
    again = run("encode", "-m", tiny_model, dcim, "-f")
    assert again.returncode == 0, again.stderr.decode()
    lines = err_lines(again)
    assert lines.count(f"aecompress: note: skipped 3 decoded outputs (*.decoded.*) in {dcim}") == 1, lines
    assert sum("note" in line for line in lines) == 1 and lines[-1].startswith("3 of 3 files encoded")
    assert not list(dcim.rglob("*.decoded.aec"))
    assert run("encode", "-m", tiny_model, dcim, "-f", "-s").stderr == b""  # -s: errors only
    named = dcim / "101" / "sub" / "x.decoded.png"
    proc = run("encode", "-m", tiny_model, named)  # a file named on the command line is never skipped
    assert proc.returncode == 0 and b"note" not in proc.stderr, proc.stderr.decode()
    assert (dcim / "101" / "sub" / "x.decoded.aec").is_file()
    score = run("score", "-m", tiny_model, dcim, "--json")  # only encode leaves them out
    assert score.returncode == 0 and b"note" not in score.stderr
    assert sum(".decoded." in json.loads(line)["input"] for line in score.stdout.splitlines()) == 3
