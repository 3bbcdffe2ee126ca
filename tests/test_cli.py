"""The ``aecompress`` command, run as a real subprocess: files, pipes, reports, errors, image kinds."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import (
    AECOMPRESS,
    REPO,
    assert_one_line_failure,
    err_lines,
    gradient,
    psnr_numpy,
    read_pixels,
    run,
    save_image,
    sha256,
    with_alpha,
)
from PIL import Image

ENCODE_KEYS = {"input", "output", "width", "height", "bytes", "bpp", "ratio", "psnr"}


def json_lines(text: bytes) -> list[dict]:
    """Parse JSON Lines strictly: every non-empty line one JSON object."""
    lines = text.decode().splitlines()
    assert lines, "no JSON output"
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in records)
    return records


# ---------------------------------------------------------------- one encode and decode, looked at closely


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_model):
    d = tmp_path_factory.mktemp("pair")
    src = save_image(d / "a.png", gradient())
    src_hash = sha256(src)
    enc = run("encode", "-m", tiny_model, src, "-o", d / "a.aec")
    aec_hash = sha256(d / "a.aec") if (d / "a.aec").exists() else None
    dec = run("decode", "-m", tiny_model, d / "a.aec", "-o", d / "b.png")
    return SimpleNamespace(dir=d, src=src, aec=d / "a.aec", png=d / "b.png", enc=enc, dec=dec, src_hash=src_hash, aec_hash=aec_hash)


def test_encode_writes_the_file_and_reports_on_stderr(pair):
    assert pair.enc.returncode == 0, pair.enc.stderr
    assert pair.enc.stdout == b""
    lines = err_lines(pair.enc)
    assert len(lines) == 1, lines
    size = pair.aec.stat().st_size
    assert pair.aec.read_bytes()[:4] == b"\x89AEC"
    assert f"{size:,} bytes" in lines[0]
    assert "a.png" in lines[0] and "a.aec" in lines[0] and "PSNR" in lines[0]


def test_decode_writes_the_image_and_reports_on_stderr(pair):
    assert pair.dec.returncode == 0, pair.dec.stderr
    assert pair.dec.stdout == b""
    lines = err_lines(pair.dec)
    assert len(lines) == 1, lines
    assert "96x64" in lines[0]
    mode, pixels = read_pixels(pair.png)
    assert mode == "RGB" and pixels.shape == (64, 96, 3)


def test_inputs_are_never_modified(pair):
    assert sha256(pair.src) == pair.src_hash
    assert sha256(pair.aec) == pair.aec_hash


def test_encode_json(pair, tiny_model, tmp_path):
    out = tmp_path / "j.aec"
    proc = run("encode", "-m", tiny_model, pair.src, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    (record,) = json_lines(proc.stdout)
    assert ENCODE_KEYS <= record.keys()
    assert record["input"] == str(pair.src) and record["output"] == str(out)
    assert (record["width"], record["height"]) == (96, 64)
    assert record["bytes"] == out.stat().st_size
    assert record["bpp"] == pytest.approx(8 * record["bytes"] / (96 * 64), abs=1e-4)
    assert record["ratio"] == pytest.approx(96 * 64 * 3 / record["bytes"], abs=1e-2)
    assert out.read_bytes() == pair.aec.read_bytes()  # same input, same model: same bytes


def test_decode_json(pair, tiny_model, tmp_path):
    out = tmp_path / "j.png"
    proc = run("decode", "-m", tiny_model, pair.aec, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    (record,) = json_lines(proc.stdout)
    assert {"input", "output", "width", "height", "bytes", "bpp", "ratio"} <= record.keys()
    assert (record["width"], record["height"]) == (96, 64)
    assert record["bytes"] == pair.aec.stat().st_size
    assert read_pixels(out)[1].tobytes() == read_pixels(pair.png)[1].tobytes()


def test_reported_psnr_is_the_real_psnr(pair, tiny_model, tmp_path):
    proc = run("encode", "-m", tiny_model, pair.src, "-c", "--json")
    assert proc.returncode == 0
    (record,) = json_lines(proc.stderr)  # data on stdout: the report goes to stderr
    assert proc.stdout == pair.aec.read_bytes()
    _, original = read_pixels(pair.src)
    _, decoded = read_pixels(pair.png)
    assert record["psnr"] == pytest.approx(psnr_numpy(original, decoded), abs=0.01)


@pytest.fixture(scope="module")
def bf16_encode(pair, tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("bf16")
    proc = run("encode", "-m", tiny_model, pair.src, "-o", d / "b.aec", "--json", "--precision", "bf16")
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(aec=d / "b.aec", record=json_lines(proc.stdout)[0], dir=d)


def test_encode_precision_bf16_decodes_exactly_and_costs_little(pair, tiny_model, bf16_encode):
    """A bf16 analysis changes only the encoder's choice of symbols: the file decodes to what encode measured."""
    record = bf16_encode.record
    dec = run("decode", "-m", tiny_model, bf16_encode.aec, "-o", bf16_encode.dir / "b.png")
    assert dec.returncode == 0, dec.stderr
    _, original = read_pixels(pair.src)
    _, decoded = read_pixels(bf16_encode.dir / "b.png")
    assert record["psnr"] == pytest.approx(psnr_numpy(original, decoded), abs=0.01)
    _, fp32_decoded = read_pixels(pair.png)
    assert record["bytes"] == pytest.approx(pair.aec.stat().st_size, rel=0.05)
    assert record["psnr"] == pytest.approx(psnr_numpy(original, fp32_decoded), abs=0.2)


def test_encode_precision_auto_is_the_default_and_fp32_on_small_images(pair, tiny_model):
    """auto picks bf16 only for images of 8 MP or more, and only on AMX CPUs: a small image is coded in fp32 anywhere."""
    proc = run("encode", "-m", tiny_model, pair.src, "-c", "--precision", "fp32")
    assert proc.returncode == 0
    auto = run("encode", "-m", tiny_model, pair.src, "-c", "--precision", "auto")
    assert auto.returncode == 0 and auto.stdout == proc.stdout
    default = run("encode", "-m", tiny_model, pair.src, "-c")
    assert default.returncode == 0 and default.stdout == auto.stdout
    bad = run("encode", "-m", tiny_model, pair.src, "-c", "--precision", "fp16")
    assert bad.returncode == 2 and b"fp16" in bad.stderr and b"Traceback" not in bad.stderr


# ---------------------------------------------------------------- stdin, stdout, pipes


def test_pipelines_match_file_outputs(pair, tiny_model, tmp_path):
    script = f"""
        set -euo pipefail
        A={AECOMPRESS!r}; M={str(tiny_model)!r}; SRC={str(pair.src)!r}
        cat "$SRC" | "$A" encode -m "$M" - | "$A" decode -m "$M" - > pipe.png
        "$A" encode -m "$M" -c "$SRC" > c.aec
        "$A" decode -m "$M" -c c.aec > c.png
        "$A" encode -m "$M" -o - "$SRC" > o.aec
    """
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    assert (tmp_path / "c.aec").read_bytes() == pair.aec.read_bytes()
    assert (tmp_path / "o.aec").read_bytes() == pair.aec.read_bytes()
    assert subprocess.run(["cmp", "pipe.png", "c.png"], cwd=tmp_path).returncode == 0
    assert read_pixels(tmp_path / "c.png")[1].tobytes() == read_pixels(pair.png)[1].tobytes()
    with Image.open(tmp_path / "pipe.png") as im:
        assert im.format == "PNG"


def _with_pty(args, stdin=None, stdout=None):
    """Run with a pseudo-terminal as stdin or stdout."""
    master, slave = pty.openpty()
    try:
        return subprocess.run(
            [AECOMPRESS, *map(str, args)],
            stdin=slave if stdin == "tty" else subprocess.DEVNULL,
            stdout=slave if stdout == "tty" else subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    finally:
        os.close(slave)
        os.close(master)


def test_refuses_to_write_binary_to_a_terminal(pair, tiny_model):
    proc = _with_pty(["encode", "-m", tiny_model, "-c", pair.src], stdout="tty")
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    assert "terminal" in stderr and "Traceback" not in stderr


def test_refuses_to_read_binary_from_a_terminal(tiny_model, tmp_path):
    proc = _with_pty(["encode", "-m", tiny_model, "-", "-o", tmp_path / "x.aec"], stdin="tty")
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    assert "terminal" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "x.aec").exists()


# ---------------------------------------------------------------- never clobber


def test_refuses_to_overwrite_without_force(pair, tiny_model, tmp_path):
    target = tmp_path / "exists.aec"
    target.write_bytes(b"precious")
    line = assert_one_line_failure(run("encode", "-m", tiny_model, pair.src, "-o", target))
    assert line.startswith("aecompress:") and "exists" in line
    assert target.read_bytes() == b"precious"
    proc = run("encode", "-m", tiny_model, pair.src, "-o", target, "-f")
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == pair.aec.read_bytes()


def test_default_names_and_decode_never_clobbers_the_original(pair, tiny_model, tmp_path):
    """encode photo.png, then decode photo.aec: the default output is photo.decoded.png, never the original."""
    src = tmp_path / "photo.png"
    shutil.copyfile(pair.src, src)
    proc = run("encode", "-m", tiny_model, src)  # photo.png -> photo.aec beside it
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "photo.aec").read_bytes() == pair.aec.read_bytes()
    proc = run("decode", "-m", tiny_model, tmp_path / "photo.aec")
    assert proc.returncode == 0, proc.stderr
    assert "photo.decoded.png" in err_lines(proc)[0]
    assert np.array_equal(read_pixels(tmp_path / "photo.decoded.png")[1], read_pixels(pair.png)[1])
    assert sha256(src) == sha256(pair.src)
    again = assert_one_line_failure(run("decode", "-m", tiny_model, tmp_path / "photo.aec"))  # a re-run: the decoded file exists
    assert "photo.decoded.png" in again and "-f" in again
    assert sha256(src) == sha256(pair.src)


def test_decode_into_a_directory_keeps_the_plain_name(pair, tiny_model, tmp_path):
    proc = run("decode", "-m", tiny_model, pair.aec, "-d", tmp_path / "back")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back" / "a.png").is_file()


def test_output_onto_its_own_input_is_refused_even_with_force(pair, tiny_model, tmp_path):
    src = tmp_path / "same.png"
    shutil.copyfile(pair.src, src)
    line = assert_one_line_failure(run("encode", "-m", tiny_model, src, "-o", src, "-f"))
    assert line == f"aecompress: error: {src}: output would overwrite the input"  # one prefix, not two
    assert sha256(src) == sha256(pair.src)


# ---------------------------------------------------------------- many files


@pytest.fixture(scope="module")
def many(tmp_path_factory, tiny_model):
    d = tmp_path_factory.mktemp("many")
    srcs = [
        save_image(d / "one.png", gradient(seed=1)),
        save_image(d / "two.png", gradient(80, 48, seed=2)),
        save_image(d / "three.jpg", gradient(64, 64, seed=3), quality=95),
    ]
    hashes = [sha256(p) for p in srcs]
    enc = run("encode", "-m", tiny_model, *srcs, "-d", d / "enc", "--json")
    aecs = sorted((d / "enc").glob("*.aec"))
    dec_png = run("decode", "-m", tiny_model, *aecs, "-d", d / "png", "--format", "png", "--json")
    dec_webp = run("decode", "-m", tiny_model, *aecs, "-d", d / "webp", "--format", "webp")
    return SimpleNamespace(dir=d, srcs=srcs, hashes=hashes, enc=enc, dec_png=dec_png, dec_webp=dec_webp)


def test_many_inputs_into_a_directory(many):
    assert many.enc.returncode == 0, many.enc.stderr
    records = json_lines(many.enc.stdout)
    assert [r["input"] for r in records] == [str(p) for p in many.srcs]
    for record, src in zip(records, many.srcs, strict=True):
        expected = many.dir / "enc" / (src.stem + ".aec")
        assert record["output"] == str(expected)
        assert expected.stat().st_size == record["bytes"]
        assert ENCODE_KEYS <= record.keys()
    assert sorted(p.name for p in (many.dir / "enc").iterdir()) == ["one.aec", "three.aec", "two.aec"]
    assert [sha256(p) for p in many.srcs] == many.hashes


def test_many_decodes_with_format(many):
    assert many.dec_png.returncode == 0, many.dec_png.stderr
    assert many.dec_webp.returncode == 0, many.dec_webp.stderr
    assert len(json_lines(many.dec_png.stdout)) == 3
    for stem, size in (("one", (96, 64)), ("two", (80, 48)), ("three", (64, 64))):
        with Image.open(many.dir / "png" / f"{stem}.png") as png, Image.open(many.dir / "webp" / f"{stem}.webp") as webp:
            assert png.format == "PNG" and webp.format == "WEBP"
            assert png.size == webp.size == size
            # WebP output is lossless: the same pixels as the PNG
            assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(webp.convert("RGB")))


def test_two_inputs_with_one_output_name(pair, tiny_model, tmp_path):
    jpg = save_image(tmp_path / "a.jpg", gradient(), quality=95)
    proc = run("encode", "-m", tiny_model, pair.src, jpg, "-d", tmp_path / "out")
    assert proc.returncode == 1
    errors = [line for line in err_lines(proc) if line.startswith("aecompress:")]
    assert len(errors) == 1 and "a.jpg" in errors[0], err_lines(proc)
    assert (tmp_path / "out" / "a.aec").read_bytes() == pair.aec.read_bytes()  # the first one won


def test_batch_with_broken_files_keeps_going(tiny_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    names = []
    for i in range(8):
        names.append(save_image(src / f"img{i}.png", gradient(48 + 8 * i, 40, seed=i)))
    (src / "empty.png").write_bytes(b"")
    (src / "text.png").write_text("this is not an image\n")
    inputs = names[:4] + [src / "empty.png"] + names[4:6] + [src / "text.png"] + names[6:]
    out = tmp_path / "out"
    proc = run("encode", "-m", tiny_model, *inputs, "-d", out)
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr
    errors = [line for line in err_lines(proc) if line.startswith("aecompress:")]
    assert len(errors) == 2, stderr
    assert "empty.png" in errors[0] and "text.png" in errors[1]
    reports = [line for line in err_lines(proc) if "->" in line]
    assert len(reports) == 8
    assert sorted(p.name for p in out.iterdir()) == sorted(f"img{i}.aec" for i in range(8))
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_a_batch_where_every_file_fails_still_ends_with_its_summary(tiny_model, tmp_path, command):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image\n")
    proc = run(command, "-m", tiny_model, tmp_path / "empty.png", tmp_path / "text.png", tmp_path / "missing.png", "-d", tmp_path / "out")
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    lines = err_lines(proc)
    assert len(lines) == 4, lines
    assert lines[-1] == f"0 of 3 files {command}d"


def test_the_reported_time_is_the_coding_alone(pair, tiny_model, tmp_path):
    enc = run("encode", "-m", tiny_model, pair.src, "-o", tmp_path / "t.aec", "--json")
    dec = run("decode", "-m", tiny_model, tmp_path / "t.aec", "-o", tmp_path / "t.png", "--json")
    for proc in (enc, dec):
        (record,) = json_lines(proc.stdout)
        assert 0 < record["coding_seconds"] <= record["seconds"]
    assert re.search(r", \d+\.\d\d s encoding$", err_lines(run("encode", "-m", tiny_model, pair.src, "-c"))[0])
    assert re.search(r", \d+\.\d\d s decoding$", err_lines(run("decode", "-m", tiny_model, tmp_path / "t.aec", "-c"))[0])
    for command, words in (("encode", "encoding alone"), ("decode", "decoding alone")):
        assert words in " ".join(run(command, "--help").stdout.decode().split())


def test_precision_help_states_where_bf16_is_faster():
    text = " ".join(run("encode", "--help").stdout.decode().split())
    assert "about 2–3× faster on CPUs with AMX" in text and "slower elsewhere" in text and "[default: auto]" in text


def _stderr_on_a_terminal(args) -> tuple[int, str]:
    """Run with a pseudo-terminal as stderr; (exit status, everything written to it)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([AECOMPRESS, *map(str, args)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode("utf-8", "replace")


def test_a_long_encode_shows_how_long_on_a_terminal_only(tiny_hp_model, tmp_path):
    """Over two seconds of work on one file: a ticking line on a terminal, cleared before the report; nothing in a pipe."""
    slow = ["-m", tiny_hp_model, "-e", "1", "--threads", "1"]  # encoder effort: seconds on a 1 MP image
    for width, height in ((1024, 1024), (2048, 2048)):  # the larger only where the smaller is quick
        big = save_image(tmp_path / "big.png", gradient(width, height, noise=3))
        status, text = _stderr_on_a_terminal(["encode", *slow, big, "-o", tmp_path / "big.aec", "-f"])
        assert status == 0, text
        coding = float(re.search(r"(\d+\.\d\d) s encoding", text.splitlines()[-1]).group(1))
        if coding > 2.5:
            break
    else:
        pytest.skip(f"{width}x{height} encodes in {coding} s here, too quick for the ticker")
    assert re.search(r"\rencoding \S*big\.png [|/\\-] \d+ s", text), text
    assert "\r\x1b[K" in text  # cleared before the report
    piped = run("encode", *slow, big, "-o", tmp_path / "big2.aec")
    assert piped.returncode == 0
    assert b"\r" not in piped.stderr and len(err_lines(piped)) == 1


# ---------------------------------------------------------------- failures: exit 1, one line, no traceback


@pytest.mark.parametrize("case", ["missing", "directory", "not an image", "empty"])
def test_bad_inputs_fail_with_one_line(tiny_model, tmp_path, case):
    if case == "missing":
        target = tmp_path / "nope.png"
    elif case == "directory":
        target = tmp_path / "adir"
        target.mkdir()
    elif case == "not an image":
        target = tmp_path / "notes.png"
        target.write_text("hello\n" * 50)
    else:
        target = tmp_path / "zero.png"
        target.write_bytes(b"")
    output = [] if case == "directory" else ["-o", tmp_path / "out.aec"]  # a folder is searched for images: -o takes none
    line = assert_one_line_failure(run("encode", "-m", tiny_model, target, *output))
    assert line.startswith("aecompress:") and target.name in line
    assert not (tmp_path / "out.aec").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_output_into_a_missing_directory(pair, tiny_model, tmp_path):
    line = assert_one_line_failure(run("encode", "-m", tiny_model, pair.src, "-o", tmp_path / "no" / "such" / "x.aec"))
    assert line.startswith("aecompress:") and "x.aec" in line


def test_decode_of_a_non_aec_file(pair, tiny_model, tmp_path):
    line = assert_one_line_failure(run("decode", "-m", tiny_model, pair.src, "-o", tmp_path / "x.png"))
    assert "not an aecompress file" in line
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_decode_of_a_damaged_file(pair, tiny_model, tmp_path, damage):
    data = bytearray(pair.aec.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x40
    bad = tmp_path / "bad.aec"
    bad.write_bytes(bytes(data))
    line = assert_one_line_failure(run("decode", "-m", tiny_model, bad, "-o", tmp_path / "x.png"))
    assert ("truncated" if damage == "truncated" else "corrupt") in line
    assert not (tmp_path / "x.png").exists()


def test_decode_with_the_wrong_model_names_both_ids(pair, tiny_model, other_model, tmp_path):
    from aecompress import load_model

    ids = {"tiny": load_model(tiny_model).model_id, "other": load_model(other_model).model_id}
    assert ids["tiny"] != ids["other"]
    line = assert_one_line_failure(run("decode", "-m", other_model, pair.aec, "-o", tmp_path / "x.png"))
    assert ids["tiny"] in line and ids["other"] in line
    assert not (tmp_path / "x.png").exists()


def test_missing_model_file(pair, tmp_path):
    line = assert_one_line_failure(run("encode", "-m", tmp_path / "none.safetensors", pair.src, "-o", tmp_path / "x.aec"))
    assert "none.safetensors" in line


@pytest.mark.parametrize("how", ["option", "env"])
def test_pixel_limit(pair, tiny_model, tmp_path, how):
    args, env = ["encode", "-m", tiny_model, pair.src, "-o", tmp_path / "x.aec"], None
    if how == "option":
        args += ["--max-pixels", "100"]
    else:
        env = {**os.environ, "AECOMPRESS_MAX_PIXELS": "100"}
    line = assert_one_line_failure(run(*args, env=env))
    assert "limit" in line


# ---------------------------------------------------------------- usage errors: exit 2


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "{src}", "{src}", "-o", "{tmp}/x.aec"],
        ["encode", "{src}", "--no-such-option"],
        ["encode", "{src}", "-q", "0", "-o", "{tmp}/x.aec"],
        ["encode", "{src}", "-q", "99", "-o", "{tmp}/x.aec"],
        ["encode", "{src}", "-q", "high", "-o", "{tmp}/x.aec"],
        ["encode", "{src}", "-o", "{tmp}/x.aec", "-c"],
        ["encode"],
        ["decode", "{aec}", "--format", "xyz", "-d", "{tmp}"],
        ["decode", "{aec}", "-o", "{tmp}/x.unknown"],
        ["frobnicate"],
    ],
    ids=[
        "-o with two inputs",
        "unknown option",
        "-q 0",
        "-q 99",
        "-q text",
        "-o and -c",
        "no input",
        "bad --format",
        "bad -o suffix",
        "unknown command",
    ],
)
def test_usage_errors_exit_2(pair, tiny_model, tmp_path, args):
    args = [a.format(src=pair.src, aec=pair.aec, tmp=tmp_path) for a in args]
    if args[0] in ("encode", "decode") and len(args) > 1:
        args[1:1] = ["-m", str(tiny_model)]
    proc = run(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr.decode()
    assert proc.stdout == b""
    assert not [p for p in tmp_path.iterdir() if p.is_file()]


# ---------------------------------------------------------------- report verbosity


def test_quiet_silences_reports(pair, tiny_model, tmp_path):
    enc = run("encode", "-m", tiny_model, pair.src, "-o", tmp_path / "q.aec", "-s")
    dec = run("decode", "-m", tiny_model, tmp_path / "q.aec", "-o", tmp_path / "q.png", "--quiet")
    for proc in (enc, dec):
        assert proc.returncode == 0
        assert proc.stderr == b"" and proc.stdout == b""
    assert (tmp_path / "q.png").exists()


def test_verbose_adds_timings(pair, tiny_model, tmp_path):
    proc = run("encode", "-m", tiny_model, pair.src, "-o", tmp_path / "v.aec", "-v")
    assert proc.returncode == 0
    lines = err_lines(proc)
    assert len(lines) == 2, lines
    assert "ms" in lines[1] and "transform" in lines[1] and "estimate" in lines[1]
    proc = run("decode", "-m", tiny_model, tmp_path / "v.aec", "-o", tmp_path / "v.png", "-v", "--json")
    assert proc.returncode == 0
    (record,) = json_lines(proc.stdout)
    assert {"entropy", "transform"} <= record["timings"].keys()


# ---------------------------------------------------------------- info, version, help


def test_info_on_an_aec_file(pair):
    text = run("info", pair.aec)
    assert text.returncode == 0, text.stderr
    assert "96x64" in text.stdout.decode()
    js = run("info", pair.aec, "--json")
    assert js.returncode == 0
    record = json.loads(js.stdout)
    assert record["kind"] == "aec"
    assert (record["width"], record["height"], record["channels"]) == (96, 64, 3)
    assert record["bytes"] == pair.aec.stat().st_size
    assert record["payload_bytes"] + record["overhead_bytes"] == record["bytes"]
    assert record["model_id"] in text.stdout.decode()


@pytest.fixture(scope="module")
def model_info(tiny_model):
    return run("info", tiny_model), run("info", tiny_model, "--json")


def test_info_on_a_model(model_info, tiny_model):
    text, js = model_info
    assert text.returncode == 0 and js.returncode == 0
    record = json.loads(js.stdout)
    assert record["kind"] == "model"
    assert (record["N"], record["M"], record["qualities"]) == (16, 32, 4)
    assert record["training"]["steps"] == 40
    assert record["bytes"] == tiny_model.stat().st_size
    assert record["model_id"] in text.stdout.decode()


def test_info_on_a_model_shows_its_preset(tiny_model, tmp_path):
    model = tmp_path / "model.safetensors"  # a name that does not give the preset away
    shutil.copyfile(tiny_model, model)
    text, js = run("info", model), run("info", model, "--json")
    assert text.returncode == 0 and js.returncode == 0
    assert re.search(r"\btiny\b", text.stdout.decode()), text.stdout.decode()
    record = json.loads(js.stdout)
    assert record.get("preset", record["training"].get("preset")) == "tiny", record


@pytest.mark.parametrize("what", ["missing", "image", "damaged"])
def test_info_on_something_else(pair, tmp_path, what):
    target = {"missing": tmp_path / "missing.aec", "image": pair.src, "damaged": tmp_path / "damaged.aec"}[what]
    if what == "damaged":
        target.write_bytes(pair.aec.read_bytes()[:-1])
    line = assert_one_line_failure(run("info", target))
    assert line.startswith("aecompress:")


def test_version():
    proc = run("--version")
    assert proc.returncode == 0
    from aecompress import __version__

    assert __version__ in proc.stdout.decode()


def test_python_dash_m_help():
    proc = subprocess.run([sys.executable, "-m", "aecompress", "--help"], capture_output=True, timeout=120)
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "Usage: aecompress" in out
    for command in ("encode", "decode", "train", "info"):
        assert command in out


# ---------------------------------------------------------------- kinds of input image


def _png_16bit_rgb(array: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one)."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _make_kinds(d):
    files = {}
    files["gray"] = save_image(d / "gray.png", gradient(channels=1))
    rgba = with_alpha(gradient(seed=2))
    files["rgba"] = save_image(d / "rgba.png", rgba)
    la = np.dstack([gradient(channels=1, seed=3), rgba[:, :, 3]])
    Image.fromarray(la, "LA").save(d / "la.png")
    files["la"] = d / "la.png"
    Image.fromarray(gradient(seed=4)).quantize(64).save(d / "palette.png")
    files["palette"] = d / "palette.png"
    pal = Image.fromarray(gradient(seed=5)).quantize(32)
    pal.save(d / "palette_t.png", transparency=0)
    files["palette_t"] = d / "palette_t.png"
    Image.fromarray(gradient(channels=1).astype(np.uint16) * 257).save(d / "gray16.png")
    files["gray16"] = d / "gray16.png"
    (d / "rgb16.png").write_bytes(_png_16bit_rgb(gradient(seed=6).astype(np.uint16) * 257))
    files["rgb16"] = d / "rgb16.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    Image.fromarray(gradient(seed=7)).save(d / "rotated.jpg", quality=95, exif=exif.tobytes())
    files["rotated"] = d / "rotated.jpg"
    frames = [Image.fromarray(gradient(seed=8 + i)).quantize(64) for i in range(3)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["anim"] = d / "anim.gif"
    Image.fromarray(gradient(seed=11)).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    files["cmyk"] = d / "cmyk.jpg"
    files["one"] = save_image(d / "one.png", gradient(1, 1))
    files["three_by_five"] = save_image(d / "three_by_five.png", gradient(3, 5))
    files["wide"] = save_image(d / "wide.png", gradient(8192, 16, noise=3))
    return files


@pytest.fixture(scope="module")
def kinds(tmp_path_factory, tiny_model):
    d = tmp_path_factory.mktemp("kinds")
    files = _make_kinds(d)
    enc = run("encode", "-m", tiny_model, *files.values(), "-d", d / "enc", "--json")
    records = {r["input"]: r for r in json_lines(enc.stdout)} if enc.stdout else {}
    aecs = [d / "enc" / (p.stem + ".aec") for p in files.values() if (d / "enc" / (p.stem + ".aec")).exists()]
    dec = run("decode", "-m", tiny_model, *aecs, "-d", d / "dec", "--json")
    warnings: dict[str, list[str]] = {}
    for line in err_lines(enc):
        if line.startswith("aecompress: warning: "):
            name, _, message = line.removeprefix("aecompress: warning: ").partition(": ")
            warnings.setdefault(name, []).append(message)
    return SimpleNamespace(dir=d, files=files, enc=enc, dec=dec, records=records, warnings=warnings)


def _decoded(kinds, key):
    src = kinds.files[key]
    record = kinds.records.get(str(src))
    assert record is not None, f"{src.name} was not encoded: {kinds.enc.stderr.decode()}"
    path = kinds.dir / "dec" / (src.stem + ".png")
    assert path.exists(), kinds.dec.stderr.decode()
    mode, pixels = read_pixels(path)
    return record, mode, pixels


def _warnings(kinds, key):
    return kinds.warnings.get(str(kinds.files[key]), [])


def test_kinds_all_encode_and_decode(kinds):
    assert kinds.enc.returncode == 0, kinds.enc.stderr.decode()
    assert kinds.dec.returncode == 0, kinds.dec.stderr.decode()
    assert "Traceback" not in kinds.enc.stderr.decode() + kinds.dec.stderr.decode()


def test_grayscale_stays_grayscale(kinds):
    record, mode, pixels = _decoded(kinds, "gray")
    assert record["channels"] == 1
    assert mode == "L" and pixels.shape == (64, 96)
    assert _warnings(kinds, "gray") == []


def test_rgba_keeps_alpha_exactly(kinds):
    record, mode, pixels = _decoded(kinds, "rgba")
    assert mode == "RGBA"
    _, original = read_pixels(kinds.files["rgba"])
    np.testing.assert_array_equal(pixels[:, :, 3], original[:, :, 3])


def test_gray_alpha_keeps_both(kinds):
    _, mode, pixels = _decoded(kinds, "la")
    assert mode == "LA"
    _, original = read_pixels(kinds.files["la"])
    np.testing.assert_array_equal(pixels[:, :, 1], original[:, :, 1])


def test_palette_png(kinds):
    record, mode, pixels = _decoded(kinds, "palette")
    assert mode == "RGB" and pixels.shape == (64, 96, 3)
    assert record["channels"] == 3


def test_palette_png_with_transparency_keeps_it(kinds):
    _, mode, pixels = _decoded(kinds, "palette_t")
    assert mode == "RGBA"
    with Image.open(kinds.files["palette_t"]) as im:
        alpha = np.asarray(im.convert("RGBA"))[:, :, 3]
    assert 0 < (alpha == 0).sum() < alpha.size  # the test image really has transparent pixels
    np.testing.assert_array_equal(pixels[:, :, 3], alpha)


def test_16bit_grayscale_png_is_reduced_with_a_warning(kinds):
    with Image.open(kinds.files["gray16"]) as im:
        assert im.mode == "I;16"
    record, mode, pixels = _decoded(kinds, "gray16")
    assert mode == "L" and pixels.shape == (64, 96)
    assert any("16-bit" in w for w in _warnings(kinds, "gray16")), kinds.enc.stderr.decode()


def test_16bit_rgb_png_is_reduced_with_a_warning(kinds):
    _, mode, pixels = _decoded(kinds, "rgb16")
    assert mode == "RGB" and pixels.shape == (64, 96, 3)
    assert any("16-bit" in w for w in _warnings(kinds, "rgb16")), kinds.enc.stderr.decode()


def test_exif_orientation_is_applied(kinds):
    record, _, pixels = _decoded(kinds, "rotated")
    with Image.open(kinds.files["rotated"]) as im:
        assert im.size == (96, 64)  # stored landscape
    assert (record["width"], record["height"]) == (64, 96)  # shown portrait
    assert pixels.shape[:2] == (96, 64)


def test_animated_gif_first_frame_with_a_warning(kinds):
    _, mode, pixels = _decoded(kinds, "anim")
    assert pixels.shape[:2] == (64, 96)
    assert any("first" in w and "3 frames" in w for w in _warnings(kinds, "anim")), kinds.enc.stderr.decode()


def test_cmyk_jpeg_becomes_rgb(kinds):
    record, mode, pixels = _decoded(kinds, "cmyk")
    assert mode == "RGB" and pixels.shape == (64, 96, 3)


@pytest.mark.parametrize(("key", "size"), [("one", (1, 1)), ("three_by_five", (3, 5)), ("wide", (8192, 16))])
def test_tiny_and_extreme_sizes(kinds, key, size):
    record, mode, pixels = _decoded(kinds, key)
    assert (record["width"], record["height"]) == size
    assert pixels.shape == (size[1], size[0], 3)
    assert record["bytes"] == (kinds.dir / "enc" / f"{kinds.files[key].stem}.aec").stat().st_size


def test_image_reading_matches_pillow_for_the_hard_kinds(kinds):
    """What the CLI encoded is the right picture: first GIF frame, rotated JPEG, reduced 16-bit."""
    from aecompress.images import read_image

    anim = read_image(kinds.files["anim"].read_bytes())
    with Image.open(kinds.files["anim"]) as im:
        first = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(anim.rgb(), first)

    rotated = read_image(kinds.files["rotated"].read_bytes())
    with Image.open(kinds.files["rotated"]) as im:
        stored = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(rotated.color, np.rot90(stored, k=-1))  # orientation 6: 90° clockwise

    gray16 = read_image(kinds.files["gray16"].read_bytes())
    np.testing.assert_array_equal(gray16.color[:, :, 0], gradient(channels=1))

    rgb16 = read_image(kinds.files["rgb16"].read_bytes())
    np.testing.assert_array_equal(rgb16.color, gradient(seed=6))


def test_decode_to_jpeg_drops_alpha_with_a_warning(kinds, tiny_model, tmp_path):
    aec = kinds.dir / "enc" / "rgba.aec"
    proc = run("decode", "-m", tiny_model, aec, "-o", tmp_path / "flat.jpg")
    assert proc.returncode == 0, proc.stderr
    assert any("alpha" in line for line in err_lines(proc))
    report = [line for line in err_lines(proc) if "->" in line]
    assert len(report) == 1 and " RGB," in report[0] and "RGBA" not in report[0], report  # what was written
    js = run("decode", "-m", tiny_model, aec, "-o", tmp_path / "flat2.jpg", "--json")
    assert json.loads(js.stdout)["output_mode"] == "RGB"
    with Image.open(tmp_path / "flat.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (96, 64)


def test_image_bytes_round_trip_through_stdin_for_a_jpeg(kinds, tiny_model):
    """stdin input is sniffed by content, not by name: a JPEG through '-' works."""
    data = kinds.files["cmyk"].read_bytes()
    proc = run("encode", "-m", tiny_model, "-", input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout[:4] == b"\x89AEC"
    decoded = run("decode", "-m", tiny_model, "-", input=proc.stdout)
    assert decoded.returncode == 0
    with Image.open(io.BytesIO(decoded.stdout)) as im:
        assert im.format == "PNG" and im.size == (96, 64)


def test_the_help_texts_quoted_in_the_cli_doc_are_current():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "update_cli_doc.py"), "--check"], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
