"""``aecompress encode``: images into .aec files, at a quality or a --target-*."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

import click

from ..bitstream import MAGIC
from ..quality import EFFORT_STEPS, MAX_EFFORT
from .app import Failure, main, stderr, warning_line
from .batch import LANE_PIXELS, run_batch
from .io import Outputs, display, expand_inputs, load_model, nothing_found
from .options import QualityType, SizeType, checked_quality, effort_option, io_options, pixel_limit, set_threads
from .report import Reporter, Totals, fmt_psnr, json_number, shown_output, timings_line

TARGET_MISSED = 3  # exit status: every file written, but at least one missed its --target-*


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-q",
    "--quality",
    type=QualityType(),
    help="Quality: a level, 1 (smallest) to the model's highest (see `info`), or with a hyperprior model (the default) "
    "any hundredth between two levels, e.g. 5.37; default: the middle level. Factorized models take integer levels only.",
)
@click.option(
    "--target-size",
    type=SizeType(),
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
@effort_option(
    f"Encoder effort, 0–{MAX_EFFORT}: optimize the image's latent for its own rate and distortion before coding "
    f"({', '.join(f'{n} steps' for n in EFFORT_STEPS[1:])}; about 1.3 s per step per megapixel on one core with bf16). "
    "About 10–12% fewer bits at the same PSNR on validation photos; a refined file that would cost more than the "
    "plain one is not used. Any effort decodes with the same decoder; hyperprior models only."
)
@click.option("--no-psnr", is_flag=True, help="Skip measuring PSNR (saves the reconstruction pass).")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="Arithmetic of the analysis transform. bf16 runs it about 2–3× faster on CPUs with AMX (files about 0.2% "
    "larger) and slower elsewhere, and loads torch (1–2 s); auto: bf16 for images of 8 MP or more on AMX CPUs, else "
    "fp32. Files decode exactly either way.",
)
@io_options
def encode(
    inputs,
    quality,
    target_size,
    target_bpp,
    target_psnr,
    effort,
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

    INPUT is an image file (PNG, JPEG, WebP, TIFF, BMP, GIF…), a folder (its images,
    searched recursively, less the x.decoded.png that decode wrote there) or '-' for stdin.  Without -o/-d/-c, x.png is written to x.aec
    beside it, in folders too; -d DIR keeps a folder's subfolders (DCIM/100/x.jpg of DCIM
    → DIR/100/x.aec); stdin goes to stdout.  The time reported is the encoding alone (with
    a target, every quality tried), not reading, writing or loading the model; a batch
    encodes its images of up to 4 MP one per core, so their times overlap.
    Exit status: 0 done, 1 a failed input or output, 2 usage, 3 a --target-* missed
    (the closest file was written).
    """
    set_threads(threads)
    target = _target(target_size, target_bpp, target_psnr, quality, no_psnr)
    found = expand_inputs(inputs, skip_decoded=True, quiet=quiet)
    outputs = Outputs(tuple(found.files), output, outdir, stdout, force, ".aec", found=found)
    nothing_found(found)
    loaded = load_model(model)
    codec = _codec(loaded, max_pixels, precision)
    q = checked_quality(codec, loaded, quality)
    if effort and not codec.latent_coder.fractional:
        stderr(warning_line("--effort needs a model with a hyperprior; this one has a factorized prior: effort 0"))
        effort = 0
    reporter = Reporter(as_json, quiet, verbose, outputs.to_stdout, found.count)
    totals = Totals()
    work = _Encoder(codec, loaded.model_id, q, target, effort, no_psnr, verbose, outputs, reporter, totals)
    status = run_batch(found, outputs, reporter, work)
    summary = totals.summary("encoded", found.count)
    if totals.files:
        summary += f", mean PSNR {totals.mean_psnr()}"
        if target is not None:
            summary += f", target met by {totals.files - totals.missed} of {totals.files}"
    reporter.close(summary)
    sys.exit(status or (TARGET_MISSED if totals.missed else 0))


def _codec(loaded, pixels: int | None, precision: str):
    """The codec of this run: --max-pixels and --precision (auto: decided by the CPU and each image's size)."""
    from ..codec import Codec

    return Codec(loaded, pixel_limit(pixels), precision=precision)


def _target(size: int | None, bpp_value: float | None, psnr_value: float | None, quality: int | None, no_psnr: bool):
    """The one --target-* given (or None); they exclude each other and -q."""
    from ..ratecontrol import Target

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


@dataclass
class _Encoded:
    """One image's work done, nothing written yet: what ``_Encoder.finish`` reports."""

    picture: object
    result: object
    chosen: int
    tried: int
    met: bool
    quality_db: float | None
    coding: float  # seconds of the encoding alone
    seconds: float  # seconds of all the work so far (reading the image, encoding, measuring)


@dataclass
class _Encoder:
    """``work`` for run_batch: encode one image, write it, report it and add it to the totals.

    Small images of a batch may be computed on lanes (``batch.py``): each lane thread has a
    codec of its own whose transforms run on that one thread."""

    codec: object
    model_id: str
    quality: int  # hundredths: -q, or where a target starts
    target: object  # a ratecontrol.Target, or None
    effort: int
    no_psnr: bool
    verbose: int
    outputs: Outputs
    reporter: Reporter
    totals: Totals
    lane_codecs: threading.local = field(default_factory=threading.local)

    def __call__(self, name: str, data: bytes, target_path: str) -> None:
        with self.reporter.ticking(f"encoding {display(name)}"):
            done = self.compute(name, data, target_path, self.codec)
        self.finish(name, data, target_path, done)

    def lanes(self) -> int:
        """Several images at once where the transforms can run on one thread each (not with -e: it runs torch)."""
        from ..engine import threads_here

        return threads_here() if not self.effort and self.codec.has_lanes else 1

    def fits_lane(self, name: str, data: bytes) -> bool:
        return _pixels_in(data) <= LANE_PIXELS

    def compute(self, name: str, data: bytes, target_path: str, codec=None) -> _Encoded:
        from ..metrics import psnr

        codec = codec or self._lane_codec()
        started = time.perf_counter()
        picture = self._read(name, data, codec)
        coding = time.perf_counter()
        result, chosen, tried, met = self._code(name, picture, codec)
        coding = time.perf_counter() - coding
        quality_db = None if result.reconstruction is None else psnr(picture.color, result.reconstruction.color)
        return _Encoded(picture, result, chosen, tried, met, quality_db, coding, time.perf_counter() - started)

    def finish(self, name: str, data: bytes, target_path: str, done: _Encoded) -> None:
        started = time.perf_counter()
        for note in done.picture.warnings:
            self.reporter.warn(name, note)
        result = done.result
        self.outputs.write(name, target_path, result.data)
        seconds = done.seconds + time.perf_counter() - started
        record = self._record(name, data, target_path, done.picture, result, done.chosen, done.quality_db, seconds)
        record["coding_seconds"] = round(done.coding, 4)
        aim = ""
        if self.target is not None:
            record["target"] = {**self.target.to_json(), "met": done.met, "tried": done.tried}
            aim = f", target {self.target.describe()} {'met' if done.met else 'missed'} ({done.tried} qualities tried)"
            if not done.met:
                self.totals.missed += 1
                self.reporter.warn(name, _missed_reason(self.target, done.chosen, len(result.data), done.quality_db))
        if self.verbose:
            record["timings"] = {k: round(v, 5) for k, v in result.timings.items()}
            record["payload_bytes"] = result.payload_bytes
            if result.estimated_bits is not None:
                record["estimated_payload_bytes"] = round(result.estimated_bits / 8, 1)
        self.reporter.report(record, _line(record, done.chosen, done.quality_db, aim, done.coding))
        self.reporter.detail(
            timings_line(result.timings)
            + (f"; payload {result.payload_bytes} B vs model estimate {result.estimated_bits / 8:.0f} B" if result.estimated_bits else "")
        )
        self.totals.add(len(data), len(result.data), record["bpp"], done.quality_db)

    def _lane_codec(self):
        if getattr(self.lane_codecs, "codec", None) is None:
            self.lane_codecs.codec = self.codec.lane()
        return self.lane_codecs.codec

    def _read(self, name: str, data: bytes, codec):
        from ..images import ImageError, read_image

        try:
            return read_image(data, name, codec.max_pixels)
        except ImageError as exc:
            reason = "already an aecompress file (decode it with `aecompress decode`)" if data[:4] == MAGIC else str(exc)
            raise Failure(display(name), reason) from None

    def _code(self, name: str, picture, codec):
        """The encoded file at -q, or at the quality the target chose: (result, hundredths, qualities tried, target met)."""
        from ..quality import format_quality
        from ..ratecontrol import choose

        try:
            if self.target is None:
                q = self.quality
                result = codec.encode(
                    picture, format_quality(q), reconstruct=not self.no_psnr, estimate=self.verbose > 0, effort=self.effort
                )
                return result, q, 0, True
            choice = choose(codec, picture, self.target, reconstruct=not self.no_psnr, effort=self.effort)
            return choice.encoded, choice.hundredths, choice.tried, choice.met
        except ValueError as exc:
            raise Failure(display(name), str(exc)) from None

    def _record(self, name, data, target_path, picture, result, chosen, quality_db, seconds) -> dict:
        from ..metrics import bpp, ratio
        from ..quality import quality_value

        n = len(result.data)
        raw = picture.width * picture.height * picture.channels
        return {
            "input": display(name),
            "output": shown_output(target_path),
            "width": picture.width,
            "height": picture.height,
            "channels": picture.channels,
            "quality": quality_value(chosen),
            "bytes": n,
            "bpp": round(bpp(n, picture.width, picture.height), 5),
            "ratio": round(ratio(raw, n), 3),
            "input_bytes": len(data),
            "input_ratio": round(ratio(len(data), n), 3),
            "psnr": json_number(quality_db),
            "effort": self.effort,
            "seconds": round(seconds, 4),
            "model_id": self.model_id,
        }


def _pixels_in(data: bytes) -> int:
    """Width × height from the image's header (Pillow reads no pixels for it); a huge number where it cannot tell."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.width * im.height
    except Exception:  # not an image, or a bomb: the one-at-a-time path says what is wrong
        return 1 << 62


def _line(record: dict, chosen: int, quality_db: float | None, aim: str, coding: float) -> str:
    """One encoded file, as a person reads it; the time is the coding alone."""
    from ..quality import format_quality

    effort = f", effort {record['effort']}" if record["effort"] else ""
    return (
        f"{record['input']} -> {record['output']}: {record['bytes']:,} bytes, {record['bpp']:.3f} bpp, "
        f"ratio {record['ratio']:.1f}:1 (vs input file {record['input_ratio']:.1f}:1), "
        f"PSNR {fmt_psnr(quality_db)}, q{format_quality(chosen)}{effort}{aim}, {coding:.2f} s encoding"
    )


def _missed_reason(target, hundredths: int, n: int, quality_db: float | None) -> str:
    """Why a target was missed, and which file was written instead."""
    from ..quality import format_quality

    q = format_quality(hundredths)
    if target.kind == "psnr":
        got = "" if quality_db is None else f", {fmt_psnr(quality_db)}"
        return f"no quality reaches {target.describe()}: wrote the highest, q{q}{got}"
    return f"no quality fits in {target.describe()}: wrote the smallest file, q{q}, {n:,} bytes"
