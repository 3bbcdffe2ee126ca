"""What the commands say: the per-file reporter (lines or JSON Lines), number formatting, summary lines."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass

from tqdm import tqdm

from .app import stderr, warning_line
from .io import display


def fmt_psnr(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.2f} dB"


def json_number(value: float | None, digits: int = 4):
    if value is None or math.isinf(value) or math.isnan(value):
        return None
    return round(value, digits)


def shown_output(target: str) -> str:
    """An output as reports name it."""
    return "<stdout>" if target == "-" else target


def timings_line(timings: dict[str, float]) -> str:
    """The stages of one file's work in milliseconds (-v)."""
    return "  " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timings.items())


class Reporter:
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
            self.bar.write(warning_line(f"{display(name)}: {message}"), file=sys.stderr)

    def error(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def detail(self, line: str) -> None:
        if self.verbose and not self.quiet:
            self.bar.write(line, file=sys.stderr)

    def close(self, summary: str | None) -> None:
        self.bar.close()
        if summary and not self.quiet and self.count > 1:
            stderr(summary)


@dataclass
class Totals:
    """What a batch of encodes or decodes added up to, for its summary line."""

    files: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bpp: float = 0.0
    psnr: float = 0.0
    psnr_n: int = 0
    missed: int = 0  # files that missed their --target-*

    def add(self, bytes_in: int, bytes_out: int, bpp: float, psnr: float | None = None) -> None:
        self.files += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self.bpp += bpp
        if psnr is not None and not math.isinf(psnr):
            self.psnr += psnr
            self.psnr_n += 1

    def summary(self, verb: str, count: int) -> str | None:
        """'N of M files VERB: … bytes in, … bytes out, mean … bpp' (None when no file was done)."""
        if not self.files:
            return None
        return (
            f"{self.files} of {count} files {verb}: {self.bytes_in:,} bytes in, {self.bytes_out:,} bytes out, "
            f"mean {self.bpp / self.files:.3f} bpp"
        )

    def mean_psnr(self) -> str:
        return f"{self.psnr / self.psnr_n:.2f} dB" if self.psnr_n else "-"
