"""benchmarks/variable_rate.py, the tool behind the variable-rate A/B: its cut is exact, its estimate honest."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, gradient, read_pixels, run, save_image

SCRIPT = REPO / "benchmarks" / "variable_rate.py"


def test_the_top_level_cut_codes_exactly_as_the_models_top_level(tmp_path):
    """`top` keeps one level's gains and z density: at Δ = 1 it must be that level, to the byte of the payload."""
    top = tmp_path / "top.safetensors"
    proc = subprocess.run([sys.executable, SCRIPT, "top", "default", "-o", top], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    image = save_image(tmp_path / "x.png", gradient(96, 64))
    reports = {}
    for name, model, quality in (("full", "default", "10"), ("top", top, "1")):
        proc = run("encode", "-m", model, "-q", quality, image, "-o", tmp_path / f"{name}.aec", "--json", "-v")
        assert proc.returncode == 0, proc.stderr.decode()
        reports[name] = json.loads(proc.stdout)
        assert run("decode", "-m", model, tmp_path / f"{name}.aec", "-o", tmp_path / f"{name}.png").returncode == 0
    assert json.loads(run("info", top, "--json").stdout)["qualities"] == 1
    assert reports["top"]["payload_bytes"] == reports["full"]["payload_bytes"]
    assert (read_pixels(tmp_path / "top.png")[1] == read_pixels(tmp_path / "full.png")[1]).all()


def test_the_curve_estimates_rates_near_the_real_files_and_coarser_steps_cost_fewer_bits(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        save_image(folder / f"{i}.png", gradient(96, 64, seed=i))
    top = tmp_path / "top.safetensors"
    subprocess.run([sys.executable, SCRIPT, "top", "default", "-o", top], check=True, capture_output=True, timeout=300)
    out = tmp_path / "curve.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "curve", folder, "-m", top, "--steps", "1,2,4", "-o", out], capture_output=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    rows = json.loads(out.read_text())[str(top)]
    assert [r["step"] for r in rows] == [1, 2, 4]
    assert rows[0]["bpp"] > rows[1]["bpp"] > rows[2]["bpp"] > 0
    assert rows[0]["psnr"] > rows[1]["psnr"] > rows[2]["psnr"]
    # At Δ = 1 the estimate is the model's own −Σlog₂p: near the real payload of the same images.
    real_bits = 0.0
    for i in range(2):
        proc = run("encode", "-m", top, folder / f"{i}.png", "-o", tmp_path / f"{i}.aec", "--json", "-v")
        real_bits += 8 * json.loads(proc.stdout)["payload_bytes"] / (96 * 64)
    assert abs(rows[0]["bpp"] - real_bits / 2) <= 0.1 * real_bits / 2 + 0.01, (rows[0]["bpp"], real_bits / 2)
