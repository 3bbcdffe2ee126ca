"""`aecompress eval`: rate–distortion tables, JSON, BD-rates, plots, model comparisons."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_failure, gradient, run, save_image


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
