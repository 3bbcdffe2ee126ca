"""The machine a run trains on: its usable cores and threads, the device, bf16 support, subnormals, the CPU's name."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..cpu import cpu_has_native_bf16, usable_cores
from .config import TrainingError


def prepare(threads: int | None, warn: Callable[[str], None]) -> None:
    """Flush subnormals, and set the thread count (warning when it exceeds the usable cores)."""
    flush_denormals()
    if threads:
        torch.set_num_threads(threads)
        if threads > usable_cores():
            warn(
                f"--threads {threads} but this process may run on {usable_cores()} core(s) "
                "(taskset/affinity): more threads than cores ran 3.4x slower (docs/experiments.md)"
            )


def flush_denormals() -> None:
    """GDN terms the model does not use decay through subnormal floats, about 100x slower on x86: flush them to zero."""
    torch.set_flush_denormal(True)


def pick_device(name: str) -> torch.device:
    """'auto' (CUDA when there is one, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


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


def auto_precision(device: torch.device) -> str:
    """bf16 autocast where the hardware runs it natively (CUDA, bf16 CPUs), fp32 elsewhere.

    On a CPU without bf16 instructions autocast emulates it and is slower than fp32.
    """
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"


def precision_of(name: str, device: torch.device) -> str:
    """The run's arithmetic: ``auto`` resolved for ``device``; an unknown name is a ``TrainingError``."""
    precision = name if name != "auto" else auto_precision(device)
    if precision not in ("bf16", "fp32"):
        raise TrainingError(f"unknown precision {name!r} (auto, bf16 or fp32)")
    return precision


def device_name(device: torch.device) -> str:
    """The CPU's model or the GPU's name, for the training summary."""
    return cpu_model_name() if device.type == "cpu" else torch.cuda.get_device_name(device)
