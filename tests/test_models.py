"""`aecompress models`: a trained model added once decodes its files without -m; versions and releases are named."""

from __future__ import annotations

import json

from conftest import assert_one_line_failure, run

from aecompress import __version__, store


def test_an_added_model_decodes_its_files_without_m(tiny_model, rgb_png, tmp_path):
    aec = tmp_path / "a.aec"
    assert run("encode", "-m", tiny_model, rgb_png, "-o", aec, "--no-psnr").returncode == 0
    before = run("decode", aec, "-o", tmp_path / "before.png")
    assert before.returncode == 1 and b"is not installed" in before.stderr and b"models add" in before.stderr

    added = run("models", "add", tiny_model)
    assert added.returncode == 0, added.stderr
    model_id = json.loads(run("info", "--json", tiny_model).stdout)["model_id"]
    assert (store.user_dir() / f"{model_id}.safetensors").is_file()
    assert b"added" in added.stderr and model_id.encode() in added.stderr

    after = run("decode", aec, "-o", tmp_path / "after.png")
    assert after.returncode == 0, after.stderr
    with_m = run("decode", "-m", tiny_model, aec, "-o", tmp_path / "with-m.png")
    assert (tmp_path / "after.png").read_bytes() == (tmp_path / "with-m.png").read_bytes()

    again = run("models", "add", tiny_model)
    assert "already installed" in assert_one_line_failure(again) and with_m.returncode == 0
    assert run("models", "add", "-f", tiny_model).returncode == 0


def test_models_lists_the_shipped_default_with_its_release(tiny_hp_model):
    assert run("models", "add", tiny_hp_model).returncode == 0
    rows = [json.loads(line) for line in run("models", "list", "--json").stdout.splitlines()]
    default = next(r for r in rows if r["default"])
    assert default["model_id"] == store.default_id() and default["release"] == "0.1.0" and default["where"] == "shipped"
    assert default["preset"] == "small-cb" and default["qualities"] == 10 and default["bytes"] > 1_000_000
    assert any(r["where"] == "user" and r["release"] is None for r in rows)
    text = run("models").stdout.decode()
    assert store.default_id() in text and str(store.user_dir()) in text and "aecompress 0.1.0, the default" in text


def test_adding_a_file_that_is_not_a_model_fails_in_one_line(rgb_png):
    line = assert_one_line_failure(run("models", "add", rgb_png))
    assert str(rgb_png) in line


def test_version_and_info_name_the_release_and_the_default_model():
    version = run("--version").stdout.decode()
    assert __version__ in version and store.default_id() in version
    info = run("info", "default").stdout.decode()
    assert "shipped as the default of aecompress 0.1.0" in info
    assert json.loads(run("info", "--json", "default").stdout)["release"] == "0.1.0"


def test_a_model_id_works_as_m(rgb_png, tmp_path):
    proc = run("encode", "-m", store.default_id(), rgb_png, "-o", tmp_path / "a.aec", "--json", "--no-psnr")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model_id"] == store.default_id()
