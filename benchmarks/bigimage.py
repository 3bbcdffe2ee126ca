"""Huge images: peak memory and seams when encoding and decoding a ~50-megapixel photo.

Builds an 8192×6144 (50.3 MP) mosaic of four Unsplash photos, then runs the real
CLI (`aecompress encode`, `aecompress decode`) in child processes and reports each
one's peak resident memory (wait4's ru_maxrss) and time.  Seams: the decoding
error's jump across tile borders (every 1024 pixels) compared with its jump
between any two neighbouring rows/columns; 1.0 means borders look like anywhere
else.  A 512×512 crop around a tile corner is saved for a look.

    python benchmarks/bigimage.py [-m MODEL] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
TILE = 1024


def mosaic(out: Path, source: Path) -> tuple[int, int]:
    photos = sorted(source.glob("*.jpg"))[:4]
    canvas = Image.new("RGB", (8192, 6144))
    for k, path in enumerate(photos):
        with Image.open(path) as im:
            im = ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), (4096, 3072), Image.LANCZOS)
        canvas.paste(im, ((k % 2) * 4096, (k // 2) * 3072))
    canvas.save(out, compress_level=1)
    return canvas.size


def run(cmd: list[str]) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, err.strip()


def seam_ratio(original: np.ndarray, decoded: np.ndarray, offset: int = TILE - 1) -> tuple[float, float]:
    """Mean error jump across tile borders ÷ mean jump between any neighbours.

    The four photos meet at row 3072 and column 4096: those edges are left out,
    since the image itself jumps there.  ``offset=TILE // 2 - 1`` measures the same
    at mid-tile positions: a control for how much the figure varies by chance.
    """
    err = decoded.astype(np.int16) - original.astype(np.int16)
    ratios = []
    for axis, photo_edge in ((0, 3072), (1, 4096)):
        jumps = np.abs(np.diff(err, axis=axis)).mean(axis=(1 - axis, 2))  # jump between k and k+1
        keep = np.ones(len(jumps), bool)
        keep[photo_edge - 3 : photo_edge + 3] = False
        borders = np.arange(offset, len(jumps), TILE)
        borders = borders[keep[borders]]
        ratios.append(float(jumps[borders].mean() / jumps[keep].mean()))
    return ratios[0], ratios[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", default=None)
    p.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "unsplash"))
    p.add_argument("--keep", help="keep the files in this folder")
    args = p.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="aec-big-"))
    work.mkdir(parents=True, exist_ok=True)
    big = work / "big.png"
    w, h = mosaic(big, Path(args.source))
    exe = [sys.executable, "-m", "aecompress"]
    model = ["-m", args.model] if args.model else []
    t_enc, m_enc, report = run([*exe, "encode", *model, str(big), "-o", str(work / "big.aec"), "-f"])
    t_dec, m_dec, _ = run([*exe, "decode", *model, str(work / "big.aec"), "-o", str(work / "big.decoded.png"), "-f"])
    with Image.open(big) as a, Image.open(work / "big.decoded.png") as b:
        original, decoded = np.asarray(a), np.asarray(b)
    rb, cb = seam_ratio(original, decoded)
    rc, cc = seam_ratio(original, decoded, TILE // 2 - 1)
    Image.fromarray(decoded[TILE - 256 : TILE + 256, TILE - 256 : TILE + 256]).save(work / "corner.png")  # inside the first photo
    size = (work / "big.aec").stat().st_size
    print(f"image {w}x{h} ({w * h / 1e6:.1f} MP), {size:,} bytes ({8 * size / (w * h):.3f} bpp)")
    print(f"encode: {t_enc:.1f} s, peak RSS {m_enc:.0f} MB   ({report})")
    print(f"decode: {t_dec:.1f} s, peak RSS {m_dec:.0f} MB")
    print(
        f"seams: error jump across tile borders / anywhere = {rb:.3f} (rows), {cb:.3f} (columns); "
        f"control at mid-tile positions {rc:.3f}, {cc:.3f}"
    )
    print(f"files in {work}")


if __name__ == "__main__":
    main()
