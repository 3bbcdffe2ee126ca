"""Training under torchrun: 2 gloo processes on the CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA, run

_BESIDE_PYTHON = Path(sys.executable).with_name("torchrun")
TORCHRUN = str(_BESIDE_PYTHON) if _BESIDE_PYTHON.exists() else "torchrun"
needs_torchrun = pytest.mark.skipif(shutil.which("torchrun") is None and not _BESIDE_PYTHON.exists(), reason="torchrun not installed")


@needs_torchrun
@pytest.mark.parametrize("preset", ["tiny", "tiny-cb"])  # tiny-cb: a model with a buffer (the context's mask)
def test_two_gloo_processes_stay_in_sync(tmp_path, preset):
    out = tmp_path / "ddp.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            TORCHRUN,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "aecompress",
            "train",
            str(SAMPLE_DATA),
            "-o",
            str(out),
            "--preset",
            preset,
            "--steps",
            "4",
            "--batch-size",
            "2",
            "--patch-size",
            "32",
            "--device",
            "cpu",
            "--keep-checkpoint",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "weights identical on all 2 ranks" in proc.stderr
    assert "FutureWarning" not in proc.stderr  # torch's deprecation of broadcast_buffers is ours to handle
    assert proc.stderr.count("model written to") == 1  # only rank 0 writes
    assert proc.stderr.count("trained 4 steps in ") == 1  # and measures the model
    assert out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ddp.safetensors", "ddp.safetensors.ckpt"]
    info = json.loads(run("info", "--json", out).stdout)
    assert info["training"]["processes"] == 2
    assert info["training"]["batch_size"] == 4  # effective batch: 2 per process × 2
    assert info["training"]["images"] == len(list(SAMPLE_DATA.glob("*.jpg")))  # all shards', not rank 0's half
    # A run started with 2 processes resumes in 1.
    proc = run("train", SAMPLE_DATA, "-o", out, "--resume", str(out) + ".ckpt", "--steps", "6")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert json.loads(run("info", "--json", out).stdout)["training"]["steps"] == 6


def test_bf16_autocast_trains_and_keeps_float32_tables(tmp_path):
    """--precision bf16 runs the transforms under autocast (here on the CPU); the model file stays float32."""
    from safetensors import safe_open

    out = tmp_path / "bf16.safetensors"
    proc = run(
        "train",
        SAMPLE_DATA,
        "-o",
        out,
        "--preset",
        "tiny",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--patch-size",
        "32",
        "--precision",
        "bf16",
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert json.loads(run("info", "--json", out).stdout)["training"]["precision"] == "bf16"
    with safe_open(str(out), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys() if not k.startswith("tables.")}
    import torch

    assert dtypes == {torch.float32}


def _train_two_ranks(tmp_path: Path, data: Path, *options: str) -> tuple[subprocess.CompletedProcess, Path]:
    """`torchrun` with two gloo processes of `aecompress train` (tiny preset, 32² patches); the model's path."""
    out = tmp_path / "ddp.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = ["--standalone", "--nproc_per_node=2", "-m", "aecompress", "train", str(data), "-o", str(out)]
    args += ["--preset", "tiny", "--batch-size", "2", "--patch-size", "32", "--device", "cpu", *options]
    proc = subprocess.run([TORCHRUN, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    return proc, out


@needs_torchrun
def test_a_time_budget_keeps_the_ranks_in_sync(tmp_path):
    """The lr schedule follows the time budget: every rank must read the same clock, or their weights drift apart."""
    proc, out = _train_two_ranks(tmp_path, SAMPLE_DATA, "--time-budget", "8s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "weights identical on all 2 ranks" in proc.stderr
    assert json.loads(run("info", "--json", out).stdout)["training"]["steps"] > 1


@needs_torchrun
def test_fewer_images_than_processes_are_shared_and_counted_once(tmp_path):
    """With one image and two ranks nothing is sharded: both train on it, and the summary counts it once."""
    data = tmp_path / "one"
    data.mkdir()
    shutil.copy(sorted(SAMPLE_DATA.glob("*.jpg"))[0], data)
    proc, out = _train_two_ranks(tmp_path, data, "--steps", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(run("info", "--json", out).stdout)["training"]["images"] == 1
