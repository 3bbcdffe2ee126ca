"""``aecompress train`` through the CLI: short runs, budgets, resume, fine-tuning, bad data, Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import re
import select
import shlex
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import (
    AECOMPRESS,
    REPO,
    SAMPLE_PHOTO,
    assert_one_line_failure,
    err_lines,
    gradient,
    gradient_folder,
    psnr_numpy,
    run,
    save_image,
)
from PIL import Image

FAST = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32"]


def info(model) -> dict:
    proc = run("info", model, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return gradient_folder(tmp_path_factory.mktemp("train-data"), 4, 80, 64)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "m.safetensors"
    proc = run("train", data_dir, "-o", out, *FAST, "--steps", "20", "--lr", "3e-3", "--keep-checkpoint")
    return SimpleNamespace(proc=proc, model=out, ckpt=out.with_name(out.name + ".ckpt"))


def test_a_short_run_writes_a_usable_model(trained, tmp_path):
    assert trained.proc.returncode == 0, trained.proc.stderr.decode()[-2000:]
    assert "Traceback" not in trained.proc.stderr.decode()
    assert trained.model.is_file() and trained.ckpt.is_file()
    assert err_lines(trained.proc)[-1] == f"model written to {trained.model}"
    record = info(trained.model)
    assert record["kind"] == "model" and (record["N"], record["M"]) == (16, 32)
    assert record["training"]["steps"] == 20
    assert record["training"]["batch_size"] == 2 and record["training"]["patch_size"] == 32
    image = save_image(tmp_path / "x.png", gradient(50, 40))
    proc = run("encode", "-m", trained.model, image, "-o", tmp_path / "x.aec", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model_id"] == record["model_id"]


def test_a_short_run_reaches_its_peak_learning_rate(trained):
    """--lr is the peak: a 20-step run at --lr 3e-3 should get near it, not stay stuck in a 200-step warm-up."""
    stderr = trained.proc.stderr.decode()
    rates = [float(v) for v in re.findall(r"lr=([0-9.]+e[-+]?\d+)", stderr)]
    assert rates, stderr[-1000:]
    assert max(rates) >= 0.3 * 3e-3, rates


def test_time_budget_stops_the_run(data_dir, tmp_path):
    out = tmp_path / "budget.safetensors"
    started = time.monotonic()
    proc = run("train", data_dir, "-o", out, *FAST, "--time-budget", "3s")
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    training = info(out)["training"]
    assert training["steps"] > 0
    assert 3.0 <= training["seconds"] <= 8.0, training
    assert wall < 90


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_more_threads_than_usable_cores_warns(data_dir, tmp_path):
    """Pinned to one core (as `taskset -c 0` does), --threads 2 oversubscribes it: the run says so and still trains."""
    out = tmp_path / "pinned.safetensors"
    one_core = min(os.sched_getaffinity(0))
    proc = subprocess.run(
        [AECOMPRESS, "train", str(data_dir), "-o", str(out), *FAST, "--steps", "1", "--threads", "2"],
        capture_output=True,
        timeout=300,
        preexec_fn=lambda: os.sched_setaffinity(0, {one_core}),
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    warnings = [line for line in err_lines(proc) if line.startswith("aecompress: warning: --threads 2")]
    assert len(warnings) == 1 and "1 core(s)" in warnings[0], err_lines(proc)
    assert info(out)["training"]["threads"] == 2


def test_resume_continues_from_the_checkpoint(trained, data_dir, tmp_path):
    out = tmp_path / "resumed.safetensors"
    # --batch-size is ignored on resume: the recipe comes from the checkpoint
    proc = run("train", data_dir, "-o", out, "--resume", trained.ckpt, "--steps", "26", "--batch-size", "4")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    before, after = info(trained.model), info(out)
    assert before["training"]["steps"] == 20
    assert after["training"]["steps"] == 26
    assert after["training"]["batch_size"] == 2
    assert after["model_id"] != before["model_id"]
    assert (after["N"], after["M"]) == (before["N"], before["M"])
    assert not out.with_name(out.name + ".ckpt").exists()  # a finished run removes its checkpoint


def test_resume_from_a_missing_checkpoint(data_dir, tmp_path):
    line = assert_one_line_failure(
        run("train", data_dir, "-o", tmp_path / "m.safetensors", "--resume", tmp_path / "none.ckpt", "--steps", "5")
    )
    assert "none.ckpt" in line
    assert not (tmp_path / "m.safetensors").exists()


def test_init_fine_tunes_a_model(trained, data_dir, tmp_path):
    out = tmp_path / "tuned.safetensors"
    proc = run("train", data_dir, "-o", out, "--init", trained.model, "--steps", "3", "--batch-size", "2", "--patch-size", "32")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    base, tuned = info(trained.model), info(out)
    assert tuned["training"]["init"] == str(trained.model)
    assert tuned["training"]["steps"] == 3
    assert (tuned["N"], tuned["M"], tuned["qualities"]) == (base["N"], base["M"], base["qualities"])
    assert tuned["model_id"] != base["model_id"]


def test_init_keeps_the_larger_patches_its_model_was_trained_on(data_dir, tmp_path):
    """The default model was trained on 256² patches: fine-tuning it keeps them, at 16·128² pixels per step."""
    trained = info("default")["training"]["patch_size"]
    assert trained > 128
    out = tmp_path / "tuned.safetensors"
    proc = run("train", data_dir, "-o", out, "--init", "default", "--steps", "1", "--lr", "1e-12")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    batch = 16 * 128**2 // trained**2
    assert f"{batch} patches of {trained}² per step: default was trained on {trained}² patches" in proc.stderr.decode()
    assert "far from usable" not in proc.stderr.decode()  # the shipped model, barely moved: measured usable
    assert info(out)["training"]["held_out"]["psnr"] > 22
    assert (info(out)["training"]["patch_size"], info(out)["training"]["batch_size"]) == (trained, batch)
    # an explicit --patch-size wins, with the usual batch
    proc = run("train", data_dir, "-o", out, "-f", "--init", "default", "--steps", "1", "--lr", "1e-12", "--patch-size", "64")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert "patches of" not in proc.stderr.decode()
    assert (info(out)["training"]["patch_size"], info(out)["training"]["batch_size"]) == (64, 16)


def test_init_frees_the_stuck_gdn_terms_of_an_older_model(data_dir, tmp_path):
    """The golden model was trained before the GDN fix: its γ off-diagonals are exactly 0."""
    from aecompress import load_model

    old = Path(__file__).parent / "golden" / "golden-model.safetensors"
    out = tmp_path / "tuned.safetensors"
    proc = run("train", data_dir, "-o", out, "--init", old, "--steps", "3", "--batch-size", "2", "--patch-size", "32")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert "GDN: the cross-channel terms of 6 layers" in proc.stderr.decode()
    for name, before in load_model(old).net.state_dict().items():
        if name.endswith("gamma_raw"):
            after = load_model(out).net.state_dict()[name]
            off = ~torch.eye(before.shape[0], dtype=torch.bool)
            assert (before[off] == 0).all() and (after[off] != 0).all(), name


def test_init_grows_the_default_model_into_a_wider_preset(data_dir, tmp_path):
    """`--init default --preset medium-hp` (or `medium-cb`): N 64 → 96 channels, and (before training) the same codec."""
    from aecompress import load_model

    wider = "medium-cb" if load_model().net.checkerboard else "medium-hp"  # the default's own entropy model
    wide = tmp_path / "wide.safetensors"
    proc = run("train", data_dir, "-o", wide, "--init", "default", "--preset", wider, "--steps", "1", "--lr", "1e-12")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert "grew default from N=64 to N=96" in proc.stderr.decode()
    assert (info(wide)["N"], info(wide)["M"]) == (96, 160)
    records = []
    for model in ("default", wide):
        enc = run("encode", "-m", model, SAMPLE_PHOTO, "-q", "5", "-o", tmp_path / "x.aec", "-f", "--json")
        assert enc.returncode == 0, enc.stderr.decode()[-2000:]
        records.append(json.loads(enc.stdout))
    assert records[1]["psnr"] == pytest.approx(records[0]["psnr"], abs=0.05)
    assert records[1]["bytes"] == pytest.approx(records[0]["bytes"], rel=0.01)


def test_broken_files_in_the_data_are_skipped(data_dir, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for p in data_dir.iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    (d / "broken.jpg").write_bytes(SAMPLE_PHOTO.read_bytes()[:300])
    (d / "notes.png").write_text("not an image\n")
    (d / "readme.txt").write_text("ignored: not an image suffix\n")
    out = tmp_path / "m.safetensors"
    proc = run("train", d, "-o", out, *FAST, "--steps", "3")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr
    assert re.search(r"skipped 2 unreadable file", stderr), stderr
    for name in ("broken.jpg", "notes.png"):  # each named
        assert re.search(rf"^aecompress: warning: .*{name}: .+; skipped$", stderr, re.MULTILINE), stderr
    assert f"{d / 'notes.png'}: not an image file (or a format Pillow cannot read); skipped" in stderr  # as encode and eval word it
    assert info(out)["training"]["images"] == 4


@pytest.mark.parametrize("what", ["empty folder", "missing folder", "only broken files"])
def test_no_usable_images_is_a_one_line_error(tmp_path, what):
    d = tmp_path / "data"
    if what != "missing folder":
        d.mkdir()
    if what == "only broken files":
        (d / "a.png").write_text("text")
        (d / "b.jpg").write_bytes(b"")
    out = tmp_path / "m.safetensors"
    proc = run("train", d, "-o", out, *FAST, "--steps", "3")
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    errors = [line for line in err_lines(proc) if line.startswith("aecompress: error:")]
    assert len(errors) == 1, stderr
    if what == "only broken files":  # each unreadable file is named before the one error line
        warnings = [line for line in err_lines(proc) if line.startswith("aecompress: warning:")]
        assert [w.rsplit(": ", 1)[0].rsplit("/", 1)[-1].split(":")[0] for w in warnings] == ["a.png", "b.jpg"], stderr
        assert all(w.endswith("; skipped") for w in warnings), stderr
        assert err_lines(proc)[-1] == errors[0] and "none of the 2 image files" in errors[0]
    assert not out.exists()


def test_images_smaller_than_the_patch(tmp_path):
    d = tmp_path / "small"
    d.mkdir()
    for i in range(3):
        save_image(d / f"s{i}.png", gradient(20, 20, seed=i))
    save_image(d / "thin.png", gradient(70, 5, seed=9))
    out = tmp_path / "m.safetensors"
    proc = run("train", d, "-o", out, "--preset", "tiny", "--batch-size", "2", "--patch-size", "64", "--steps", "3")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert info(out)["training"]["steps"] == 3


@pytest.mark.parametrize(
    "args",
    [
        [],  # neither --steps nor --time-budget
        ["--steps", "3", "--resume", "x.ckpt", "--init", "x.safetensors"],
        ["--time-budget", "soon"],
        ["--steps", "0"],
        ["--steps", "3", "--patch-size", "8"],
        ["--steps", "3", "--lambda", "0.05,0.01"],
    ],
    ids=["no stop", "resume and init", "bad duration", "zero steps", "tiny patch", "decreasing lambdas"],
)
def test_usage_errors_exit_2(data_dir, tmp_path, args):
    proc = run("train", data_dir, "-o", tmp_path / "m.safetensors", "--preset", "tiny", *args)
    assert proc.returncode == 2, proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    assert not (tmp_path / "m.safetensors").exists()


def test_unknown_preset_is_an_error(data_dir, tmp_path):
    line = assert_one_line_failure(run("train", data_dir, "-o", tmp_path / "m.safetensors", "--preset", "huge", "--steps", "3"))
    assert "huge" in line


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
    ids=["ctrl-c", "sigterm", "ctrl-c-twice"],
)
def test_an_interrupted_run_saves_the_model_and_exits_0(data_dir, tmp_path, signals):
    out = tmp_path / "interrupted.safetensors"
    total = 1_000_000
    proc, stderr = _interrupted(["train", data_dir, "-o", out, *FAST, "--steps", total], signals)
    assert proc.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    assert f"--resume {out}.ckpt" in stderr  # how to go on
    assert out.is_file() and out.with_name(out.name + ".ckpt").is_file()
    training = info(out)["training"]
    assert training["interrupted"] is True
    assert 0 < training["steps"] < total


def _interrupted(args: list, signals=(signal.SIGINT,)) -> tuple[subprocess.Popen, str]:
    """Run ``aecompress ARGS`` and send it ``signals`` once its first progress line ("1/N steps [") is out; the ended process and its stderr."""
    proc = subprocess.Popen([AECOMPRESS, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    try:
        deadline = time.monotonic() + 180
        progress = re.compile(rb"^[1-9][0-9]*/[0-9]+ steps \[", re.MULTILINE)
        while not progress.search(seen):
            assert time.monotonic() < deadline, seen.decode(errors="replace")[-500:]
            assert proc.poll() is None, seen.decode(errors="replace")[-2000:]
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                seen += os.read(proc.stderr.fileno(), 65536)
        for signum in signals:
            proc.send_signal(signum)
        try:
            _, rest = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired as exc:  # the bug this test was written for: the signal was lost
            pytest.fail(f"still running 120 s after {signals}: {(seen + (exc.stderr or b'')).decode(errors='replace')[-1500:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, (seen + rest).decode(errors="replace")


@pytest.mark.parametrize("printed_by", ["train", "info"])
def test_the_printed_resume_command_finishes_the_run(data_dir, tmp_path, printed_by):
    """The command that an interrupted `train` (or `info` on its checkpoint) prints works as printed: the checkpoint
    remembers the stop condition, so --resume alone trains on to the step count the run was started with."""
    out = tmp_path / "ft.safetensors"
    proc, stderr = _interrupted(["train", data_dir, "-o", out, *FAST, "--steps", 300])
    assert proc.returncode == 0, stderr[-2000:]
    assert 0 < info(out)["training"]["steps"] < 300
    if printed_by == "train":
        line = next(line for line in stderr.splitlines() if "continue it with " in line)
        command = line.split("continue it with ", 1)[1]
    else:
        shown = run("info", f"{out}.ckpt")
        assert shown.returncode == 0, shown.stderr.decode()
        command = next(line for line in shown.stdout.decode().splitlines() if line.strip().startswith("continue")).split(None, 1)[1]
    argv = shlex.split(command)
    assert argv[:2] == ["aecompress", "train"] and "--steps" not in argv, command
    resumed = run(*argv[1:])
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    training = info(out)["training"]
    assert (training["steps"], training["interrupted"]) == (300, False)
    assert not Path(f"{out}.ckpt").exists()  # finished: the checkpoint is gone


def test_progress_in_a_pipe_is_plain_lines(trained):
    """stderr is a pipe here: no bar redrawn with carriage returns, but a line at the first step, every tenth of the run, and the end."""
    stderr = trained.proc.stderr.decode()
    assert "\r" not in stderr
    lines = [line for line in err_lines(trained.proc) if re.match(r"\d+/20 steps \[", line)]
    assert [int(line.split("/")[0]) for line in lines] == [1, 10, 20], stderr[-2000:]
    for line in lines:
        assert re.fullmatch(r"\d+/20 steps \[\d\d:\d\d<\d\d:\d\d\] loss=[\d.]+ bpp=[\d.]+ psnr=[\d.]+ lr=[\d.]+e-\d+", line), line


def test_a_timed_run_in_a_pipe_shows_its_seconds(data_dir, tmp_path):
    out = tmp_path / "timed.safetensors"
    proc = run("train", data_dir, "-o", out, *FAST, "--time-budget", "2s")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = [line for line in err_lines(proc) if re.match(r"\d+/2 s \[", line)]
    assert len(lines) >= 2, proc.stderr.decode()  # the first step and the end
    assert re.fullmatch(r"\d/2 s \[\d\d:\d\d<\d\d:\d\d\] step=\d+ loss=.* lr=.*", lines[-1]), lines[-1]


SUMMARY = r"trained (\d+) steps? in [\d.]+ s; 8 (held-out|training) patches \((.*)\) at q(\d+): ([\d.]+) bpp, ([\d.]+) dB"


def test_a_finished_run_ends_with_its_measure_on_held_out_patches(tmp_path):
    """20 images: one is held out, never trained on; the run ends by coding patches of it, and says what they cost."""
    data = tmp_path / "twenty"
    data.mkdir()
    gradient_folder(data, 20, 80, 64)
    out = tmp_path / "m.safetensors"
    proc = run("train", data, "-o", out, *FAST, "--steps", "5")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = err_lines(proc)
    assert "held out 1 of 20 images: the run ends by measuring the model on patches of them" in lines
    summaries = [re.fullmatch(SUMMARY, line) for line in lines]
    found = [m for m in summaries if m]
    assert len(found) == 1, lines
    steps, kind, where, quality, bpp, psnr = found[0].groups()
    assert (steps, kind, where, quality) == ("5", "held-out", "1 image not trained on", "3")
    training = info(out)["training"]
    assert training["images"] == 19
    measured = training["held_out"]
    assert (measured["patches"], measured["side"], measured["held_out_images"], measured["quality"]) == (8, 128, 1, 3)
    assert (f"{measured['bpp']:.3f}", f"{measured['psnr']:.2f}") == (bpp, psnr)
    assert training["stages"][-1]["held_out"] == measured
    assert lines[-1] == f"model written to {out}"


def test_a_small_folder_is_measured_on_training_patches(trained):
    """Under 20 images none is held out: the summary line says that its patches are training patches."""
    match = next(m for m in map(lambda line: re.fullmatch(SUMMARY, line), err_lines(trained.proc)) if m)
    assert match.group(2, 3) == ("training", "a folder of under 20 images holds none out")
    assert info(trained.model)["training"]["held_out"]["held_out_images"] == 0


def test_a_model_far_from_usable_says_what_to_do(trained):
    """20 steps of a tiny model: far below 22 dB at its middle quality; the warning says so and how to do better."""
    warnings = [line for line in err_lines(trained.proc) if "far from usable" in line]
    assert len(warnings) == 1, trained.proc.stderr.decode()[-2000:]
    assert re.fullmatch(
        r"aecompress: warning: this model is far from usable \([\d.]+ dB at [\d.]+ bpp at q3"
        r"(, where JPEG gives [\d.]+ dB at that rate on the same patches)?\); "
        r"train longer \(--time-budget 2h or more\) or fine-tune the shipped model \(--init default\)",
        warnings[0],
    ), warnings[0]
    assert info(trained.model)["training"]["held_out"]["psnr"] < 22


def test_worse_than_jpeg_at_the_same_rate_is_far_from_usable():
    """Above 22 dB is not enough: a model under JPEG's PSNR at its own rate, on the same patches, gets the warning."""
    from aecompress.training.heldout import far_from_usable, jpeg_psnr_at

    measured = {"patches": 8, "side": 128, "held_out_images": 0, "quality": 6, "bpp": 0.39, "psnr": 23.12}
    assert far_from_usable({"held_out": {**measured, "jpeg_psnr": None}}) is None  # no reference: the floor alone
    verdict = far_from_usable({"held_out": {**measured, "jpeg_psnr": 30.4}, "init": "default"})
    assert verdict == (
        "this model is far from usable (23.1 dB at 0.39 bpp at q6, where JPEG gives 30.4 dB at that rate on the same patches); "
        "train longer (--time-budget 2h or more)"
    )
    assert far_from_usable({"held_out": {**measured, "psnr": 31.0, "jpeg_psnr": 30.4}}) is None
    pixels = np.asarray(Image.open(SAMPLE_PHOTO).convert("RGB"))[:128, :256].copy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=50, optimize=True)
    at_50 = 8 * buffer.tell() / pixels[..., 0].size
    buffer.seek(0)
    assert jpeg_psnr_at(pixels, at_50) == pytest.approx(psnr_numpy(pixels, np.asarray(Image.open(buffer))), abs=1e-9)
    assert jpeg_psnr_at(pixels, at_50 * 0.8) < jpeg_psnr_at(pixels, at_50) < jpeg_psnr_at(pixels, at_50 * 1.25)
    assert jpeg_psnr_at(pixels, 0.001) is None and jpeg_psnr_at(pixels, 40.0) is None  # outside JPEG's range


def test_a_recipe_file_sets_the_run_and_the_command_line_overrides_it(data_dir, tmp_path):
    recipe = tmp_path / "run.toml"
    recipe.write_text(
        '# a recipe\npreset = "tiny-hp"\nsteps = 4\nbatch-size = 3\npatch-size = 48\nlambda = [0.001, 0.01]\n'
        'seed = 7\ndownscale = "1:1.5"\nlr = 2e-3\nwarmup = 1\nprecision = "fp32"\n'
    )
    out = tmp_path / "m.safetensors"
    proc = run("train", data_dir, "-o", out, "--recipe", recipe, "--seed", "9", "--steps", "2")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    record = info(out)
    training = record["training"]
    assert record["preset"] == "tiny-hp" and record["lambdas"] == [0.001, 0.01]
    assert (training["batch_size"], training["patch_size"], training["downscale"]) == (3, 48, [1.0, 1.5])
    assert (training["lr"], training["precision"]) == (2e-3, "fp32")
    assert (training["seed"], training["steps"]) == (9, 2)  # the command line's, not the file's


@pytest.mark.parametrize(
    "text, reason",
    [
        ("batchsize = 4\n", "unknown key 'batchsize'"),
        ('batch-size = "4"\n', "batch-size = '4': expected an integer"),
        ("steps = 4 4\n", "not a TOML recipe"),
        (None, "no such recipe file"),
    ],
    ids=["unknown key", "wrong type", "not toml", "missing"],
)
def test_a_bad_recipe_is_a_one_line_usage_error(data_dir, tmp_path, text, reason):
    recipe = tmp_path / "bad.toml"
    if text is not None:
        recipe.write_text(text)
    line = assert_one_line_failure(run("train", data_dir, "-o", tmp_path / "m.safetensors", "--recipe", recipe, "--steps", "2"), code=2)
    assert line.startswith(f"aecompress: error: {recipe}: ") and reason in line, line
    assert not (tmp_path / "m.safetensors").exists()


def test_the_default_recipe_is_the_shipped_models_last_stage():
    """recipes/default.toml restates the recipe recorded in the default model's last stage."""
    from aecompress.training.config import parse_duration, read_recipe

    recipe = read_recipe(REPO / "recipes" / "default.toml")
    record = info("default")
    last = record["training"]["stages"][-1]
    assert record["model_id"] == "b61e5c91503b6362" and record["preset"] == recipe["preset"]
    assert [float(v) for v in recipe["lambda"].split(",")] == last["lambdas"] == record["lambdas"]
    keys = ["patch-size", "batch-size", "lr", "seed", "precision", "threads"]
    assert {key: recipe[key] for key in keys} == {key: last[key.replace("-", "_")] for key in keys}
    assert [float(v) for v in recipe["downscale"].split(":")] == last["downscale"]
    assert abs(parse_duration(recipe["time-budget"]) - last["seconds"]) < 5


def test_every_recipe_key_is_an_option_of_train():
    """A recipe file holds `aecompress train` options: each of its keys is one, spelled as on the command line."""
    from aecompress.cli.train import train as command
    from aecompress.training.config import RECIPE_KEYS, TINY_RECIPE, as_options

    options = {option for param in command.params for option in param.opts}
    assert {f"--{key}" for key in RECIPE_KEYS} <= options
    assert set(as_options(TINY_RECIPE)[::2]) <= options


def test_the_fine_tuning_defaults_are_the_librarys():
    from aecompress.training.config import FINE_TUNING_LR, TrainConfig, resolve

    assert resolve(data="d", output="o")[0].lr == TrainConfig.lr
    assert resolve(data="d", output="o", init="m")[0].lr == FINE_TUNING_LR
    assert resolve(data="d", output="o", init="m", lr=0.01)[0].lr == 0.01
    cfg, note = resolve({"patch_size": 256}, data="d", output="o", init="m")
    assert (cfg.patch_size, cfg.batch_size) == (256, 4) and note.startswith("4 patches of 256² per step: m was trained")
    assert resolve({"patch_size": 256}, data="d", output="o", init="m", patch_size=64)[0].patch_size == 64


def test_ema_writes_the_moving_average_and_keeps_the_last_step_in_the_checkpoint(data_dir, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "ema.safetensors"
    proc = run("train", data_dir, "-o", out, *FAST, "--steps", "12", "--lr", "3e-3", "--ema", "0.9", "--keep-checkpoint")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    checkpoint = torch.load(out.with_name(out.name + ".ckpt"), weights_only=True)
    written = load_file(str(out))["g_a.0.weight"]
    averaged, last = checkpoint["averaged"]["g_a.0.weight"], checkpoint["model"]["g_a.0.weight"]
    assert torch.equal(written, averaged.to(written.dtype)) and not torch.equal(averaged, last)
    assert info(out)["training"]["ema"] == 0.9
    # a resumed run keeps averaging (the option comes from the checkpoint)
    again = tmp_path / "again.safetensors"
    proc = run("train", data_dir, "-o", again, "--resume", out.with_name(out.name + ".ckpt"), "--steps", "15")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert info(again)["training"]["ema"] == 0.9 and info(again)["training"]["steps"] == 15


def test_ema_out_of_range_is_a_usage_error(data_dir, tmp_path):
    proc = run("train", data_dir, "-o", tmp_path / "m.safetensors", *FAST, "--steps", "2", "--ema", "1")
    assert proc.returncode == 2 and b"--ema" in proc.stderr


def test_info_shows_the_measure_of_held_out_images_as_a_line(tmp_path):
    """`info` prints the training summary's held-out measure in words, not as a raw dict."""
    data = tmp_path / "twenty"
    data.mkdir()
    gradient_folder(data, 20, 48, 40)  # 20 images: one is held out
    out = tmp_path / "m.safetensors"
    assert run("train", data, "-o", out, *FAST, "--steps", "3").returncode == 0
    proc = run("info", out)
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "{" not in text and "held_out" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("  held out ")]
    assert len(lines) == 1, text
    line = r"  held out +1 image not trained on, 8 patches of 128², q3: [\d.]+ bpp, [\d.]+ dB( \(JPEG at that rate: [\d.]+ dB\))?"
    assert re.fullmatch(line, lines[0]), lines[0]


def test_info_says_when_the_measure_is_on_training_images(trained):
    text = run("info", trained.model).stdout.decode()
    assert "{" not in text and re.search(r"\n  measured +on training images \(none held out\), 8 patches of 128², q3: ", text), text


@pytest.mark.parametrize(
    "text, reason",
    [
        ('downscale = "abc"\n', "downscale = 'abc': use FACTOR or MIN:MAX"),
        ('lambda = "x"\n', "lambda = 'x': use one λ or a comma-separated list"),
        ('time-budget = "soon"\n', "time-budget = 'soon': not a duration"),
        ("batch-size = 0\n", "batch-size = 0: 0 is not in the range x>=1"),
        ('device = "tpu"\n', "device = 'tpu': not a device"),
        ('preset = "huge"\n', "preset = 'huge': not a preset (choose from tiny,"),
    ],
    ids=["downscale", "lambda", "time-budget", "range", "device", "preset"],
)
def test_a_bad_value_in_a_recipe_is_named_with_its_file(data_dir, tmp_path, text, reason):
    recipe = tmp_path / "r.toml"
    recipe.write_text("steps = 2\nseed = 3\n" + text)
    line = assert_one_line_failure(run("train", data_dir, "-o", tmp_path / "m.safetensors", "--recipe", recipe), code=2)
    assert line.startswith(f"aecompress: error: {recipe}: {reason}"), line
    assert not (tmp_path / "m.safetensors").exists()
