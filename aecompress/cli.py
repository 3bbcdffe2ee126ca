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


def _die(message: str, debug: bool = False) -> None:
    if debug:
        traceback.print_exc()
    _stderr(f"aecompress: error: {message}")
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="aecompress")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors (for bug reports).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """aecompress: a learned image codec.

    \b
    aecompress encode photo.png -o photo.aec      compress (default model)
    aecompress decode photo.aec -o photo.png      decompress
    aecompress train DIR -o my.safetensors        train a model on your images
    aecompress eval DIR                           rate–distortion against JPEG, WebP, AVIF…
    aecompress info FILE                          what a .aec or model file holds
    """
    ctx.obj = Context(debug=debug)


# ---------------------------------------------------------------- shared helpers


def _load(model: str | None, debug: bool):
    from .codec import load_model
    from .modelfile import ModelFileError

    try:
        return load_model(model)
    except ModelFileError as exc:
        _die(str(exc), debug)


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


def _display(name: str) -> str:
    return "<stdin>" if name == "-" else name


class _Outputs:
    """Where each result goes, and the rules for writing it."""

    def __init__(self, inputs: tuple[str, ...], output: str | None, outdir: str | None, stdout: bool, force: bool, suffix: str):
        if (output is not None) + (outdir is not None) + bool(stdout) > 1:
            raise click.UsageError("give only one of -o, -d and -c")
        if output is not None and len(inputs) > 1:
            raise click.UsageError("-o takes one input; use -d DIR for several")
        if (stdout or output == "-") and len(inputs) > 1:
            raise click.UsageError("only one input can be written to stdout")
        if inputs.count("-") > 1:
            raise click.UsageError("stdin ('-') can be read only once")
        self.output, self.outdir, self.force, self.suffix = output, outdir, force, suffix
        self.to_stdout = stdout or output == "-" or (output is None and outdir is None and inputs == ("-",))
        if outdir is not None:
            Path(outdir).mkdir(parents=True, exist_ok=True)
        self.written: set[Path] = set()
        if self.to_stdout and sys.stdout.isatty():
            raise Failure("aecompress: error: refusing to write binary data to a terminal (use -o FILE or redirect stdout)")

    def target(self, name: str) -> str:
        """Output path for input ``name`` ('-' for stdout)."""
        if self.to_stdout:
            return "-"
        if self.output is not None:
            return self.output
        if name == "-":
            raise Failure(_fail_line("<stdin>", "needs -o FILE, -d DIR or -c when reading stdin with other inputs"))
        stem = Path(name).with_suffix(self.suffix).name
        return str(Path(self.outdir) / stem) if self.outdir is not None else str(Path(name).with_suffix(self.suffix))

    def write(self, name: str, target: str, data: bytes) -> None:
        from .outputs import OutputExistsError, atomic_write

        if target == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        path = Path(target)
        if name != "-" and path.exists() and path.resolve() == Path(name).resolve():
            raise Failure(_fail_line(name, "output would overwrite the input"))
        if path.resolve() in self.written:
            raise Failure(_fail_line(name, f"{target}: would overwrite another output of this run"))
        if path.is_dir():
            raise Failure(_fail_line(name, f"{target}: output is a directory"))
        try:
            atomic_write(path, data, overwrite=self.force)
        except OutputExistsError:
            raise Failure(_fail_line(name, f"{target}: already exists (use -f to overwrite)")) from None
        except OSError as exc:
            raise Failure(_fail_line(name, f"{target}: cannot write ({exc.strerror or exc})")) from None
        self.written.add(path.resolve())


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
            work(name, data, outputs.target(name))
        except Failure as exc:
            reporter.error(str(exc))
            status = 1
        except KeyboardInterrupt:
            reporter.close(None)
            _stderr("aecompress: interrupted")
            sys.exit(130)
        except Exception as exc:  # a bug or an unexpected library error: still one line
            if debug:
                traceback.print_exc()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reporter.error(_fail_line(_display(name), f"{type(exc).__name__}: {reason}"))
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


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-q",
    "--quality",
    type=click.IntRange(1),
    help="Quality level, 1 (smallest) to the model's highest (see `info`); default: the middle one.",
)
@click.option("--no-psnr", is_flag=True, help="Skip measuring PSNR (saves the reconstruction pass).")
@io_options
@click.pass_obj
def encode(obj: Context, inputs, quality, no_psnr, model, output, outdir, stdout, force, as_json, quiet, verbose, max_pixels, threads):
    """Compress images into .aec files.

    INPUT is an image file (PNG, JPEG, WebP, TIFF, BMP, GIF…) or '-' for stdin.
    Without -o/-d/-c, x.png is written to x.aec beside it; stdin goes to stdout.
    """
    from .codec import Codec, default_quality
    from .images import ImageError, read_image
    from .metrics import bpp, psnr, ratio

    _set_threads(threads)
    try:
        outputs = _Outputs(inputs, output, outdir, stdout, force, ".aec")
    except Failure as exc:
        _die(str(exc).removeprefix("aecompress: error: "))
    loaded = _load(model, obj.debug)
    codec = Codec(loaded, _max_pixels(max_pixels))
    if quality is not None and quality > loaded.qualities:
        raise click.BadParameter(f"this model has qualities 1–{loaded.qualities}", param_hint="-q/--quality")
    q = quality or default_quality(loaded)
    reporter = _Reporter(as_json, quiet, verbose, outputs.to_stdout, len(inputs))
    totals = {"files": 0, "in": 0, "out": 0, "bpp": 0.0, "psnr": 0.0, "psnr_n": 0}

    def work(name: str, data: bytes, target: str) -> None:
        started = time.perf_counter()
        try:
            picture = read_image(data, name, codec.max_pixels)
        except ImageError as exc:
            raise Failure(_fail_line(_display(name), str(exc))) from None
        for note in picture.warnings:
            reporter.warn(name, note)
        try:
            result = codec.encode(picture, q, reconstruct=not no_psnr, estimate=verbose > 0)
        except ValueError as exc:
            raise Failure(_fail_line(_display(name), str(exc))) from None
        outputs.write(name, target, result.data)
        seconds = time.perf_counter() - started
        n = len(result.data)
        raw = picture.width * picture.height * picture.channels
        quality_db = None
        if result.reconstruction is not None:
            quality_db = psnr(picture.color, result.reconstruction.color)
        record = {
            "input": _display(name),
            "output": "<stdout>" if target == "-" else target,
            "width": picture.width,
            "height": picture.height,
            "channels": picture.channels,
            "quality": q,
            "bytes": n,
            "bpp": round(bpp(n, picture.width, picture.height), 5),
            "ratio": round(ratio(raw, n), 3),
            "input_bytes": len(data),
            "input_ratio": round(ratio(len(data), n), 3),
            "psnr": _json_number(quality_db),
            "seconds": round(seconds, 4),
            "model_id": loaded.model_id,
        }
        if verbose:
            record["timings"] = {k: round(v, 5) for k, v in result.timings.items()}
            record["payload_bytes"] = result.payload_bytes
            record["estimated_payload_bytes"] = round(result.estimated_bits / 8, 1)
        line = (
            f"{record['input']} -> {record['output']}: {n:,} bytes, {record['bpp']:.3f} bpp, "
            f"ratio {record['ratio']:.1f}:1 (vs input file {record['input_ratio']:.1f}:1), "
            f"PSNR {_fmt_psnr(quality_db)}, q{q}, {seconds:.2f} s"
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
    reporter.close(summary)
    sys.exit(status)


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
    x.png (see --format) beside it; stdin goes to stdout.
    """
    from .codec import Codec, DecodeError
    from .images import ImageError, encode_picture, format_for
    from .metrics import bpp, ratio

    _set_threads(threads)
    suffix = "." + fmt.lower().lstrip(".")
    try:
        default_fmt = format_for(suffix)
    except ImageError as exc:
        raise click.BadParameter(str(exc), param_hint="--format") from None
    try:
        outputs = _Outputs(inputs, output, outdir, stdout, force, suffix)
    except Failure as exc:
        _die(str(exc).removeprefix("aecompress: error: "))
    if output not in (None, "-"):
        try:
            format_for(Path(output).suffix)
        except ImageError as exc:
            raise click.BadParameter(str(exc), param_hint="-o/--output") from None
    loaded = _load(model, obj.debug)
    codec = Codec(loaded, _max_pixels(max_pixels))
    reporter = _Reporter(as_json, quiet, verbose, outputs.to_stdout, len(inputs))
    totals = {"files": 0, "in": 0, "out": 0, "bpp": 0.0}

    def work(name: str, data: bytes, target: str) -> None:
        started = time.perf_counter()
        try:
            decoded = codec.decode(data)
        except DecodeError as exc:
            raise Failure(_fail_line(_display(name), str(exc))) from None
        fmt_out = default_fmt if target == "-" else format_for(Path(target).suffix)
        image_bytes, notes = encode_picture(decoded.picture, fmt_out)
        for note in notes:
            reporter.warn(name, note)
        outputs.write(name, target, image_bytes)
        seconds = time.perf_counter() - started
        h = decoded.header
        n = len(data)
        record = {
            "input": _display(name),
            "output": "<stdout>" if target == "-" else target,
            "width": h.width,
            "height": h.height,
            "channels": h.channels,
            "quality": h.quality,
            "bytes": n,
            "bpp": round(bpp(n, h.width, h.height), 5),
            "ratio": round(ratio(h.width * h.height * h.channels, n), 3),
            "output_bytes": len(image_bytes),
            "psnr": None,
            "seconds": round(seconds, 4),
            "model_id": h.model_id,
        }
        if verbose:
            record["timings"] = {k: round(v, 5) for k, v in decoded.timings.items()}
        line = (
            f"{record['input']} -> {record['output']}: {h.width}x{h.height} {decoded.picture.mode}, {n:,} bytes, "
            f"{record['bpp']:.3f} bpp, ratio {record['ratio']:.1f}:1, q{h.quality}, {seconds:.2f} s"
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


# ---------------------------------------------------------------- train


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


@main.command()
@click.argument("data_dir", metavar="DIR", type=click.Path(file_okay=True, dir_okay=True))
@click.option("-o", "--output", required=True, metavar="MODEL", help="Model file to write (.safetensors).")
@click.option("--preset", default="small", show_default=True, help="Architecture: tiny (tests), small (CPU default), base (GPU).")
@click.option("--steps", type=click.IntRange(1), help="Stop after this many optimizer steps (in all).")
@click.option("--time-budget", metavar="DURATION", help="Stop after this much training time, e.g. 30m, 2h, 1h30m.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Patches per step (per process).")
@click.option("--patch-size", type=click.IntRange(16), default=128, show_default=True, help="Side of the square training patches.")
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Peak learning rate (warm-up, then cosine decay).",
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
@click.option("--threads", type=click.IntRange(1), help="CPU threads (default: all cores).")
@click.option(
    "--precision",
    type=click.Choice(["auto", "bf16", "fp32"]),
    default="auto",
    show_default=True,
    help="auto: bf16 autocast on CUDA, fp32 on CPU.",
)
@click.pass_obj
def train(
    obj: Context,
    data_dir,
    output,
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
    threads,
    precision,
):
    """Train a model on the images in DIR (searched recursively).

    A progress bar shows loss, bpp and PSNR; checkpoints are written every few
    minutes; Ctrl-C saves a checkpoint and the model, then exits 0.  The model
    file has its entropy tables built in: it is ready for `encode`.
    """
    from .data import NoImagesError
    from .modelfile import ModelFileError
    from .train import TrainConfig, TrainingError, parse_duration
    from .train import train as run_training

    try:
        budget = parse_duration(time_budget) if time_budget else None
        every = parse_duration(checkpoint_every)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not steps and not budget and not resume:
        raise click.UsageError("give --steps or --time-budget (or both)")
    if resume and init:
        raise click.UsageError("--resume and --init exclude each other")
    cfg = TrainConfig(
        data=data_dir,
        output=output,
        preset=preset,
        lambdas=_parse_lambdas(lambdas),
        steps=steps,
        time_budget=budget,
        batch_size=batch_size,
        patch_size=patch_size,
        lr=lr,
        downscale=_parse_downscale(downscale),
        seed=seed,
        device=device,
        checkpoint=checkpoint,
        checkpoint_every=every,
        resume=resume,
        init=init,
        threads=threads,
        precision=precision,
    )
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            path = run_training(cfg, log=_stderr)
    except (TrainingError, NoImagesError, ModelFileError) as exc:
        _die(str(exc), obj.debug)
    except OSError as exc:
        _die(f"{exc.filename or ''}: {exc.strerror or exc}".strip(": "), obj.debug)
    if int(os.environ.get("RANK", "0")) == 0:
        _stderr(f"model written to {path}")


# ---------------------------------------------------------------- info


@main.command()
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def info(obj: Context, file, as_json):
    """Describe a .aec file or a model file."""
    from . import bitstream
    from .codec import load_model
    from .modelfile import ModelFileError

    try:
        is_model = file == "default" or file.endswith(".safetensors")
        data = b"" if is_model else _read_input(file)
    except Failure as exc:
        _die(str(exc).removeprefix("aecompress: "), obj.debug)
    if data[:4] == bitstream.MAGIC:
        try:
            header, payload = bitstream.unpack(data)
        except bitstream.ContainerError as exc:
            _die(f"{file}: {exc}", obj.debug)
        record = {
            "kind": "aec",
            "file": _display(file),
            "format_version": bitstream.VERSION,
            "model_id": header.model_id,
            "width": header.width,
            "height": header.height,
            "channels": header.channels,
            "quality": header.quality,
            "alpha": bool(header.flags & bitstream.FLAG_ALPHA),
            "bytes": len(data),
            "payload_bytes": len(payload),
            "overhead_bytes": bitstream.OVERHEAD,
            "bpp": round(8 * len(data) / header.pixels, 5),
        }
        lines = [
            f"{record['file']}: aecompress image, format version {record['format_version']}",
            f"  size        {header.width}x{header.height}, {header.channels} channel(s){' with lossless alpha' if record['alpha'] else ''}",
            f"  quality     {header.quality}",
            f"  model id    {header.model_id}",
            f"  bytes       {len(data):,} ({len(payload):,} payload + {bitstream.OVERHEAD} container), {record['bpp']:.3f} bpp",
        ]
    else:
        try:
            model = load_model(file)
        except ModelFileError as exc:
            _die(str(exc), obj.debug)
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
            "parameters": params,
            "qualities": model.qualities,
            "lambdas": list(preset.lambdas),
            "training": training,
            "bytes": os.path.getsize(model.path),
        }
        lines = [
            f"{model.path}: aecompress model {model.model_id}",
            f"  architecture  preset {preset.name}: N={preset.N}, M={preset.M}, {params:,} parameters, {record['bytes'] / 1e6:.1f} MB file",
            f"  qualities     1–{model.qualities}, λ = {', '.join(f'{v:g}' for v in preset.lambdas)}",
        ]
        if training:
            lines.append("  training      " + ", ".join(f"{k} {v}" for k, v in training.items() if v not in (None, False, "")))
    if as_json:
        click.echo(json.dumps(record))
    else:
        click.echo("\n".join(lines))


# ---------------------------------------------------------------- demo


@main.command()
@click.option("--train", "force_train", is_flag=True, help="Train a tiny model on sample_data/ even when a default model is installed.")
@click.option("--steps", type=click.IntRange(1), default=150, show_default=True, help="Training steps when training.")
@click.option("--keep", metavar="DIR", help="Keep the demo's files in DIR (default: a temporary folder, removed).")
@click.pass_obj
def demo(obj: Context, force_train, steps, keep):
    """Show the whole pipeline on the sample photos: (train), encode, decode, report.

    Uses the shipped default model; without one (or with --train) it first trains
    a tiny model on ./sample_data (or the photo bundled with the package).
    """
    import io
    import shutil
    import tempfile

    import numpy as np
    from PIL import Image

    from .baselines import encode_at_size
    from .codec import Codec, default_model_path, default_quality, load_model
    from .data import find_images
    from .images import encode_picture, read_image
    from .metrics import bpp, psnr
    from .train import TrainConfig
    from .train import train as run_training

    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="aecompress-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    images = find_images(Path("sample_data")) if Path("sample_data").is_dir() else []
    images = images or find_images(Path(__file__).parent / "samples")
    try:
        if force_train or not default_model_path().exists():
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
        source = images[0]
        data = source.read_bytes()
        picture = read_image(data, str(source))
        q = default_quality(model)
        t = time.perf_counter()
        encoded = codec.encode(picture, q)
        t_enc = time.perf_counter() - t
        aec = work / (source.stem + ".aec")
        aec.write_bytes(encoded.data)
        t = time.perf_counter()
        decoded = codec.decode(aec.read_bytes())
        t_dec = time.perf_counter() - t
        png = work / (source.stem + ".decoded.png")
        png.write_bytes(encode_picture(decoded.picture, "PNG")[0])
        n = len(encoded.data)
        ours = psnr(picture.color, decoded.picture.color)
        click.echo(
            f"model     {model.model_id} ({'default' if model.path == str(default_model_path()) else model.path}), quality {q} of {model.qualities}"
        )
        click.echo(
            f"encode    {source} -> {aec}: {n:,} bytes, {bpp(n, picture.width, picture.height):.3f} bpp, "
            f"ratio {picture.width * picture.height * 3 / n:.1f}:1, PSNR {ours:.2f} dB, {t_enc:.2f} s"
        )
        click.echo(
            f"decode    {aec} -> {png}: {decoded.picture.width}x{decoded.picture.height}, {t_dec:.2f} s, "
            f"identical to the encoder's reconstruction: {bool((decoded.picture.color == encoded.reconstruction.color).all())}"
        )
        with Image.open(source) as im:
            jpeg, jpeg_quality = encode_at_size(im.convert("RGB"), "jpeg", n)
            with Image.open(io.BytesIO(jpeg)) as jim:
                jpsnr = psnr(picture.color, np.asarray(jim.convert("RGB")))
        click.echo(f"JPEG      same image at about the same size (quality {jpeg_quality}): {len(jpeg):,} bytes, PSNR {jpsnr:.2f} dB")
        if keep:
            click.echo(f"files kept in {work}")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


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
@click.option("--plot", "plot_path", metavar="PNG", help="Write an RD plot image (needs matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("-o", "--output", metavar="FILE", help="Also write the JSON results to FILE.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Processes (images are spread over them; timings then per process).",
)
@click.pass_obj
def evaluate_command(obj: Context, folder, model, codec_list, no_model, qualities, no_ms_ssim, plot_path, as_json, output, jobs):
    """Rate–distortion of a model against JPEG, WebP, AVIF, JPEG XL and JPEG 2000.

    Every image in DIR is coded at every quality of the model and a quality sweep
    of each baseline (in memory).  Prints mean bpp, PSNR and MS-SSIM per setting
    and the BD-rates.
    """
    from . import baselines
    from .evaluate import evaluate, format_table, plot

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

    count = len(find_images(Path(folder)))
    if count == 0:
        _die(f"{folder}: no images found", obj.debug)
    with tqdm(total=count, file=sys.stderr, unit="image", disable=not sys.stderr.isatty()) as bar:
        result = evaluate(Path(folder), models, names, not no_ms_ssim, bar.update, wanted, jobs)
    data = result.to_dict()
    if output:
        Path(output).write_text(json.dumps(data, indent=1))
    if plot_path:
        try:
            plot(result, Path(plot_path), title=f"{Path(folder).name} ({count} images)")
        except RuntimeError as exc:
            _die(str(exc), obj.debug)
    click.echo(json.dumps(data) if as_json else format_table(result))
