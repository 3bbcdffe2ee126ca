"""Training, as the rest of aecompress and its users import it: the names of ``aecompress.training``.

The parts live in ``aecompress/training/``: ``config`` (what a run is asked to do),
``hardware``, ``distributed``, ``loop`` (the run itself), ``progress``, ``stop`` and
``heldout``.
"""

from __future__ import annotations

from .training.config import DEFAULT_PRESET, TrainConfig, TrainingError, parse_duration
from .training.distributed import Distributed
from .training.hardware import auto_precision, cpu_has_native_bf16, cpu_model_name, pick_device, usable_cores
from .training.loop import learning_rate, stages_of, train
from .training.stop import StopRequest

__all__ = [
    "DEFAULT_PRESET",
    "Distributed",
    "StopRequest",
    "TrainConfig",
    "TrainingError",
    "auto_precision",
    "cpu_has_native_bf16",
    "cpu_model_name",
    "learning_rate",
    "parse_duration",
    "pick_device",
    "stages_of",
    "train",
    "usable_cores",
]
