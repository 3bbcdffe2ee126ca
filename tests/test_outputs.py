"""One rule for every output of every command, through the installed command.

Every output is checked before any work starts, never overwritten without -f,
written through a temporary file, and a failure is one line; where a result was
computed and one output fails, the others still appear.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import AECOMPRESS, assert_one_line_failure, err_lines, gradient, gradient_folder, run, save_image, sha256, with_alpha

FAST = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32"]
FOREVER = ["--steps", "1000000"]  # a refusal must come before the work: these runs would never end
QUICK = 60  # seconds: a refusal is immediate, training for FOREVER is not


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return gradient_folder(tmp_path_factory.mktemp("outputs-data"), 3, 72, 56)


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith((".tmp", ".probe"))]


def info(path) -> dict:
    proc = run("info", path, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ---------------------------------------------------------------- train: model and checkpoint


def test_train_refuses_an_existing_model_before_training(data_dir, tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"a two-hour model")
    line = assert_one_line_failure(run("train", data_dir, "-o", model, *FAST, *FOREVER, timeout=QUICK))
    assert "m.safetensors" in line and "already exists" in line and "-f" in line
    assert model.read_bytes() == b"a two-hour model"
    assert not (tmp_path / "m.safetensors.ckpt").exists()


def test_train_refusal_suggests_resume_when_the_run_has_a_checkpoint(data_dir, tmp_path):
    model, ckpt = tmp_path / "m.safetensors", tmp_path / "m.safetensors.ckpt"
    model.write_bytes(b"model")
    ckpt.write_bytes(b"checkpoint")
    line = assert_one_line_failure(run("train", data_dir, "-o", model, *FAST, *FOREVER, timeout=QUICK))
    assert f"--resume {ckpt}" in line
    model.unlink()
    line = assert_one_line_failure(run("train", data_dir, "-o", model, *FAST, *FOREVER, timeout=QUICK))
    assert "m.safetensors.ckpt" in line and "--resume" in line  # the checkpoint of an earlier run is kept too
    assert ckpt.read_bytes() == b"checkpoint" and not model.exists()


def test_train_with_force_replaces_the_model(data_dir, tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"old")
    proc = run("train", data_dir, "-o", model, *FAST, "--steps", "2", "-f")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert info(model)["training"]["steps"] == 2
    assert no_temporaries(tmp_path)


@pytest.mark.parametrize("where", ["missing directory", "under a file", "unwritable"])
def test_train_output_that_cannot_be_written_fails_before_training(data_dir, tmp_path, where):
    (tmp_path / "notes.txt").write_text("notes\n")
    target = {"missing directory": tmp_path / "nodir" / "x.safetensors", "under a file": tmp_path / "notes.txt" / "x.safetensors"}
    output = target.get(where, "/proc/x.safetensors")
    line = assert_one_line_failure(run("train", data_dir, "-o", output, *FAST, *FOREVER, timeout=QUICK))
    assert "x.safetensors" in line


def test_train_checkpoint_path_is_checked_before_training(data_dir, tmp_path):
    line = assert_one_line_failure(
        run("train", data_dir, "-o", tmp_path / "m.safetensors", "--checkpoint", tmp_path / "no" / "c.ckpt", *FAST, *FOREVER, timeout=QUICK)
    )
    assert "c.ckpt" in line
    assert not (tmp_path / "m.safetensors").exists()


def test_a_finished_run_removes_its_checkpoint_unless_kept(data_dir, tmp_path):
    proc = run("train", data_dir, "-o", tmp_path / "a.safetensors", *FAST, "--steps", "2")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert (tmp_path / "a.safetensors").is_file() and not (tmp_path / "a.safetensors.ckpt").exists()
    assert info(tmp_path / "a.safetensors")["training"]["lr"] == pytest.approx(1e-3)  # from scratch: the default rate
    proc = run("train", data_dir, "-o", tmp_path / "b.safetensors", *FAST, "--steps", "2", "--keep-checkpoint")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert (tmp_path / "b.safetensors.ckpt").is_file()


def test_resume_continues_its_own_run_keeps_init_and_the_fine_tuning_rate(data_dir, tiny_model, tmp_path):
    """--init without --lr uses the documented fine-tuning rate; --resume of the run's own checkpoint needs no -f and keeps init."""
    model = tmp_path / "tuned.safetensors"
    proc = run(
        "train", data_dir, "-o", model, "--init", tiny_model, "--batch-size", "2", "--patch-size", "32", "--steps", "3", "--keep-checkpoint"
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    first = info(model)["training"]
    assert first["init"] == str(tiny_model) and first["lr"] == pytest.approx(3e-4)
    ckpt = tmp_path / "tuned.safetensors.ckpt"
    proc = run("train", data_dir, "-o", model, "--resume", ckpt, "--steps", "5")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    resumed = info(model)["training"]
    assert resumed["steps"] == 5 and resumed["init"] == str(tiny_model) and resumed["lr"] == pytest.approx(3e-4)
    assert not ckpt.exists()  # finished: the checkpoint is gone


def test_help_and_docs_give_the_rates_train_uses():
    help_text = " ".join(run("train", "--help").stdout.decode().split())
    assert "1e-3" in help_text and "3e-4 with --init" in help_text
    training_doc = (Path(__file__).resolve().parents[1] / "docs" / "TRAINING.md").read_text()
    assert "3e-4" in training_doc  # the docs recommend what --init does by default


# ---------------------------------------------------------------- train: budgets, progress


@pytest.mark.parametrize("budget", ["2", "1.5", "1h30"])
def test_a_time_budget_needs_its_unit(data_dir, tmp_path, budget):
    proc = run("train", data_dir, "-o", tmp_path / "m.safetensors", *FAST, "--time-budget", budget, timeout=QUICK)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and "unit" in stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_checkpoint_every_needs_its_unit(data_dir, tmp_path):
    proc = run("train", data_dir, "-o", tmp_path / "m.safetensors", *FAST, "--steps", "2", "--checkpoint-every", "60", timeout=QUICK)
    assert proc.returncode == 2 and "unit" in proc.stderr.decode()


def test_a_time_budget_run_shows_the_image_count_a_timed_bar_and_warns_when_barely_trained(data_dir, tmp_path):
    model = tmp_path / "m.safetensors"
    proc = run("train", data_dir, "-o", model, "--preset", "tiny", "--batch-size", "16", "--patch-size", "128", "--time-budget", "1s")
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr[-2000:]
    assert f"loading 3 images from {data_dir}" in stderr
    assert re.search(r"\d+/1 s \[", stderr), stderr[-1000:]  # a bar over the budget's seconds, with elapsed<remaining
    assert info(model)["training"]["steps"] < 100
    assert re.search(r"warning: .*only \d+ training step", stderr), stderr[-1000:]
    assert err_lines(proc)[-1] == f"model written to {model}"


def test_no_images_is_refused_before_training(tmp_path):
    (tmp_path / "empty").mkdir()
    line = assert_one_line_failure(run("train", tmp_path / "empty", "-o", tmp_path / "m.safetensors", *FAST, *FOREVER, timeout=QUICK))
    assert "no images" in line


# ---------------------------------------------------------------- encode / decode


@pytest.mark.parametrize("command", ["encode", "decode"])
@pytest.mark.parametrize("outdir", ["a file", "under a file", "/proc/x"])
def test_an_output_directory_that_cannot_be_used_is_one_line(tiny_model, tmp_path, command, outdir):
    notes = tmp_path / "notes.txt"
    notes.write_text("notes\n")
    target = {"a file": notes, "under a file": notes / "sub"}.get(outdir, "/proc/x")
    src = save_image(tmp_path / "a.png", gradient())
    line = assert_one_line_failure(run(command, "-m", tiny_model, src, "-d", target))
    assert line.startswith("aecompress: error:") and str(target) in line
    assert notes.read_text() == "notes\n"


def test_an_existing_output_is_refused_before_the_input_is_even_decoded(tiny_model, tmp_path):
    """The refusal comes first: for a broken input, 'already exists' and not the decoder's complaint."""
    (tmp_path / "broken.png").write_text("not an image\n")
    (tmp_path / "broken.aec").write_bytes(b"earlier output")
    line = assert_one_line_failure(run("encode", "-m", tiny_model, tmp_path / "broken.png"))
    assert "broken.aec: already exists" in line
    (tmp_path / "junk.aec").write_bytes(b"junk")
    (tmp_path / "junk.decoded.png").write_bytes(b"earlier output")
    line = assert_one_line_failure(run("decode", "-m", tiny_model, tmp_path / "junk.aec"))
    assert "junk.decoded.png: already exists" in line
    assert (tmp_path / "broken.aec").read_bytes() == b"earlier output"


def test_a_batch_rerun_refuses_each_existing_output_and_does_the_rest(tiny_model, tmp_path):
    srcs = [save_image(tmp_path / f"img{i}.png", gradient(48, 40, seed=i)) for i in range(3)]
    out = tmp_path / "out"
    out.mkdir()
    (out / "img1.aec").write_bytes(b"keep me")
    proc = run("encode", "-m", tiny_model, *srcs, "-d", out)
    assert proc.returncode == 1
    errors = [line for line in err_lines(proc) if line.startswith("aecompress:")]
    assert len(errors) == 1 and "img1.aec: already exists (use -f to overwrite)" in errors[0]
    assert (out / "img1.aec").read_bytes() == b"keep me"
    assert (out / "img0.aec").is_file() and (out / "img2.aec").is_file()


def test_decode_of_an_empty_file_says_empty_file(tiny_model, tmp_path):
    (tmp_path / "empty.aec").write_bytes(b"")
    line = assert_one_line_failure(run("decode", "-m", tiny_model, tmp_path / "empty.aec", "-o", tmp_path / "x.png"))
    assert line.endswith("empty.aec: empty file")


def test_decode_of_an_image_says_what_it_is(tiny_model, tmp_path):
    src = save_image(tmp_path / "photo.jpg", gradient(), quality=90)
    line = assert_one_line_failure(run("decode", "-m", tiny_model, src, "-o", tmp_path / "x.png"))
    assert "a JPEG image, not an aecompress file" in line


def test_decode_to_gif_warns_about_the_palette(tiny_model, tmp_path):
    src = save_image(tmp_path / "a.png", gradient())
    assert run("encode", "-m", tiny_model, src).returncode == 0
    proc = run("decode", "-m", tiny_model, tmp_path / "a.aec", "-o", tmp_path / "a.gif")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in err_lines(proc) if "warning" in line]
    assert len(warnings) == 1 and "256 colours" in warnings[0]
    report = [line for line in err_lines(proc) if "->" in line][0]
    assert " P," in report  # what was written: a palette image


def test_decode_rgba_to_png_keeps_reporting_rgba(tiny_model, tmp_path):
    src = save_image(tmp_path / "rgba.png", with_alpha(gradient()))
    assert run("encode", "-m", tiny_model, src).returncode == 0
    proc = run("decode", "-m", tiny_model, tmp_path / "rgba.aec", "-o", tmp_path / "back.png")
    assert proc.returncode == 0 and " RGBA," in err_lines(proc)[0]


# ---------------------------------------------------------------- eval


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval-outputs")
    save_image(d / "img0.png", gradient(64, 48, seed=3, noise=3.0))
    return d


EVAL = ["--baselines", "jpeg", "--no-ms-ssim"]


@pytest.mark.parametrize("option", ["-o", "--plot"])
def test_eval_refuses_an_existing_output_before_the_work_and_force_replaces_it(tiny_model, eval_dir, tmp_path, option):
    pytest.importorskip("matplotlib")
    target = tmp_path / ("r.json" if option == "-o" else "rd.png")
    target.write_bytes(b"earlier result")
    line = assert_one_line_failure(run("eval", eval_dir, "-m", tiny_model, *EVAL, option, target))
    assert "already exists (use -f to overwrite)" in line
    assert target.read_bytes() == b"earlier result"
    proc = run("eval", eval_dir, "-m", tiny_model, *EVAL, option, target, "-f")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert target.read_bytes() != b"earlier result"
    assert no_temporaries(tmp_path)


@pytest.mark.parametrize("case", ["plot in a missing directory", "json in /proc", "plot format", "same file"])
def test_eval_bad_output_paths_fail_before_the_work(tiny_model, eval_dir, tmp_path, case):
    pytest.importorskip("matplotlib")
    args = {
        "plot in a missing directory": ["--plot", tmp_path / "nodir" / "x.png"],
        "json in /proc": ["-o", "/proc/x.json"],
        "plot format": ["--plot", tmp_path / "x.unknown"],
        "same file": ["-o", tmp_path / "x.png", "--plot", tmp_path / "x.png"],
    }[case]
    proc = run("eval", eval_dir, "-m", tiny_model, *EVAL, *args)
    if case == "same file":
        assert proc.returncode == 2 and "Traceback" not in proc.stderr.decode()
    else:
        assert_one_line_failure(proc)


def _limit_file_size() -> None:
    """In the child: any file written past 512 bytes fails with EFBIG, like a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))


def test_eval_prints_its_table_even_when_the_outputs_cannot_be_written(tiny_model, eval_dir, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    json_out, plot_out = tmp_path / "r.json", tmp_path / "rd.png"
    proc = subprocess.run(
        [AECOMPRESS, "eval", str(eval_dir), "-m", str(tiny_model), *EVAL, "-o", str(json_out), "--plot", str(plot_out)],
        capture_output=True,
        preexec_fn=_limit_file_size,
        timeout=300,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert "BD-rate" in proc.stdout.decode() and "aecompress" in proc.stdout.decode()  # the result is not lost
    errors = [line for line in err_lines(proc) if line.startswith("aecompress: error:")]
    assert len(errors) == 2 and "r.json" in errors[0] and "rd.png" in errors[1], stderr
    assert not json_out.exists() and not plot_out.exists() and no_temporaries(tmp_path)


# ---------------------------------------------------------------- info, -m, --debug


def test_info_on_an_image_says_what_it_is(tmp_path):
    photo = save_image(tmp_path / "photo.jpg", gradient(), quality=90)
    line = assert_one_line_failure(run("info", photo))
    assert "photo.jpg: a JPEG image, not an aecompress file or model" in line
    (tmp_path / "empty.safetensors").write_bytes(b"")
    assert assert_one_line_failure(run("info", tmp_path / "empty.safetensors")).endswith("empty file")


def test_info_on_a_checkpoint_says_how_to_continue(data_dir, tmp_path):
    model = tmp_path / "m.safetensors"
    proc = run("train", data_dir, "-o", model, *FAST, "--steps", "2", "--keep-checkpoint")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    ckpt = tmp_path / "m.safetensors.ckpt"
    text = run("info", ckpt)
    assert text.returncode == 0, text.stderr
    assert "training checkpoint" in text.stdout.decode() and f"--resume {ckpt}" in text.stdout.decode()
    record = info(ckpt)
    assert record["kind"] == "checkpoint" and record["step"] == 2
    line = assert_one_line_failure(run("encode", "-m", ckpt, save_image(tmp_path / "a.png", gradient()), "-o", tmp_path / "a.aec"))
    assert "a training checkpoint, not a model file" in line


def test_debug_adds_the_traceback_to_an_expected_error(tmp_path):
    src = save_image(tmp_path / "a.png", gradient())
    plain = assert_one_line_failure(run("encode", "-m", tmp_path / "missing.safetensors", src, "-o", tmp_path / "a.aec"))
    debug = run("--debug", "encode", "-m", tmp_path / "missing.safetensors", src, "-o", tmp_path / "a.aec")
    assert debug.returncode == 1
    stderr = debug.stderr.decode()
    assert "Traceback" in stderr and stderr.rstrip().endswith(plain)
    batch = run("--debug", "encode", "-m", tmp_path / "missing.safetensors", tmp_path / "nope.png")
    assert "Traceback" in batch.stderr.decode()


# ---------------------------------------------------------------- demo


def test_demo_says_its_files_are_temporary_and_its_tiny_model_is_meant_to_be_poor(tmp_path):
    proc = run("demo", "--train", "--steps", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = proc.stdout.decode()
    assert "meant to be poor" in out
    assert "--keep DIR" in out and "removed" in out
    assert "aecompress-demo-" not in out  # no path into the folder that is gone


def test_demo_keep_follows_the_output_rule(tmp_path):
    keep = tmp_path / "kept"
    proc = run("demo", "--train", "--steps", "2", "--keep", keep, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert f"files kept in {keep}" in proc.stdout.decode()
    kept = sorted(p.name for p in keep.iterdir())
    assert "demo.safetensors" in kept and "demo.ckpt" not in kept
    before = {p.name: sha256(p) for p in keep.iterdir()}
    line = assert_one_line_failure(run("demo", "--train", "--steps", "2", "--keep", keep, cwd=tmp_path))
    assert "already exists (use -f to overwrite)" in line
    assert {p.name: sha256(p) for p in keep.iterdir()} == before
    assert run("demo", "--train", "--steps", "2", "--keep", keep, "-f", cwd=tmp_path).returncode == 0


# ---------------------------------------------------------------- wrong kinds of file, found on the tour


def test_encode_of_an_aec_file_says_so(tiny_model, tmp_path):
    src = save_image(tmp_path / "a.png", gradient())
    assert run("encode", "-m", tiny_model, src).returncode == 0
    line = assert_one_line_failure(run("encode", "-m", tiny_model, tmp_path / "a.aec", "-o", tmp_path / "b.aec"))
    assert "already an aecompress file" in line


def test_train_names_a_wrong_resume_or_init_file_before_loading_images(data_dir, tiny_model, tmp_path):
    photo = save_image(tmp_path / "photo.jpg", gradient(), quality=90)
    line = assert_one_line_failure(
        run("train", data_dir, "-o", tmp_path / "m.safetensors", "--resume", tiny_model, *FOREVER, timeout=QUICK)
    )
    assert "a model file, not a training checkpoint" in line and "--init" in line
    line = assert_one_line_failure(run("train", data_dir, "-o", tmp_path / "m.safetensors", "--resume", photo, *FOREVER, timeout=QUICK))
    assert "a JPEG image, not a training checkpoint" in line
    line = assert_one_line_failure(run("train", data_dir, "-o", tmp_path / "m.safetensors", "--init", photo, *FOREVER, timeout=QUICK))
    assert "a JPEG image, not an aecompress model file" in line


def test_eval_names_an_unreadable_image_before_the_work_and_evaluates_the_others(tiny_model, tmp_path):
    save_image(tmp_path / "good.png", gradient())
    (tmp_path / "broken.png").write_text("not an image\n")
    proc = run("eval", tmp_path, "-m", tiny_model, *EVAL, "--qualities", "1", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    reason = "not an image file (or a format Pillow cannot read)"
    assert err_lines(proc)[0] == f"aecompress: warning: {tmp_path / 'broken.png'}: {reason}; skipped"
    assert json.loads(proc.stdout)["images"] == ["good.png"]
    line = assert_one_line_failure(run("eval", tmp_path / "broken.png", "-m", tiny_model, *EVAL))  # the only image: a failure
    assert line == f"aecompress: {tmp_path / 'broken.png'}: {reason}"
