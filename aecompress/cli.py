"""The ``aecompress`` command: parse, call the library, report — no codec logic here.

Conventions of the Unix compressors: data alone on stdout, messages on stderr,
no binary to a terminal, inputs kept, no overwrite without ``-f``, outputs written
atomically, exit 0 / 1 (failure) / 2 (usage).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import click
from tqdm import tqdm

from . import __version__

MAX_PIXELS_ENV = "AECOMPRESS_MAX_PIXELS"


class Failure(Exception):
    """One input or output failed; the message is the whole one-line report."""


@dataclass
class Context:
    debug: bool = False


def _stderr(message: str) -> None:
    click.echo(message, err=True)


def _fail_line(name: str, message: str) -> str:
    return f"aecompress: {name}: {message}"


def _debugging() -> bool:
    """Whether ``aecompress --debug`` was given (read from click's context, so no caller has to pass it)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Context) if ctx is not None else None
    return bool(obj and obj.debug)


def _die(message: str, debug: bool | None = None) -> NoReturn:
    """One line on stderr and exit 1; under --debug first the traceback of the error being handled."""
    if (_debugging() if debug is None else debug) and sys.exc_info()[0] is not None:
        traceback.print_exc()
    _stderr(f"aecompress: error: {message}")
    sys.exit(1)


class _Main(click.Group):
    """The command group: an error nobody expected still ends in one line (the traceback under --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except OSError as exc:
            _die(f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc) or type(exc).__name__)
        except Exception as exc:
            _die(f"{type(exc).__name__}: {_first_line(exc)} (a bug? run with --debug and report the traceback)")


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="aecompress")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors (for bug reports).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """aecompress: a learned image codec.

    \b
    aecompress encode photo.png -o photo.aec      compress (default model)
    aecompress decode photo.aec                   decompress (to photo.decoded.png)
    aecompress train DIR -o my.safetensors        train a model on your images
    aecompress encode --target-size 50k x.png     the best quality that fits in 50 KiB
    aecompress eval DIR                           rate–distortion against JPEG, WebP, AVIF…
    aecompress score DIR                          the images a model finds most unusual
    aecompress info FILE                          what a .aec, model or checkpoint file holds

    No output is overwritten without -f; errors are one line (--debug, before
    the command, adds the traceback).
    """
    ctx.obj = Context(debug=debug)


# ---------------------------------------------------------------- shared helpers


def _flush_subnormals() -> None:
    """Subnormal floats cost ~100x on x86: a model whose GDN cross terms decayed through them
    encoded 3.9x slower (1.36 s against 0.35 s, same bytes and PSNR).  The integer coding path has none.
    Set where a model is loaded, not for every command: most commands never import torch."""
    import torch

    torch.set_flush_denormal(True)


def _load(model: str | None, debug: bool):
    from .codec import load_model
    from .modelfile import ModelFileError

    _flush_subnormals()
    try:
        return load_model(model)
    except ModelFileError as exc:
        _die(_not_a_model_reason(model, str(exc)), debug)


def _not_a_model_reason(path: str | None, reason: str) -> str:
    """A model-loading error; for a file of another kind (an image, a checkpoint…), say what it is instead."""
    from .sniff import describe, head, training_checkpoint

    if path in (None, "default") or not Path(path).is_file():
        return reason
    if training_checkpoint(path) is not None:
        return f"{path}: a training checkpoint, not a model file (finish its run with `aecompress train DIR -o MODEL --resume {path}`)"
    kind = describe(head(path))
    return f"{path}: {kind}, not an aecompress model file" if kind else reason


def _read_input(name: str) -> bytes:
    if name == "-":
        if sys.stdin.isatty():
            raise Failure(_fail_line("<stdin>", "refusing to read binary data from a terminal"))
        return sys.stdin.buffer.read()
    path = Path(name)
    if path.is_dir():
        raise Failure(_fail_line(name, "is a directory"))
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise Failure(_fail_line(name, "no such file")) from None
    except OSError as exc:
        raise Failure(_fail_line(name, exc.strerror or str(exc))) from None


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _display(name: str) -> str:
    return "<stdin>" if name == "-" else name


class _Outputs:
    """Where each result goes, and the rules for writing it (see outputs.py)."""

    def __init__(
        self,
        inputs: tuple[str, ...],
        output: str | None,
        outdir: str | None,
        stdout: bool,
        force: bool,
        suffix: str,
        beside: str | None = None,
    ):
        if (output is not None) + (outdir is not None) + bool(stdout) > 1:
            raise click.UsageError("give only one of -o, -d and -c")
        if output is not None and len(inputs) > 1:
            raise click.UsageError("-o takes one input; use -d DIR for several")
        if (stdout or output == "-") and len(inputs) > 1:
            raise click.UsageError("only one input can be written to stdout")
        if inputs.count("-") > 1:
            raise click.UsageError("stdin ('-') can be read only once")
        self.output, self.outdir, self.force, self.suffix = output, outdir, force, suffix
        self.beside = beside or suffix  # the suffix of an output written beside its input
        self.to_stdout = stdout or output == "-" or (output is None and outdir is None and inputs == ("-",))
        self.written: set[Path] = set()
        if self.to_stdout and sys.stdout.isatty():
            raise Failure("aecompress: error: refusing to write binary data to a terminal (use -o FILE or redirect stdout)")
        self._check_up_front(inputs)

    def _check_up_front(self, inputs: tuple[str, ...]) -> None:
        """-d and -o are checked before the model is even loaded."""
        from .outputs import OutputError, check_output_path, prepare_output_dir

        try:
            if self.outdir is not None:
                prepare_output_dir(self.outdir)
            if self.output not in (None, "-"):
                if _same_file(inputs[0], self.output):
                    raise Failure(_fail_line(_display(inputs[0]), "output would overwrite the input"))
                check_output_path(self.output, self.force)
        except OutputError as exc:
            raise Failure(f"aecompress: error: {exc}") from None

    def target(self, name: str) -> str:
        """Output path for input ``name`` ('-' for stdout)."""
        if self.to_stdout:
            return "-"
        if self.output is not None:
            return self.output
        if name == "-":
            raise Failure(_fail_line("<stdin>", "needs -o FILE, -d DIR or -c when reading stdin with other inputs"))
        if self.outdir is not None:
            return str(Path(self.outdir) / (Path(name).stem + self.suffix))
        return str(Path(name).with_name(Path(name).stem + self.beside))

    def check(self, name: str, target: str) -> None:
        """Refuse this input's output before its work is done: the input itself, another output, a directory, an existing file."""
        from .outputs import OutputError, check_output_path

        if target == "-":
            return
        if _same_file(name, target):
            raise Failure(_fail_line(name, "output would overwrite the input"))
        if Path(target).resolve() in self.written:
            raise Failure(_fail_line(name, f"{target}: would overwrite another output of this run"))
        try:
            check_output_path(target, self.force)
        except OutputError as exc:
            raise Failure(_fail_line(name, str(exc))) from None

    def write(self, name: str, target: str, data: bytes) -> None:
        from .outputs import OutputError, write_output

        if target == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        self.check(name, target)  # again: the file system may have changed during the work
        try:
            write_output(target, data, self.force)
        except OutputError as exc:
            raise Failure(_fail_line(name, str(exc))) from None
        self.written.add(Path(target).resolve())


def _same_file(name: str, target: str) -> bool:
    if name == "-" or target == "-":
        return False
    try:
        return Path(target).exists() and Path(target).resolve() == Path(name).resolve()
    except OSError:
        return False


def _max_pixels(value: int | None) -> int:
    from .images import DEFAULT_MAX_PIXELS

    if value is not None:
        return value
    env = os.environ.get(MAX_PIXELS_ENV)
    if env:
        try:
            return int(env)
        except ValueError:
            raise click.UsageError(f"{MAX_PIXELS_ENV}={env!r} is not a whole number") from None
    return DEFAULT_MAX_PIXELS


def _fmt_psnr(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.2f} dB"


def _json_number(value: float | None, digits: int = 4):
    if value is None or math.isinf(value) or math.isnan(value):
        return None
    return round(value, digits)


class _Reporter:
    """Human lines on stderr, or JSON Lines (stdout when no data goes there)."""

    def __init__(self, as_json: bool, quiet: bool, verbose: int, data_on_stdout: bool, count: int):
        self.as_json, self.quiet, self.verbose = as_json, quiet, verbose
        self.json_stream = sys.stderr if data_on_stdout else sys.stdout
        self.count = count
        self.bar = tqdm(total=count, file=sys.stderr, unit="file", leave=False, disable=quiet or count < 2 or not sys.stderr.isatty())

    def report(self, record: dict, line: str) -> None:
        if self.as_json:
            self.bar.clear()
            print(json.dumps(record), file=self.json_stream, flush=True)
        elif not self.quiet:
            self.bar.write(line, file=sys.stderr)

    def warn(self, name: str, message: str) -> None:
        if not self.quiet:
            self.bar.write(f"aecompress: warning: {_display(name)}: {message}", file=sys.stderr)

    def error(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def detail(self, line: str) -> None:
        if self.verbose and not self.quiet:
            self.bar.write(line, file=sys.stderr)

    def close(self, summary: str | None) -> None:
        self.bar.close()
        if summary and not self.quiet and self.count > 1:
            _stderr(summary)


def _run_batch(inputs, outputs: _Outputs, reporter: _Reporter, work, debug: bool) -> int:
    """Apply ``work(name, data, target)`` to each input; keep going after failures."""
    status = 0
    for name in inputs:
        try:
            data = _read_input(name)
            target = outputs.target(name)
            outputs.check(name, target)  # before the work: a re-run batch wastes no time
            work(name, data, target)
        except Failure as exc:
            if debug:
                traceback.print_exc()
            reporter.error(str(exc))
            status = 1
        except KeyboardInterrupt:
            reporter.close(None)
            _stderr("aecompress: interrupted")
            sys.exit(130)
        except Exception as exc:  # a bug or an unexpected library error: still one line
            if debug:
                traceback.print_exc()
            reporter.error(_fail_line(_display(name), f"{type(exc).__name__}: {_first_line(exc)}"))
            status = 1
        reporter.bar.update(1)
    return status


_io_options = [
    click.option("-m", "--model", "model", metavar="MODEL", help="Model file (default: the shipped model)."),
    click.option("-o", "--output", metavar="FILE", help="Output file for a single input ('-' for stdout)."),
    click.option("-d", "--output-dir", "outdir", metavar="DIR", help="Directory for the outputs of many inputs."),
    click.option("-c", "--stdout", is_flag=True, help="Write the output to stdout."),
    click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs."),
    click.option("--json", "as_json", is_flag=True, help="One JSON object per file (JSON Lines)."),
    click.option("-s", "--quiet", is_flag=True, help="No reports, only errors."),
    click.option("-v", "--verbose", count=True, help="More detail (timings, the model's bit estimate)."),
    click.option("--max-pixels", type=click.IntRange(1), help=f"Refuse larger images (default 2^27 = 134 MP; env {MAX_PIXELS_ENV})."),
    click.option("--threads", type=click.IntRange(1), help="CPU threads for the transforms (default: all cores)."),
]


def io_options(func):
    for option in reversed(_io_options):
        func = option(func)
    return func


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


# ---------------------------------------------------------------- encode

TARGET_MISSED = 3  # exit status: every file written, but at least one missed its --target-*


class _QualityType(click.ParamType):
    """-q: a level or, for hyperprior models, a hundredth between levels ('5', '5.37'); kept as hundredths."""

    name = "Q"

    def convert(self, value, param, ctx):
        from .quality import parse_quality

        if isinstance(value, int):
            return value
        try:
            hundredths = parse_quality(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if hundredths < 100:
            self.fail(f"{value}: the lowest quality is 1", param, ctx)
        return hundredths


class _SizeType(click.ParamType):
    """--target-size: bytes, with k/M/G suffixes of 1024 (as --cache-size)."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return _parse_bytes(value, minimum=1)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _usage_die(message: str) -> NoReturn:
    """A usage error that needs the model to be seen (a quality it lacks): one line, exit 2."""
    _stderr(f"aecompress: error: {message}")
    sys.exit(2)


def _target(size: int | None, bpp_value: float | None, psnr_value: float | None, quality: int | None, no_psnr: bool):
    """The one --target-* given (or None); they exclude each other and -q."""
    from .ratecontrol import Target

    given = {k: v for k, v in (("size", size), ("bpp", bpp_value), ("psnr", psnr_value)) if v is not None}
    if len(given) > 1:
        raise click.UsageError(f"give only one of {', '.join('--target-' + k for k in given)}")
    if not given:
        return None
    kind, value = next(iter(given.items()))
    if quality is not None:
        raise click.UsageError(f"-q and --target-{kind} exclude each other (the target chooses the quality)")
    if kind == "psnr" and no_psnr:
        raise click.UsageError("--no-psnr and --target-psnr exclude each other")
    try:
        return Target(kind, float(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--target-{kind}") from None


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-q",
    "--quality",
    type=_QualityType(),
    help="Quality: a level, 1 (smallest) to the model's highest (see `info`), or with a hyperprior model (the default) "
    "any hundredth between two levels, e.g. 5.37; default: the middle level. Factorized models take integer levels only.",
)
@click.option(
    "--target-size",
    type=_SizeType(),
    help="Choose the quality: the largest file not over SIZE bytes (50k = 51,200 bytes, 1.5M; k = 1024).",
)
@click.option(
    "--target-bpp",
    type=click.FloatRange(min=0, min_open=True),
    metavar="BPP",
    help="Choose the quality: the largest file not over BPP bits per pixel (8 × file bytes / pixels).",
)
@click.option(
    "--target-psnr",
    type=click.FloatRange(min=0, min_open=True),
    metavar="DB",
    help="Choose the quality: the smallest file whose decoded image reaches DB dB. Targets search the hundredths between "
    "levels (factorized models: the levels); a target no setting meets writes the closest one, warns and exits 3.",
)
@click.option("--no-psnr", is_flag=True, help="Skip measuring PSNR (saves the reconstruction pass).")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "auto"]),
    default="fp32",
    show_default=True,
    help="Arithmetic of the analysis transform. bf16 runs it about 3× faster on CPUs with native bf16 (AMX or "
    "AVX512-BF16) for files about 0.2% larger; auto: bf16 on such CPUs. Files decode exactly either way.",
)
@io_options
@click.pass_obj
def encode(
    obj: Context,
    inputs,
    quality,
    target_size,
    target_bpp,
    target_psnr,
    no_psnr,
    precision,
    model,
    output,
    outdir,
    stdout,
    force,
    as_json,
    quiet,
    verbose,
    max_pixels,
    threads,
):
    """Compress images into .aec files.

    INPUT is an image file (PNG, JPEG, WebP, TIFF, BMP, GIF…) or '-' for stdin.
    Without -o/-d/-c, x.png is written to x.aec beside it; stdin goes to stdout.
    Exit status: 0 done, 1 a failed input or output, 2 usage, 3 a --target-* missed
    (the closest file was written).
    """
    from .codec import Codec, default_quality
    from .images import ImageError, read_image
    from .metrics import bpp, psnr, ratio
    from .quality import format_quality, quality_value
    from .ratecontrol import choose

    _set_threads(threads)
    target = _target(target_size, target_bpp, target_psnr, quality, no_psnr)
    try:
        outputs = _Outputs(inputs, output, outdir, stdout, force, ".aec")
    except Failure as exc:
        _die(str(exc).removeprefix("aecompress: error: "))
    loaded = _load(model, obj.debug)
    if precision == "auto":
        from .train import cpu_has_native_bf16

        precision = "bf16" if cpu_has_native_bf16() else "fp32"
    codec = Codec(loaded, _max_pixels(max_pixels), precision=precision)
    q = quality if quality is not None else 100 * default_quality(loaded)
    try:
        codec.check_quality(format_quality(q))
    except ValueError as exc:
        _usage_die(f"-q: {exc}")
    reporter = _Reporter(as_json, quiet, verbose, outputs.to_stdout, len(inputs))
    totals = {"files": 0, "in": 0, "out": 0, "bpp": 0.0, "psnr": 0.0, "psnr_n": 0, "missed": 0}

    def work(name: str, data: bytes, target_path: str) -> None:
        started = time.perf_counter()
        try:
            picture = read_image(data, name, codec.max_pixels)
        except ImageError as exc:
            reason = "already an aecompress file (decode it with `aecompress decode`)" if data[:4] == b"\x89AEC" else str(exc)
            raise Failure(_fail_line(_display(name), reason)) from None
        for note in picture.warnings:
            reporter.warn(name, note)
        chosen, tried, met = q, 0, True
        try:
            if target is None:
                result = codec.encode(picture, format_quality(q), reconstruct=not no_psnr, estimate=verbose > 0)
            else:
                choice = choose(codec, picture, target, reconstruct=not no_psnr)
                result, chosen, tried, met = choice.encoded, choice.hundredths, choice.tried, choice.met
        except ValueError as exc:
            raise Failure(_fail_line(_display(name), str(exc))) from None
        outputs.write(name, target_path, result.data)
        seconds = time.perf_counter() - started
        n = len(result.data)
        raw = picture.width * picture.height * picture.channels
        quality_db = None
        if result.reconstruction is not None:
            quality_db = psnr(picture.color, result.reconstruction.color)
        record = {
            "input": _display(name),
            "output": "<stdout>" if target_path == "-" else target_path,
            "width": picture.width,
            "height": picture.height,
            "channels": picture.channels,
            "quality": quality_value(chosen),
            "bytes": n,
            "bpp": round(bpp(n, picture.width, picture.height), 5),
            "ratio": round(ratio(raw, n), 3),
            "input_bytes": len(data),
            "input_ratio": round(ratio(len(data), n), 3),
            "psnr": _json_number(quality_db),
            "seconds": round(seconds, 4),
            "model_id": loaded.model_id,
        }
        aim = ""
        if target is not None:
            record["target"] = {**target.to_json(), "met": met, "tried": tried}
            aim = f", target {target.describe()} {'met' if met else 'missed'} ({tried} qualities tried)"
            if not met:
                totals["missed"] += 1
                reporter.warn(name, _missed_reason(target, chosen, n, quality_db))
        if verbose:
            record["timings"] = {k: round(v, 5) for k, v in result.timings.items()}
            record["payload_bytes"] = result.payload_bytes
            if result.estimated_bits is not None:
                record["estimated_payload_bytes"] = round(result.estimated_bits / 8, 1)
        line = (
            f"{record['input']} -> {record['output']}: {n:,} bytes, {record['bpp']:.3f} bpp, "
            f"ratio {record['ratio']:.1f}:1 (vs input file {record['input_ratio']:.1f}:1), "
            f"PSNR {_fmt_psnr(quality_db)}, q{format_quality(chosen)}{aim}, {seconds:.2f} s"
        )
        reporter.report(record, line)
        reporter.detail(
            "  "
            + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in result.timings.items())
            + (f"; payload {result.payload_bytes} B vs model estimate {result.estimated_bits / 8:.0f} B" if result.estimated_bits else "")
        )
        totals["files"] += 1
        totals["in"] += len(data)
        totals["out"] += n
        totals["bpp"] += record["bpp"]
        if quality_db is not None and not math.isinf(quality_db):
            totals["psnr"] += quality_db
            totals["psnr_n"] += 1

    status = _run_batch(inputs, outputs, reporter, work, obj.debug)
    summary = None
    if totals["files"]:
        mean_psnr = f"{totals['psnr'] / totals['psnr_n']:.2f} dB" if totals["psnr_n"] else "-"
        summary = (
            f"{totals['files']} of {len(inputs)} files encoded: {totals['in']:,} bytes in, {totals['out']:,} bytes out, "
            f"mean {totals['bpp'] / totals['files']:.3f} bpp, mean PSNR {mean_psnr}"
        )
        if target is not None:
            summary += f", target met by {totals['files'] - totals['missed']} of {totals['files']}"
    reporter.close(summary)
    sys.exit(status or (TARGET_MISSED if totals["missed"] else 0))


def _missed_reason(target, hundredths: int, n: int, quality_db: float | None) -> str:
    """Why a target was missed, and which file was written instead."""
    from .quality import format_quality

    q = format_quality(hundredths)
    if target.kind == "psnr":
        got = "" if quality_db is None else f", {_fmt_psnr(quality_db)}"
        return f"no quality reaches {target.describe()}: wrote the highest, q{q}{got}"
    return f"no quality fits in {target.describe()}: wrote the smallest file, q{q}, {n:,} bytes"


# ---------------------------------------------------------------- score


class _HeatmapOutputs:
    """``score --heatmap DIR``: DIR/x.heatmap.png for each input, under the rule of every output (or nothing)."""

    def __init__(self, inputs: tuple[str, ...], outdir: str | None, force: bool):
        self.inner = _Outputs(inputs, None, outdir, False, force, ".heatmap.png") if outdir else None

    def target(self, name: str) -> str:
        if self.inner is None:
            return ""
        if name == "-":
            raise Failure(_fail_line("<stdin>", "--heatmap names its files after the inputs: give the image as a file"))
        return self.inner.target(name)

    def check(self, name: str, target: str) -> None:
        if self.inner is not None:
            self.inner.check(name, target)

    def write(self, name: str, target: str, data: bytes) -> None:
        self.inner.write(name, target, data)


def _expand_inputs(args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Files, with each directory replaced by the images under it (as `eval` and `train` find them); and one error per empty directory."""
    from .data import find_images

    files, errors = [], []
    for arg in args:
        if arg != "-" and Path(arg).is_dir():
            found = find_images(Path(arg))
            if not found:
                errors.append(_fail_line(arg, "no images found (searched recursively for PNG, JPEG, WebP, TIFF, BMP, GIF…)"))
            files += [str(p) for p in found]
        else:
            files.append(arg)
    return files, errors


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...|DIR")
@click.option("-m", "--model", "model", metavar="MODEL", help="Model file (default: the shipped model).")
@click.option(
    "-q",
    "--quality",
    type=_QualityType(),
    help="Quality to score at (its λ weighs the error); default: the middle level. Hundredths with hyperprior models.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout, most unusual first.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout (a header row, then most unusual first).")
@click.option("--top", type=click.IntRange(1), metavar="N", help="Print only the N most unusual images (the summary counts all).")
@click.option(
    "--heatmap",
    "heatmap_dir",
    metavar="DIR",
    help="Also write DIR/x.heatmap.png for each image: the original | where the bits go | where the error is.",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing heat maps.")
@click.option("-s", "--quiet", is_flag=True, help="No summary, only errors.")
@click.option("--max-pixels", type=click.IntRange(1), help=f"Refuse larger images (default 2^27 = 134 MP; env {MAX_PIXELS_ENV}).")
@click.option("--threads", type=click.IntRange(1), help="CPU threads for the transforms (default: all cores).")
@click.pass_obj
def score(obj: Context, inputs, model, quality, as_json, as_csv, top, heatmap_dir, force, quiet, max_pixels, threads):
    """Rank images by how unusual they are to a model: outliers first.

    For each image (a DIR is searched recursively): the bits per pixel the model
    would spend (its own -log2 p, no file written), the PSNR of its reconstruction,
    and the outlier score, the distortion per bit λ·MSE/bpp (see the README).
    Exit status: 0, 1 when an input failed (the others are still scored), 2 usage.
    """
    from .codec import Codec, default_quality
    from .quality import format_quality

    if as_json and as_csv:
        raise click.UsageError("give only one of --json and --csv")
    _set_threads(threads)
    files, errors = _expand_inputs(inputs)
    try:
        outputs = _HeatmapOutputs(tuple(files), heatmap_dir, force)
    except Failure as exc:
        _die(str(exc).removeprefix("aecompress: error: "))
    loaded = _load(model, obj.debug)
    codec = Codec(loaded, _max_pixels(max_pixels))
    q = format_quality(quality if quality is not None else 100 * default_quality(loaded))
    try:
        codec.check_quality(q)
    except ValueError as exc:
        _usage_die(f"-q: {exc}")
    reporter = _Reporter(True, quiet, 0, False, len(files))
    for line in errors:
        reporter.error(line)
    rows: list[dict] = []
    status = _run_batch(tuple(files), outputs, reporter, _score_work(codec, q, outputs, reporter, rows), obj.debug)
    reporter.close(None)
    rows.sort(key=lambda r: (-r["score"], r["input"]))
    _print_scores(rows[:top] if top else rows, "json" if as_json else "csv" if as_csv else "table")
    if not quiet:
        _stderr(_score_summary(rows, len(files) + len(errors), loaded.model_id, q, top))
    sys.exit(1 if status or errors else 0)


def _score_work(codec, quality: str, outputs: _HeatmapOutputs, reporter: _Reporter, rows: list[dict]):
    """``work`` for _run_batch: score one image, write its heat map, keep its row."""
    import io

    from PIL import Image

    from .images import ImageError, read_image
    from .quality import parse_quality, quality_value
    from .score import heatmap, score_picture

    def work(name: str, data: bytes, target: str) -> None:
        try:
            picture = read_image(data, name, codec.max_pixels)
        except ImageError as exc:
            reason = "an aecompress file, not an image (decode it first)" if data[:4] == b"\x89AEC" else str(exc)
            raise Failure(_fail_line(_display(name), reason)) from None
        for note in picture.warnings:
            reporter.warn(name, note)
        try:
            result = score_picture(codec, picture, quality)
        except ValueError as exc:
            raise Failure(_fail_line(_display(name), str(exc))) from None
        row = {
            "input": _display(name),
            "width": picture.width,
            "height": picture.height,
            "quality": quality_value(parse_quality(quality)),
            "bpp": round(result.bpp, 5),
            "psnr": _json_number(result.psnr),
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
    from .score import summary

    if not rows:
        return f"0 of {total} images scored"
    mean, median = summary([r["score"] for r in rows])
    shown = f"; the {min(top, len(rows))} most unusual shown" if top else ""
    return (
        f"{len(rows)} of {total} images scored with model {model_id} at q{quality}: "
        f"score (distortion per bit) mean {mean:.3f}, median {median:.3f}{shown}"
    )


# ---------------------------------------------------------------- decode


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "--format",
    "fmt",
    default="png",
    show_default=True,
    help="Image format for -d, -c and stdout (png, jpg, webp, tiff, bmp, ppm…); -o follows its extension.",
)
@io_options
@click.pass_obj
def decode(obj: Context, inputs, fmt, model, output, outdir, stdout, force, as_json, quiet, verbose, max_pixels, threads):
    """Decompress .aec files into images.

    INPUT is a .aec file or '-' for stdin.  Without -o/-d/-c, x.aec is written to
    x.decoded.png (see --format) beside it, never to x.png, which is usually the
    original image; -d DIR writes DIR/x.png; stdin goes to stdout.
    """
    from .codec import Codec, DecodeError
    from .images import ImageError, encode_picture, format_for
    from .metrics import bpp, ratio
    from .quality import format_quality, quality_value

    _set_threads(threads)
    suffix = "." + fmt.lower().lstrip(".")
    try:
        default_fmt = format_for(suffix)
    except ImageError as exc:
        raise click.BadParameter(str(exc), param_hint="--format") from None
    if output not in (None, "-"):
        try:
            format_for(Path(output).suffix)
        except ImageError as exc:
            raise click.BadParameter(str(exc), param_hint="-o/--output") from None
    try:
        outputs = _Outputs(inputs, output, outdir, stdout, force, suffix, beside=".decoded" + suffix)
    except Failure as exc:
        _die(str(exc).removeprefix("aecompress: error: "))
    loaded = _load(model, obj.debug)
    codec = Codec(loaded, _max_pixels(max_pixels))
    reporter = _Reporter(as_json, quiet, verbose, outputs.to_stdout, len(inputs))
    totals = {"files": 0, "in": 0, "out": 0, "bpp": 0.0}

    def work(name: str, data: bytes, target: str) -> None:
        started = time.perf_counter()
        if not data:
            raise Failure(_fail_line(_display(name), "empty file"))
        try:
            decoded = codec.decode(data)
        except DecodeError as exc:
            raise Failure(_fail_line(_display(name), _not_aec_reason(data, str(exc)))) from None
        fmt_out = default_fmt if target == "-" else format_for(Path(target).suffix)
        image_bytes, notes = encode_picture(decoded.picture, fmt_out)
        if fmt_out == "GIF":
            notes.append("GIF holds at most 256 colours: the image was reduced to a palette (use PNG for the exact pixels)")
        for note in notes:
            reporter.warn(name, note)
        outputs.write(name, target, image_bytes)
        seconds = time.perf_counter() - started
        h = decoded.header
        n = len(data)
        mode = _written_mode(image_bytes)
        record = {
            "input": _display(name),
            "output": "<stdout>" if target == "-" else target,
            "width": h.width,
            "height": h.height,
            "channels": h.channels,
            "quality": quality_value(h.hundredths),
            "bytes": n,
            "bpp": round(bpp(n, h.width, h.height), 5),
            "ratio": round(ratio(h.width * h.height * h.channels, n), 3),
            "output_bytes": len(image_bytes),
            "output_mode": mode,
            "psnr": None,
            "seconds": round(seconds, 4),
            "model_id": h.model_id,
        }
        if verbose:
            record["timings"] = {k: round(v, 5) for k, v in decoded.timings.items()}
        line = (
            f"{record['input']} -> {record['output']}: {h.width}x{h.height} {mode}, {n:,} bytes, "
            f"{record['bpp']:.3f} bpp, ratio {record['ratio']:.1f}:1, q{format_quality(h.hundredths)}, {seconds:.2f} s"
        )
        reporter.report(record, line)
        reporter.detail("  " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in decoded.timings.items()))
        totals["files"] += 1
        totals["in"] += n
        totals["out"] += len(image_bytes)
        totals["bpp"] += record["bpp"]

    status = _run_batch(inputs, outputs, reporter, work, obj.debug)
    summary = None
    if totals["files"]:
        summary = (
            f"{totals['files']} of {len(inputs)} files decoded: {totals['in']:,} bytes in, {totals['out']:,} bytes out, "
            f"mean {totals['bpp'] / totals['files']:.3f} bpp"
        )
    reporter.close(summary)
    sys.exit(status)


def _not_aec_reason(data: bytes, reason: str) -> str:
    """A decode error; for a file that is not .aec at all, say what it is instead."""
    from .sniff import AEC_MAGIC, describe, is_image

    kind = describe(data[:64]) if data[:4] != AEC_MAGIC else None
    if kind is None:
        return reason
    return f"{kind}, not an aecompress file" + (" (compress it with `aecompress encode`)" if is_image(kind) else "")


def _written_mode(image_bytes: bytes) -> str:
    """The mode of the image file as written (alpha dropped for JPEG, a palette for GIF), read back from its header."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(image_bytes)) as im:
        return im.mode


# ---------------------------------------------------------------- train


def _parse_bytes(text: str, minimum: int = 1) -> int:
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


def _parse_size(text: str) -> int:
    """--cache-size: '2G', '512M', '1.5g', '800000000' → bytes, at least 1M."""
    try:
        value = _parse_bytes(text, minimum=0)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if value < 1 << 20:
        raise click.BadParameter(f"{text!r}: the cache needs at least 1M")
    return value


def _parse_downscale(text: str) -> tuple[float, float]:
    parts = text.replace("-", ":").split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"{text!r}: use FACTOR or MIN:MAX, e.g. 2:4") from None
    low, high = (values[0], values[0]) if len(values) == 1 else (values[0], values[1])
    if len(values) > 2 or low < 1 or high < low:
        raise click.BadParameter(f"{text!r}: use FACTOR or MIN:MAX with 1 <= MIN <= MAX")
    return low, high


def _parse_lambdas(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: use one λ or a comma-separated list, e.g. 0.0035,0.013,0.05") from None
    if any(v <= 0 for v in values) or list(values) != sorted(values):
        raise click.BadParameter(f"{text!r}: λ values must be positive and increasing")
    return values


def _duration(text: str, option: str) -> float:
    """A duration with its unit: a bare '2' is refused, not silently read as two seconds."""
    from .train import parse_duration

    stripped = text.strip()
    if stripped.replace(".", "", 1).isdigit():
        raise click.BadParameter(f"{text!r} needs a unit: {stripped}s, {stripped}m or {stripped}h?", param_hint=option)
    if stripped[-1:].isdigit():
        raise click.BadParameter(f"{text!r}: every number needs its unit (s, m or h), e.g. {stripped}m", param_hint=option)
    try:
        return parse_duration(stripped)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _check_train_outputs(output: str, checkpoint: str | None, resume: str | None, force: bool) -> None:
    """The model and its checkpoint are checked now, not after hours of training.

    A run continued with ``--resume`` of its own checkpoint may replace that
    checkpoint and the model it wrote when interrupted; anything else needs -f.
    """
    from .outputs import OutputError, OutputExistsError, check_output_path

    model = Path(output)
    ckpt = Path(checkpoint) if checkpoint else model.with_name(model.name + ".ckpt")
    if ckpt.resolve() == model.resolve():
        raise click.UsageError("--checkpoint must be another file than -o MODEL")
    if resume is not None and not Path(resume).is_file():
        _die(f"{resume}: no such checkpoint" + (" (a directory)" if Path(resume).is_dir() else ""))
    continuing = resume is not None and ckpt.exists() and Path(resume).resolve() == ckpt.resolve()
    for path in (model, ckpt):
        try:
            check_output_path(path, force or continuing)
        except OutputExistsError:
            _die(_exists_reason(path, model, ckpt))
        except OutputError as exc:
            _die(str(exc))


def _patch_shape(init: str | None, patch_size: int | None, batch_size: int | None) -> tuple[int, int, str | None]:
    """Patch side and count per step, and a line saying so when --init chose them.

    A fine-tuning run keeps the patch size its model was trained on when that is larger
    than the default, at the default's pixels per step: 128² patches re-teach a model
    trained on 256² ones patch borders (fine-tuning the default: 2.4% fewer bits at 128²,
    4.0% at 256², BENCHMARKS.md).
    """
    from .train import TrainConfig

    default_patch, default_batch = TrainConfig.patch_size, TrainConfig.batch_size  # the recipe's defaults
    if patch_size is not None or init is None:
        return patch_size or default_patch, batch_size or default_batch, None
    training = _load(init, _debugging()).metadata.get("training")
    trained = training.get("patch_size") if isinstance(training, dict) else None
    if not isinstance(trained, int) or trained <= default_patch:
        return default_patch, batch_size or default_batch, None
    batch = batch_size or max(1, default_batch * default_patch**2 // trained**2)
    return trained, batch, f"{batch} patches of {trained}² per step: {init} was trained on {trained}² patches (--patch-size to change it)"


def _check_train_inputs(resume: str | None, init: str | None, preset: str | None) -> None:
    """A bad --preset, --resume or --init is said before the images load; a wrong file is named by what it is."""
    from .model import PRESETS
    from .sniff import describe, head, training_checkpoint

    if preset is not None and not resume and preset not in PRESETS:
        _die(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if init is not None:
        _load(init, _debugging())  # cached: the run itself then loads it for free
    if resume is None or training_checkpoint(resume) is not None:
        return
    first = head(resume)
    if first[8:9] == b"{":  # safetensors: an 8-byte header length, then JSON
        _die(f"{resume}: a model file, not a training checkpoint (fine-tune it with --init {resume})")
    _die(f"{resume}: {describe(first) or 'not a known kind of file'}, not a training checkpoint")


def _exists_reason(path: Path, model: Path, ckpt: Path) -> str:
    """Why an existing model or checkpoint is kept, and the ways forward."""
    if path == ckpt:
        return f"{ckpt}: already exists: the checkpoint of an earlier run (continue it with --resume {ckpt}, or use -f to start afresh)"
    if ckpt.exists():
        return f"{model}: already exists (use -f to overwrite it, or --resume {ckpt} to continue its run)"
    return f"{model}: already exists (use -f to overwrite it, or --init {model} -o OTHER to fine-tune it)"


def _count_images(data_dir: str) -> int:
    """Image files of the training folder, counted before the run (the data loader itself is data.py's)."""
    from .data import NoImagesError, find_images

    try:
        count = len(find_images(Path(data_dir)))
    except NoImagesError as exc:
        _die(str(exc))
    if count == 0:
        _die(f"{data_dir}: no images found (searched recursively for PNG, JPEG, WebP, TIFF, BMP, GIF…)")
    return count


def _training_summary(path: Path) -> dict:
    """The training summary stored in a model file's metadata ({} if unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as fh:
            return json.loads((fh.metadata() or {}).get("training", "{}"))
    except Exception:
        return {}


FEW_STEPS = 100


def _after_training(path: Path, budget: float | None, steps: int | None, resume_hint: str) -> None:
    """What the user should know about a run that just ended: how to continue it, or that it barely trained."""
    summary = _training_summary(path)
    if summary.get("interrupted"):
        _stderr(f"run interrupted: continue it with {resume_hint}")
        return
    done = summary.get("steps")
    if not budget or done is None or done >= FEW_STEPS or (steps and done >= steps):
        return
    _stderr(
        f"aecompress: warning: --time-budget {budget:g}s allowed only {done} training step(s): this model is barely trained "
        "(a useful one needs thousands of steps, e.g. --time-budget 1h)"
    )


@main.command()
@click.argument("data_dir", metavar="DIR", type=click.Path(file_okay=True, dir_okay=True))
@click.option("-o", "--output", required=True, metavar="MODEL", help="Model file to write (.safetensors).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing MODEL and its checkpoint.")
@click.option(
    "--preset",
    help="Architecture: small-hp (default: hyperprior, CPU-sized), medium-hp (1.5x its channels), base-hp (GPU), "
    "tiny-hp (tests); small-cb, medium-cb, tiny-cb (the same with a checkerboard context); or small/base/tiny "
    "(factorized prior). With --init: the init model's, unless given (then matching weights are copied, a narrower "
    "model of the same latent is grown, and a context starts silent: --init default --preset medium-cb).",
)
@click.option("--steps", type=click.IntRange(1), help="Stop after this many optimizer steps (in all).")
@click.option(
    "--time-budget",
    metavar="DURATION",
    help="Stop after this much training time: a number with its unit, e.g. 90s, 30m, 2h, 1h30m.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    help="Patches per step (per process)  [default: 16; with --init at larger patches, the same pixels per step]",
)
@click.option(
    "--patch-size",
    type=click.IntRange(16),
    help="Side of the square training patches  [default: 128, or with --init the init model's own when larger]",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    help="Peak learning rate (warm-up, then cosine decay); default 1e-3, or 3e-4 with --init (fine-tuning).",
)
@click.option(
    "--lambda",
    "lambdas",
    metavar="λ[,λ…]",
    help="Rate–distortion trade-off: one value, or one per quality level (default: the preset's ladder).",
)
@click.option(
    "--downscale",
    default="1",
    show_default=True,
    metavar="MIN:MAX",
    help="Shrink images by a random factor before cropping (2:4 suits camera photos).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--resume", metavar="CKPT", help="Continue from a checkpoint (recipe taken from it).")
@click.option("--init", metavar="MODEL", help="Start from a model's weights ('default' for the shipped one): fine-tuning.")
@click.option("--checkpoint", metavar="CKPT", help="Checkpoint path (default: MODEL.ckpt).")
@click.option("--checkpoint-every", default="5m", show_default=True, metavar="DURATION", help="Time between checkpoints.")
@click.option("--keep-checkpoint", is_flag=True, help="Keep the checkpoint after a finished run (to extend it later with --resume).")
@click.option(
    "--threads",
    type=click.IntRange(1),
    help="CPU threads (default: one per core the process may use: 1 under `taskset -c 0`); more than that warns.",
)
@click.option(
    "--cache-size",
    default="2G",
    show_default=True,
    metavar="SIZE",
    help="Memory for decoded training images; a larger folder is streamed through it (e.g. 512M, 8G).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "bf16", "fp32"]),
    default="auto",
    show_default=True,
    help="auto: bf16 autocast on CUDA and on CPUs with native bf16 (AMX or AVX512-BF16), fp32 elsewhere.",
)
@click.pass_obj
def train(
    obj: Context,
    data_dir,
    output,
    force,
    preset,
    steps,
    time_budget,
    batch_size,
    patch_size,
    lr,
    lambdas,
    downscale,
    seed,
    device,
    resume,
    init,
    checkpoint,
    checkpoint_every,
    keep_checkpoint,
    threads,
    cache_size,
    precision,
):
    """Train a model on the images in DIR (searched recursively).

    A progress bar shows loss, bpp and PSNR; checkpoints are written every few
    minutes; Ctrl-C saves a checkpoint and the model, then exits 0 (continue with
    --resume MODEL.ckpt).  A finished run removes its checkpoint.  The model file
    has its entropy tables built in: it is ready for `encode`.
    """
    from .data import NoImagesError
    from .modelfile import ModelFileError
    from .train import TrainConfig, TrainingError
    from .train import train as run_training

    budget = _duration(time_budget, "--time-budget") if time_budget else None
    every = _duration(checkpoint_every, "--checkpoint-every")
    if not steps and not budget and not resume:
        raise click.UsageError("give --steps or --time-budget (or both)")
    if resume and init:
        raise click.UsageError("--resume and --init exclude each other")
    patch_size, batch_size, chosen = _patch_shape(init, patch_size, batch_size)
    cfg = TrainConfig(
        data=data_dir,
        output=output,
        preset=preset,
        lambdas=_parse_lambdas(lambdas),
        steps=steps,
        time_budget=budget,
        batch_size=batch_size,
        patch_size=patch_size,
        lr=lr if lr is not None else (3e-4 if init else 1e-3),
        downscale=_parse_downscale(downscale),
        seed=seed,
        device=device,
        checkpoint=checkpoint,
        checkpoint_every=every,
        resume=resume,
        init=init,
        threads=threads,
        cache_bytes=_parse_size(cache_size),
        precision=precision,
        keep_checkpoint=keep_checkpoint,
    )
    _check_train_outputs(output, checkpoint, resume, force)
    _check_train_inputs(resume, init, preset)
    count = _count_images(data_dir)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        if chosen:
            _stderr(chosen)
        _stderr(f"loading {count} image{'s' if count != 1 else ''} from {data_dir}…")
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            path = run_training(cfg, log=_stderr)
    except ModelFileError as exc:
        _die(_not_a_model_reason(init, str(exc)), obj.debug)
    except (TrainingError, NoImagesError) as exc:
        _die(str(exc), obj.debug)
    except OSError as exc:
        _die(f"{exc.filename or ''}: {exc.strerror or exc}".strip(": "), obj.debug)
    if main_rank:
        ckpt = checkpoint or f"{output}.ckpt"
        _after_training(Path(path), budget, steps, f"aecompress train {data_dir} -o {output} --resume {ckpt}")
        _stderr(f"model written to {path}")


# ---------------------------------------------------------------- info


@main.command()
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def info(obj: Context, file, as_json):
    """Describe a .aec file, a model file or a training checkpoint.

    FILE 'default' is the shipped model; '-' reads a .aec file from stdin.
    """
    record, lines = _describe(file)
    click.echo(json.dumps(record) if as_json else "\n".join(lines))


def _describe(file: str) -> tuple[dict, list[str]]:
    """What ``info`` prints about ``file``, found from its content rather than its name."""
    from .sniff import AEC_MAGIC, head, training_checkpoint
    from .sniff import describe as kind_of

    if file == "default":
        return _info_model(file)
    if file != "-":
        path = Path(file)
        if path.is_dir():
            _die(f"{file}: is a directory")
        if not path.exists():
            _die(f"{file}: no such file")
        first = head(path)
        if first[:4] != AEC_MAGIC:
            state = training_checkpoint(path)
            if state is not None:
                return _info_checkpoint(file, state)
            if kind_of(first) is None:
                return _info_model(file)  # safetensors has no magic bytes: let the model reader judge
    try:
        data = _read_input(file)
    except Failure as exc:
        _die(str(exc).removeprefix("aecompress: "))
    if data[:4] == AEC_MAGIC:
        return _info_aec(file, data)
    _die(_foreign_file(_display(file), kind_of(data[:64]) or "not a known kind of file"))


def _foreign_file(name: str, kind: str) -> str:
    """One line for a file that is neither a .aec file nor a model: what it is, and what to do with it."""
    from .sniff import is_image

    if kind == "an empty file":
        return f"{name}: empty file"
    hint = f" (compress it with `aecompress encode {'-' if name == '<stdin>' else name}`)" if is_image(kind) else ""
    return f"{name}: {kind}, not an aecompress file or model{hint}"


def _info_aec(file: str, data: bytes) -> tuple[dict, list[str]]:
    from . import bitstream
    from .quality import format_quality, quality_value

    try:
        header, payload = bitstream.unpack(data)
    except bitstream.ContainerError as exc:
        _die(f"{_display(file)}: {exc}")
    record = {
        "kind": "aec",
        "file": _display(file),
        "format_version": header.version,
        "model_id": header.model_id,
        "width": header.width,
        "height": header.height,
        "channels": header.channels,
        "quality": quality_value(header.hundredths),
        "alpha": bool(header.flags & bitstream.FLAG_ALPHA),
        "bytes": len(data),
        "payload_bytes": len(payload),
        "overhead_bytes": header.overhead,
        "bpp": round(8 * len(data) / header.pixels, 5),
    }
    lines = [
        f"{record['file']}: aecompress image, format version {record['format_version']}",
        f"  size        {header.width}x{header.height}, {header.channels} channel(s){' with lossless alpha' if record['alpha'] else ''}",
        f"  quality     {format_quality(header.hundredths)}"
        + (
            f" (level {header.quality}'s ẑ tables, gains {header.fraction}% of the way to level {header.quality + 1})"
            if header.fraction
            else ""
        ),
        f"  model id    {header.model_id}",
        f"  bytes       {len(data):,} ({len(payload):,} payload + {header.overhead} container), {record['bpp']:.3f} bpp",
    ]
    return record, lines


_ENTROPY_NAMES = {
    "factorized": "factorized prior",
    "hyperprior": "mean-scale hyperprior (Nz={Nz})",
    "checkerboard": "mean-scale hyperprior (Nz={Nz}) with a checkerboard context",
}


def _info_model(file: str) -> tuple[dict, list[str]]:
    from .codec import load_model
    from .modelfile import ModelFileError

    try:
        model = load_model(file)
    except ModelFileError as exc:
        _die(_not_a_model_reason(file, str(exc)))
    preset = model.net.preset
    params = sum(p.numel() for p in model.net.parameters())
    training = model.metadata.get("training") or {}
    record = {
        "kind": "model",
        "file": model.path,
        "model_id": model.model_id,
        "preset": preset.name,
        "N": preset.N,
        "M": preset.M,
        "entropy": preset.entropy,
        "parameters": params,
        "qualities": model.qualities,
        "lambdas": list(preset.lambdas),
        "training": training,
        "bytes": os.path.getsize(model.path),
    }
    lines = [
        f"{model.path}: aecompress model {model.model_id}",
        f"  architecture  preset {preset.name}: N={preset.N}, M={preset.M}, "
        + _ENTROPY_NAMES[preset.entropy].format(Nz=preset.Nz)
        + f", {params:,} parameters, {record['bytes'] / 1e6:.1f} MB file",
        f"  qualities     1–{model.qualities}, λ = {', '.join(f'{v:g}' for v in preset.lambdas)}",
    ]
    if training:
        shown = {k: v for k, v in training.items() if k not in ("stages", "lambdas") and v not in (None, False, "")}
        lines.append("  training      " + ", ".join(f"{k} {v}" for k, v in shown.items()))
        stages = training.get("stages") or []
        if len(stages) > 1:
            lines.append(f"  stages        {len(stages)} (the model was trained in stages, each continuing the last):")
            for i, stage in enumerate(stages, 1):
                lines.append("    " + _stage_line(i, stage))
    return record, lines


def _stage_line(number: int, stage: dict) -> str:
    """One stage of a model's training log: where, how long, on what."""
    hours = float(stage.get("seconds") or 0) / 3600
    pixels = (
        stage.get("pixels") or int(stage.get("steps") or 0) * int(stage.get("batch_size") or 0) * int(stage.get("patch_size") or 0) ** 2
    )
    parts = [
        f"{number}. {stage.get('steps', '?'):,} steps" if isinstance(stage.get("steps"), int) else f"{number}. ? steps",
        f"{hours:.2f} h",
        f"{pixels:.2e} px",
        f"data {stage.get('data', '?')}",
        f"{stage.get('precision', '?')}",
        f"lr {stage.get('lr', '?')}",
    ]
    if stage.get("cpu"):
        processes = int(stage.get("processes") or 1)
        ranks = f" ×{processes} processes" if processes > 1 else ""
        parts.append(f"{stage['cpu']}{ranks}" + (f" ×{stage['threads']} thread(s)" if stage.get("threads") else ""))
    if stage.get("init"):
        parts.append(f"init {stage['init']}")
    return ", ".join(parts)


def _info_checkpoint(file: str, state: dict) -> tuple[dict, list[str]]:
    """A training checkpoint is not a model, but it is ours: say where its run stands and how to go on."""
    config = state.get("config") or {}
    record = {
        "kind": "checkpoint",
        "file": file,
        "step": int(state["step"]),
        "seconds": round(float(state.get("elapsed", 0.0)), 1),
        "preset": config.get("preset"),
        "data": config.get("data"),
        "output": config.get("output"),
        "steps": config.get("steps"),
        "time_budget": config.get("time_budget"),
        "init": config.get("init"),
    }
    data, output = record["data"] or "DIR", record["output"] or "MODEL"
    lines = [
        f"{file}: aecompress training checkpoint (not a model file): step {record['step']}, {record['seconds']} s trained",
        f"  run         preset {record['preset']}, data {data}, model {output}",
        f"  continue    aecompress train {data} -o {output} --resume {file}",
    ]
    return record, lines


# ---------------------------------------------------------------- demo


@main.command()
@click.option("--train", "force_train", is_flag=True, help="Train a tiny model on sample_data/ even when a default model is installed.")
@click.option("--steps", type=click.IntRange(1), default=150, show_default=True, help="Training steps when training.")
@click.option("--keep", metavar="DIR", help="Keep the demo's files in DIR (default: a temporary folder, removed).")
@click.option("-f", "--force", is_flag=True, help="Overwrite the files of an earlier demo in --keep DIR.")
@click.pass_obj
def demo(obj: Context, force_train, steps, keep, force):
    """Show the whole pipeline on the sample photos: (train), encode, decode, report.

    Uses the shipped default model; without one (or with --train) it first trains
    a tiny model on ./sample_data (or the photo bundled with the package).
    """
    import io
    import shutil

    import numpy as np
    from PIL import Image

    from .baselines import encode_at_size
    from .codec import Codec, default_model_path, default_quality, load_model
    from .data import find_images
    from .images import encode_picture, read_image
    from .metrics import bpp, psnr
    from .outputs import atomic_write
    from .train import TrainConfig
    from .train import train as run_training

    images = find_images(Path("sample_data")) if Path("sample_data").is_dir() else []
    images = images or find_images(Path(__file__).parent / "samples")
    source = images[0]
    training = force_train or not default_model_path().exists()
    names = ["demo.safetensors", "demo.ckpt"] if training else []
    names += [source.stem + ".aec", source.stem + ".decoded.png"]
    work = _demo_folder(keep, names, force)
    try:
        if training:
            model_path = work / "demo.safetensors"
            _stderr(f"training a tiny model on {len(images)} sample photo(s) for {steps} steps…")
            run_training(
                TrainConfig(
                    data=str(images[0].parent),
                    output=str(model_path),
                    preset="tiny",
                    steps=steps,
                    batch_size=8,
                    patch_size=64,
                    lr=3e-3,
                    warmup=20,
                    checkpoint=str(work / "demo.ckpt"),
                ),
                log=_stderr,
            )
            model = load_model(model_path)
        else:
            model = load_model()
        codec = Codec(model)
        data = source.read_bytes()
        picture = read_image(data, str(source))
        q = default_quality(model)
        t = time.perf_counter()
        encoded = codec.encode(picture, q)
        t_enc = time.perf_counter() - t
        aec = work / (source.stem + ".aec")
        atomic_write(aec, encoded.data)
        t = time.perf_counter()
        decoded = codec.decode(aec.read_bytes())
        t_dec = time.perf_counter() - t
        png = work / (source.stem + ".decoded.png")
        atomic_write(png, encode_picture(decoded.picture, "PNG")[0])
        n = len(encoded.data)
        ours = psnr(picture.color, decoded.picture.color)

        def shown(path) -> str:  # a temporary folder's path means nothing once it is removed
            return str(path) if keep else Path(path).name

        click.echo(
            f"model     {model.model_id} ({'default' if model.path == str(default_model_path()) else shown(model.path)}), quality {q} of {model.qualities}"
        )
        click.echo(
            f"encode    {source} -> {shown(aec)}: {n:,} bytes, {bpp(n, picture.width, picture.height):.3f} bpp, "
            f"ratio {picture.width * picture.height * 3 / n:.1f}:1, PSNR {ours:.2f} dB, {t_enc:.2f} s"
        )
        click.echo(
            f"decode    {shown(aec)} -> {shown(png)}: {decoded.picture.width}x{decoded.picture.height}, {t_dec:.2f} s, "
            f"identical to the encoder's reconstruction: {bool((decoded.picture.color == encoded.reconstruction.color).all())}"
        )
        with Image.open(source) as im:
            jpeg, jpeg_quality = encode_at_size(im.convert("RGB"), "jpeg", n)
            with Image.open(io.BytesIO(jpeg)) as jim:
                jpsnr = psnr(picture.color, np.asarray(jim.convert("RGB")))
        click.echo(f"JPEG      same image at about the same size (quality {jpeg_quality}): {len(jpeg):,} bytes, PSNR {jpsnr:.2f} dB")
        if training:
            click.echo(f"note      the demo's tiny model trained for {steps} steps, a few seconds: it is meant to be poor, far below JPEG;")
            click.echo("          the shipped default model, or a real run (train … --time-budget 1h), shows what the codec does")
        click.echo(f"files kept in {work}" if keep else "files     in a temporary folder, now removed (use --keep DIR to keep them)")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _demo_folder(keep: str | None, names: list[str], force: bool) -> Path:
    """--keep DIR, checked like every output (its files exist only with -f); else a temporary folder."""
    import tempfile

    from .outputs import OutputError, check_output_path, prepare_output_dir

    if not keep:
        return Path(tempfile.mkdtemp(prefix="aecompress-demo-"))
    try:
        prepare_output_dir(keep)
        for name in names:
            check_output_path(Path(keep) / name, force)
    except OutputError as exc:
        _die(str(exc))
    return Path(keep)


# ---------------------------------------------------------------- eval


def _named_models(paths: tuple[str, ...], debug: bool) -> dict:
    """One model → {"aecompress": model}; several → named by file stem ("default" for the shipped one)."""
    if len(paths) <= 1:
        return {"aecompress": _load(paths[0] if paths else None, debug)}
    models = {}
    for path in paths:
        name = "default" if path == "default" else Path(path).stem
        while name in models:
            name += "'"
        models[name] = _load(path, debug)
    return models


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
@click.pass_obj
def evaluate_command(
    obj: Context, folder, model, codec_list, no_model, qualities, no_ms_ssim, ceiling, plot_path, as_json, output, force, jobs
):
    """Rate–distortion of a model against JPEG, WebP, AVIF, JPEG XL and JPEG 2000.

    Every image in DIR is coded at every quality of the model and a quality sweep
    of each baseline (in memory).  Prints mean bpp, PSNR and MS-SSIM per setting
    and the BD-rates.  -o and --plot are checked before the work starts; if one
    cannot be written at the end, the table is still printed (exit status 1).
    """
    from . import baselines
    from .evaluate import evaluate, format_table, plot_image

    names = [c.strip().lower() for c in codec_list.split(",") if c.strip()]
    for name in names:
        if name not in baselines.BASELINES:
            raise click.BadParameter(f"unknown codec {name!r} (choose from {', '.join(baselines.BASELINES)})", param_hint="--baselines")
    missing = [n for n in names if not baselines.available(n)]
    for name in missing:
        _stderr(
            f"aecompress: warning: {name} is not available in this Pillow; skipped"
            + (" (pip install 'aecompress[codecs]')" if name == "jxl" else "")
        )
    names = [n for n in names if n not in missing]
    plot_fmt = _check_eval_outputs(output, plot_path, force)
    models = {} if no_model else _named_models(model, obj.debug)
    wanted = None
    if qualities and models:
        try:
            wanted = [int(q) for q in qualities.split(",")]
        except ValueError:
            raise click.BadParameter(f"{qualities!r}: use e.g. 1,4,8", param_hint="--qualities") from None
        top = min(m.qualities for m in models.values())
        if any(not 1 <= q <= top for q in wanted):
            raise click.BadParameter(f"the model(s) have qualities 1–{top}", param_hint="--qualities")
    from .data import find_images

    paths = find_images(Path(folder))
    count = len(paths)
    if count == 0:
        _die(f"{folder}: no images found", obj.debug)
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
                "not an image file (or a format Pillow cannot read)" if isinstance(exc, Image.UnidentifiedImageError) else _first_line(exc)
            )
            _die(f"{path}: {reason}; remove it from the folder to evaluate the others")


def _check_eval_outputs(output: str | None, plot_path: str | None, force: bool) -> str | None:
    """-o and --plot checked before hours of evaluation; returns the plot's image format."""
    from .evaluate import plot_format
    from .outputs import OutputError, check_output_path

    if output and plot_path and Path(output).resolve() == Path(plot_path).resolve():
        raise click.UsageError("-o and --plot must be different files")
    try:
        for path in (output, plot_path):
            if path:
                check_output_path(path, force)
        return plot_format(Path(plot_path)) if plot_path else None
    except (OutputError, RuntimeError) as exc:
        _die(str(exc))


def _write_or_report(path: str, render, force: bool) -> list[str]:
    """Write one output of a finished computation; a failure is reported in one line and the others still go on."""
    from .outputs import OutputError, write_output

    try:
        write_output(path, render(), force)
    except OutputError as exc:
        message = str(exc)
    except Exception as exc:  # a plotting library's failure must not hide the other outputs
        if _debugging():
            traceback.print_exc()
        message = f"{path}: cannot render ({_first_line(exc)})"
    else:
        return []
    _stderr(f"aecompress: error: {message}")
    return [message]
