"""The outlier demonstration of ``aecompress score``: data made here, then ROC-AUC of the scores.

    python benchmarks/outliers.py make OUT [--photos ../shared/data/bsds500] [--count 50]
    aecompress score --threads 1 --json OUT > OUT/scores.jsonl
    python benchmarks/outliers.py auc OUT/scores.jsonl
    python benchmarks/outliers.py defect scratch PHOTO OUT.png    # one defect on one photo
    python benchmarks/outliers.py shrink MAP.png docs/NAME.png       # a heat map for the docs, as a 256-colour PNG

``make`` writes three folders of PNGs, all 481×321 or 321×481:
  OUT/clean/    the first COUNT BSDS500 validation photos (``bsds_val_*``, never trained on), as PNG;
  OUT/defect/   the same photos, each with one made-up defect, in turn: a scratch, a blurred
                region, an over-exposed region, a JPEG-damaged patch (seeded, so reproducible);
  OUT/charts/   COUNT rendered charts and screenshot-like panels (bars, lines, text, flat colours).
``auc`` reads the JSON Lines of ``score`` and prints the ROC-AUC of clean photos against
each other group for the score (distortion per bit), the loss it is made of (bpp + λ·MSE),
bpp alone and PSNR alone (lower PSNR is the more unusual), as a Markdown table.  AUC: the
Mann–Whitney statistic, ties counted half (0.5: no better than chance; below 0.5: the
other group scores *lower* than the clean photos).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEFECTS = ("scratch", "blur", "overexposed", "jpeg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="write the clean, defect and chart images")
    make.add_argument("out", type=Path)
    make.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500")
    make.add_argument("--count", type=int, default=50)
    auc = sub.add_parser("auc", help="ROC-AUC from the JSON Lines of `aecompress score`")
    auc.add_argument("scores", type=Path)
    defect = sub.add_parser("defect", help="one image with one of the defects of `make`")
    defect.add_argument("kind", choices=DEFECTS)
    defect.add_argument("source", type=Path)
    defect.add_argument("target", type=Path)
    defect.add_argument("--seed", type=int, default=0)
    shrink = sub.add_parser("shrink", help="a heat map as a 256-colour PNG (small enough for the docs)")
    shrink.add_argument("source", type=Path)
    shrink.add_argument("target", type=Path)
    args = parser.parse_args()
    if args.command == "make":
        make_data(args.out, args.photos, args.count)
    elif args.command == "auc":
        print_auc(args.scores)
    elif args.command == "defect":
        with Image.open(args.source) as im:
            DEFECT_MAKERS[args.kind](im.convert("RGB"), np.random.default_rng(args.seed)).save(args.target)
    else:
        with Image.open(args.source) as im:
            im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(args.target, optimize=True)
        print(f"{args.target}: {args.target.stat().st_size:,} bytes")


# ---------------------------------------------------------------- data


def make_data(out: Path, photos: Path, count: int) -> None:
    sources = sorted(photos.glob("bsds_val_*"))[:count]
    if len(sources) < count:
        sys.exit(f"{photos}: only {len(sources)} bsds_val_* photos")
    for folder in ("clean", "defect", "charts"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, path in enumerate(sources):
        with Image.open(path) as im:
            photo = im.convert("RGB")
        photo.save(out / "clean" / f"{path.stem}.png")
        kind = DEFECTS[i % len(DEFECTS)]
        DEFECT_MAKERS[kind](photo, rng).save(out / "defect" / f"{path.stem}-{kind}.png")
        size = photo.size
        chart(size, rng, i).save(out / "charts" / f"chart{i:02d}.png")
    print(f"{count} clean photos, {count} with a defect, {count} charts in {out}")


def _region(size: tuple[int, int], rng: np.random.Generator, fraction: float) -> tuple[int, int, int, int]:
    """A random box covering about ``fraction`` of the image."""
    w, h = size
    bw, bh = int(w * np.sqrt(fraction)), int(h * np.sqrt(fraction))
    x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    return x, y, x + bw, y + bh


def scratch(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A thin bright scratch across the picture, gently curved, as on a scanned print."""
    out = photo.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    x0, x1 = rng.uniform(0, w), rng.uniform(0, w)
    t = np.linspace(0, 1, 60)
    xs = x0 + (x1 - x0) * t + rng.uniform(-30, 30) * np.sin(np.pi * t)
    ys = t * h
    shade = int(rng.integers(215, 250))
    draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=(shade, shade, shade), width=int(rng.integers(2, 4)))
    return out


def blur(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A smudged, out-of-focus region (a sixth of the picture)."""
    out = photo.copy()
    box = _region(out.size, rng, 1 / 6)
    out.paste(out.crop(box).filter(ImageFilter.GaussianBlur(6)), box[:2])
    return out


def overexposed(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A blown-out region (a sixth of the picture): brightened and clipped, as a flare would."""
    out = np.asarray(photo).astype(np.float64)
    x0, y0, x1, y1 = _region(photo.size, rng, 1 / 6)
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * 2.2 + 60
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def jpeg(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A patch (a sixth of the picture) re-saved as a JPEG of quality 5: blocks and ringing."""
    out = photo.copy()
    box = _region(out.size, rng, 1 / 6)
    buffer = io.BytesIO()
    out.crop(box).save(buffer, "JPEG", quality=5)
    buffer.seek(0)
    with Image.open(buffer) as damaged:
        out.paste(damaged.convert("RGB"), box[:2])
    return out


DEFECT_MAKERS = {"scratch": scratch, "blur": blur, "overexposed": overexposed, "jpeg": jpeg}


def chart(size: tuple[int, int], rng: np.random.Generator, index: int) -> Image.Image:
    """A rendered chart or a screenshot-like panel: flat colours, thin lines, text."""
    w, h = size
    palette = [tuple(int(c) for c in rng.integers(30, 230, 3)) for _ in range(6)]
    background = (255, 255, 255) if index % 3 else (int(rng.integers(235, 256)),) * 3
    im = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    draw.text((10, 6), f"Quarterly report {2000 + index}", fill=(20, 20, 20), font=font)
    left, top, right, bottom = 40, 30, w - 15, h - 30
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=(0, 0, 0), width=1)
    for k in range(5):  # grid lines and axis labels
        y = bottom - (bottom - top) * k / 4
        draw.line([(left, y), (right, y)], fill=(210, 210, 210), width=1)
        draw.text((5, y - 6), f"{25 * k}", fill=(60, 60, 60), font=font)
    kind = index % 3
    if kind == 0:  # bars
        n = int(rng.integers(4, 10))
        width = (right - left) / n
        for k in range(n):
            value = rng.uniform(0.1, 1.0)
            x = left + k * width
            draw.rectangle([x + 4, bottom - value * (bottom - top), x + width - 4, bottom], fill=palette[k % len(palette)])
            draw.text((x + 6, bottom + 4), f"Q{k + 1}", fill=(40, 40, 40), font=font)
    elif kind == 1:  # lines
        for series in range(3):
            xs = np.linspace(left, right, 25)
            ys = bottom - (bottom - top) * np.clip(0.5 + np.cumsum(rng.normal(0, 0.08, 25)), 0.05, 0.95)
            draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=palette[series], width=2)
    else:  # a screenshot-like panel: a sidebar, buttons and lines of text
        draw.rectangle([0, 22, 90, h], fill=palette[0])
        for k in range(12):
            y = 40 + 20 * k
            if y > h - 20:
                break
            draw.text((8, y), f"Item {k + 1}", fill=(255, 255, 255), font=font)
            draw.text((105, y), " ".join(f"word{int(v)}" for v in rng.integers(0, 99, 5)), fill=(30, 30, 30), font=font)
        draw.rectangle([w - 110, h - 40, w - 20, h - 15], fill=palette[1], outline=(0, 0, 0))
        draw.text((w - 95, h - 34), "Submit", fill=(255, 255, 255), font=font)
    return im


# ---------------------------------------------------------------- ROC-AUC


def roc_auc(negatives: list[float], positives: list[float]) -> float:
    """P(a positive scores above a negative), ties half: the Mann–Whitney U over both sizes."""
    values = np.concatenate([negatives, positives])
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_neg, n_pos = len(negatives), len(positives)
    u = ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_neg * n_pos))


def group_of(name: str) -> str:
    parts = Path(name).parts
    if "clean" in parts:
        return "clean"
    if "charts" in parts:
        return "charts"
    stem = Path(name).stem
    return "defect: " + stem.rsplit("-", 1)[-1]


def print_auc(scores: Path) -> None:
    rows = [json.loads(line) for line in scores.read_text().splitlines() if line.strip()]
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(group_of(row["input"]), []).append(row)
    clean = groups.pop("clean")
    defects = [r for g, rs in groups.items() if g.startswith("defect") for r in rs]
    comparisons = {"all defects": defects, **{g: groups[g] for g in sorted(groups)}}
    measures = {
        "score (λ·MSE/bpp)": lambda r: r["score"],
        "loss (bpp + λ·MSE)": lambda r: r["loss"],
        "bpp alone": lambda r: r["bpp"],
        "PSNR alone (lower)": lambda r: -r["psnr"],
    }
    print("| clean photos vs | n | " + " | ".join(measures) + " |")
    print("|---|---|" + "---|" * len(measures))
    for name, other in comparisons.items():
        aucs = [roc_auc([m(r) for r in clean], [m(r) for r in other]) for m in measures.values()]
        print(f"| {name} | {len(clean)} vs {len(other)} | " + " | ".join(f"{a:.3f}" for a in aucs) + " |")


if __name__ == "__main__":
    main()
