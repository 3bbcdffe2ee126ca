"""Determinism across thread counts: .aec bytes and decoded pixels, each count in a fresh process.

    python benchmarks/determinism.py [-m MODEL] [--threads 1,2,3,4] [images…]

Prints, per image, whether the bytes encoded with every thread count are
identical, and how many decoded pixel values differ from the 1-thread decode
(and by how much at most).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*")
    p.add_argument("-m", "--model")
    p.add_argument("--threads", default="1,2,3,4")
    args = p.parse_args()
    images = args.images or [str(ROOT.parent / "shared" / "data" / "kodak" / f"kodim{i:02d}.png") for i in (1, 13, 23)]
    threads = [int(t) for t in args.threads.split(",")]
    model = ["-m", args.model] if args.model else []
    with tempfile.TemporaryDirectory() as tmp:
        for image in images:
            digests, pixels = {}, {}
            for t in threads:
                aec, png = Path(tmp) / f"{t}.aec", Path(tmp) / f"{t}.png"
                for cmd in (["encode", *model, image, "-o", str(aec)], ["decode", *model, str(Path(tmp) / "1.aec"), "-o", str(png)]):
                    subprocess.run([sys.executable, "-m", "aecompress", *cmd, "-f", "--threads", str(t), "-s"], check=True)
                digests[t] = hashlib.sha256(aec.read_bytes()).hexdigest()[:12]
                pixels[t] = np.asarray(Image.open(png)).astype(np.int16)
            same_bytes = len(set(digests.values())) == 1
            diffs = []
            for t in threads[1:]:
                d = np.abs(pixels[t] - pixels[threads[0]])
                diffs.append(f"{t} threads: {int((d > 0).sum())} values differ (max {int(d.max())})")
            print(
                f"{Path(image).name}: bytes identical for {threads} threads: {same_bytes}; decoded vs {threads[0]} thread: "
                + "; ".join(diffs)
            )


if __name__ == "__main__":
    main()
