"""Start-up and small images: what a user waits for, process start included.

1. `aecompress encode kodim23.png` and its `decode`, each a fresh process: median wall
   time of several runs, with each engine (AECOMPRESS_ENGINE=onnx, the default, and torch).
2. A batch of 12 Kodak images through the command line: one `encode DIR -d OUT` and one
   `decode OUT -d DEC`, wall time with process start-up, with each engine.
3. With ``--compressai-python PY`` (an interpreter with CompressAI 1.2.8, see
   setup-bench-env.sh): CompressAI's bmshj2018-factorized (N=128, M=192, random weights)
   compressing, decompressing and writing PNGs of the same 12 images in one process: its
   wall time with the process start, and its work alone.

Every figure is the median of --runs runs.  The package's bytecode is compiled first,
as an install leaves it.

    python benchmarks/startup.py [--kodak ../shared/data/kodak] [--runs 5] [--compressai-python /tmp/bench-venv/bin/python]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AECOMPRESS = [sys.executable, "-m", "aecompress"]

COMPRESSAI_BATCH = r"""
import io, sys, time, types
t0 = time.perf_counter()
import numpy as np, torch
from PIL import Image
tv = types.ModuleType("torchvision"); tv.transforms = types.ModuleType("torchvision.transforms")
sys.modules.setdefault("torchvision", tv); sys.modules.setdefault("torchvision.transforms", tv.transforms)
from compressai.models import FactorizedPrior
net = FactorizedPrior(128, 192).eval()
net.update(force=True)
t1 = time.perf_counter()
with torch.inference_mode():
    for path in sys.argv[1:]:
        with Image.open(path) as im:
            x = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)[None].float() / 255
        H, W = x.shape[2:]
        x = torch.nn.functional.pad(x, (0, -W % 64, 0, -H % 64))
        out = net.compress(x)
        rec = net.decompress(out["strings"], out["shape"])["x_hat"][:, :, :H, :W]
        arr = rec.clamp(0, 1).mul(255).round().byte()[0].permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(io.BytesIO(), "PNG", compress_level=1)
print(time.perf_counter() - t1)
"""


def wall(args: list, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([str(a) for a in args], capture_output=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed: {proc.stderr.decode()[-400:]}")
    return time.perf_counter() - t0


def compressai_batch(python: str, images: list[Path]) -> tuple[float, float]:
    """CompressAI's batch: wall seconds with its process start, and seconds of work after its imports."""
    t0 = time.perf_counter()
    proc = subprocess.run([python, "-c", COMPRESSAI_BATCH, *map(str, images)], capture_output=True, text=True)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"CompressAI failed: {proc.stderr[-400:]}")
    return total, float(proc.stdout)


def engine_env(engine: str) -> dict:
    return {**os.environ, "AECOMPRESS_ENGINE": engine}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compressai-python", help="Python with CompressAI installed (setup-bench-env.sh).")
    args = parser.parse_args()
    # Bytecode as `pip install` leaves it: without it (PYTHONDONTWRITEBYTECODE, a fresh checkout)
    # every command compiles the package's modules again, about 70 ms.
    compileall.compile_dir(ROOT / "aecompress", quiet=1)
    work = Path(tempfile.mkdtemp())
    image = args.kodak / "kodim23.png"
    batch = work / "kodak12"
    batch.mkdir()
    images = sorted(args.kodak.glob("*.png"))[:12]
    for path in images:
        shutil.copy(path, batch / path.name)
    print(f"{len(images)} Kodak images; {os.cpu_count()} CPUs, affinity {len(os.sched_getaffinity(0))}")
    print("\nengine   encode kodim23   decode kodim23   batch encode   batch decode   batch total   (wall s)")
    totals = {}
    for engine in ("onnx", "torch"):
        env = engine_env(engine)
        aec, png = work / f"k23-{engine}.aec", work / f"k23-{engine}.png"
        enc = statistics.median(wall([*AECOMPRESS, "encode", image, "-o", aec, "-f", "-s"], env) for _ in range(args.runs))
        dec = statistics.median(wall([*AECOMPRESS, "decode", aec, "-o", png, "-f", "-s"], env) for _ in range(args.runs))
        out, back = work / f"aec-{engine}", work / f"dec-{engine}"
        batch_enc = statistics.median(wall([*AECOMPRESS, "encode", batch, "-d", out, "-f", "-s"], env) for _ in range(args.runs))
        batch_dec = statistics.median(wall([*AECOMPRESS, "decode", out, "-d", back, "-f", "-s"], env) for _ in range(args.runs))
        totals[engine] = batch_enc + batch_dec
        print(f"{engine:<8} {enc:14.2f} {dec:16.2f} {batch_enc:14.2f} {batch_dec:14.2f} {batch_enc + batch_dec:13.2f}")
    if args.compressai_python:
        runs = [compressai_batch(args.compressai_python, images) for _ in range(args.runs)]
        total, work_alone = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"\nCompressAI bmshj2018-factorized (N=128, M=192), one process: {total:.2f} s with start-up, {work_alone:.2f} s of work")
        print(f"aecompress's batch (ONNX Runtime) against it: {total / totals['onnx']:.2f}x as fast")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
