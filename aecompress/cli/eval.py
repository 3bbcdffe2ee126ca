"""``aecompress eval``: rate–distortion of models against the classical codecs."""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import click
from tqdm import tqdm

from .app import CliError, debugging, error_line, first_line, main, stderr, warning_line
from .io import NO_IMAGES, fail_input, load_model
from .options import effort_option


@main.command(name="eval")
@click.argument("folder", metavar="DIR")
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
@click.option(
    "-q",
    "--qualities",
    metavar="Q[,Q…]",
    help="Model qualities to evaluate, as encode -q takes them: 1,4,8, or hundredths with hyperprior models (5.5); default: every level.",
)
@effort_option("Encoder effort of the models' files, as encode -e takes it (far slower above 0).")
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
def evaluate_command(folder, model, codec_list, no_model, qualities, effort, no_ms_ssim, ceiling, plot_path, as_json, output, force, jobs):
    """Rate–distortion of a model against JPEG, WebP, AVIF, JPEG XL and JPEG 2000.

    Every image in DIR (searched recursively) is coded at every quality of the model
    and a quality sweep of each baseline (in memory).  Prints mean bpp, PSNR and
    MS-SSIM per setting and the BD-rates.  An image that cannot be read is skipped
    with a warning.  Progress: a bar on a terminal, else a line per image (on stderr).
    -o and --plot are checked before the work starts; if one cannot be written at the
    end, the table is still printed (exit status 1).
    """
    from ..evaluate import evaluate, format_table, plot_image, steps_per_image

    names = _baseline_names(codec_list)
    if no_model and not names:
        _nothing_to_evaluate(codec_list)
    plot_fmt = _check_eval_outputs(output, plot_path, force)
    models = {} if no_model else _named_models(model)
    wanted = _wanted_qualities(qualities, models)
    paths, skipped = _readable_images(folder)
    progress = _Progress(len(paths), steps_per_image(models, names, wanted))
    try:
        step = progress.step if jobs == 1 else None
        result = evaluate(
            paths, models, names, not no_ms_ssim, progress.image, wanted, jobs, ceiling, step, root=Path(folder), effort=effort
        )
    finally:
        progress.close()
    result.skipped[:0] = skipped
    if not result.images:
        fail_input(folder, f"no readable images ({len(result.skipped)} skipped)")
    count = len(result.images)
    data = result.to_dict()
    click.echo(json.dumps(data) if as_json else format_table(result))  # first: the result is never lost to a bad output
    failures = []
    if output:
        failures += _write_or_report(output, lambda: (json.dumps(data, indent=1) + "\n").encode(), force)
    if plot_path:
        _warn_outside_plot(result)
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


def _nothing_to_evaluate(codec_list: str) -> None:
    """--no-model and no baseline: a usage error, or a failure when the baselines asked for are all missing here."""
    if any(c.strip() for c in codec_list.split(",")):
        raise CliError("nothing to evaluate: --no-model, and none of the baselines asked for is available")
    raise click.UsageError("nothing to evaluate: --no-model and no --baselines")


def _wanted_qualities(qualities: str | None, models: dict) -> list[int | float] | None:
    """--qualities as -q takes them, each one that every model can code (else a usage error); None: every level."""
    if not (qualities and models):
        return None
    from ..codec import Codec
    from ..quality import format_quality, parse_quality, quality_value

    try:
        hundredths = sorted({parse_quality(q) for q in qualities.split(",")})
    except ValueError as exc:
        raise click.BadParameter(f"{qualities!r}: {exc}", param_hint="-q/--qualities") from None
    for name, loaded in models.items():
        codec = Codec(loaded)
        for h in hundredths:
            try:
                codec.check_quality(format_quality(h))
            except ValueError as exc:
                raise click.BadParameter(f"{name}: {exc}" if len(models) > 1 else str(exc), param_hint="-q/--qualities") from None
    return [quality_value(h) for h in hundredths]


def _readable_images(folder: str) -> tuple[list[Path], list[tuple[str, str]]]:
    """The images of DIR that open (headers only, fast), and (name, why) of those skipped, each with a warning.

    A skipped image is named as the results name images (its path under DIR); its warning gives the path.

    A missing DIR, a folder without images, and a single file that cannot be read fail
    in the words `encode` and `score` use for them.
    """
    from ..evaluate import image_name
    from ..images import find_images, unreadable_reason

    root = Path(folder)
    if not root.exists():
        fail_input(folder, "no such file")
    paths = find_images(root)
    if not paths:
        fail_input(folder, NO_IMAGES)
    readable, skipped = [], []
    for path in paths:
        reason = unreadable_reason(path)
        if reason is None:
            readable.append(path)
        elif root.is_file():
            fail_input(folder, reason)
        else:
            stderr(warning_line(f"{path}: {reason}; skipped"))
            skipped.append((image_name(path, root), reason))
    if not readable:
        fail_input(folder, f"no readable images ({len(skipped)} skipped)")
    return readable, skipped


class _Progress:
    """eval's progress on stderr: on a terminal a bar over every setting of every image (the image, codec and
    setting in its description); else a line per finished image, with the time spent and left."""

    def __init__(self, images: int, steps: int):
        self.images, self.steps = images, steps
        self.tty = sys.stderr.isatty()
        self.bar = tqdm(total=images * steps, file=sys.stderr, unit="setting", disable=not self.tty, leave=False)
        self.done = self.stepped = 0
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        """One setting of one codec coded on one image (one process only)."""
        self.bar.set_description_str(label)
        self.bar.update(1)
        self.stepped += 1

    def image(self, path: Path, reason: str | None) -> None:
        """One image done, or skipped for ``reason``."""
        self.done += 1
        if reason is not None:
            self.bar.write(warning_line(f"{path}: {reason}; skipped"), file=sys.stderr)
        self.bar.update(self.steps - self.stepped)
        self.stepped = 0
        if not self.tty:
            spent = time.monotonic() - self.started
            left = spent / self.done * (self.images - self.done)
            ahead = f", about {_duration(left)} left" if self.done < self.images else ""
            stderr(f"eval: {self.done} of {self.images} images done ({path}), {_duration(spent)}{ahead}")

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    """'42 s', '3 min 20 s', '1 h 05 min'."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _warn_outside_plot(result) -> None:
    """A curve the plot leaves out, entirely beyond the models' rates, is named in a warning."""
    from ..evaluate import plot_view

    view = plot_view(result)
    for name in view.outside:
        stderr(warning_line(f"--plot: {name} lies entirely outside the plotted range (0–{view.bpp[1]:.2f} bpp): not drawn"))


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
