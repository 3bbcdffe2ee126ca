"""Draw the RD plot of a saved evaluation (the JSON of `aecompress eval -o`) without running it again.

python benchmarks/plot_eval.py kodak.json docs/rd-kodak.png [--title "Kodak"]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aecompress.evaluate import Evaluation, Point, plot_format, plot_image


def load(path: Path) -> Evaluation:
    data = json.loads(path.read_text())
    points = [Point(**{k: v for k, v in p.items()}) for p in data["points"]]
    return Evaluation(data["images"], points, data.get("models", {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_file", type=Path)
    ap.add_argument("plot", type=Path)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    args.plot.write_bytes(plot_image(load(args.json_file), plot_format(args.plot), args.title))
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
