"""`aecompress eval`: rate–distortion tables, JSON, BD-rates, plots, model comparisons."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios

import numpy as np
import pytest
from conftest import AECOMPRESS, SAMPLE_PHOTO, assert_one_line_failure, err_lines, gradient, run, save_image
from PIL import Image


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("evalset")
    for i in range(2):
        save_image(d / f"img{i}.png", gradient(80, 48, seed=i, noise=3.0))
    return d


def test_eval_json_has_every_setting_and_bd_rates(tiny_model, folder):
    proc = run("eval", folder, "-m", tiny_model, "--baselines", "jpeg,webp", "--json", "-j", "2")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    data = json.loads(proc.stdout)
    assert data["images"] == ["img0.png", "img1.png"]
    codecs = {p["codec"] for p in data["points"]}
    assert codecs == {"aecompress", "jpeg", "webp"}
    ours = [p for p in data["points"] if p["codec"] == "aecompress"]
    assert sorted(p["setting"] for p in ours) == [1, 2, 3, 4]  # every quality of the tiny model
    for p in data["points"]:
        assert p["images"] == 2 and p["bpp"] > 0 and 0 < p["psnr"] <= 100 and 0 <= p["ms_ssim"] <= 1
    jpeg = sorted((p for p in data["points"] if p["codec"] == "jpeg"), key=lambda p: p["setting"])
    assert [p["bpp"] for p in jpeg] == sorted(p["bpp"] for p in jpeg)  # JPEG's size grows with its quality
    assert "webp" in data["bd_rate"]["jpeg"]


def test_eval_table_and_plot(tiny_model, folder, tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "rd.png"
    proc = run("eval", folder, "-m", tiny_model, "--baselines", "jpeg", "--no-ms-ssim", "--plot", plot, "-o", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    text = proc.stdout.decode()
    assert "BD-rate against jpeg" in text and "aecompress" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "r.json").read_text())["points"]


def test_eval_compares_several_models(tiny_model, other_model, folder):
    proc = run("eval", folder, "-m", tiny_model, "-m", other_model, "--baselines", "", "--no-ms-ssim", "--json")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    data = json.loads(proc.stdout)
    assert set(data["models"]) == {"tiny", "other"}
    assert "other" in data["bd_rate"]["tiny"]


def test_eval_errors(tiny_model, tmp_path):
    assert run("eval", tmp_path, "-m", tiny_model).returncode == 1  # no images
    assert run("eval", tmp_path, "--baselines", "gif2000", "-m", tiny_model).returncode == 2
    line = assert_one_line_failure(run("eval", tmp_path, "-m", tmp_path / "missing.safetensors"))
    assert "missing.safetensors" in line


def _model_rows(table: str, name: str = "aecompress") -> list[str]:
    """The settings of a model's rows in eval's table, in their order."""
    return [line.split()[1] for line in table.splitlines() if line.startswith(name + " ") and line.split()[1].startswith("q")]


def test_eval_qualities_take_what_q_takes_and_rows_follow_quality(tiny_hp_model, folder):
    proc = run("eval", folder, "-m", tiny_hp_model, "--baselines", "", "--no-ms-ssim", "--qualities", "3,1.5,2")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert _model_rows(proc.stdout.decode()) == ["q1.5", "q2", "q3"]
    data = json.loads(run("eval", folder, "-m", tiny_hp_model, "--baselines", "", "--no-ms-ssim", "-q", "2.25,1", "--json").stdout)  # -q, as encode
    assert [p["setting"] for p in data["points"]] == [1, 2.25]


@pytest.mark.parametrize(("qualities", "words"), [("1.5", "integer levels"), ("9", "out of range"), ("1.555", "two decimals")])
def test_eval_qualities_refused_as_q_refuses_them(tiny_model, folder, qualities, words):
    proc = run("eval", folder, "-m", tiny_model, "--baselines", "", "--qualities", qualities)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr and proc.stdout == b""
    assert words in " ".join(proc.stderr.decode().split())


def test_eval_skips_unreadable_images_with_a_warning_each(tiny_model, folder, tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "sub").mkdir(parents=True)
    for name in ("img0.png", "img1.png"):
        (data_dir / name).write_bytes((folder / name).read_bytes())
    (data_dir / "empty.png").write_bytes(b"")
    (data_dir / "sub" / "notes.jpg").write_text("not an image\n")
    (data_dir / "truncated.png").write_bytes((folder / "img0.png").read_bytes()[:200])
    proc = run("eval", data_dir, "-m", tiny_model, "--baselines", "jpeg", "--no-ms-ssim", "--qualities", "1", "--json")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    warnings = [line for line in err_lines(proc) if line.startswith("aecompress: warning:")]
    assert len(warnings) == 3, warnings
    for name, reason in (("empty.png", "empty file"), ("notes.jpg", "not an image file"), ("truncated.png", "cannot decode image")):
        assert sum(name in w and reason in w and w.endswith("skipped") for w in warnings) == 1, (name, warnings)
    data = json.loads(proc.stdout)
    assert data["images"] == ["img0.png", "img1.png"] and all(p["images"] == 2 for p in data["points"])
    assert sorted(s["image"].rsplit("/", 1)[-1] for s in data["skipped"]) == ["empty.png", "notes.jpg", "truncated.png"]


def test_eval_fails_in_the_words_of_encode_and_score(tiny_model, tmp_path):
    empty_dir, empty_file = tmp_path / "empty", tmp_path / "zero.png"
    empty_dir.mkdir()
    empty_file.write_bytes(b"")
    for path, other in ((tmp_path / "nodir", "encode"), (empty_file, "encode"), (empty_dir, "score")):
        line = assert_one_line_failure(run("eval", path, "-m", tiny_model, "--baselines", ""))
        assert line == err_lines(run(other, "-m", tiny_model, path))[0], line
    assert line.endswith("no images found (searched recursively for PNG, JPEG, WebP, TIFF, BMP, GIF…)")


def test_eval_with_nothing_to_evaluate_is_a_usage_error(folder):
    proc = run("eval", folder, "--no-model", "--baselines", "")
    assert proc.returncode == 2 and proc.stdout == b"" and b"Traceback" not in proc.stderr
    assert b"nothing to evaluate" in proc.stderr


def test_eval_reports_each_image_when_stderr_is_not_a_terminal(tiny_model, folder):
    proc = run("eval", folder, "-m", tiny_model, "--baselines", "jpeg", "--no-ms-ssim", "--qualities", "1", "--json")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = err_lines(proc)
    assert [line.split(" (")[0] for line in lines] == ["eval: 1 of 2 images done", "eval: 2 of 2 images done"], lines
    assert "img0.png" in lines[0] and "left" in lines[0] and "\r" not in proc.stderr.decode()


def test_eval_shows_a_bar_per_model_and_quality_on_a_terminal(tiny_model, folder):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal 120 columns wide (tqdm draws nothing in 0)
    args = ["eval", folder, "-m", tiny_model, "--baselines", "jpeg", "--no-ms-ssim", "--qualities", "1,2", "--json"]
    proc = subprocess.Popen([AECOMPRESS, *map(str, args)], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    out, _ = proc.communicate(timeout=300)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert json.loads(out)["points"]
    assert "setting" in text and "eval: " not in text  # a bar, not the lines of a pipe
    assert re.search(r"img\d\.png: (aecompress q[12]|jpeg \d+)", text), text


def test_eval_plot_fits_its_axes_and_names_a_curve_it_leaves_out(tiny_model, folder, tmp_path):
    pytest.importorskip("matplotlib")
    proc = run("eval", folder, "-m", tiny_model, "--baselines", "jpeg", "--qualities", "1", "--plot", tmp_path / "rd.png", "--json")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    data = json.loads(proc.stdout)
    ours = max(p["bpp"] for p in data["points"] if p["codec"] == "aecompress")
    jpeg = min(p["bpp"] for p in data["points"] if p["codec"] == "jpeg")
    assert jpeg > 1.05 * ours  # tiny images: JPEG's headers alone cost more than the model's whole file
    warnings = [line for line in err_lines(proc) if line.startswith("aecompress: warning:")]
    assert len(warnings) == 1 and "jpeg" in warnings[0] and "outside" in warnings[0], warnings
    assert (tmp_path / "rd.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_view_fits_the_models_and_the_baselines_within_their_rates():
    """A model at 3.4 bpp is in range; a baseline's 52 dB at 6 bpp does not stretch the y axis; a curve beyond is listed."""
    from aecompress.evaluate import Evaluation, Point, plot_view

    def point(codec, setting, bpp, psnr):
        return Point(codec, setting, bpp, psnr, None, 1.0, 1.0, 2)

    ev = Evaluation(["a.png"], models={"small": "0" * 16, "large": "1" * 16})
    ev.points = [point("small", 1, 0.2, 30.0), point("small", 2, 0.8, 34.0), point("large", 1, 1.5, 36.0), point("large", 2, 3.4, 41.0)]
    ev.points += [point("jpeg", 50, 1.0, 31.0), point("jpeg", 95, 6.0, 52.0), point("jpeg2000", 2, 9.0, 55.0)]
    view = plot_view(ev)
    assert view.bpp[0] == 0 and 3.4 < view.bpp[1] < 4.0
    assert view.psnr[0] < 30.0 and 41.0 < view.psnr[1] < 45.0
    assert view.outside == ["jpeg2000"] and view.ms_ssim is None


def test_eval_names_images_by_their_path_under_the_folder(tmp_path):
    """a/x.png and b/x.png are two images, not one name twice; an unreadable one is named the same way."""
    for sub, seed in (("a", 0), ("b", 1)):
        (tmp_path / "set" / sub).mkdir(parents=True)
        save_image(tmp_path / "set" / sub / "x.png", gradient(48, 32, seed=seed))
    (tmp_path / "set" / "b" / "y.png").write_bytes(b"")
    args = ["--no-model", "--baselines", "jpeg", "--no-ms-ssim", "--json"]
    proc = run("eval", tmp_path / "set", *args)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    data = json.loads(proc.stdout)
    assert data["images"] == ["a/x.png", "b/x.png"] and all(p["images"] == 2 for p in data["points"])
    assert data["skipped"] == [{"image": "b/y.png", "reason": "empty file"}]
    single = json.loads(run("eval", tmp_path / "set" / "a" / "x.png", *args).stdout)
    assert single["images"] == [str(tmp_path / "set" / "a" / "x.png")]  # a file: its name as given


def test_eval_codes_the_models_files_at_the_effort_asked(tmp_path):
    (tmp_path / "set").mkdir()
    with Image.open(SAMPLE_PHOTO) as im:
        crop = save_image(tmp_path / "set" / "crop.png", np.asarray(im.convert("RGB").crop((160, 120, 256, 216))))
    for effort in ("0", "1"):
        proc = run("eval", crop.parent, "--baselines", "", "--no-ms-ssim", "--qualities", "8", "-e", effort, "--json")
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        data = json.loads(proc.stdout)
        assert data["effort"] == int(effort)
        encoded = json.loads(run("encode", crop, "-o", tmp_path / f"e{effort}.aec", "-q", "8", "-e", effort, "--json").stdout)
        assert data["points"][0]["bpp"] == pytest.approx(encoded["bpp"], abs=1e-4)
        assert data["points"][0]["psnr"] == pytest.approx(encoded["psnr"], abs=1e-3)
    table = run("eval", crop.parent, "--baselines", "", "--no-ms-ssim", "--qualities", "8", "-e", "1").stdout.decode()
    assert "encoder effort 1" in table.splitlines()[0]


def test_a_missing_path_is_worded_alike_by_every_command(tiny_model, tmp_path):
    missing = tmp_path / "nosuch.png"
    lines = {cmd: assert_one_line_failure(run(cmd, "-m", tiny_model, missing)) for cmd in ("encode", "eval")}
    lines["decode"] = assert_one_line_failure(run("decode", tmp_path / "nosuch.aec"))
    lines["info"] = assert_one_line_failure(run("info", missing))
    assert lines["info"] == lines["encode"] == lines["eval"] == f"aecompress: {missing}: no such file", lines
    assert lines["decode"] == f"aecompress: {tmp_path / 'nosuch.aec'}: no such file"
    assert assert_one_line_failure(run("info", tmp_path)) == f"aecompress: {tmp_path}: is a directory"


def test_the_table_says_when_both_bd_columns_cover_the_same_range():
    from aecompress.evaluate import Evaluation, Point, format_table

    def curve(codec: str, psnrs: list[float]) -> list[Point]:
        return [Point(codec, i + 1, 0.1 * 1.6**i, p, None, 1.0, 1.0, 2) for i, p in enumerate(psnrs)]

    high = Evaluation(["a.png"], curve("aecompress", [30, 32, 34, 36]) + curve("webp", [27, 29, 31, 33, 35]), {"aecompress": "0" * 16})
    table = format_table(high)
    assert "(its lowest quality is already at 30.00 dB: both columns cover the same range)" in table
    low = Evaluation(["a.png"], curve("aecompress", [24, 27, 30, 33]) + curve("webp", [25, 28, 31, 34]), {"aecompress": "0" * 16})
    assert "both columns cover the same range" not in format_table(low)
