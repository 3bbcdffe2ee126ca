"""Files written by any release decode with every later one: released models found by id, golden files, upgrades.

tests/golden/release/<id>/ holds, for every model a release shipped as its default, a few
``.aec`` files with the hash of their decoded symbols and their decoded pixels.  They are
decoded here by the installed command without -m, so a release that stopped shipping a
released model, or changed how one decodes, fails on every CI machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_PHOTO, assert_one_line_failure, run
from PIL import Image

import aecompress
from aecompress import bitstream, store

RELEASE = Path(__file__).parent / "golden" / "release"
GOLDEN = Path(__file__).parent / "golden"


def _symbols_digest(symbols) -> str:
    sys.path.insert(0, str(GOLDEN))
    from make_golden import symbols_digest

    return symbols_digest(symbols)


def _released() -> dict:
    return json.loads(store.INDEX.read_text())["released"]


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def test_every_released_model_is_shipped_and_has_golden_files():
    released = _released()
    assert store.default_id() in released
    for model_id, info in released.items():
        assert (store.SHIPPED_DIR / info["file"]).is_file(), model_id
        assert (RELEASE / model_id / "golden.json").is_file(), f"no golden files for released model {model_id}"


def test_no_golden_model_was_dropped_from_the_package():
    """A golden folder is the record that a release shipped that model: it must stay in the index for good."""
    for folder in RELEASE.iterdir():
        if re.fullmatch(r"[0-9a-f]{16}", folder.name):
            assert folder.name in _released(), f"model {folder.name} was released; later releases must ship it"


@pytest.mark.parametrize("engine", ["onnx", "torch"])
@pytest.mark.parametrize("model_id", sorted(_released()))
def test_released_golden_files_decode_without_m(model_id, engine, tmp_path):
    """The installed command finds the model by the id in each file; symbols exact, pixels ±1 on any CPU and engine."""
    from aecompress import Codec, load_model

    record = json.loads((RELEASE / model_id / "golden.json").read_text())
    codec = Codec(load_model(model_id))
    for entry in record["files"]:
        aec = RELEASE / model_id / entry["aec"]
        out = tmp_path / (entry["aec"] + ".png")
        proc = run("decode", aec, "-o", out, env={**os.environ, "AECOMPRESS_ENGINE": engine})
        assert proc.returncode == 0, proc.stderr
        assert np.abs(_pixels(out) - _pixels(RELEASE / model_id / entry["png"])).max() <= 1, entry["aec"]
        assert _symbols_digest(codec.decode_symbols(aec.read_bytes())) == entry["symbols_sha256"], entry["aec"]


def test_every_container_version_still_read_has_a_golden_file():
    versions = {p.read_bytes()[4] for p in GOLDEN.rglob("*.aec")}
    assert set(bitstream.READABLE_VERSIONS) <= versions


def test_format_1_golden_file_decodes(tmp_path):
    folder = RELEASE / "format-1"
    record = json.loads((folder / "golden.json").read_text())
    for entry in record["files"]:
        out = tmp_path / "f1.png"
        proc = run("decode", "-m", folder / "model.safetensors", folder / entry["aec"], "-o", out, "-f")
        assert proc.returncode == 0, proc.stderr
        assert np.abs(_pixels(out) - _pixels(folder / entry["png"])).max() <= 1


def _upgraded_package(tmp_path: Path, new_model: Path, new_id: str) -> Path:
    """A copy of the installed package whose default is a newer model, the older default kept: an upgrade."""
    root = tmp_path / "upgraded"
    package = root / "aecompress"
    shutil.copytree(Path(aecompress.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(new_model, package / "weights" / f"{new_id}.safetensors")
    index = json.loads((package / "weights" / "models.json").read_text())
    index["default"] = new_id
    index["released"][new_id] = {"release": "99.0.0", "date": "2099-01-01", "file": f"{new_id}.safetensors"}
    (package / "weights" / "models.json").write_text(json.dumps(index))
    return root


def _run_upgraded(root: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # run from root: `-m` puts the working directory first on the path
    return subprocess.run([sys.executable, "-m", "aecompress", *map(str, args)], capture_output=True, env=env, cwd=root, timeout=300)


def test_a_file_written_with_the_default_decodes_after_a_new_default_ships(tmp_path):
    old = tmp_path / "photo.aec"
    assert run("encode", SAMPLE_PHOTO, "-o", old, "--no-psnr").returncode == 0
    before = tmp_path / "before.png"
    assert run("decode", old, "-o", before).returncode == 0
    newer = tmp_path / "newer.safetensors"
    proc = run("train", SAMPLE_PHOTO.parent, "-o", newer, "--init", "default", "--steps", "1", "--patch-size", "64", "--batch-size", "1")
    assert proc.returncode == 0, proc.stderr
    from aecompress.modelfile import load_model

    new_id = load_model(newer).model_id
    assert new_id != store.default_id()
    root = _upgraded_package(tmp_path, newer, new_id)

    after = tmp_path / "after.png"
    proc = _run_upgraded(root, "decode", old, "-o", after)
    assert proc.returncode == 0, proc.stderr
    assert _run_upgraded(root, "--version").stdout.decode().split()[-1].rstrip(")") == new_id
    assert after.read_bytes() == before.read_bytes()
    fresh = tmp_path / "fresh.aec"
    assert _run_upgraded(root, "encode", SAMPLE_PHOTO, "-o", fresh, "--no-psnr").returncode == 0
    assert bitstream.read_header(fresh.read_bytes()).model_id == new_id


def _renamed(data: bytes, model_id: str) -> bytes:
    header, payload = bitstream.unpack(data)
    return bitstream.pack(dataclasses.replace(header, model_id=model_id), payload)


def test_a_file_of_an_unknown_model_names_the_id_and_the_places_searched(tmp_path, rgb_png):
    aec = tmp_path / "a.aec"
    assert run("encode", rgb_png, "-o", aec, "--no-psnr").returncode == 0
    unknown = tmp_path / "unknown.aec"
    unknown.write_bytes(_renamed(aec.read_bytes(), "0123456789abcdef"))
    line = assert_one_line_failure(run("decode", unknown, "-o", tmp_path / "u.png"))
    assert "0123456789abcdef" in line and str(store.user_dir()) in line and "shipped" in line
    assert not (tmp_path / "u.png").exists()


def test_a_file_of_a_development_model_says_where_to_get_it(tmp_path, rgb_png):
    dev_id, dev = next(iter(json.loads(store.INDEX.read_text())["development"].items()))
    aec = tmp_path / "a.aec"
    assert run("encode", rgb_png, "-o", aec, "--no-psnr").returncode == 0
    old = tmp_path / "old.aec"
    old.write_bytes(_renamed(aec.read_bytes(), dev_id))
    line = assert_one_line_failure(run("decode", old, "-o", tmp_path / "o.png"))
    assert dev_id in line and dev["commit"] in line and "models add" in line
