"""Plot the training program's progress: validation BD-rate against cumulative training pixels.

    python benchmarks/stage_progress.py [docs/stages.csv] [-o docs/stages.png]

Reads docs/stages.csv (one row per measured model; the stage log in docs/TRAINING.md says how
each was trained and measured) and draws one point per row.  Negative BD-rate = fewer bits
than Pillow's JPEG for the same PSNR on the 100 BSDS500 validation images.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", nargs="?", default=str(ROOT / "docs" / "stages.csv"))
    p.add_argument("-o", "--output", default=str(ROOT / "docs" / "stages.png"))
    args = p.parse_args()
    with open(args.table, newline="") as f:
        rows = list(csv.DictReader(f))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [float(r["cumulative_training_pixels"]) for r in rows]
    y = [float(r["val_bd_rate_vs_jpeg"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(x, y, "o-", color="tab:blue")
    for r, xi, yi in zip(rows, x, y, strict=True):
        below = r["stage"].endswith("*")  # mid-run checkpoints: label under the point, clear of the stage that follows
        ax.annotate(r["stage"], (xi, yi), textcoords="offset points", xytext=(-4, -14) if below else (6, 6))
    ax.axhline(0, color="gray", lw=0.8, ls="--")
    ax.text(x[0], 0.3, "JPEG", color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative training pixels (steps × batch × patch²)")
    ax.set_ylabel("BD-rate vs JPEG, BSDS val (%)")
    ax.set_title("Default model, stage by stage (lower is better)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
