"""Rate control: the quality on the model's grid that meets a size, bpp or PSNR target.

The analysis transform runs once per image (a quality's gain is applied after it);
each candidate quality then costs only the hyper-analysis, the integer hyper-synthesis
and the range coder, plus a synthesis when the target is a PSNR.  The search brackets
the target between two integer levels, then between two hundredths: a bracketing
search (interpolation, with bisection whenever a step fails to halve the bracket) that
ends on two neighbouring grid points, one meeting the target and one not.  Where file
size and PSNR grow with the quality, that is the setting a sweep of the whole grid would
pick.  They grow on average only: from one hundredth to the next both fall now and then,
so a sweep can find a marginally better setting; ``benchmarks/ratecontrol.py --verify``
measures how often and by how much (BENCHMARKS.md).  Guaranteeing the sweep's answer
would mean coding every quality of the grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .codec import Analysis, Codec, Encoded
from .images import Picture
from .metrics import psnr
from .quality import STEPS, format_quality

KINDS = ("size", "bpp", "psnr")


@dataclass(frozen=True)
class Target:
    """What the user asked for: ``size`` (bytes, the file at most), ``bpp`` (at most) or ``psnr`` (dB, at least)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown target {self.kind!r}")
        if not math.isfinite(self.value) or self.value <= 0:
            raise ValueError(f"target {self.value!r} must be a positive number")

    @property
    def wants_psnr(self) -> bool:
        return self.kind == "psnr"

    def met(self, encoded: Encoded, quality_db: float | None, picture: Picture) -> bool:
        n = len(encoded.data)
        if self.kind == "size":
            return n <= self.value
        if self.kind == "bpp":
            return 8 * n <= self.value * picture.width * picture.height  # bpp = 8 × file bytes / pixels
        return quality_db is not None and quality_db >= self.value

    def to_json(self) -> dict:
        return {"kind": self.kind, "value": int(self.value) if self.kind == "size" else self.value}

    def describe(self) -> str:
        if self.kind == "size":
            return f"{int(self.value):,} bytes"
        return f"{self.value:g} bpp" if self.kind == "bpp" else f"{self.value:g} dB"


@dataclass
class Trial:
    """One candidate quality, coded."""

    hundredths: int
    encoded: Encoded
    psnr: float | None  # measured only for a PSNR target
    good: bool


@dataclass
class Choice:
    """The chosen setting: its file, whether it meets the target, and how many qualities were coded to find it."""

    hundredths: int
    encoded: Encoded
    met: bool
    tried: int


def choose(codec: Codec, picture: Picture, target: Target, reconstruct: bool = True, effort: int = 0) -> Choice:
    """Code ``picture`` at the best quality for ``target`` (see the module docstring).

    Size and bpp: a quality whose file is not over the target while the next hundredth's
    is (the largest such file, as sizes grow with the quality); when the lowest level's
    file is over it, the lowest level (the smallest file), with ``met`` false.  PSNR: a
    quality whose reconstruction reaches the target while the hundredth below does not
    (the smallest such file); when the top level falls short, the top level, ``met``
    false.  ``reconstruct``: leave the chosen file's exact reconstruction in
    ``encoded.reconstruction`` (always there for a PSNR target).

    With an encoder ``effort``, the latent is refined once, for the quality the plain
    search chose, and the search runs again on the refined latent: a refined latent
    suits its neighbouring qualities too, and one refinement costs far more than the
    few codings of a search.
    """
    analysis = codec.analyze(picture)
    if not effort:
        return _search(codec, analysis, target, reconstruct)
    plain = _search(codec, analysis, target, reconstruct=True)
    refined = _search(codec, codec.refine(analysis, format_quality(plain.hundredths), effort), target, reconstruct=True)
    choice = refined if _better(refined, plain, target, picture) else plain
    choice.tried = plain.tried + refined.tried
    if not reconstruct:
        choice.encoded.reconstruction = None
    return choice


def _better(a: Choice, b: Choice, target: Target, picture: Picture) -> bool:
    """Whether ``a`` serves the target better than ``b``: met first, then the better picture (size, bpp) or the smaller file (PSNR)."""
    if a.met != b.met:
        return a.met
    smaller = len(a.encoded.data) < len(b.encoded.data)
    sharper = psnr(picture.color, a.encoded.reconstruction.color) > psnr(picture.color, b.encoded.reconstruction.color)
    if not a.met:  # neither meets it: the closer one, as a plain search chooses
        return sharper if target.wants_psnr else smaller
    return smaller if target.wants_psnr else sharper


def _search(codec: Codec, analysis: Analysis, target: Target, reconstruct: bool) -> Choice:
    """The bracketing search of ``choose`` over the qualities of one analysis."""
    picture = analysis.picture
    grid = codec.grid()
    levels = [h for h in grid if h % STEPS == 0]
    if target.wants_psnr:  # "good" must hold on a prefix: order the qualities from the top down
        levels, grid = levels[::-1], grid[::-1]
    trials: dict[int, Trial] = {}
    kept: list[Trial] = []  # the latest good trial: the only one whose ŷ or pixels may still be needed

    def trial(hundredths: int) -> Trial:
        if hundredths in trials:
            return trials[hundredths]
        quality = format_quality(hundredths)  # exact: no float between the grid and the file
        if target.wants_psnr:
            encoded = codec.encode_analysis(analysis, quality)
            quality_db = psnr(picture.color, encoded.reconstruction.color)
        else:
            encoded = codec.encode_analysis(analysis, quality, reconstruct=False, keep_latent=reconstruct)
            quality_db = None
        t = Trial(hundredths, encoded, quality_db, target.met(encoded, quality_db, picture))
        trials[hundredths] = t
        if t.good:
            for old in kept:
                _drop_pixels(old)
            kept[:] = [t]
        elif hundredths != levels[0]:
            _drop_pixels(t)  # a failing candidate is chosen only when nothing passes, and then it is levels[0]
        return t

    guess = _guesser(target, trial)
    k = last_good(levels, lambda h: trial(h).good, guess)
    if k < 0:
        chosen, met = levels[0], False  # smallest file (size, bpp) or best picture (PSNR): the closest
    elif k == len(levels) - 1:
        chosen, met = levels[-1], True
    else:
        lo, hi = grid.index(levels[k]), grid.index(levels[k + 1])
        between = grid[lo : hi + 1]
        chosen, met = between[last_good(between, lambda h: trial(h).good, guess, ends_known=True)], True
    encoded = trials[chosen].encoded
    if reconstruct and encoded.reconstruction is None:
        encoded.reconstruction = encoded.synthesize()
    encoded.synthesize = None
    return Choice(chosen, encoded, met, len(trials))


def last_good(
    points: Sequence[int], good: Callable[[int], bool], guess: Callable[[int, int], float] | None = None, ends_known: bool = False
) -> int:
    """Index of the last point meeting ``good``, for a ``good`` true on a prefix of ``points``; −1 if none is.

    Ends always between a good point and a bad one (or at an end of ``points``).  With
    ``ends_known``, the first point is known to pass and the last to fail.  ``guess(a,
    b)`` may say where between points a (good) and b (bad) the boundary lies, as a
    fraction of the way: the point just before it is probed, then its neighbour on the
    other side of the boundary (a good guess ends the search in two probes).  A round
    that does not halve the bracket is followed by a bisection, so the search takes at
    most about twice bisection's probes.
    """
    lo, hi = (0, len(points) - 1) if ends_known else (-1, len(points))
    step = "guess" if ends_known and guess is not None and len(points) > 2 else "bisect"
    start, passed = hi - lo, True
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if step == "neighbour":
            mid = lo + 1 if passed else hi - 1
        elif step == "guess":
            start = hi - lo
            fraction = guess(points[lo], points[hi])
            if math.isfinite(fraction):
                mid = min(hi - 1, max(lo + 1, math.floor(lo + fraction * (hi - lo))))
        passed = good(points[mid])
        lo, hi = (mid, hi) if passed else (lo, mid)
        if guess is None or lo < 0 or hi >= len(points):
            step = "bisect"  # an end still unknown: nothing to interpolate from
        elif step == "guess":
            step = "neighbour"
        elif step == "neighbour":
            step = "bisect" if hi - lo > start // 2 else "guess"
        else:
            step = "guess"
    return lo


def _guesser(target: Target, trial: Callable[[int], Trial]) -> Callable[[int, int], float]:
    """Where between two coded qualities the target should fall: log-size (or PSNR) taken as linear in the quality."""

    def measure(t: Trial) -> float:
        if target.wants_psnr:
            return t.psnr if t.psnr is not None else math.nan
        return math.log(len(t.encoded.data))

    def guess(a: int, b: int) -> float:
        ta, tb = trial(a), trial(b)
        if target.kind == "psnr":
            wanted = target.value
        else:
            budget = target.value if target.kind == "size" else target.value * ta.encoded.header.pixels / 8
            wanted = math.log(max(budget, 1.0))
        ma, mb = measure(ta), measure(tb)
        if not (math.isfinite(ma) and math.isfinite(mb)) or ma == mb:
            return math.nan
        return (wanted - ma) / (mb - ma)

    return guess


def _drop_pixels(t: Trial) -> None:
    """Free what only a chosen candidate needs: ŷ (kept to reconstruct it) and its pixels."""
    t.encoded.synthesize = None
    t.encoded.reconstruction = None
