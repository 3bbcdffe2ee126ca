"""Quality values: the model's levels, and hundredths between them for hyperprior models.

A quality is kept as an integer number of hundredths (``537`` for 5.37), so that what a
user types is what a file records, exactly, with no float in between.  Integer levels
work with every model; a fraction needs a hyperprior model, whose entropy tables do not
depend on the gains (a factorized model has one set of tables per level).
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

STEPS = 100  # hundredths: the grid of qualities a file can record
# Encoder effort (-e): optimizer steps spent refining an image's latent at each level (aecompress.refine).
# 0 is the analysis transform alone.  Chosen by measurement: BENCHMARKS.md, "Encoder effort".
EFFORT_STEPS = (0, 25, 60, 150)
MAX_EFFORT = len(EFFORT_STEPS) - 1


def parse_quality(value: int | float | str) -> int:
    """``5`` / ``5.37`` / ``"5.37"`` → hundredths (``537``); ``ValueError`` off the grid (range: the caller's).

    Off-grid values (``5.375``) are refused rather than rounded: the file must record
    exactly the quality asked for, and a silent rounding would hide a typo.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quality")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, float) else Decimal(repr(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number (use e.g. 5 or 5.37)") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    hundredths = number * STEPS
    if hundredths != hundredths.to_integral_value():
        raise ValueError(f"quality {value}: at most two decimals (qualities are recorded in hundredths, e.g. 5.37)")
    return int(hundredths)


def fraction_of(hundredths: int) -> int:
    """Hundredths above the level, 0–99 (0 for an integer quality)."""
    return hundredths % STEPS


def quality_value(hundredths: int) -> int | float:
    """For JSON: an int for integer qualities (what a level is), a float with two decimals otherwise."""
    return hundredths // STEPS if hundredths % STEPS == 0 else round(hundredths / STEPS, 2)


def format_quality(hundredths: int) -> str:
    """``"5"``, ``"5.37"``, ``"5.5"``: how reports and ``info`` show a quality (and what parses back to it)."""
    level, fraction = divmod(hundredths, STEPS)
    return str(level) if fraction == 0 else f"{level}.{fraction:02d}".rstrip("0")


def interpolated_lambda(lambdas: tuple[float, ...], hundredths: int) -> float:
    """λ of a quality: a level's own, or geometric between two levels (as the gains are)."""
    level, fraction = divmod(hundredths, STEPS)
    if fraction == 0:
        return float(lambdas[level - 1])
    low, high = math.log(lambdas[level - 1]), math.log(lambdas[level])
    return math.exp(low + (high - low) * fraction / STEPS)
