"""Cost of a targeted encode (`--target-size/-bpp/-psnr`) against a plain one, and how its choice compares with a sweep.

    python benchmarks/ratecontrol.py IMAGE... [-m MODEL] [--repeat 3]
    python benchmarks/ratecontrol.py IMAGE... --verify [--targets 200]

Timing: for each image, the median over ``--repeat`` runs of a plain encode at the
default quality, then of a targeted encode for a size (the default quality's file
size × 1.1), a bpp (that file's bpp × 0.8) and a PSNR (the default quality's PSNR +
0.5 dB), in-process (no start-up), with the reconstruction for the reported PSNR, as
the CLI does.  Prints a Markdown table.

``--verify``: codes every quality of the grid (901 for the default model) and, for
``--targets`` targets spread over each image's range, compares the search's choice with
the sweep's best (size, bpp: the largest file not over the target; PSNR: the smallest file
reaching it): how often they agree, and the gap in bytes when they do not; and how often
the file size and the PSNR fall from one quality to the next (steps of 0.01 and of 0.1).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from aecompress import Codec, load_model
from aecompress.codec import default_quality
from aecompress.images import read_image
from aecompress.metrics import psnr
from aecompress.quality import format_quality, parse_quality
from aecompress.ratecontrol import Target, choose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("-m", "--model", default="default")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--verify", action="store_true")
    parser.add_argument("--targets", type=int, default=200)
    args = parser.parse_args()
    codec = Codec(load_model(args.model))
    if args.verify:
        verify(codec, args.images, args.targets)
    else:
        timing(codec, args.images, args.repeat)


def _median_seconds(run, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def timing(codec: Codec, images: list[Path], repeat: int) -> None:
    q = default_quality(codec.model)
    print(f"| image | plain q{q} | target | chosen | tried | targeted | × plain |")
    print("|---|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {}
    for path in images:
        picture = read_image(path.read_bytes(), str(path))
        plain_s, plain = _median_seconds(lambda picture=picture: codec.encode(picture, q), repeat)
        n = len(plain.data)
        db = psnr(picture.color, plain.reconstruction.color)
        pixels = picture.width * picture.height
        targets = [Target("size", round(n * 1.1)), Target("bpp", round(8 * n / pixels * 0.8, 3)), Target("psnr", round(db + 0.5, 2))]
        for target in targets:
            seconds, choice = _median_seconds(lambda picture=picture, target=target: choose(codec, picture, target), repeat)
            ratios.setdefault(target.kind, []).append(seconds / plain_s)
            print(
                f"| {path.name} | {plain_s:.2f} s | {target.describe()} | q{format_quality(choice.hundredths)}"
                f"{'' if choice.met else ' (missed)'} | {choice.tried} | {seconds:.2f} s | {seconds / plain_s:.1f}× |"
            )
    for kind, values in ratios.items():
        print(f"mean cost of a --target-{kind} encode: {statistics.mean(values):.1f}× a plain encode")


class _Replay:
    """Stands in for a Codec in ``choose``: serves the sweep's files, so each target's search costs no coding."""

    def __init__(self, codec: Codec, analysis, files: dict[int, object]) -> None:
        self.codec, self.analysis, self.files = codec, analysis, files

    def analyze(self, picture):
        return self.analysis

    def grid(self) -> list[int]:
        return self.codec.grid()

    def encode_analysis(self, analysis, quality, reconstruct=True, estimate=False, keep_latent=False):
        encoded = self.files[parse_quality(quality)]
        return replace(encoded, reconstruction=encoded.reconstruction if reconstruct else None, synthesize=None)


def verify(codec: Codec, images: list[Path], count: int) -> None:
    print("| image | target | targets | search = sweep | mean gap | largest gap | mean qualities tried |")
    print("|---|---|---|---|---|---|---|")
    falls: list[list] = []  # per image: how often size and PSNR fall from one quality to the next
    for path in images:
        picture = read_image(path.read_bytes(), str(path))
        analysis = codec.analyze(picture)
        files = {h: codec.encode_analysis(analysis, format_quality(h)) for h in codec.grid()}
        sweep = {h: (len(e.data), psnr(picture.color, e.reconstruction.color)) for h, e in files.items()}
        replay = _Replay(codec, analysis, files)
        falls.append([path.name])
        for step in (1, 10):
            grid = sorted(sweep)[::step]
            falls[-1] += [sum(sweep[b][k] < sweep[a][k] for a, b in zip(grid, grid[1:], strict=False)) for k in (0, 1)]
        pixels = picture.width * picture.height
        sizes = [v[0] for v in sweep.values()]
        dbs = [v[1] for v in sweep.values() if math.isfinite(v[1])]
        for kind, low, high in (("size", min(sizes), max(sizes)), ("psnr", min(dbs), max(dbs))):
            agree, gaps, tried = 0, [], []
            for value in np.linspace(low, high, count + 2)[1:-1]:
                target = Target(kind, int(value) if kind == "size" else float(value))
                best = _sweep_best(sweep, target, pixels)
                choice = choose(replay, picture, target, reconstruct=False)
                tried.append(choice.tried)
                got = sweep[choice.hundredths][0]
                agree += choice.hundredths == best
                gaps.append(abs(got - sweep[best][0]) / sweep[best][0])
            print(
                f"| {path.name} | {kind} | {count} | {agree / count:.1%} | {100 * statistics.mean(gaps):.3f}% "
                f"| {100 * max(gaps):.2f}% | {statistics.mean(tried):.1f} |",
                flush=True,
            )
    steps = len(codec.grid()) - 1
    print(
        f"\n| image | size falls, 0.01 steps (of {steps}) | PSNR falls, 0.01 | size falls, 0.1 steps (of {steps // 10}) | PSNR falls, 0.1 |"
    )
    print("|---|---|---|---|---|")
    for name, *counts in falls:
        print(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")


def _sweep_best(sweep: dict[int, tuple[int, float]], target: Target, pixels: int) -> int:
    """The brute-force answer: largest file not over (size), smallest file reaching (PSNR); ties to the higher quality / lower."""
    if target.kind == "psnr":
        ok = [h for h, (n, db) in sweep.items() if db >= target.value]
        return min(ok, key=lambda h: (sweep[h][0], h))
    ok = [h for h, (n, db) in sweep.items() if n <= target.value]
    return max(ok, key=lambda h: (sweep[h][0], h))


if __name__ == "__main__":
    main()
