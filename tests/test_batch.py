"""Batches: small images coded one per core give the same files, reports and failures, in input order, as one at a time."""

from __future__ import annotations

import json
import os
import re

import pytest
from conftest import err_lines, gradient, run, save_image

from aecompress.cli.batch import LANE_PIXELS


def _outputs(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _reported(proc, *folders) -> list[str]:
    """Each line about one input, less its timings and its output folder: ``name -> output: …`` or the failure."""
    lines = [re.sub(r", \d+\.\d\d s (en|de)coding$", "", line) for line in err_lines(proc)[:-1]]
    for i, folder in enumerate(folders):
        lines = [line.replace(str(folder), f"<{i}>") for line in lines]
    return lines


@pytest.fixture
def mixed(tmp_path):
    """Small images, one that is no image, and one over LANE_PIXELS (it runs alone, between the others)."""
    root = tmp_path / "in"
    (root / "b").mkdir(parents=True)
    save_image(root / "a1.png", gradient(96, 64, seed=1))
    save_image(root / "a2.png", gradient(64, 80, channels=1, seed=2))
    (root / "a3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    side = int(LANE_PIXELS**0.5) + 16
    save_image(root / "a4.png", gradient(side, side, seed=4))
    save_image(root / "b" / "a5.png", gradient(72, 40, channels=4, seed=5))
    save_image(root / "b" / "a6.png", gradient(40, 72, seed=6))
    return root


def test_one_per_core_or_one_at_a_time_the_same_files_and_reports(tiny_model, mixed, tmp_path):
    encoded, decoded = {}, {}
    for threads in ("1", "2"):
        out, back = tmp_path / f"aec{threads}", tmp_path / f"png{threads}"
        enc = run("encode", "-m", tiny_model, mixed, "-d", out, "--threads", threads)
        assert enc.returncode == 1  # the broken file
        dec = run("decode", "-m", tiny_model, out, "-d", back, "--threads", threads)
        assert dec.returncode == 0, dec.stderr.decode()
        encoded[threads] = _outputs(out), _reported(enc, out)
        decoded[threads] = _outputs(back), _reported(dec, out, back)
    assert encoded["1"] == encoded["2"] and decoded["1"] == decoded["2"]
    files, lines = encoded["2"]
    assert sorted(files) == ["a1.aec", "a2.aec", "a4.aec", "b/a5.aec", "b/a6.aec"]
    names = [re.match(r"(?:aecompress: )?(\S+?):? ", line).group(1) for line in lines]
    assert [os.path.basename(n) for n in names] == ["a1.png", "a2.png", "a3.png", "a4.png", "a5.png", "a6.png"]
    assert lines[2].startswith("aecompress: ") and "a3.png" in lines[2]
    assert sorted(decoded["2"][0]) == ["a1.png", "a2.png", "a4.png", "b/a5.png", "b/a6.png"]


def test_files_of_two_models_in_one_batch(tiny_model, other_model, tmp_path):
    """Each lane keeps a codec per model; every file decodes with its own."""
    env = dict(os.environ, AECOMPRESS_MODELS=str(tmp_path / "store"))
    for model in (tiny_model, other_model):
        assert run("models", "add", model, env=env).returncode == 0
    aec = tmp_path / "aec"
    aec.mkdir()
    for i in range(6):
        picture = save_image(tmp_path / f"p{i}.png", gradient(64, 48, seed=i))
        model = (tiny_model, other_model)[i % 2]
        assert run("encode", "-m", model, picture, "-o", aec / f"p{i}.aec", env=env).returncode == 0
    outs = {}
    for threads in ("1", "2"):
        proc = run("decode", aec, "-d", tmp_path / f"png{threads}", "--threads", threads, "--json", env=env)
        assert proc.returncode == 0, proc.stderr.decode()
        records = [json.loads(line) for line in proc.stdout.decode().splitlines()]
        assert [r["input"].rsplit("/", 1)[-1] for r in records] == [f"p{i}.aec" for i in range(6)]
        assert len({r["model_id"] for r in records}) == 2
        outs[threads] = _outputs(tmp_path / f"png{threads}")
    assert outs["1"] == outs["2"]
