"""Encoder effort: what refining the latent saves, against optimizer steps and time.

    python benchmarks/effort.py DIR [--images 6] [--qualities 3,6,9] [--steps 25,60,150] [-m MODEL]

For each image, the plain curve (every integer quality, effort 0) is the reference.
At each quality and step count the latent is refined, coded through the normal
path, and decoded by the unchanged decoder; the saving is the rate the plain curve
needs for the refined file's PSNR (log-rate interpolated over PSNR, pchip), minus
one.  Prints one row per (quality, steps): mean saving, bpp, PSNR and seconds per
megapixel.  Real files, real decodes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from aecompress import Codec, load_model
from aecompress.codec import Analysis
from aecompress.data import find_images
from aecompress.images import read_image
from aecompress.metrics import pchip, psnr
from aecompress.train import cpu_has_native_bf16


def point(codec: Codec, analysis: Analysis, quality: float) -> tuple[float, float]:
    enc = codec.encode_analysis(analysis, quality, reconstruct=False)
    dec = codec.decode(enc.data).picture
    pic = analysis.picture
    return 8 * len(enc.data) / (pic.width * pic.height), psnr(pic.rgb(), dec.rgb())


def saving(curve: list[tuple[float, float]], bpp: float, quality_db: float) -> float:
    rates = np.log([r for r, _ in curve])
    dbs = np.array([d for _, d in curve])
    order = np.argsort(dbs)
    if not dbs.min() <= quality_db <= dbs.max():
        return float("nan")
    needed = float(np.exp(pchip(dbs[order], rates[order], np.array([quality_db]))[0]))
    return bpp / needed - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--qualities", default="3,6,9")
    ap.add_argument("--steps", default="25,60,150")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    bf16 = cpu_has_native_bf16()
    codec = Codec(load_model(args.model), precision="bf16" if bf16 else "fp32")
    rows: dict[tuple[float, int], list] = {}
    for path in find_images(Path(args.folder))[: args.images]:
        picture = read_image(path.read_bytes(), str(path))
        analysis = codec.analyze(picture)
        curve = [point(codec, analysis, q) for q in range(1, codec.model.qualities + 1)]
        mp = picture.width * picture.height / 1e6
        for q in (float(x) for x in args.qualities.split(",")):
            for steps in (int(x) for x in args.steps.split(",")):
                t0 = time.perf_counter()
                better = codec.refine_steps(analysis, q, steps)
                seconds = time.perf_counter() - t0
                bpp, db = point(codec, better, q)
                rows.setdefault((q, steps), []).append((saving(curve, bpp, db), bpp, db, seconds / mp))
                print(
                    f"{path.name} q{q:g} {steps:4d} steps: {bpp:.4f} bpp {db:.2f} dB, saving {100 * rows[(q, steps)][-1][0]:+.1f}%",
                    flush=True,
                )
    print(f"\nmodel {codec.model.model_id}, bf16 {bf16}, {torch.get_num_threads()} thread(s)")
    print("quality  steps  saving   bpp     PSNR   s/MP")
    summary = []
    for (q, steps), values in sorted(rows.items()):
        s, b, d, t = (float(np.nanmean([v[i] for v in values])) for i in range(4))
        summary.append({"quality": q, "steps": steps, "saving": s, "bpp": b, "psnr": d, "seconds_per_mp": t})
        print(f"q{q:<6g} {steps:6d}  {100 * s:+6.1f}%  {b:.4f}  {d:6.2f}  {t:6.1f}")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(summary, fh, indent=2)


if __name__ == "__main__":
    main()
