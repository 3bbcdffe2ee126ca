"""What a run is asked to do: ``TrainConfig``, the defaults that depend on each other, durations, recipe files.

The policy of a run's recipe lives here, stated once, for the command line, the demo and
the tests alike: the fine-tuning learning rate, the patch shape kept from an ``--init``
model, the demo's tiny recipe.  No torch: the command line reads a recipe file and checks
its options before torch loads.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE_BYTES = 2 << 30  # decoded training pixels kept in memory (uint8)
DEFAULT_PRESET = "small-hp"
FINE_TUNING_LR = 3e-4  # the peak learning rate with --init: a trained model needs smaller steps than a fresh one


@dataclass
class TrainConfig:
    """Everything a run needs; recorded in checkpoints and in the model file."""

    data: str
    output: str
    preset: str | None = None  # None: the init model's architecture, else DEFAULT_PRESET
    lambdas: tuple[float, ...] | None = None  # None: the preset's ladder
    steps: int | None = None
    time_budget: float | None = None  # seconds
    batch_size: int = 16
    patch_size: int = 128
    lr: float = 1e-3
    warmup: int = 200
    downscale: tuple[float, float] = (1.0, 1.0)
    seed: int = 0
    device: str = "auto"
    checkpoint: str | None = None  # default: OUTPUT.ckpt
    checkpoint_every: float = 300.0  # seconds
    resume: str | None = None
    init: str | None = None
    threads: int | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES  # decoded images kept in memory; larger folders are streamed
    precision: str = "auto"  # auto (bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere), bf16, fp32
    keep_checkpoint: bool = False  # a finished run removes its checkpoint unless asked to keep it
    ema: float | None = None  # decay of an exponential moving average of the weights, written as the model; None: off


class TrainingError(RuntimeError):
    """A run that cannot start (bad data, bad checkpoint, bad device)."""


# `aecompress demo`'s model, and the tests' tiny models: trains in a few seconds on one CPU core.
TINY_RECIPE = {"preset": "tiny", "batch_size": 8, "patch_size": 64, "lr": 3e-3, "warmup": 20}


def as_options(recipe: dict) -> list[str]:
    """A recipe of ``TrainConfig`` fields as ``aecompress train`` options: ``{"batch_size": 8}`` → ``--batch-size 8``."""
    options: list[str] = []
    for field, value in recipe.items():
        name = "lambda" if field == "lambdas" else field.replace("_", "-")
        options += [f"--{name}", ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    return options


def resolve(init_training: dict | None = None, **given) -> tuple[TrainConfig, str | None]:
    """The run's effective recipe from the options given (None: not given), and a line when --init chose the patches.

    ``init_training`` is the training summary of the --init model.  With --init the peak
    learning rate defaults to ``FINE_TUNING_LR``, and the patch shape follows ``patch_shape``.
    """
    fields = {name: value for name, value in given.items() if value is not None}
    init = fields.get("init")
    fields.setdefault("lr", FINE_TUNING_LR if init else TrainConfig.lr)
    patch, batch, note = patch_shape(init, init_training, fields.pop("patch_size", None), fields.pop("batch_size", None))
    return TrainConfig(patch_size=patch, batch_size=batch, **fields), note


def patch_shape(
    init: str | None, init_training: dict | None, patch_size: int | None, batch_size: int | None
) -> tuple[int, int, str | None]:
    """Patch side and count per step, and a line saying so when --init chose them.

    A fine-tuning run keeps the patch size its model was trained on when that is larger
    than the default, at the default's pixels per step: 128² patches re-teach a model
    trained on 256² ones patch borders (fine-tuning the default: 2.4% fewer bits at 128²,
    4.0% at 256², BENCHMARKS.md).
    """
    default_patch, default_batch = TrainConfig.patch_size, TrainConfig.batch_size
    if patch_size is not None or init is None:
        return patch_size or default_patch, batch_size or default_batch, None
    trained = init_training.get("patch_size") if isinstance(init_training, dict) else None
    if not isinstance(trained, int) or trained <= default_patch:
        return default_patch, batch_size or default_batch, None
    batch = batch_size or max(1, default_batch * default_patch**2 // trained**2)
    return trained, batch, f"{batch} patches of {trained}² per step: {init} was trained on {trained}² patches (--patch-size to change it)"


def parse_duration(text: str, units_required: bool = False) -> float:
    """'90', '90s', '30m', '2h', '1h30m' → seconds; ``ValueError`` with the reason.

    ``units_required`` (the command line's durations): a bare '2' is refused, not silently
    read as two seconds, and so is a number without its unit at the end ('1h30').
    """
    text = text.strip().lower()
    if units_required and text.replace(".", "", 1).isdigit():
        raise ValueError(f"{text!r} needs a unit: {text}s, {text}m or {text}h?")
    if units_required and text[-1:].isdigit():
        raise ValueError(f"{text!r}: every number needs its unit (s, m or h), e.g. {text}m")
    total, number = 0.0, ""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
        else:
            raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h)")
    if number:
        total += float(number)
    if total <= 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return total


# A recipe file's keys: the options of `aecompress train` that describe a run (not its paths), and the TOML types each takes.
_TEXT, _INTEGER, _NUMBER, _FLAG = (str,), (int,), (int, float), (bool,)
RECIPE_KEYS = {
    "preset": _TEXT,
    "init": _TEXT,
    "steps": _INTEGER,
    "time-budget": _TEXT,
    "batch-size": _INTEGER,
    "patch-size": _INTEGER,
    "lr": _NUMBER,
    "warmup": _INTEGER,
    "lambda": (*_NUMBER, str, list),
    "downscale": (*_NUMBER, str),
    "seed": _INTEGER,
    "device": _TEXT,
    "precision": _TEXT,
    "threads": _INTEGER,
    "cache-size": (int, str),
    "checkpoint-every": _TEXT,
    "keep-checkpoint": _FLAG,
    "ema": _NUMBER,
}


def read_recipe(path: str | Path) -> dict[str, object]:
    """A recipe file's options, by their command-line names ('patch-size'), as the command line would spell them.

    TOML (tomllib, or tomli before Python 3.11).  ``ValueError``, one line, for a file that
    is not TOML, a key that is not a recipe option, or a value of the wrong kind; ``OSError``
    for a file that cannot be read.  Values are checked further as the options are.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    with open(path, "rb") as fh:
        try:
            recipe = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not a TOML recipe ({exc})") from None
    options: dict[str, object] = {}
    for key, value in recipe.items():
        if key not in RECIPE_KEYS:
            raise ValueError(f"{path}: unknown key {key!r} (a recipe sets {', '.join(RECIPE_KEYS)})")
        kinds = RECIPE_KEYS[key]
        if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
            raise ValueError(f"{path}: {key} = {value!r}: expected {' or '.join(_KIND_NAMES[k] for k in kinds)}")
        if isinstance(value, list):
            if not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise ValueError(f"{path}: {key} = {value!r}: expected a list of numbers")
            value = ",".join(map(str, value))
        options[key] = value
    return options


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list of numbers"}
