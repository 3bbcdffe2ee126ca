"""Shared fixtures: one tiny model trained through the real CLI, test images, a CLI runner.

Every CLI test runs the installed ``aecompress`` console script in a subprocess
(real argv, real pipes, real exit codes); nothing of ours is mocked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

from aecompress.training.config import TINY_RECIPE, as_options


def _usable_cores() -> int:
    """Cores this process may run on (`taskset` shrinks it); aecompress.train's twin, without importing torch first."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Under pytest-xdist (`-n auto`, the default in pyproject.toml) the workers share the cores: each worker and
# every process it starts gets cores // workers threads.  One busy process made a 2-thread training run
# 2.8x slower in our measurement (BENCHMARKS.md, "A busy core").  Set before torch is imported.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _usable_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per core this process may use, not per core of the machine."""
    return _usable_cores()


# Shared CI machines are slow and uneven: no per-example deadline (tests set their own example counts).
settings.register_profile("aecompress", deadline=None)
settings.load_profile("aecompress")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "sample_data"
SAMPLE_PHOTO = SAMPLE_DATA / "david-clode-Oq9JrJb6K7M.jpg"

# Trains in a few seconds on one CPU core: the demo's recipe, as `aecompress train` options.
TINY_TRAIN = as_options(TINY_RECIPE)


def _console_script() -> str:
    """The installed ``aecompress`` entry point of the interpreter running the tests."""
    beside = Path(sys.executable).with_name("aecompress")
    if beside.exists():
        return str(beside)
    found = shutil.which("aecompress")
    if found is None:  # pragma: no cover - broken installation
        raise RuntimeError("the aecompress console script is not installed (pip install -e .)")
    return found


AECOMPRESS = _console_script()


def run(*args, input: bytes | None = None, cwd=None, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``aecompress ARGS…``; stdout and stderr captured as bytes."""
    return subprocess.run(
        [AECOMPRESS, *(str(a) for a in args)],
        input=input,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def err_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """Non-empty lines of a process's stderr."""
    return [line for line in proc.stderr.decode("utf-8", "replace").splitlines() if line.strip()]


def assert_one_line_failure(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    """Exit ``code``, nothing on stdout, exactly one stderr line, no traceback; return the line."""
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == code, (proc.returncode, stderr)
    assert "Traceback" not in stderr, stderr
    assert proc.stdout == b"", proc.stdout[:200]
    lines = err_lines(proc)
    assert len(lines) == 1, stderr
    return lines[0]


def check_golden_files(record_name: str, version: int):
    """Decode the committed golden files of ``tests/golden/<record_name>``: container ``version``, the recorded symbols exactly, pixels ±1.

    Encoded once and committed, so whatever CPU runs this checks the cross-machine promise.
    Returns the golden model's ``Codec`` and the record.
    """
    import importlib.util
    import json

    from aecompress import Codec, load_model

    golden = Path(__file__).parent / "golden"
    spec = importlib.util.spec_from_file_location("make_golden", golden / "make_golden.py")
    make_golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_golden)
    record = json.loads((golden / record_name).read_text())
    codec = Codec(load_model(golden / record["model"]))
    for entry in record["files"]:
        data = (golden / entry["aec"]).read_bytes()
        assert data[4] == version, entry["aec"]
        assert make_golden.symbols_digest(codec.decode_symbols(data)) == entry["symbols_sha256"], entry["aec"]
        decoded = codec.decode(data).picture.rgb().astype(np.int16)
        with Image.open(golden / entry["png"]) as im:
            expected = np.asarray(im.convert("RGB")).astype(np.int16)
        assert decoded.shape == expected.shape, entry["aec"]
        assert int(np.abs(decoded - expected).max()) <= 1, entry["aec"]
    return codec, record


def check_damaged_payload(codec, seed: bytes, data, versions: list[int]) -> None:
    """Decode a hypothesis-drawn damaged or random payload behind a valid header and CRC: a picture of the header's size, or a one-line DecodeError.

    ``seed`` is a real file of ``codec``'s; ``data`` is hypothesis's ``st.data()``.
    """
    from hypothesis import strategies as st

    from aecompress import Codec, DecodeError
    from aecompress.bitstream import HEADER_SIZE, Header, pack

    w, h = data.draw(st.integers(1, 200)), data.draw(st.integers(1, 200))
    payload = data.draw(st.one_of(st.binary(max_size=600), st.just(seed[HEADER_SIZE:-4])))
    if data.draw(st.booleans()) and payload:
        cut = data.draw(st.integers(0, len(payload) - 1))
        payload = payload[:cut] + bytes([payload[cut] ^ 0x10]) + payload[cut + 1 :]
    header = Header(codec.model.model_id, w, h, 3, data.draw(st.integers(1, 4)), 0, data.draw(st.sampled_from(versions)))
    try:
        picture = Codec(codec.model, max_pixels=1 << 20).decode(pack(header, payload)).picture
    except DecodeError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert picture.width == w and picture.height == h


def across_thread_counts(fn, counts=(1, 2, 3)) -> list:
    """``fn()`` under each thread count in turn, torch's and the integer networks' bands' (restored after): for determinism tests."""
    import torch

    from aecompress.engine import settings

    before = torch.get_num_threads(), settings.threads
    results = []
    try:
        for threads in counts:
            torch.set_num_threads(threads)
            settings.threads = threads
            results.append(fn())
    finally:
        torch.set_num_threads(before[0])
        settings.threads = before[1]
    return results


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def gradient(width: int = 96, height: int = 64, channels: int = 3, seed: int = 0, noise: float = 6.0) -> np.ndarray:
    """A smooth colour gradient plus mild noise, uint8 (H, W, C) (or (H, W) when channels == 1)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(1, width - 1), y / max(1, height - 1)
    base = [40 + 170 * u, 30 + 190 * v, 220 - 150 * (u + v) / 2, 60 + 180 * u * v]
    planes = np.stack(base[: max(channels, 1)], axis=-1) + rng.normal(0.0, noise, (height, width, max(channels, 1)))
    array = np.clip(np.round(planes), 0, 255).astype(np.uint8)
    return array[:, :, 0] if channels == 1 else array


def save_image(path: Path, array: np.ndarray, mode: str | None = None, **options) -> Path:
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    image.save(path, **options)
    return path


def read_pixels(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as im:
        im.load()
        return im.mode, np.asarray(im)


def psnr_numpy(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="session", autouse=True)
def _private_model_store(tmp_path_factory) -> Path:
    """Tests never read or write the user's own model directory (the commands they start inherit this)."""
    folder = tmp_path_factory.mktemp("user-models")
    os.environ["AECOMPRESS_MODELS"] = str(folder)
    return folder


def _train(out: Path, *extra: str) -> Path:
    proc = run("train", SAMPLE_DATA, "-o", out, *TINY_TRAIN, *extra, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-2000:]
    assert out.is_file()
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny model trained once per test run through ``aecompress train``."""
    return _train(tmp_path_factory.mktemp("models") / "tiny.safetensors", "--steps", "40")


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> Path:
    """A second tiny model (another seed): a different model id, for mismatch tests."""
    return _train(tmp_path_factory.mktemp("models-other") / "other.safetensors", "--seed", "1", "--steps", "5")


@pytest.fixture(scope="session")
def tiny_hp_model(tmp_path_factory) -> Path:
    """A tiny mean-scale hyperprior model, trained once per test run."""
    return _train(tmp_path_factory.mktemp("hp") / "hp.safetensors", "--preset", "tiny-hp", "--steps", "40")


@pytest.fixture(scope="session")
def hp_codec(tiny_hp_model):
    from aecompress import Codec, load_model

    return Codec(load_model(tiny_hp_model))


def gradient_folder(folder: Path, count: int, width: int, height: int) -> Path:
    """``count`` small gradient PNGs in ``folder`` (training data for fast tests)."""
    for i in range(count):
        save_image(folder / f"img{i}.png", gradient(width, height, seed=i))
    return folder


@pytest.fixture(scope="session")
def tiny_codec(tiny_model):
    """The tiny model loaded in this process, as a ``Codec``."""
    from aecompress import Codec, load_model

    return Codec(load_model(tiny_model))


@pytest.fixture
def rgb_png(tmp_path) -> Path:
    """A 96x64 RGB PNG (gradient + noise)."""
    return save_image(tmp_path / "a.png", gradient())


@pytest.fixture
def gray_png(tmp_path) -> Path:
    return save_image(tmp_path / "gray.png", gradient(channels=1, seed=1))


@pytest.fixture
def rgba_png(tmp_path) -> Path:
    return save_image(tmp_path / "rgba.png", _with_alpha(gradient(seed=2)))


def _with_alpha(rgb: np.ndarray) -> np.ndarray:
    """RGB plus a hard-to-guess alpha plane (a ramp with random holes)."""
    h, w, _ = rgb.shape
    rng = np.random.default_rng(7)
    alpha = (np.arange(w)[None, :] * 255 // max(1, w - 1)).repeat(h, 0).astype(np.uint8)
    alpha[rng.random((h, w)) < 0.1] = 0
    return np.dstack([rgb, alpha])


with_alpha = _with_alpha
