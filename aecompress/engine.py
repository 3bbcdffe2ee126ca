"""Which engine runs the transforms, and how: ONNX Runtime where it is installed, torch otherwise.

ONNX Runtime loads in about 0.2 s where torch takes 1–2 s, which is most of the time of a
small image's `encode` or `decode`; on a 24 MP photo it also ran the analysis faster and
in less memory, and the whole encode and decode faster.  Torch still runs bf16 encoding
(AMX CPUs), encoder effort (gradients), training, and everything wherever ONNX Runtime
is missing; ``AECOMPRESS_ENGINE=torch`` (or ``onnx``) forces the choice.  Either
engine's files decode with the other: the symbols never depend on it, and pixels agree to within
one level, as they do across machines.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .modelfile import LoadedModel
    from .transforms import Transforms

ENGINE_VARIABLE = "AECOMPRESS_ENGINE"
ENGINES = ("auto", "onnx", "torch")


@dataclass
class Settings:
    """Process-wide choices of the command line, applied to each engine as it loads."""

    threads: int | None = None  # None: one per core
    flush_subnormals: bool = False  # torch: treat subnormal results as zero (x86 computes them ~100x slower)


settings = Settings()
_this_thread = threading.local()


def threads_here() -> int:
    """Threads the work on this thread may use: one in a batch's lane (``one_thread_here``), else --threads or every core."""
    from .cpu import usable_cores

    return getattr(_this_thread, "threads", None) or settings.threads or usable_cores()


def one_thread_here() -> None:
    """Mark this thread as one lane of several (a batch coding one image per core): its work stays on it."""
    _this_thread.threads = 1


def configure(threads: int | None = None, flush_subnormals: bool | None = None) -> None:
    """Set the process's threads and subnormal handling (applied to torch now if it is loaded, else when it loads)."""
    if threads:
        settings.threads = threads
    if flush_subnormals is not None:
        settings.flush_subnormals = flush_subnormals
    if "torch" in sys.modules:
        prepare_torch()


def prepare_torch() -> None:
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.flush_subnormals:
        torch.set_flush_denormal(True)


def chosen() -> str:
    """The engine ``AECOMPRESS_ENGINE`` asks for ("auto" unless set); ``ValueError`` for an unknown one."""
    choice = os.environ.get(ENGINE_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in ENGINES:
        raise ValueError(f"{ENGINE_VARIABLE}={choice!r} is not an engine (choose from {', '.join(ENGINES)})")
    return choice


def transforms_for(model: LoadedModel, precision: str = "fp32") -> Transforms:
    """The transforms of ``model``: ONNX Runtime for fp32 where available, torch for bf16 or when asked."""
    from . import onnxrt

    choice = chosen()
    if choice == "onnx" and not onnxrt.available():
        raise ValueError(f"{ENGINE_VARIABLE}=onnx, but ONNX Runtime cannot be imported (pip install onnxruntime)")
    if precision == "fp32" and choice != "torch" and (choice == "onnx" or onnxrt.available()):
        return onnxrt.OnnxTransforms(model, settings.threads)
    from .transforms import TorchTransforms

    prepare_torch()
    return TorchTransforms(model.net, precision)
