"""``aecompress decode``: .aec files into images."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from ..bitstream import MAGIC
from .app import Failure, main
from .batch import LANE_PIXELS, run_batch
from .io import Outputs, display, expand_inputs, flush_subnormals, load_model, nothing_found
from .options import io_options, pixel_limit, set_threads
from .report import Reporter, Totals, shown_output, timings_line


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
def decode(inputs, fmt, model, output, outdir, stdout, force, as_json, quiet, verbose, max_pixels, threads):
    """Decompress .aec files into images.

    INPUT is a .aec file, a folder (its .aec files, searched recursively) or '-' for
    stdin.  Without -o/-d/-c, x.aec is written to x.decoded.png (see --format) beside
    it, in folders too, never to x.png, which is usually the original image; -d DIR
    writes DIR/x.png and keeps a folder's subfolders (A/100/x.aec of A → DIR/100/x.png);
    stdin goes to stdout.  The time reported is the decoding alone, not reading,
    writing the image file or loading the model; a batch decodes its images of up to
    4 MP one per core, so their times overlap.
    """
    from ..codec import Codec

    set_threads(threads)
    suffix = "." + fmt.lower().lstrip(".")
    default_fmt = _check_formats(suffix, output)
    found = expand_inputs(inputs, aec=True)
    outputs = Outputs(tuple(found.files), output, outdir, stdout, force, suffix, beside=".decoded" + suffix, found=found)
    nothing_found(found)
    codecs = _Codecs(pixel_limit(max_pixels), Codec(load_model(model), pixel_limit(max_pixels)) if model else None)
    reporter = Reporter(as_json, quiet, verbose, outputs.to_stdout, found.count)
    totals = Totals()
    status = run_batch(found, outputs, reporter, _Decoder(codecs, default_fmt, verbose, outputs, reporter, totals))
    reporter.close(totals.summary("decoded", found.count))
    sys.exit(status)


def _check_formats(suffix: str, output: str | None) -> str:
    """--format and the extension of -o FILE, checked before any work; returns --format's image format."""
    from ..images import ImageError, format_for

    try:
        default_fmt = format_for(suffix)
    except ImageError as exc:
        raise click.BadParameter(str(exc), param_hint="--format") from None
    if output not in (None, "-"):
        try:
            format_for(Path(output).suffix)
        except ImageError as exc:
            raise click.BadParameter(str(exc), param_hint="-o/--output") from None
    return default_fmt


@dataclass
class _Codecs:
    """-m's model for every file, or else the model each file names, found by id in the model store (and kept)."""

    max_pixels: int
    fixed: object | None = None
    by_id: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # lanes ask at once: load each model once

    def for_file(self, name: str, data: bytes):
        if self.fixed is not None:
            return self.fixed
        with self.lock:
            return self._for_file(name, data)

    def _for_file(self, name: str, data: bytes):
        from ..bitstream import ContainerError, read_header
        from ..codec import Codec, load_model
        from ..modelfile import ModelFileError

        try:
            model_id = read_header(data).model_id
        except ContainerError as exc:
            raise Failure(display(name), _not_aec_reason(data, str(exc))) from None
        if model_id not in self.by_id:
            flush_subnormals()
            try:
                self.by_id[model_id] = Codec(load_model(model_id), self.max_pixels)
            except ModelFileError as exc:
                raise Failure(display(name), str(exc)) from None
        return self.by_id[model_id]


@dataclass
class _Decoded:
    """One file's work done, nothing written yet: what ``_Decoder.finish`` reports."""

    decoded: object
    image_bytes: bytes
    notes: list
    coding: float  # seconds of the decoding alone
    seconds: float  # seconds of all the work so far (decoding, writing the image file's bytes)


@dataclass
class _Decoder:
    """``work`` for run_batch: decode one file, write its image, report it and add it to the totals.

    Small images of a batch may be computed on lanes (``batch.py``): each lane thread has,
    for each model, a codec of its own whose transforms run on that one thread."""

    codecs: _Codecs
    default_fmt: str  # the image format of outputs without an extension to follow (stdout)
    verbose: int
    outputs: Outputs
    reporter: Reporter
    totals: Totals
    lane_codecs: threading.local = field(default_factory=threading.local)

    def __call__(self, name: str, data: bytes, target: str) -> None:
        with self.reporter.ticking(f"decoding {display(name)}"):
            done = self.compute(name, data, target, lane=False)
        self.finish(name, data, target, done)

    def lanes(self) -> int:
        """Several files at once where their codecs will run ONNX Runtime (torch's threads are the process's)."""
        from ..engine import chosen, threads_here
        from ..onnxrt import available

        if self.codecs.fixed is not None:
            return threads_here() if self.codecs.fixed.has_lanes else 1
        return threads_here() if chosen() != "torch" and available() else 1

    def fits_lane(self, name: str, data: bytes) -> bool:
        from ..bitstream import ContainerError, read_header

        try:
            header = read_header(data)
        except ContainerError:
            return False  # the one-at-a-time path says what is wrong
        return header.width * header.height <= LANE_PIXELS

    def compute(self, name: str, data: bytes, target: str, lane: bool = True) -> _Decoded:
        from ..codec import DecodeError
        from ..images import encode_picture, format_for

        started = time.perf_counter()
        if not data:
            raise Failure(display(name), "empty file")
        codec = self.codecs.for_file(name, data)
        if lane and codec.has_lanes:
            codec = self._lane_codec(codec)
        coding = time.perf_counter()
        try:
            decoded = codec.decode(data)
        except DecodeError as exc:
            raise Failure(display(name), _not_aec_reason(data, str(exc))) from None
        coding = time.perf_counter() - coding
        fmt_out = self.default_fmt if target == "-" else format_for(Path(target).suffix)
        image_bytes, notes = encode_picture(decoded.picture, fmt_out)
        if fmt_out == "GIF":
            notes.append("GIF holds at most 256 colours: the image was reduced to a palette (use PNG for the exact pixels)")
        return _Decoded(decoded, image_bytes, notes, coding, time.perf_counter() - started)

    def finish(self, name: str, data: bytes, target: str, done: _Decoded) -> None:
        started = time.perf_counter()
        for note in done.notes:
            self.reporter.warn(name, note)
        self.outputs.write(name, target, done.image_bytes)
        seconds = done.seconds + time.perf_counter() - started
        decoded = done.decoded
        record = _record(name, data, target, decoded, done.image_bytes, seconds)
        record["coding_seconds"] = round(done.coding, 4)
        if self.verbose:
            record["timings"] = {k: round(v, 5) for k, v in decoded.timings.items()}
        self.reporter.report(record, _line(record, decoded.header, done.coding))
        self.reporter.detail(timings_line(decoded.timings))
        self.totals.add(len(data), len(done.image_bytes), record["bpp"])

    def _lane_codec(self, codec):
        """This lane thread's codec for ``codec``'s model."""
        mine = self.lane_codecs.__dict__.setdefault("by_codec", {})
        if id(codec) not in mine:
            mine[id(codec)] = codec.lane()
        return mine[id(codec)]


def _record(name: str, data: bytes, target: str, decoded, image_bytes: bytes, seconds: float) -> dict:
    from ..metrics import bpp, ratio
    from ..quality import quality_value

    h = decoded.header
    n = len(data)
    return {
        "input": display(name),
        "output": shown_output(target),
        "width": h.width,
        "height": h.height,
        "channels": h.channels,
        "quality": quality_value(h.hundredths),
        "bytes": n,
        "bpp": round(bpp(n, h.width, h.height), 5),
        "ratio": round(ratio(h.width * h.height * h.channels, n), 3),
        "output_bytes": len(image_bytes),
        "output_mode": _written_mode(image_bytes),
        "psnr": None,
        "seconds": round(seconds, 4),
        "model_id": h.model_id,
    }


def _line(record: dict, h, coding: float) -> str:
    """One decoded file, as a person reads it; the time is the decoding alone."""
    from ..quality import format_quality

    return (
        f"{record['input']} -> {record['output']}: {h.width}x{h.height} {record['output_mode']}, {record['bytes']:,} bytes, "
        f"{record['bpp']:.3f} bpp, ratio {record['ratio']:.1f}:1, q{format_quality(h.hundredths)}, {coding:.2f} s decoding"
    )


def _not_aec_reason(data: bytes, reason: str) -> str:
    """A decode error; for a file that is not .aec at all, say what it is instead."""
    from ..sniff import describe, is_image

    kind = describe(data[:64]) if data[:4] != MAGIC else None
    if kind is None:
        return reason
    return f"{kind}, not an aecompress file" + (" (compress it with `aecompress encode`)" if is_image(kind) else "")


def _written_mode(image_bytes: bytes) -> str:
    """The mode of the image file as written (alpha dropped for JPEG, a palette for GIF), read back from its header."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(image_bytes)) as im:
        return im.mode
