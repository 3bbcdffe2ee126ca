"""The training loop: random patches, mixed qualities, rate–distortion loss, checkpoints.

``loss = λ·255²·MSE + bpp`` per sample, with each sample's quality level (and so
its λ and gain vector) drawn at random, so one model learns every quality.
Under ``torchrun`` the same loop runs with DistributedDataParallel.

``train`` runs four parts: ``setup`` builds the run (from a checkpoint, an init model or
afresh; its data; its network), ``run_steps`` trains until the stop condition or a signal,
``write_checkpoint`` keeps what a resumed run needs, and ``save`` writes the model with its
training summary and measures it on patches it did not train on.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..data import NoImagesError, PatchSampler, find_images
from ..model import AutoEncoder
from ..modelfile import save_model
from ..outputs import atomic_write
from ..presets import PRESETS, Preset
from . import hardware, heldout
from .config import DEFAULT_PRESET, TrainConfig, TrainingError
from .distributed import Distributed, wrap
from .progress import progress, smooth
from .stop import StopRequest

NAMED_AT_MOST = 20  # unreadable files named one by one; more are counted


@dataclass
class Run:
    """A run being trained: what ``setup`` builds, and what the steps, the checkpoints and the save share."""

    cfg: TrainConfig
    ddp: Distributed
    device: torch.device
    precision: str  # "bf16" or "fp32"
    preset: Preset
    lambdas: torch.Tensor  # the preset's λ ladder, on the device
    net: AutoEncoder
    optimizer: torch.optim.Optimizer
    sampler: PatchSampler
    images: int  # trained on, over every shard
    output: Path
    checkpoint: Path
    init_name: str | None  # recorded in the model; a resumed run keeps the original run's
    prior_stages: list[dict]  # the training history of the init model: a model trained in stages keeps its log
    log: Callable[[str], None]
    warn: Callable[[str], None]
    model: torch.nn.Module | None = None  # the net, or its DDP wrapper
    probe: tuple[torch.Tensor, int] | None = None  # the patches measured at the end, and the held-out images they come from
    step: int = 0
    elapsed_before: float = 0.0  # seconds trained before this process (a resumed run)
    started: float = 0.0
    stopped: float | None = None
    skipped_steps: int = 0
    ema: dict[str, float] = field(default_factory=dict)  # smoothed loss, MSE and bpp, for the progress line
    averaged: dict[str, torch.Tensor] | None = None  # the weights' moving average (--ema), on the main rank

    def elapsed(self) -> float:
        """Seconds trained, over every process that ran this run; frozen when the loop ends."""
        return self.elapsed_before + (self.stopped or time.monotonic()) - self.started


def train(cfg: TrainConfig, log: Callable[[str], None] = print, warn: Callable[[str], None] | None = None) -> Path:
    """Run training to ``cfg.steps`` / ``cfg.time_budget``; write the model; return its path.

    ``log`` receives the run's lines, ``warn`` its warnings (by default ``log``, prefixed "warning: ").
    """
    warn = warn or (lambda message: log(f"warning: {message}"))
    hardware.prepare(cfg.threads, warn)
    run = setup(cfg, log, warn)
    with StopRequest() as stop:
        forced = run_steps(run, stop)
        interrupted = forced or not run.ddp.all_agree(not stop.requested)  # one rank's Ctrl-C stops them all, at one step
        if interrupted and run.ddp.main:
            log("interrupted: saving checkpoint and model")
        write_checkpoint(run)
        _check_ranks(run, interrupted)
        if run.ddp.main:
            save(run, interrupted)
        if not interrupted:
            run.ddp.barrier()
        run.ddp.close()
    return run.output


def setup(cfg: TrainConfig, log: Callable[[str], None], warn: Callable[[str], None]) -> Run:
    """The run ``cfg`` asks for: its device and processes, recipe, data, network and optimizer (and state, resumed)."""
    device = hardware.pick_device(cfg.device)
    ddp = Distributed(device)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    output = Path(cfg.output)
    checkpoint = Path(cfg.checkpoint) if cfg.checkpoint else output.with_name(output.name + ".ckpt")
    state, init_model = None, None
    if cfg.resume:
        state, preset, init_name, prior_stages = _from_checkpoint(cfg)
    else:
        preset, init_model, prior_stages = _architecture(cfg)
        init_name = cfg.init
        if cfg.lambdas:
            preset = preset.with_lambdas(tuple(cfg.lambdas))
    if not cfg.steps and not cfg.time_budget:
        raise TrainingError("give --steps or --time-budget (or both)")
    precision = hardware.precision_of(cfg.precision, device)
    torch.manual_seed(cfg.seed + ddp.rank)
    random.seed(cfg.seed + ddp.rank)
    held, sampler, images = _data(cfg, ddp, log, warn)
    net = _network(preset, cfg.init, init_model, ddp.main, log)
    net = net.to(device).to(memory_format=torch.channels_last)  # faster convolutions on CPU
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    run = Run(
        cfg=cfg,
        ddp=ddp,
        device=device,
        precision=precision,
        preset=preset,
        lambdas=torch.tensor(preset.lambdas, device=device),
        net=net,
        optimizer=optimizer,
        sampler=sampler,
        images=images,
        output=output,
        checkpoint=checkpoint,
        init_name=init_name,
        prior_stages=prior_stages or [],
        log=log,
        warn=warn,
    )
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        run.step, run.elapsed_before = int(state["step"]), float(state["elapsed"])
        sampler.generator.manual_seed(cfg.seed + 1000 * ddp.rank + run.step)
    if cfg.ema and ddp.main:
        saved = state.get("averaged") if state is not None else None
        run.averaged = saved or {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}
    run.model = wrap(net) if ddp.world > 1 else net
    if ddp.main:
        run.probe = heldout.cut(held, sampler, tuple(cfg.downscale), cfg.cache_bytes)
    return run


def _from_checkpoint(cfg: TrainConfig) -> tuple[dict, Preset, str | None, list[dict] | None]:
    """A resumed run: the checkpoint's state, architecture, recipe (written into ``cfg``), init model and stages.

    The stop condition given now replaces the checkpoint's; none given, the run continues to the one it was started with.
    """
    try:
        state = torch.load(cfg.resume, map_location="cpu", weights_only=True)
        saved = state["config"]
    except FileNotFoundError:
        raise TrainingError(f"{cfg.resume}: no such checkpoint") from None
    except Exception as exc:
        raise TrainingError(f"{cfg.resume}: not a readable checkpoint ({str(exc).splitlines()[0][:100]})") from None
    preset = Preset.from_dict(state["preset"])
    if preset.name == "custom" and saved.get("preset") in PRESETS and PRESETS[saved["preset"]].N == preset.N:
        preset = replace(preset, name=saved["preset"])  # checkpoints from before names were kept
    for key in ("preset", "batch_size", "patch_size", "lr", "warmup", "downscale", "seed"):
        setattr(cfg, key, saved[key])  # a resumed run continues the same recipe
    cfg.ema = saved.get("ema")
    if not cfg.steps and not cfg.time_budget:
        cfg.steps, cfg.time_budget = saved.get("steps"), saved.get("time_budget")
    init_name = saved.get("init")
    prior_stages = state.get("prior_stages")
    if prior_stages is None and init_name:  # checkpoints from before stages were kept
        prior_stages = _prior_stages_of(init_name)
    return state, preset, init_name, prior_stages


def _architecture(cfg: TrainConfig):
    """A new run's preset (written into ``cfg``), its init model (or None), and that model's stages."""
    if cfg.preset is not None and cfg.preset not in PRESETS:
        raise TrainingError(f"unknown preset {cfg.preset!r} (choose from {', '.join(PRESETS)})")
    init_model, prior_stages = None, []
    if cfg.init:
        from ..codec import load_model  # knows "default"

        init_model = load_model(cfg.init)
        prior_stages = stages_of(init_model.metadata.get("training"))
        preset = init_model.net.preset
        if cfg.preset is not None:  # another architecture: copy what fits (e.g. the transforms)
            if len(PRESETS[cfg.preset].lambdas) == len(preset.lambdas):  # its gains were trained for its λ
                preset = PRESETS[cfg.preset].with_lambdas(preset.lambdas)
            else:
                preset = PRESETS[cfg.preset]
    else:
        preset = PRESETS[cfg.preset or DEFAULT_PRESET]
    cfg.preset = preset.name
    return preset, init_model, prior_stages


def _data(cfg: TrainConfig, ddp: Distributed, log: Callable[[str], None], warn: Callable[[str], None]):
    """The held-out images, the sampler of this rank's training images, and the training images of all ranks."""
    root = Path(cfg.data)
    held, paths = heldout.split(find_images(root), root)
    if held and ddp.main:
        log(f"held out {len(held)} of {len(held) + len(paths)} images: the run ends by measuring the model on patches of them")
    sharded = ddp.world > 1 and len(paths) >= ddp.world  # the same decision on every rank
    if sharded:
        paths = paths[ddp.rank :: ddp.world]  # each process decodes and samples its own shard
    try:
        sampler = PatchSampler(
            paths,
            cfg.patch_size,
            tuple(cfg.downscale),
            seed=cfg.seed + 1000 * ddp.rank,
            cache_bytes=cfg.cache_bytes,
            progress=ddp.main and sys.stderr.isatty(),
        )
    except NoImagesError as exc:
        if ddp.main:
            _name_skipped(exc.skipped, warn)
        raise
    images = ddp.total(len(sampler)) if sharded else len(sampler)  # for the summary: every shard's images
    if sampler.skipped and ddp.main:
        _name_skipped(sampler.skipped, warn)
        log(f"skipped {len(sampler.skipped)} unreadable file(s) of {len(paths)}")
    if sampler.streaming and ddp.main:
        log(
            f"{len(sampler)} images do not fit in the {cfg.cache_bytes / 2**30:.1f} GiB cache: streaming them "
            f"({len(sampler.images)} in memory at a time, --cache-size to change)"
        )
    return held, sampler, images


def _name_skipped(skipped: list[tuple[Path, str]], warn: Callable[[str], None]) -> None:
    for path, reason in skipped[:NAMED_AT_MOST]:
        warn(f"{path}: {reason}; skipped")
    if len(skipped) > NAMED_AT_MOST:
        warn(f"… and {len(skipped) - NAMED_AT_MOST} more unreadable files")


def _network(preset: Preset, init: str | None, init_model, main: bool, log: Callable[[str], None]) -> AutoEncoder:
    """A fresh network of ``preset``, with what fits of the init model's weights."""
    net = AutoEncoder(preset)
    if init_model is None:
        return net
    copied = net.load_transforms(init_model.net)
    adds_context = net.checkerboard and not init_model.net.checkerboard and init_model.net.hyperprior
    adds_channels = net.preset.channel and not init_model.net.preset.channel and init_model.net.checkerboard
    if main and net.can_grow_from(init_model.net):
        log(f"grew {init} from N={init_model.net.preset.N} to N={preset.N} channels: the new ones start silent")
    elif main and len(copied) < len(net.state_dict()) and not (adds_context or adds_channels):
        log(f"initialized {len(copied)} of {len(net.state_dict())} tensors from {init} (the rest start fresh)")
    if main and adds_context:
        log(f"added a checkerboard context to {init}: it starts silent (the model codes as before), then learns")
    if main and adds_channels:
        log(f"added a channel-wise context to {init}: it starts silent (the model codes as before), then learns")
    freed = net.free_gdn_cross_terms()
    if main and freed:
        log(
            f"GDN: the cross-channel terms of {freed} layers of {init} were stuck at zero (older models "
            "started them there); they start near zero now and can learn"
        )
    return net


def run_steps(run: Run, stop: StopRequest) -> bool:
    """Train until the stop condition or a signal (the ranks agree on both); True when a second signal cut a step short."""
    cfg, ddp = run.cfg, run.ddp
    shown = progress(cfg, run.step, run.elapsed_before, ddp.main, run.log)
    run.started = last_checkpoint = time.monotonic()
    try:
        while True:
            now, stopping = ddp.agreed_clock(run.elapsed(), stop.requested)
            if stopping or done(cfg, run.step, now):
                break
            lr = learning_rate(cfg, run.step, now)
            taken = take_step(run, lr)
            if taken is None or not ddp.main:
                continue
            smooth(run.ema, *taken)
            shown.update(run.step, run.elapsed(), lr, run.ema)
            if time.monotonic() - last_checkpoint >= cfg.checkpoint_every:
                write_checkpoint(run)
                last_checkpoint = time.monotonic()
    except KeyboardInterrupt:  # a second Ctrl-C: a step did not end
        return True
    finally:
        run.stopped = time.monotonic()
        stop.shield()  # from here on, Ctrl-C must not cut the save short
        shown.close()
    return False


def take_step(run: Run, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """One optimizer step on a fresh batch: its loss, MSE and bpp; None when a non-finite loss skipped it on every rank."""
    cfg, device = run.cfg, run.device
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    x = run.sampler.sample(cfg.batch_size).to(device).contiguous(memory_format=torch.channels_last)
    quality = torch.randint(0, len(run.preset.lambdas), (cfg.batch_size,), device=device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=run.precision == "bf16"):
        x_hat, bits = run.model(x, quality)
    mse = (x_hat - x).square().mean(dim=(1, 2, 3))
    bpp = bits / (x.shape[2] * x.shape[3])
    loss = (run.lambdas[quality] * 255**2 * mse + bpp).mean()
    run.optimizer.zero_grad(set_to_none=True)
    if not run.ddp.all_agree(bool(torch.isfinite(loss))):  # a rare bad batch must not poison the weights
        run.skipped_steps += 1
        return None
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.net.parameters(), 1.0)
    run.optimizer.step()
    run.step += 1
    if run.averaged is not None:
        _update_average(run)
    return loss, mse, bpp


@torch.no_grad()
def _update_average(run: Run) -> None:
    """avg ← avg + (1 − d)(w − avg), with d ramping up to --ema so that the average soon forgets the start."""
    decay = min(run.cfg.ema, (1 + run.step) / (10 + run.step))
    current = run.net.state_dict()
    names = list(run.averaged)
    torch._foreach_lerp_([run.averaged[k] for k in names], [current[k].detach() for k in names], 1 - decay)


def averaged_network(run: Run) -> AutoEncoder:
    """The network with the moving average's weights (the last step's where no average is kept)."""
    if run.averaged is None:
        return run.net
    net = copy.deepcopy(run.net)
    net.load_state_dict({**run.net.state_dict(), **run.averaged})
    return net


def learning_rate(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """Linear warm-up (at most 10% of the steps), then cosine decay to 1% over the run (by steps or by time)."""
    progress = 0.0
    if cfg.steps:
        progress = max(progress, step / cfg.steps)
    if cfg.time_budget:
        progress = max(progress, elapsed / cfg.time_budget)
    warmup = min(cfg.warmup, cfg.steps // 10) if cfg.steps else cfg.warmup  # short runs reach their peak too
    warm = min(1.0, (step + 1) / max(1, warmup))
    return cfg.lr * warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def done(cfg: TrainConfig, step: int, elapsed: float) -> bool:
    return bool((cfg.steps and step >= cfg.steps) or (cfg.time_budget and elapsed >= cfg.time_budget))


def write_checkpoint(run: Run) -> None:
    """Everything a resumed run needs (weights, optimizer, step, clock, recipe with its stop condition); rank 0 writes it."""
    if not run.ddp.main:
        return
    payload = {
        "model": run.net.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "elapsed": run.elapsed(),
        "preset": run.preset.to_dict(),
        "config": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(run.cfg).items()}, "init": run.init_name},
        "prior_stages": run.prior_stages,
    }
    if run.averaged is not None:
        payload["averaged"] = run.averaged
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(run.checkpoint, buffer.getvalue())


def _check_ranks(run: Run, interrupted: bool) -> None:
    """Under torchrun, the ranks' weights must be identical at the end (an interrupted rank may be mid-step: not checked)."""
    digests = run.ddp.digests(run.net) if not interrupted else []
    if run.ddp.main and run.ddp.world > 1 and digests:
        if len(set(digests)) != 1:
            raise TrainingError(f"weights differ between ranks: {digests}")
        run.log(f"weights identical on all {run.ddp.world} ranks (digest {digests[0]})")


def save(run: Run, interrupted: bool) -> None:
    """Write the model with its training summary; a finished run is measured on its probe patches, and drops its checkpoint."""
    save_model(averaged_network(run), run.output, training=summary(run, interrupted))
    if interrupted:
        return
    if run.probe is not None:
        try:
            measured = heldout.measure(run.output, *run.probe)
        except Exception as exc:  # the model is written: a failed measure must not fail the run
            run.warn(f"the model could not be measured on its probe patches ({str(exc).splitlines()[0][:100]})")
        else:
            _rewrite_summary(run.output, summary(run, interrupted, measured))
    if not run.cfg.keep_checkpoint:
        run.checkpoint.unlink(missing_ok=True)  # the run is finished: its model is all that is needed


def _rewrite_summary(path: Path, training: dict) -> None:
    """Replace the training summary of a model file just written: its tensors, and so its id, stay as they are.

    Rebuilding the entropy tables to write the file again would take seconds; this takes a few milliseconds.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file
    from safetensors.torch import save as serialize

    with safe_open(str(path), "pt") as fh:
        metadata = fh.metadata()
    atomic_write(path, serialize(load_file(str(path)), metadata={**metadata, "training": json.dumps(training)}))


def summary(run: Run, interrupted: bool, measured: dict | None = None) -> dict:
    """The training summary stored in the model: this run's recipe, machine and result, after the stages before it."""
    cfg, ddp, device = run.cfg, run.ddp, run.device
    stage = {
        "data": os.path.basename(os.path.abspath(cfg.data)),
        "images": run.images,
        "steps": run.step,
        "seconds": round(run.elapsed(), 1),
        "batch_size": cfg.batch_size * ddp.world,
        "patch_size": cfg.patch_size,
        "downscale": list(cfg.downscale),
        "lr": cfg.lr,
        "device": str(device),
        "processes": ddp.world,
        "precision": run.precision,
        "cpu": hardware.device_name(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "pixels": run.step * cfg.batch_size * ddp.world * cfg.patch_size**2,
        "lambdas": list(run.preset.lambdas),
        "seed": cfg.seed,
        "init": run.init_name,
        "interrupted": interrupted,
        "skipped_steps": run.skipped_steps,
        "ema": cfg.ema,
        "loss_ema": round(run.ema["loss"], 4) if "loss" in run.ema else None,
    }
    if measured is not None:
        stage["held_out"] = measured
    return {**stage, "stages": [*run.prior_stages, stage]}


def stages_of(training: dict | None) -> list[dict]:
    """The stage log of a model's training summary (a model from before stages were kept: one stage)."""
    if not isinstance(training, dict) or not training:
        return []
    if isinstance(training.get("stages"), list):
        return list(training["stages"])
    return [training]


def _prior_stages_of(init: str) -> list[dict]:
    from ..codec import load_model

    try:
        return stages_of(load_model(init).metadata.get("training"))
    except Exception:  # the init model is gone: the log starts here
        return []
