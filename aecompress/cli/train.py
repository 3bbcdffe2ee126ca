"""``aecompress train``: a model from a folder of images; its inputs and outputs checked before the run."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from .app import EXIT_USAGE, CliError, main, stderr, warning_line
from .io import load_model, no_images, not_a_model_reason
from .options import device_option, parse_downscale, parse_lambdas, parse_size


def _duration(text: str, option: str) -> float:
    """A duration with its unit (the library's rule): a bare '2' is refused, not silently read as two seconds."""
    from ..training.config import parse_duration

    try:
        return parse_duration(text, units_required=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _read_recipe(ctx: click.Context, param: click.Parameter, path: str | None) -> str | None:
    """--recipe FILE: its options become the defaults of this run's, so an option on the command line wins."""
    if path is None:
        return None
    from ..training.config import read_recipe

    try:
        recipe = read_recipe(path)
    except FileNotFoundError:
        raise CliError(f"{path}: no such recipe file", EXIT_USAGE) from None
    except (OSError, ValueError) as exc:
        raise CliError(str(exc) if isinstance(exc, ValueError) else f"{path}: {exc.strerror or exc}", EXIT_USAGE) from None
    for key, value in recipe.items():
        _check_recipe_value(ctx, path, key, value)
    ctx.default_map = {**(ctx.default_map or {}), **{_option_name(k): v for k, v in recipe.items()}}
    return path


def _option_name(key: str) -> str:
    """The parameter of `train` a recipe key sets: 'patch-size' → 'patch_size'."""
    return "lambdas" if key == "lambda" else key.replace("-", "_")


def _preset_name(name: str) -> str:
    from ..presets import PRESETS

    if name not in PRESETS:
        raise click.BadParameter(f"not a preset (choose from {', '.join(PRESETS)})")
    return name


# The recipe keys whose text the command parses itself, after click's conversion: checked the same way up front.
_RECIPE_PARSERS = {
    "preset": _preset_name,
    "time-budget": lambda text: _duration(text, "--time-budget"),
    "checkpoint-every": lambda text: _duration(text, "--checkpoint-every"),
    "lambda": parse_lambdas,
    "downscale": parse_downscale,
    "cache-size": parse_size,
}


def _check_recipe_value(ctx: click.Context, path: str, key: str, value: object) -> None:
    """One value of a recipe checked as its option would be, so that a bad one is named with its file and key.

    Checked even when the command line overrides it: a recipe is a file to keep and reuse.
    """
    param = next(p for p in ctx.command.params if p.name == _option_name(key))
    try:
        converted = param.type_cast_value(ctx, value)
        if key in _RECIPE_PARSERS:
            _RECIPE_PARSERS[key](converted)
    except (click.BadParameter, CliError) as exc:  # CliError: a type that fails in the command's own words (--device)
        raise CliError(f"{path}: {key} = {value!r}: {_reason(exc.message, key, value)}", EXIT_USAGE) from None


def _reason(message: str, key: str, value: object) -> str:
    """An option's error message without the value it starts with, which the recipe's line already shows."""
    for prefix in (f"{str(value)!r}: ", f"--{key} {value}: "):
        message = message.removeprefix(prefix)
    return message


def _check_train_outputs(output: str, checkpoint: str | None, resume: str | None, force: bool) -> None:
    """The model and its checkpoint are checked now, not after hours of training.

    A run continued with ``--resume`` of its own checkpoint may replace that
    checkpoint and the model it wrote when interrupted; anything else needs -f.
    """
    from ..outputs import OutputError, OutputExistsError, check_output_path

    model = Path(output)
    ckpt = Path(checkpoint) if checkpoint else model.with_name(model.name + ".ckpt")
    if ckpt.resolve() == model.resolve():
        raise click.UsageError("--checkpoint must be another file than -o MODEL")
    if resume is not None and not Path(resume).is_file():
        raise CliError(f"{resume}: no such checkpoint" + (" (a directory)" if Path(resume).is_dir() else ""))
    continuing = resume is not None and ckpt.exists() and Path(resume).resolve() == ckpt.resolve()
    for path in (model, ckpt):
        try:
            check_output_path(path, force or continuing)
        except OutputExistsError as exc:
            raise CliError(_exists_reason(path, model, ckpt)) from exc
        except OutputError as exc:
            raise CliError(str(exc)) from exc


def _check_train_inputs(resume: str | None, init: str | None, preset: str | None) -> None:
    """A bad --preset, --resume or --init is said before the images load; a wrong file is named by what it is."""
    from ..presets import PRESETS
    from ..sniff import describe, head, training_checkpoint

    if preset is not None and not resume and preset not in PRESETS:
        raise CliError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if init is not None:
        load_model(init)  # cached: the run itself then loads it for free
    if resume is None or training_checkpoint(resume) is not None:
        return
    first = head(resume)
    if first[8:9] == b"{":  # safetensors: an 8-byte header length, then JSON
        raise CliError(f"{resume}: a model file, not a training checkpoint (fine-tune it with --init {resume})")
    raise CliError(f"{resume}: {describe(first) or 'not a known kind of file'}, not a training checkpoint")


def _exists_reason(path: Path, model: Path, ckpt: Path) -> str:
    """Why an existing model or checkpoint is kept, and the ways forward."""
    if path == ckpt:
        return f"{ckpt}: already exists: the checkpoint of an earlier run (continue it with --resume {ckpt}, or use -f to start afresh)"
    if ckpt.exists():
        return f"{model}: already exists (use -f to overwrite it, or --resume {ckpt} to continue its run)"
    return f"{model}: already exists (use -f to overwrite it, or --init {model} -o OTHER to fine-tune it)"


def _count_images(data_dir: str) -> int:
    """Image files of the training folder, counted before the run (the data loader itself is data.py's)."""
    from ..images import NoImagesError, find_images

    try:
        count = len(find_images(Path(data_dir)))
    except NoImagesError as exc:
        raise CliError(str(exc)) from exc
    if count == 0:
        raise CliError(no_images(data_dir))
    return count


def _training_summary(path: Path) -> dict:
    """The training summary stored in a model file's metadata ({} if unreadable)."""
    from ..store import read_metadata

    try:
        summary = read_metadata(path).get("training")
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


FEW_STEPS = 100


def _after_training(path: Path, budget: float | None, steps: int | None, resume_hint: str) -> None:
    """What the user should know about a run that just ended: how to continue it, what it measures, whether it barely trained."""
    from ..training.heldout import far_from_usable, summary_line

    summary = _training_summary(path)
    if summary.get("interrupted"):
        stderr(f"run interrupted: continue it with {resume_hint}")
        return
    line, verdict = summary_line(summary), far_from_usable(summary)
    if line:
        stderr(line)
    if verdict:
        stderr(warning_line(verdict))
    done = summary.get("steps")
    if not budget or done is None or done >= FEW_STEPS or (steps and done >= steps):
        return
    stderr(
        warning_line(
            f"--time-budget {budget:g}s allowed only {done} training step(s): this model is barely trained "
            "(a useful one needs thousands of steps, e.g. --time-budget 1h)"
        )
    )


def _run_training(cfg, init: str | None) -> str:
    """Train; an error the run can meet ends in one line.  Returns the model's path."""
    import warnings

    from ..images import NoImagesError
    from ..modelfile import ModelFileError
    from ..training.config import TrainingError
    from ..training.loop import train as run_training

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return run_training(cfg, log=stderr, warn=lambda message: stderr(warning_line(message)))
    except ModelFileError as exc:
        raise CliError(not_a_model_reason(init, str(exc))) from exc
    except (TrainingError, NoImagesError) as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"{exc.filename or ''}: {exc.strerror or exc}".strip(": ")) from exc


@main.command()
@click.argument("data_dir", metavar="DIR", type=click.Path(file_okay=True, dir_okay=True))
@click.option("-o", "--output", required=True, metavar="MODEL", help="Model file to write (.safetensors).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing MODEL and its checkpoint.")
@click.option(
    "--recipe",
    metavar="FILE",
    is_eager=True,
    expose_value=False,
    callback=_read_recipe,
    help="A TOML file of this command's options, e.g. recipes/default.toml (the shipped model's last stage); "
    "an option given on the command line overrides the file's.",
)
@click.option(
    "--preset",
    help="Architecture: small-hp (default: hyperprior, CPU-sized), medium-hp (1.5x its channels), base-hp (GPU), "
    "tiny-hp (tests); small-cb, medium-cb, tiny-cb (the same with a checkerboard context); small-cc, medium-cc, "
    "tiny-cc (that plus a channel-wise context); or small/base/tiny "
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
    "--warmup",
    type=click.IntRange(0),
    metavar="STEPS",
    help="Steps of linear warm-up to the peak --lr, at most a tenth of --steps  [default: 200]",
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
@device_option
@click.option("--resume", metavar="CKPT", help="Continue from a checkpoint (recipe taken from it).")
@click.option("--init", metavar="MODEL", help="Start from a model's weights ('default' for the shipped one): fine-tuning.")
@click.option("--checkpoint", metavar="CKPT", help="Checkpoint path (default: MODEL.ckpt).")
@click.option("--checkpoint-every", default="5m", show_default=True, metavar="DURATION", help="Time between checkpoints.")
@click.option(
    "--ema",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    metavar="DECAY",
    help="Write an exponential moving average of the weights (e.g. 0.999) as the model, not the last step's; "
    "the last step's weights stay in the checkpoint.",
)
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
def train(data_dir, output, force, time_budget, checkpoint_every, lambdas, downscale, cache_size, **options):
    """Train a model on the images in DIR (searched recursively).

    A progress bar shows loss, bpp and PSNR (plain lines when stderr is a file or a
    pipe); checkpoints are written every few minutes; Ctrl-C saves a checkpoint and
    the model, then exits 0 and prints the command that continues the run (DIR, -o and
    --resume MODEL.ckpt: the run goes on to the --steps or --time-budget it was started
    with).  A finished run removes its checkpoint and ends with a summary line: its
    steps, its time, and the model's bpp and PSNR at the middle quality on held-out
    patches (on training patches for a folder of under 20 images, and it says so),
    with a warning if the model is far from usable.  The model file has its entropy
    tables built in: it is ready for `encode`.
    """
    from ..training.config import resolve

    budget = _duration(time_budget, "--time-budget") if time_budget else None
    every = _duration(checkpoint_every, "--checkpoint-every")
    if options["resume"] and click.get_current_context().get_parameter_source("init") == ParameterSource.DEFAULT_MAP:
        options["init"] = None  # a resumed run keeps the init model its checkpoint names, not a recipe's
    steps, resume, init, checkpoint = options["steps"], options["resume"], options["init"], options["checkpoint"]
    if not steps and not budget and not resume:
        raise click.UsageError("give --steps or --time-budget (or both)")
    if resume and init:
        raise click.UsageError("--resume and --init exclude each other")
    init_training = load_model(init).metadata.get("training") if init and options["patch_size"] is None else None
    cfg, chosen = resolve(
        init_training,
        data=data_dir,
        output=output,
        time_budget=budget,
        checkpoint_every=every,
        lambdas=parse_lambdas(lambdas),
        downscale=parse_downscale(downscale),
        cache_bytes=parse_size(cache_size),
        **options,
    )
    _check_train_outputs(output, checkpoint, resume, force)
    _check_train_inputs(resume, init, options["preset"])
    count = _count_images(data_dir)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        if chosen:
            stderr(chosen)
        stderr(f"loading {count} image{'s' if count != 1 else ''} from {data_dir}…")
    path = _run_training(cfg, init)
    if main_rank:
        again = ["aecompress", "train", data_dir, "-o", output, "--resume", checkpoint or f"{output}.ckpt"]
        again += ["--checkpoint", checkpoint] if checkpoint else []  # the resumed run then writes the same checkpoint
        _after_training(Path(path), budget, steps, shlex.join(again))
        stderr(f"model written to {path}")
    _end_a_rank()


def _end_a_rank() -> None:
    """Under torchrun, end the process here, skipping the interpreter's teardown.

    torch keeps the process group of a DDP module alive after ``destroy_process_group``, and
    gloo's threads, still running while the process exits, now and then abort it (SIGABRT:
    the model and checkpoint are written, but torchrun reports a failure). Everything a rank
    writes is closed by now: only the standard streams need flushing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(0)
