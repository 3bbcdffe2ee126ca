"""The training loop: random patches, mixed qualities, rate–distortion loss, checkpoints.

``loss = λ·255²·MSE + bpp`` per sample, with each sample's quality level (and so
its λ and gain vector) drawn at random, so one model learns every quality.
Under ``torchrun`` the same loop runs with DistributedDataParallel.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from .data import DEFAULT_CACHE_BYTES, PatchSampler, find_images
from .model import PRESETS, AutoEncoder, Preset
from .modelfile import save_model
from .outputs import atomic_write


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


DEFAULT_PRESET = "small-hp"


class TrainingError(RuntimeError):
    """A run that cannot start (bad data, bad checkpoint, bad device)."""


def parse_duration(text: str) -> float:
    """'90', '90s', '30m', '2h', '1h30m' → seconds."""
    text = text.strip().lower()
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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


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


class _Distributed:
    """Rank and world size under torchrun; a no-op in a single process."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cuda", self.local_rank) if device.type == "cuda" else torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_agree(self, flag: bool) -> bool:
        """True only if ``flag`` is true on every rank (keeps ranks in lock-step)."""
        if self.world == 1:
            return flag
        return bool(self._reduce([1 if flag else 0], torch.int32, dist.ReduceOp.MIN)[0])

    def total(self, count: int) -> int:
        """The sum of ``count`` over the ranks (e.g. the images of all shards, for the summary)."""
        if self.world == 1:
            return count
        return int(self._reduce([count], torch.int64, dist.ReduceOp.SUM)[0])

    def agreed_clock(self, seconds: float, stop: bool) -> tuple[float, bool]:
        """The latest of the ranks' clocks, and whether any rank wants to stop: one collective per step.

        The lr schedule and the time budget read this clock, so every rank takes the same lr
        and the same stop decision (each rank's own clock would give each its own lr).
        """
        if self.world == 1:
            return seconds, stop
        latest, any_stop = self._reduce([seconds, float(stop)], torch.float64, dist.ReduceOp.MAX)
        return float(latest), bool(any_stop)

    def _reduce(self, values: list, dtype: torch.dtype, op) -> list:
        """One all_reduce of a few numbers, on the run's device (NCCL reduces CUDA tensors only)."""
        t = torch.tensor(values, dtype=dtype, device=self.device)
        dist.all_reduce(t, op=op)
        return t.cpu().tolist()

    def digests(self, module: torch.nn.Module) -> list[str]:
        """Hash of the weights on every rank (to check that they are identical)."""
        h = hashlib.sha256()
        for name, tensor in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        mine = h.hexdigest()[:16]
        if self.world == 1:
            return [mine]
        gathered: list[str] = [""] * self.world
        dist.all_gather_object(gathered, mine)
        return gathered

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def usable_cores() -> int:
    """Cores this process may run on: `taskset` and container limits shrink it below os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def train(cfg: TrainConfig, log=print) -> Path:
    """Run training to ``cfg.steps`` / ``cfg.time_budget``; write the model; return its path."""
    torch.set_flush_denormal(True)  # GDN terms the model does not use decay through subnormals, ~100x slower on x86
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
        if cfg.threads > usable_cores():
            log(
                f"warning: --threads {cfg.threads} but this process may run on {usable_cores()} core(s) "
                "(taskset/affinity): more threads than cores ran 3.4x slower in our measurement"
            )
    device = pick_device(cfg.device)
    ddp = _Distributed(device)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    output = Path(cfg.output)
    ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else output.with_name(output.name + ".ckpt")

    state = None
    init_name = cfg.init  # recorded in the model; a resumed run keeps the original run's
    prior_stages: list[dict] = []  # training history of the init model: a model trained in stages keeps its log
    if cfg.resume:
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
        init_name = saved.get("init")
        prior_stages = state.get("prior_stages")
        if prior_stages is None and init_name:  # checkpoints from before stages were kept
            prior_stages = _prior_stages_of(init_name)
    else:
        if cfg.preset is not None and cfg.preset not in PRESETS:
            raise TrainingError(f"unknown preset {cfg.preset!r} (choose from {', '.join(PRESETS)})")
        if cfg.init:
            from .codec import load_model  # knows "default"

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
    if cfg.lambdas and not cfg.resume:
        preset = preset.with_lambdas(tuple(cfg.lambdas))
    if not cfg.steps and not cfg.time_budget:
        raise TrainingError("give --steps or --time-budget (or both)")

    torch.manual_seed(cfg.seed + ddp.rank)
    random.seed(cfg.seed + ddp.rank)
    paths = find_images(Path(cfg.data))
    sharded = ddp.world > 1 and len(paths) >= ddp.world  # the same decision on every rank
    if sharded:
        paths = paths[ddp.rank :: ddp.world]  # each process decodes and samples its own shard
    sampler = PatchSampler(
        paths, cfg.patch_size, tuple(cfg.downscale), seed=cfg.seed + 1000 * ddp.rank, cache_bytes=cfg.cache_bytes, progress=ddp.main
    )
    images = ddp.total(len(sampler)) if sharded else len(sampler)  # for the summary: every shard's images
    if sampler.skipped and ddp.main:
        log(f"skipped {len(sampler.skipped)} unreadable file(s) of {len(paths)}")
    if sampler.streaming and ddp.main:
        log(
            f"{len(sampler)} images do not fit in the {cfg.cache_bytes / 2**30:.1f} GiB cache: streaming them "
            f"({len(sampler.images)} in memory at a time, --cache-size to change)"
        )

    net = AutoEncoder(preset)
    if cfg.init and not cfg.resume:
        copied = net.load_transforms(init_model.net)
        adds_context = net.checkerboard and not init_model.net.checkerboard and init_model.net.hyperprior
        if ddp.main and net.can_grow_from(init_model.net):
            log(f"grew {cfg.init} from N={init_model.net.preset.N} to N={preset.N} channels: the new ones start silent")
        elif ddp.main and len(copied) < len(net.state_dict()) and not adds_context:
            log(f"initialized {len(copied)} of {len(net.state_dict())} tensors from {cfg.init} (the rest start fresh)")
        if ddp.main and adds_context:
            log(f"added a checkerboard context to {cfg.init}: it starts silent (the model codes as before), then learns")
        freed = net.free_gdn_cross_terms()
        if ddp.main and freed:
            log(
                f"GDN: the cross-channel terms of {freed} layers of {cfg.init} were stuck at zero (a bug of models "
                "trained before 2026-12-02); they start near zero now and can learn"
            )
    net = net.to(device).to(memory_format=torch.channels_last)  # faster convolutions on CPU
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step, elapsed_before = 0, 0.0
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_before = int(state["step"]), float(state["elapsed"])
        sampler.generator.manual_seed(cfg.seed + 1000 * ddp.rank + step)
    model = _distributed(net) if ddp.world > 1 else net

    precision = cfg.precision if cfg.precision != "auto" else auto_precision(device)
    if precision not in ("bf16", "fp32"):
        raise TrainingError(f"unknown precision {cfg.precision!r} (auto, bf16 or fp32)")
    lambdas = torch.tensor(preset.lambdas, device=device)
    Q = len(preset.lambdas)
    started = time.monotonic()
    last_ckpt = started

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - started

    def write_checkpoint() -> None:
        if not ddp.main:
            return
        payload = {
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "elapsed": elapsed(),
            "preset": preset.to_dict(),
            "config": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}, "init": init_name},
            "prior_stages": prior_stages or [],
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write(ckpt_path, buffer.getvalue())

    stop = StopRequest()
    by_time = bool(cfg.time_budget and not cfg.steps)  # no step count to measure progress by: show the budget, with an ETA
    bar = tqdm(
        total=cfg.time_budget if by_time else cfg.steps,
        initial=elapsed_before if by_time else step,
        disable=not ddp.main,
        file=sys.stderr,
        dynamic_ncols=True,
        unit="s" if by_time else "step",
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]" if by_time else None,
    )
    ema: dict[str, float] = {}
    skipped_steps = 0
    forced = False
    with stop:
        try:
            while True:
                now, stopping = ddp.agreed_clock(elapsed(), stop.requested)
                if stopping or _done(cfg, step, now):
                    break
                lr = learning_rate(cfg, step, now)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x = sampler.sample(cfg.batch_size).to(device).contiguous(memory_format=torch.channels_last)
                quality = torch.randint(0, Q, (cfg.batch_size,), device=device)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    x_hat, bits = model(x, quality)
                mse = (x_hat - x).square().mean(dim=(1, 2, 3))
                bpp = bits / (x.shape[2] * x.shape[3])
                loss = (lambdas[quality] * 255**2 * mse + bpp).mean()
                optimizer.zero_grad(set_to_none=True)
                if not ddp.all_agree(bool(torch.isfinite(loss))):  # a rare bad batch must not poison the weights
                    skipped_steps += 1
                    continue
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                step += 1
                if ddp.main:
                    psnr = (10 * torch.log10(1 / mse.detach().clamp_min(1e-10))).mean().item()
                    for k, v in (("loss", loss.item()), ("bpp", bpp.mean().item()), ("psnr", psnr)):
                        ema[k] = v if k not in ema else 0.98 * ema[k] + 0.02 * v
                    bar.update(min(elapsed(), bar.total) - bar.n if by_time else 1)
                    if step % 10 == 0:
                        extra = {"step": step} if by_time else {}
                        bar.set_postfix(
                            loss=f"{ema['loss']:.3f}", bpp=f"{ema['bpp']:.3f}", psnr=f"{ema['psnr']:.2f}", lr=f"{lr:.1e}", **extra
                        )
                    if time.monotonic() - last_ckpt >= cfg.checkpoint_every:
                        write_checkpoint()
                        last_ckpt = time.monotonic()
        except KeyboardInterrupt:  # a second Ctrl-C: a step did not end
            forced = True
        finally:
            stop.shield()  # from here on, Ctrl-C must not cut the save short
            bar.close()
        interrupted = forced or not ddp.all_agree(not stop.requested)  # one rank's Ctrl-C stops them all, at one step
        if interrupted and ddp.main:
            print("interrupted: saving checkpoint and model", file=sys.stderr)
        write_checkpoint()
        digests = ddp.digests(net) if not interrupted else []  # an interrupted rank may be mid-step
        if ddp.main and ddp.world > 1 and digests:
            if len(set(digests)) != 1:
                raise TrainingError(f"weights differ between ranks: {digests}")
            log(f"weights identical on all {ddp.world} ranks (digest {digests[0]})")
        if ddp.main:
            summary = {
                "data": os.path.basename(os.path.abspath(cfg.data)),
                "images": images,
                "steps": step,
                "seconds": round(elapsed(), 1),
                "batch_size": cfg.batch_size * ddp.world,
                "patch_size": cfg.patch_size,
                "downscale": list(cfg.downscale),
                "lr": cfg.lr,
                "device": str(device),
                "processes": ddp.world,
                "precision": precision,
                "cpu": cpu_model_name() if device.type == "cpu" else torch.cuda.get_device_name(device),
                "threads": torch.get_num_threads() if device.type == "cpu" else None,
                "pixels": step * cfg.batch_size * ddp.world * cfg.patch_size**2,
                "lambdas": list(preset.lambdas),
                "seed": cfg.seed,
                "init": init_name,
                "interrupted": interrupted,
                "skipped_steps": skipped_steps,
                "loss_ema": round(ema["loss"], 4) if "loss" in ema else None,
            }
            summary["stages"] = [*(prior_stages or []), {k: v for k, v in summary.items() if k != "stages"}]
            save_model(net, output, training=summary)
            if not interrupted and not cfg.keep_checkpoint:
                ckpt_path.unlink(missing_ok=True)  # the run is finished: its model is all that is needed
        if not interrupted:
            ddp.barrier()
        ddp.close()
        return output


def _distributed(net: torch.nn.Module) -> torch.nn.Module:
    """Wrap for DDP without any buffer broadcast, at init or per step.

    Our only buffer is the context's constant mask, built identically on every rank; broadcasting a
    model's single buffer fails in torch (it aliases its own flat copy). Newer torch deprecates
    `broadcast_buffers` for `forward_sync_buffers`, which still syncs at init, and its warning says
    to keep `broadcast_buffers=False` for exactly this case: so we keep it, without the warning.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        return torch.nn.parallel.DistributedDataParallel(net, broadcast_buffers=False)


def stages_of(training: dict | None) -> list[dict]:
    """The stage log of a model's training summary (a model from before stages were kept: one stage)."""
    if not isinstance(training, dict) or not training:
        return []
    if isinstance(training.get("stages"), list):
        return list(training["stages"])
    return [training]


def _prior_stages_of(init: str) -> list[dict]:
    from .codec import load_model

    try:
        return stages_of(load_model(init).metadata.get("training"))
    except Exception:  # the init model is gone: the log starts here
        return []


def cpu_model_name() -> str:
    """The CPU's model name (for the training log), or the machine type."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AMX-BF16 or AVX512-BF16), read from the CPU's flags."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def auto_precision(device: torch.device) -> str:
    """bf16 autocast where the hardware runs it natively (CUDA, bf16 CPUs), fp32 elsewhere.

    On a CPU without bf16 instructions autocast emulates it and is slower than fp32.
    """
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"


def _done(cfg: TrainConfig, step: int, elapsed: float) -> bool:
    return bool((cfg.steps and step >= cfg.steps) or (cfg.time_budget and elapsed >= cfg.time_budget))


class StopRequest:
    """Ctrl-C and SIGTERM while training: set a flag that the loop reads between steps.

    Python's default (raise KeyboardInterrupt wherever the main thread happens to be) can
    lose the signal: a handler that runs inside a finalizer or a library's callback has its
    exception swallowed ("Exception ignored in ..."), and training went on (seen in CI). A
    flag cannot be lost, and the run stops at a step boundary, with consistent weights. A
    second signal raises KeyboardInterrupt, for a step that does not end.
    """

    def __init__(self) -> None:
        self.requested = False
        self._shielded = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if _main_thread():  # signal handlers can only be set from the main thread
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def shield(self) -> None:
        """Ignore further signals (while the model is being saved: it takes about a second)."""
        self._shielded = True

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and not self._shielded:
            raise KeyboardInterrupt
        self.requested = True


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
