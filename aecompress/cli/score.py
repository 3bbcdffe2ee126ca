"""``aecompress score``: rank images by how unusual they are to a model."""

from __future__ import annotations

import json
import sys

import click

from ..bitstream import MAGIC
from .app import Failure, main, stderr
from .batch import run_batch
from .io import Inputs, Outputs, display, expand_inputs, load_model
from .options import QualityType, checked_quality, max_pixels_option, model_option, pixel_limit, set_threads, threads_option
from .report import Reporter, json_number


class _HeatmapOutputs:
    """``score --heatmap DIR``: DIR/x.heatmap.png for each input (a folder's subfolders kept), under the rule of every output (or nothing)."""

    def __init__(self, found: Inputs, outdir: str | None, force: bool):
        self.inner = Outputs(tuple(found.files), None, outdir, False, force, ".heatmap.png", found=found) if outdir else None

    def target(self, name: str) -> str:
        if self.inner is None:
            return ""
        if name == "-":
            raise Failure("<stdin>", "--heatmap names its files after the inputs: give the image as a file")
        return self.inner.target(name)

    def check(self, name: str, target: str) -> None:
        if self.inner is not None:
            self.inner.check(name, target)

    def write(self, name: str, target: str, data: bytes) -> None:
        self.inner.write(name, target, data)


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...|DIR")
@model_option
@click.option(
    "-q",
    "--quality",
    type=QualityType(),
    help="Quality to score at (its λ weighs the error); default: the middle level. Hundredths with hyperprior models.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout, most unusual first.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout (a header row, then most unusual first).")
@click.option("--top", type=click.IntRange(1), metavar="N", help="Print only the N most unusual images (the summary counts all).")
@click.option(
    "--heatmap",
    "heatmap_dir",
    metavar="DIR",
    help="Also write DIR/x.heatmap.png for each image: the original | where the bits go | where the error is. "
    "A folder's subfolders are kept (A/100/x.jpg of A → DIR/100/x.heatmap.png).",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing heat maps.")
@click.option("-s", "--quiet", is_flag=True, help="No summary, only errors.")
@max_pixels_option
@threads_option
def score(inputs, model, quality, as_json, as_csv, top, heatmap_dir, force, quiet, max_pixels, threads):
    """Rank images by how unusual they are to a model: outliers first.

    For each image (a DIR is searched recursively): the bits per pixel the model
    would spend (its own -log2 p, no file written), the PSNR of its reconstruction,
    and the outlier score, the distortion per bit λ·MSE/bpp (see the README).
    Exit status: 0, 1 when an input failed (the others are still scored), 2 usage.
    """
    from ..codec import Codec
    from ..quality import format_quality

    if as_json and as_csv:
        raise click.UsageError("give only one of --json and --csv")
    set_threads(threads)
    found = expand_inputs(inputs)
    files, errors = found.files, found.errors
    outputs = _HeatmapOutputs(found, heatmap_dir, force)
    loaded = load_model(model)
    codec = Codec(loaded, pixel_limit(max_pixels))
    q = format_quality(checked_quality(codec, loaded, quality))
    reporter = Reporter(True, quiet, 0, False, len(files))
    for line in errors:
        reporter.error(line)
    rows: list[dict] = []
    status = run_batch(tuple(files), outputs, reporter, _score_work(codec, q, outputs, reporter, rows))
    reporter.close(None)
    rows.sort(key=lambda r: (-r["score"], r["input"]))
    _print_scores(rows[:top] if top else rows, "json" if as_json else "csv" if as_csv else "table")
    if not quiet:
        stderr(_score_summary(rows, len(files) + len(errors), loaded.model_id, q, top))
    sys.exit(1 if status or errors else 0)


def _score_work(codec, quality: str, outputs: _HeatmapOutputs, reporter: Reporter, rows: list[dict]):
    """``work`` for run_batch: score one image, write its heat map, keep its row."""
    import io

    from PIL import Image

    from ..images import ImageError, read_image
    from ..quality import parse_quality, quality_value
    from ..score import heatmap, score_picture

    def work(name: str, data: bytes, target: str) -> None:
        try:
            picture = read_image(data, name, codec.max_pixels)
        except ImageError as exc:
            reason = "an aecompress file, not an image (decode it first)" if data[:4] == MAGIC else str(exc)
            raise Failure(display(name), reason) from None
        for note in picture.warnings:
            reporter.warn(name, note)
        try:
            result = score_picture(codec, picture, quality)
        except ValueError as exc:
            raise Failure(display(name), str(exc)) from None
        row = {
            "input": display(name),
            "width": picture.width,
            "height": picture.height,
            "quality": quality_value(parse_quality(quality)),
            "bpp": round(result.bpp, 5),
            "psnr": json_number(result.psnr),
            "loss": round(result.loss, 5),
            "score": round(result.score, 5),
        }
        if target:
            buffer = io.BytesIO()
            Image.fromarray(heatmap(picture, result)).save(buffer, "PNG")
            outputs.write(name, target, buffer.getvalue())
            row["heatmap"] = target
        rows.append(row)

    return work


def _print_scores(rows: list[dict], fmt: str) -> None:
    """The ranked rows on stdout: a table, JSON Lines or CSV."""
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row))
        return
    if fmt == "csv":
        import csv

        keys = ["input", "width", "height", "quality", "bpp", "psnr", "loss", "score"]
        keys += ["heatmap"] if any("heatmap" in r for r in rows) else []
        writer = csv.DictWriter(sys.stdout, fieldnames=keys, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return
    if rows:
        click.echo(f"{'score':>8}  {'bpp':>6}  {'PSNR':>8}  image")
    for row in rows:
        shown = "inf" if row["psnr"] is None else f"{row['psnr']:.2f}"
        click.echo(f"{row['score']:8.3f}  {row['bpp']:6.3f}  {shown:>5} dB  {row['input']}")


def _score_summary(rows: list[dict], total: int, model_id: str, quality: str, top: int | None) -> str:
    from ..score import summary

    if not rows:
        return f"0 of {total} images scored"
    mean, median = summary([r["score"] for r in rows])
    shown = f"; the {min(top, len(rows))} most unusual shown" if top else ""
    return (
        f"{len(rows)} of {total} images scored with model {model_id} at q{quality}: "
        f"score (distortion per bit) mean {mean:.3f}, median {median:.3f}{shown}"
    )
