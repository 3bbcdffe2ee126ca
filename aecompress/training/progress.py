"""What a run shows while it trains: a progress bar on a terminal, plain lines in a log file or a pipe.

Both show moving averages of the loss, bpp and PSNR of the training patches, the learning
rate, and the run's progress (steps, or seconds of a time budget) with elapsed<remaining.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from .config import TrainConfig

LINE_EVERY_SECONDS = 30.0  # plain lines: one at the first step, then one every 30 s or every tenth of --steps, and one at the end


def smooth(ema: dict[str, float], loss: torch.Tensor, mse: torch.Tensor, bpp: torch.Tensor) -> None:
    """Fold one step's loss, bpp and PSNR into their moving averages (``ema``, updated in place)."""
    psnr = (10 * torch.log10(1 / mse.detach().clamp_min(1e-10))).mean().item()
    for k, v in (("loss", loss.item()), ("bpp", bpp.mean().item()), ("psnr", psnr)):
        ema[k] = v if k not in ema else 0.98 * ema[k] + 0.02 * v


def progress(cfg: TrainConfig, step: int, elapsed: float, shown: bool, log: Callable[[str], None]) -> Bar | Lines:
    """A bar when stderr is a terminal, else plain lines through ``log``; nothing at all unless ``shown``."""
    if sys.stderr.isatty() or not shown:
        return Bar(cfg, step, elapsed, shown)
    return Lines(cfg, step, elapsed, log)


class Bar:
    """tqdm's bar: over the steps, or over the time budget's seconds (with an ETA) when no step count is given."""

    def __init__(self, cfg: TrainConfig, step: int, elapsed: float, shown: bool) -> None:
        self.by_time = bool(cfg.time_budget and not cfg.steps)
        self.bar = tqdm(
            total=cfg.time_budget if self.by_time else cfg.steps,
            initial=elapsed if self.by_time else step,
            disable=not shown,
            file=sys.stderr,
            dynamic_ncols=True,
            unit="s" if self.by_time else "step",
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]" if self.by_time else None,
        )

    def update(self, step: int, elapsed: float, lr: float, ema: dict[str, float]) -> None:
        self.bar.update(min(elapsed, self.bar.total) - self.bar.n if self.by_time else 1)
        if step % 10 == 0:
            extra = {"step": step} if self.by_time else {}
            self.bar.set_postfix(loss=f"{ema['loss']:.3f}", bpp=f"{ema['bpp']:.3f}", psnr=f"{ema['psnr']:.2f}", lr=f"{lr:.1e}", **extra)

    def close(self) -> None:
        self.bar.close()


class Lines:
    """One plain line now and then, for a log file: no carriage returns, no bar redrawn in place."""

    def __init__(self, cfg: TrainConfig, step: int, elapsed: float, log: Callable[[str], None]) -> None:
        self.steps, self.budget, self.log = cfg.steps, cfg.time_budget, log
        self.every = max(10, cfg.steps // 10) if cfg.steps else None
        self.start = (step, elapsed)  # where this process took over: its rate predicts the rest
        self.last_line = -float("inf")
        self.pending: tuple | None = None

    def update(self, step: int, elapsed: float, lr: float, ema: dict[str, float]) -> None:
        self.pending = (step, elapsed, lr, dict(ema))
        now = time.monotonic()
        if step == self.start[0] + 1 or now - self.last_line >= LINE_EVERY_SECONDS or (self.every and step % self.every == 0):
            self._show()

    def close(self) -> None:
        if self.pending is not None:
            self._show()

    def _show(self) -> None:
        step, elapsed, lr, ema = self.pending
        self.pending, self.last_line = None, time.monotonic()
        metrics = f" loss={ema['loss']:.3f} bpp={ema['bpp']:.3f} psnr={ema['psnr']:.2f}" if ema else ""
        clock = f"{tqdm.format_interval(elapsed)}<{tqdm.format_interval(self._remaining(step, elapsed))}"
        if self.steps:
            self.log(f"{step}/{self.steps} steps [{clock}]{metrics} lr={lr:.1e}")
        else:
            self.log(f"{min(elapsed, self.budget):.0f}/{self.budget:.0f} s [{clock}] step={step}{metrics} lr={lr:.1e}")

    def _remaining(self, step: int, elapsed: float) -> float:
        left = [self.budget - elapsed] if self.budget else []
        first_step, first_elapsed = self.start
        if self.steps and step > first_step:
            left.append((elapsed - first_elapsed) / (step - first_step) * (self.steps - step))
        return max(0.0, min(left)) if left else 0.0
