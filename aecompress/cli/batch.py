"""The batch runner of `encode`, `decode` and `score`: every input in turn, or small images one per core.

Each input is read, its output checked, then worked on; a failure is one line and the
batch goes on.  A small image on a 2-core machine uses its second core poorly (the
transforms of a Kodak image scale 1.3× from one thread to two, the coding around them not
at all), so where the work allows it, images up to ``LANE_PIXELS`` are coded several at
once, one per core, each on one thread (12 Kodak images encoded and decoded: 1.5× faster).
Reports, outputs and failures still come in input order, and a larger image waits for
the lanes to empty, then runs alone on every core.
"""

from __future__ import annotations

import sys
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from .app import CliError, Failure, debugging, fail_line, first_line, stderr
from .io import Inputs, Outputs, display, read_input

if TYPE_CHECKING:
    from .report import Reporter

LANE_PIXELS = 4_000_000  # images up to this many pixels may share the machine with others of the batch


class Work(Protocol):
    """One input's work: ``work(name, data, target)`` does all of it, in order."""

    def __call__(self, name: str, data: bytes, target: str) -> None: ...


class LaneWork(Work, Protocol):
    """Work that can also be split: ``compute`` on a lane's thread (no output, no report), ``finish`` in order."""

    def lanes(self) -> int:
        """How many inputs may be computed at once (1: one at a time)."""

    def fits_lane(self, name: str, data: bytes) -> bool:
        """Whether this input is small enough to share the machine."""

    def compute(self, name: str, data: bytes, target: str) -> object: ...

    def finish(self, name: str, data: bytes, target: str, computed: object) -> None: ...


def run_batch(inputs: Inputs | tuple[str, ...], outputs: Outputs, reporter: Reporter, work: Work) -> int:
    """Apply ``work`` to each input; keep going after failures (and after folders that held none).  The exit status."""
    status = 0
    if isinstance(inputs, Inputs):
        for line in inputs.errors:
            reporter.error(line)
            status = 1
        inputs = tuple(inputs.files)
    lanes = work.lanes() if len(inputs) > 1 and hasattr(work, "lanes") else 1
    if lanes > 1:
        return _in_lanes(inputs, outputs, reporter, work, lanes) | status
    for name in inputs:
        status |= _guarded(reporter, name, lambda name=name: work(name, *_start(outputs, name)))
        reporter.bar.update(1)
    return status


def _start(outputs: Outputs, name: str) -> tuple[bytes, str]:
    """The input's bytes and its output, checked before any work: a re-run batch wastes no time."""
    data = read_input(name)
    target = outputs.target(name)
    outputs.check(name, target)
    return data, target


def _in_lanes(inputs: tuple[str, ...], outputs: Outputs, reporter: Reporter, work: LaneWork, lanes: int) -> int:
    from ..engine import one_thread_here

    status = 0
    pending: deque[tuple[str, Callable[[], None]]] = deque()  # started inputs, oldest first: what finishes each

    def finish_oldest() -> None:
        nonlocal status
        name, finish = pending.popleft()
        status |= _guarded(reporter, name, finish)
        reporter.bar.update(1)

    with ThreadPoolExecutor(lanes, thread_name_prefix="aecompress-lane", initializer=one_thread_here) as pool:
        for name in inputs:
            try:
                data, target = _start(outputs, name)
            except Exception as exc:  # said in its turn, after the inputs before it
                pending.append((name, _raiser(exc)))
                continue
            if work.fits_lane(name, data):
                computing = pool.submit(work.compute, name, data, target)
                pending.append((name, lambda n=name, d=data, t=target, c=computing: work.finish(n, d, t, c.result())))
            else:  # alone, on every core, once the lanes are empty
                pending.append((name, lambda n=name, d=data, t=target: work(n, d, t)))
                while pending:
                    finish_oldest()
            while len(pending) > lanes:  # one more than the lanes: the next is read while the oldest is written
                finish_oldest()
        while pending:
            finish_oldest()
    return status


def _raiser(exc: Exception) -> Callable[[], None]:
    def again() -> None:
        raise exc

    return again


def _guarded(reporter: Reporter, name: str, fn: Callable[[], object]) -> int:
    """Run one input's step; a failure becomes its one line (status 1), Ctrl-C ends the batch (130)."""
    try:
        fn()
        return 0
    except Failure as exc:
        if debugging():
            traceback.print_exc()
        reporter.error(exc.line)
    except CliError:
        raise  # the whole command fails, not this input
    except KeyboardInterrupt:
        reporter.close(None)
        stderr("aecompress: interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug or an unexpected library error: still one line
        if debugging():
            traceback.print_exc()
        reporter.error(fail_line(display(name), f"{type(exc).__name__}: {first_line(exc)}"))
    return 1
