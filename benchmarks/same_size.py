"""Same file size, side by side: aecompress against JPEG and WebP on a few images, with crops.

    python benchmarks/same_size.py KODAK/kodim05.png KODAK/kodim15.png KODAK/kodim23.png \
        [-m MODEL] [-q Q] [--crop 160] [-o docs/same-size.png]

Each image is encoded with aecompress at quality Q; JPEG and WebP (through Pillow) are then
given the largest quality whose file is not larger than aecompress's.  Prints a Markdown
table (bytes, bpp, PSNR) and writes one picture: per image, a crop of the original and of the
three decoded images, enlarged 2× with nearest-neighbour so that the artefacts stay visible.
The crop is the window of the image with the most detail (the highest local variance of the
original), so nobody picks the flattering one by hand.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from aecompress import Codec, baselines, load_model
from aecompress.codec import default_quality
from aecompress.images import read_image
from aecompress.metrics import bpp, psnr

ZOOM = 2


def busiest_window(rgb: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size``² window with the highest variance (on a coarse grid)."""
    gray = rgb.astype(np.float64).mean(axis=2)
    h, w = gray.shape
    best, corner = -1.0, (0, 0)
    step = max(8, size // 4)
    for top in range(0, h - size + 1, step):
        for left in range(0, w - size + 1, step):
            v = float(gray[top : top + size, left : left + size].var())
            if v > best:
                best, corner = v, (top, left)
    return corner


def labelled(tile: np.ndarray, text: str) -> Image.Image:
    im = Image.fromarray(tile).resize((tile.shape[1] * ZOOM, tile.shape[0] * ZOOM), Image.NEAREST)
    canvas = Image.new("RGB", (im.width, im.height + 18), "white")
    canvas.paste(im, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), text, fill="black")
    return canvas


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+")
    p.add_argument("-m", "--model")
    p.add_argument("-q", "--quality", type=int)
    p.add_argument("--crop", type=int, default=160)
    p.add_argument("-o", "--output", default="same-size.png")
    args = p.parse_args()
    model = load_model(args.model)
    codec = Codec(model)
    q = args.quality or default_quality(model)
    rows = []
    print(f"aecompress model {model.model_id}, quality {q}\n")
    print("| image | codec | setting | bytes | bpp | PSNR (dB) |")
    print("|---|---|---|---:|---:|---:|")
    for path in args.images:
        picture = read_image(Path(path).read_bytes())
        original = picture.color
        h, w = original.shape[:2]
        ours = codec.encode(picture, q)
        decoded = {"aecompress": (f"q{q}", len(ours.data), ours.reconstruction.color)}
        im = Image.fromarray(original)
        for name in ("jpeg", "webp"):
            data, setting = baselines.encode_at_size(im, name, len(ours.data))
            decoded[name] = (str(setting), len(data), baselines.decode(data))
        name_of = Path(path).stem
        for codec_name, (setting, n, rgb) in decoded.items():
            print(f"| {name_of} | {codec_name} | {setting} | {n:,} | {bpp(n, w, h):.3f} | {psnr(original, rgb):.2f} |")
        top, left = busiest_window(original, args.crop)

        def crop(a: np.ndarray, top=top, left=left) -> np.ndarray:
            return a[top : top + args.crop, left : left + args.crop]

        tiles = [labelled(crop(original), f"{name_of} original")]
        for codec_name, (_, n, rgb) in decoded.items():
            tiles.append(labelled(crop(rgb), f"{codec_name} {n / 1024:.1f} KiB {psnr(original, rgb):.2f} dB"))
        rows.append(tiles)
    tile_w, tile_h = rows[0][0].size
    sheet = Image.new("RGB", (tile_w * len(rows[0]) + 4 * (len(rows[0]) - 1), (tile_h + 4) * len(rows) - 4), "white")
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (c * (tile_w + 4), r * (tile_h + 4)))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    Path(args.output).write_bytes(buf.getvalue())
    print(f"\nwrote {args.output} ({len(buf.getvalue()) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
