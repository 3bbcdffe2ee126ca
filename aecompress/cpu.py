"""What this CPU can do, from its flags: bf16 instructions, AMX tiles, and how many cores we may use (no torch needed)."""

from __future__ import annotations

import os


def cpu_flags() -> set[str]:
    """The CPU's feature flags (from /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AMX-BF16 or AVX512-BF16): bf16 training runs faster there."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_has_amx_bf16() -> bool:
    """True on CPUs with AMX-BF16 tiles: only there does bf16 inference beat fp32 (with AVX512-BF16 alone it is slower)."""
    return "amx_bf16" in cpu_flags()


def usable_cores() -> int:
    """Cores this process may run on: `taskset` and container limits shrink it below os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
