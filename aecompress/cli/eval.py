"""``aecompress eval``: rate–distortion of models against the classical codecs."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click
from tqdm import tqdm

from .app import CliError, debugging, error_line, first_line, main, stderr, warning_line
from .io import load_model, no_images


@main.command(name="eval")
@click.argument("folder", metavar="DIR", type=click.Path(exists=True))
@click.option(
    "-m", "--model", "model", metavar="MODEL", multiple=True, help="Model file (default: the shipped model); repeat to compare models."
)
@click.option(
    "--baselines",
    "codec_list",
    default="jpeg,webp,avif,jxl,jpeg2000",
    show_default=True,
    help="Classical codecs to compare with ('' for none).",
)
@click.option("--no-model", is_flag=True, help="Evaluate the baselines only.")
@click.option("--qualities", metavar="Q[,Q…]", help="Model qualities to evaluate (default: all).")
@click.option("--no-ms-ssim", is_flag=True, help="Skip MS-SSIM (faster).")
@click.option(
    "--ceiling",
    is_flag=True,
    help="Also print each quality's PSNR with the quantizer switched off: tells undertrained transforms from a weak entropy model.",
)
@click.option("--plot", "plot_path", metavar="PNG", help="Write an RD plot image (.png, .svg, .pdf…; needs matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("-o", "--output", metavar="FILE", help="Also write the JSON results to FILE.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing -o and --plot files.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Processes (images are spread over them; timings then per process).",
)
def evaluate_command(folder, model, codec_list, no_model, qualities, no_ms_ssim, ceiling, plot_path, as_json, output, force, jobs):
    """Rate–distortion of a model against JPEG, WebP, AVIF, JPEG XL and JPEG 2000.

    Every image in DIR is coded at every quality of the model and a quality sweep
    of each baseline (in memory).  Prints mean bpp, PSNR and MS-SSIM per setting
    and the BD-rates.  -o and --plot are checked before the work starts; if one
    cannot be written at the end, the table is still printed (exit status 1).
    """
    from ..data import find_images
    from ..evaluate import evaluate, format_table, plot_image

    names = _baseline_names(codec_list)
    plot_fmt = _check_eval_outputs(output, plot_path, force)
    models = {} if no_model else _named_models(model)
    wanted = _wanted_qualities(qualities, models)
    paths = find_images(Path(folder))
    count = len(paths)
    if count == 0:
        raise CliError(no_images(folder))
    _check_images(paths)
    with tqdm(total=count, file=sys.stderr, unit="image", disable=not sys.stderr.isatty()) as bar:
        result = evaluate(Path(folder), models, names, not no_ms_ssim, bar.update, wanted, jobs, ceiling)
    data = result.to_dict()
    click.echo(json.dumps(data) if as_json else format_table(result))  # first: the result is never lost to a bad output
    failures = []
    if output:
        failures += _write_or_report(output, lambda: (json.dumps(data, indent=1) + "\n").encode(), force)
    if plot_path:
        failures += _write_or_report(plot_path, lambda: plot_image(result, plot_fmt, f"{Path(folder).name} ({count} images)"), force)
    if failures:
        sys.exit(1)


def _baseline_names(codec_list: str) -> list[str]:
    """--baselines: the codecs asked for that this Pillow has (a missing one warns); an unknown one is a usage error."""
    from .. import baselines

    names = [c.strip().lower() for c in codec_list.split(",") if c.strip()]
    for name in names:
        if name not in baselines.BASELINES:
            raise click.BadParameter(f"unknown codec {name!r} (choose from {', '.join(baselines.BASELINES)})", param_hint="--baselines")
    missing = [n for n in names if not baselines.available(n)]
    for name in missing:
        stderr(
            warning_line(f"{name} is not available in this Pillow; skipped")
            + (" (pip install 'aecompress[codecs]')" if name == "jxl" else "")
        )
    return [n for n in names if n not in missing]


def _named_models(paths: tuple[str, ...]) -> dict:
    """One model → {"aecompress": model}; several → named by file stem ("default" for the shipped one)."""
    if len(paths) <= 1:
        return {"aecompress": load_model(paths[0] if paths else None)}
    models = {}
    for path in paths:
        name = "default" if path == "default" else Path(path).stem
        while name in models:
            name += "'"
        models[name] = load_model(path)
    return models


def _wanted_qualities(qualities: str | None, models: dict) -> list[int] | None:
    """--qualities, within the levels every model has (None: all)."""
    if not (qualities and models):
        return None
    try:
        wanted = [int(q) for q in qualities.split(",")]
    except ValueError:
        raise click.BadParameter(f"{qualities!r}: use e.g. 1,4,8", param_hint="--qualities") from None
    top = min(m.qualities for m in models.values())
    if any(not 1 <= q <= top for q in wanted):
        raise click.BadParameter(f"the model(s) have qualities 1–{top}", param_hint="--qualities")
    return wanted


def _check_images(paths: list[Path]) -> None:
    """Every image of an evaluation must open (headers only, fast): a bad file is named before the work, not after it."""
    import warnings

    from PIL import Image

    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Image.open(path).close()
        except Exception as exc:
            reason = (
                "not an image file (or a format Pillow cannot read)" if isinstance(exc, Image.UnidentifiedImageError) else first_line(exc)
            )
            raise CliError(f"{path}: {reason}; remove it from the folder to evaluate the others") from exc


def _check_eval_outputs(output: str | None, plot_path: str | None, force: bool) -> str | None:
    """-o and --plot checked before hours of evaluation; returns the plot's image format."""
    from ..evaluate import plot_format
    from ..outputs import OutputError, check_output_path

    if output and plot_path and Path(output).resolve() == Path(plot_path).resolve():
        raise click.UsageError("-o and --plot must be different files")
    try:
        for path in (output, plot_path):
            if path:
                check_output_path(path, force)
        return plot_format(Path(plot_path)) if plot_path else None
    except (OutputError, RuntimeError) as exc:
        raise CliError(str(exc)) from exc


def _write_or_report(path: str, render, force: bool) -> list[str]:
    """Write one output of a finished computation; a failure is reported in one line and the others still go on."""
    from ..outputs import OutputError, write_output

    try:
        write_output(path, render(), force)
    except OutputError as exc:
        message = str(exc)
    except Exception as exc:  # a plotting library's failure must not hide the other outputs
        if debugging():
            traceback.print_exc()
        message = f"{path}: cannot render ({first_line(exc)})"
    else:
        return []
    stderr(error_line(message))
    return [message]
