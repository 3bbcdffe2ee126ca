"""Options shared by several commands, the click types of -q and --target-size, and small option parsers."""

from __future__ import annotations

import math
import os
import re

import click

from .app import EXIT_USAGE, CliError

MAX_PIXELS_ENV = "AECOMPRESS_MAX_PIXELS"

model_option = click.option(
    "-m",
    "--model",
    "model",
    metavar="MODEL",
    help="Model file, or a model id found with `aecompress models` (default: the shipped model; decode: the model each file names).",
)
max_pixels_option = click.option(
    "--max-pixels", type=click.IntRange(1), help=f"Refuse larger images (default 2^27 = 134 MP; env {MAX_PIXELS_ENV})."
)


def effort_option(help: str):
    """``-e/--effort``, 0 to the top effort level, as encode and eval take it."""
    from ..quality import MAX_EFFORT

    return click.option("-e", "--effort", type=click.IntRange(0, MAX_EFFORT), default=0, show_default=True, help=help)


threads_option = click.option("--threads", type=click.IntRange(1), help="CPU threads for the transforms (default: all cores).")
_batch_threads_option = click.option(
    "--threads",
    type=click.IntRange(1),
    help="CPU threads (default: all cores). In a batch, images of up to 4 MP get one each, that many at once; larger images get them all.",
)

_IO_OPTIONS = [
    model_option,
    click.option("-o", "--output", metavar="FILE", help="Output file for a single input ('-' for stdout)."),
    click.option("-d", "--output-dir", "outdir", metavar="DIR", help="Directory for the outputs of many inputs."),
    click.option("-c", "--stdout", is_flag=True, help="Write the output to stdout."),
    click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs."),
    click.option("--json", "as_json", is_flag=True, help="One JSON object per file (JSON Lines)."),
    click.option("-s", "--quiet", is_flag=True, help="No reports, only errors."),
    click.option("-v", "--verbose", count=True, help="More detail (timings, the model's bit estimate)."),
    max_pixels_option,
    _batch_threads_option,
]


def io_options(func):
    """The options of the commands that turn files into files (encode, decode)."""
    for option in reversed(_IO_OPTIONS):
        func = option(func)
    return func


class QualityType(click.ParamType):
    """-q: a level or, for hyperprior models, a hundredth between levels ('5', '5.37'); kept as hundredths."""

    name = "Q"

    def convert(self, value, param, ctx):
        from ..quality import parse_quality

        if isinstance(value, int):
            return value
        try:
            hundredths = parse_quality(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if hundredths < 100:
            self.fail(f"{value}: the lowest quality is 1", param, ctx)
        return hundredths


class DeviceType(click.ParamType):
    """--device: auto, cpu, cuda or cuda:N; anything else is a usage error in one line (exit 2), found before torch starts."""

    name = "DEVICE"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
            return text
        raise CliError(f"--device {value}: not a device (use auto, cpu, cuda or cuda:N)", EXIT_USAGE)


device_option = click.option("--device", type=DeviceType(), default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")


class SizeType(click.ParamType):
    """--target-size: bytes, with k/M/G suffixes of 1024 (as --cache-size)."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_bytes(value, minimum=1)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def checked_quality(codec, model, quality: int | None) -> int:
    """-q in hundredths (default: the model's middle level); a quality the model lacks is a usage error."""
    from ..codec import default_quality
    from ..quality import STEPS, format_quality

    q = quality if quality is not None else STEPS * default_quality(model)
    try:
        codec.check_quality(format_quality(q))
    except ValueError as exc:
        raise CliError(f"-q: {exc}", EXIT_USAGE) from exc
    return q


def pixel_limit(value: int | None) -> int:
    """--max-pixels, else $AECOMPRESS_MAX_PIXELS, else the library's default."""
    from ..images import DEFAULT_MAX_PIXELS

    if value is not None:
        return value
    env = os.environ.get(MAX_PIXELS_ENV)
    if env:
        try:
            return int(env)
        except ValueError:
            raise click.UsageError(f"{MAX_PIXELS_ENV}={env!r} is not a whole number") from None
    return DEFAULT_MAX_PIXELS


def set_threads(threads: int | None) -> None:
    """--threads, for whichever engine runs the transforms (torch only if it loads)."""
    if threads:
        from ..engine import configure

        configure(threads=threads)


def parse_bytes(text: str, minimum: int = 1) -> int:
    """'2G', '512M', '1.5g', '50k', '800000000' → bytes; k, M, G, T are powers of 1024 (kB = KiB); ``ValueError``."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    factor = units.get(t[-1:], 1)
    try:
        value = float(t[:-1] if t[-1:] in units else t) * factor
    except ValueError:
        raise ValueError(f"{text!r}: use a size such as 50k, 1.5M or 51200") from None
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{text!r}: must be at least {minimum:,} byte{'s' if minimum != 1 else ''}")
    return int(value)


def parse_size(text: str) -> int:
    """--cache-size: '2G', '512M', '1.5g', '800000000' → bytes, at least 1M."""
    try:
        value = parse_bytes(text, minimum=0)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if value < 1 << 20:
        raise click.BadParameter(f"{text!r}: the cache needs at least 1M")
    return value


def parse_downscale(text: str) -> tuple[float, float]:
    """--downscale: FACTOR or MIN:MAX."""
    parts = text.replace("-", ":").split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"{text!r}: use FACTOR or MIN:MAX, e.g. 2:4") from None
    low, high = (values[0], values[0]) if len(values) == 1 else (values[0], values[1])
    if len(values) > 2 or low < 1 or high < low:
        raise click.BadParameter(f"{text!r}: use FACTOR or MIN:MAX with 1 <= MIN <= MAX")
    return low, high


def parse_lambdas(text: str | None) -> tuple[float, ...] | None:
    """--lambda: one λ or an increasing comma-separated list."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: use one λ or a comma-separated list, e.g. 0.0035,0.013,0.05") from None
    if any(v <= 0 for v in values) or list(values) != sorted(values):
        raise click.BadParameter(f"{text!r}: λ values must be positive and increasing")
    return values
