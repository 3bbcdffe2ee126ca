"""What the commands say: the per-file reporter (lines or JSON Lines), number formatting, summary lines."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
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

    def ticking(self, label: str) -> Ticker:
        """``with reporter.ticking("encoding x.png"):`` around one file's long work (see ``Ticker``)."""
        return Ticker(self, label)


TICKER_DELAY = 2.0  # seconds of work on one file before a terminal shows that it goes on


class Ticker:
    """On a terminal, one file's work that has taken over TICKER_DELAY seconds: its label, a spinner and the seconds.

    Nothing for quick files, nor when stderr is not a terminal, nor with -s.  Beside a batch's
    progress bar it is the bar's postfix; alone, a line redrawn in place.  Cleared when the
    work ends, before the file's report.
    """

    FRAMES = "|/-\\"

    def __init__(self, reporter: Reporter, label: str):
        self.reporter, self.label = reporter, label
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.shown = False
        self.started = time.monotonic()

    def __enter__(self) -> Ticker:
        if not self.reporter.quiet and sys.stderr.isatty():
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()
            if self.shown:
                self._show("")

    def _run(self) -> None:
        frame = 0
        while not self.stop.wait(TICKER_DELAY if frame == 0 else 0.25):
            self._show(f"{self.label} {self.FRAMES[frame % len(self.FRAMES)]} {time.monotonic() - self.started:.0f} s")
            frame += 1

    def _show(self, text: str) -> None:
        bar = self.reporter.bar
        if not bar.disable:
            bar.set_postfix_str(text)
        else:
            sys.stderr.write(f"\r{text}\x1b[K")
            sys.stderr.flush()
        self.shown = True


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

    def summary(self, verb: str, count: int) -> str:
        """'N of M files VERB: … bytes in, … bytes out, mean … bpp' ('0 of M files VERB' when every file failed)."""
        if not self.files:
            return f"0 of {count} files {verb}"
        return (
            f"{self.files} of {count} files {verb}: {self.bytes_in:,} bytes in, {self.bytes_out:,} bytes out, "
            f"mean {self.bpp / self.files:.3f} bpp"
        )

    def mean_psnr(self) -> str:
        return f"{self.psnr / self.psnr_n:.2f} dB" if self.psnr_n else "-"
