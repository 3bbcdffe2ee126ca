"""Tiled against whole-image transforms on Kodak: PSNR and size differences per image.

    python benchmarks/tiling.py [-m MODEL] [--tile 256] [--quality Q]

The codec runs its transforms on tiles (1024 px by default, 64 px of overlap);
this forces small tiles (so every Kodak image is cut into several) and compares
with one tile covering the whole image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aecompress import Codec, load_model
from aecompress.codec import default_quality
from aecompress.images import read_image
from aecompress.metrics import psnr

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model")
    p.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--quality", type=int)
    args = p.parse_args()
    model = load_model(args.model)
    q = args.quality or default_quality(model)
    whole, tiled = Codec(model, tile=4096), Codec(model, tile=args.tile)
    worst_db, worst_size, identical = 0.0, 0.0, 0
    paths = sorted(Path(args.images).glob("*.png"))
    for path in paths:
        picture = read_image(path.read_bytes())
        a, b = whole.encode(picture, q), tiled.encode(picture, q)
        d_db = abs(psnr(picture.color, a.reconstruction.color) - psnr(picture.color, b.reconstruction.color))
        d_size = abs(len(b.data) / len(a.data) - 1)
        identical += a.data == b.data
        worst_db, worst_size = max(worst_db, d_db), max(worst_size, d_size)
    print(f"{len(paths)} images, model {model.model_id}, quality {q}, tiles of {args.tile} px with 64 px overlap vs whole image:")
    print(
        f"  largest PSNR difference {worst_db:.4f} dB, largest size difference {100 * worst_size:.3f}%, identical files {identical}/{len(paths)}"
    )


if __name__ == "__main__":
    main()
