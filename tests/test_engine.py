"""The engines behind the transforms: ONNX Runtime (no torch import) and torch agree, file for file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import SAMPLE_PHOTO, assert_one_line_failure, read_pixels, run, save_image
from PIL import Image

from aecompress.metrics import psnr


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    with Image.open(SAMPLE_PHOTO) as im:
        array = np.asarray(im.convert("RGB").crop((0, 0, 320, 208)))
    return save_image(tmp_path_factory.mktemp("engine") / "photo.png", array)


def _with_engine(engine: str) -> dict:
    return {**os.environ, "AECOMPRESS_ENGINE": engine}


def test_encode_and_decode_do_not_import_torch(photo, tmp_path):
    """What makes them start in a fraction of a second: torch alone takes 1–2 s to import."""
    script = """
import sys
from aecompress.cli import main
for args in (["encode", sys.argv[1], "-o", sys.argv[2]], ["decode", sys.argv[2], "-o", sys.argv[3]]):
    try:
        main(args, prog_name="aecompress")
    except SystemExit as exc:
        assert not exc.code, exc.code
print("torch" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if k != "AECOMPRESS_ENGINE"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(photo), str(tmp_path / "p.aec"), str(tmp_path / "p.png")], capture_output=True, env=env
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().split()[-1] == "False"
    assert (tmp_path / "p.png").is_file()


@pytest.mark.parametrize("quality", ["2", "6", "9.5"])
def test_each_engine_decodes_the_others_files_within_one_level(photo, tmp_path, quality):
    files, pixels = {}, {}
    for engine in ("onnx", "torch"):
        aec = tmp_path / f"{engine}.aec"
        proc = run("encode", photo, "-o", aec, "-q", quality, "--json", env=_with_engine(engine))
        assert proc.returncode == 0, proc.stderr
        files[engine] = (aec, json.loads(proc.stdout))
    for engine in ("onnx", "torch"):
        for writer, (aec, record) in files.items():
            out = tmp_path / f"{writer}-by-{engine}.png"
            assert run("decode", aec, "-o", out, env=_with_engine(engine)).returncode == 0
            pixels[(writer, engine)] = read_pixels(out)[1].astype(int)
            if writer == engine:  # the encoder's PSNR is its own engine's decode, exactly
                assert psnr(read_pixels(photo)[1], pixels[(writer, engine)].astype(np.uint8)) == pytest.approx(record["psnr"], abs=1e-3)
    for writer in files:
        assert np.abs(pixels[(writer, "onnx")] - pixels[(writer, "torch")]).max() <= 1
    sizes = [record["bytes"] for _, record in files.values()]
    assert abs(sizes[0] - sizes[1]) <= max(8, sizes[0] // 1000)  # the engines' analyses differ by float rounding only


def test_an_unknown_engine_is_a_one_line_error(photo, tmp_path):
    line = assert_one_line_failure(run("encode", photo, "-o", tmp_path / "x.aec", env=_with_engine("gpu")))
    assert "AECOMPRESS_ENGINE" in line and "onnx" in line and not (tmp_path / "x.aec").exists()


def test_gdn_terms_below_the_floor_change_no_output(monkeypatch):
    """Trained γ reaches subnormals (~100× slower to multiply on x86); zeroing γ below GAMMA_FLOOR must leave every float as it was."""
    from aecompress import onnxrt
    from aecompress.codec import load_model

    model = load_model(None)
    gammas = [np.square(np.asarray(v, np.float32)) for k, v in model.weights.items() if k.endswith("gamma_raw")]
    assert sum(int(np.sum((g > 0) & (g < onnxrt.GAMMA_FLOOR))) for g in gammas) > 100  # the floor has work to do
    rng = np.random.default_rng(3)
    y = rng.normal(0, 2, (1, model.preset.M, 20, 24)).round().astype(np.float32)
    x = rng.random((1, 3, 128, 160)).astype(np.float32)
    floored = onnxrt.OnnxTransforms(model, 1)
    expected = floored.synthesis(y), floored.analysis(x)
    monkeypatch.setattr(onnxrt, "GAMMA_FLOOR", 0.0)
    exact = onnxrt.OnnxTransforms(model, 1)
    assert np.array_equal(exact.synthesis(y), expected[0])
    assert np.array_equal(exact.analysis(x), expected[1])
