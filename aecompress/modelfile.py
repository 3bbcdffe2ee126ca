"""Model files: safetensors weights + integer entropy tables + JSON metadata.

safetensors never runs code on load (no pickle).  The tables are built when the
file is written, so a saved model is always ready to code.  The model id is a hash
of every tensor (weights and tables): a ``.aec`` file names the model it needs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from .coders import coder_class, coder_tensor_prefixes, format_versions
from .entropy import FormatError, Tables
from .integer import IntegerContext, IntegerHyperSynthesis
from .outputs import atomic_write
from .presets import Preset
from .store import decoded, raw_metadata

if TYPE_CHECKING:
    from .model import AutoEncoder

FORMAT = "aecompress-model"
READABLE_VERSIONS = tuple(str(v) for v in format_versions())


class ModelFileError(ValueError):
    """A model file that cannot be used: missing, truncated, tampered, wrong kind."""


@dataclass(eq=False)  # compared and hashed by identity: usable as a cache key
class LoadedModel:
    """A model ready for coding: its architecture, float weights, tables, integer networks, id and metadata.

    Loading needs no torch: coding runs on numpy (and, for the transforms, ONNX Runtime
    where it is installed).  ``net``, the torch ``AutoEncoder``, is built on first use.
    """

    preset: Preset
    weights: dict[str, np.ndarray]  # the float weights (float32, subnormals flushed), by state-dict name
    tables: Tables
    model_id: str
    metadata: dict = field(default_factory=dict)
    path: str = ""
    parts: dict[str, Any] = field(default_factory=dict)  # the entropy model's own, by name (its coder's ``restore``)

    @property
    def qualities(self) -> int:
        return len(self.preset.lambdas)

    @property
    def parameter_count(self) -> int:
        """Weights and biases of every network, the integer-stored ones included."""
        networks = [net for part in self.parts.values() for net in getattr(part, "nets", [part]) if hasattr(net, "weights")]
        integer = sum(w.size + b.size for net in networks for w, b in zip(net.weights, net.biases, strict=True))
        return sum(v.size for v in self.weights.values()) + integer

    @cached_property
    def net(self) -> AutoEncoder:
        """The torch network with these weights (training, encoder effort, bit estimates, the torch transforms)."""
        import torch

        from .model import AutoEncoder

        try:
            net = AutoEncoder(self.preset)
            coder = coder_class(self.preset.entropy)
            coder.apply_parts(self.parts, net)  # the integer-stored modules
            state = {k: torch.from_numpy(v) for k, v in self.weights.items()}
            state.update({k: v for k, v in net.state_dict().items() if k.startswith(coder.integer_modules)})
            net.load_state_dict(state, strict=True)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ModelFileError(f"{self.path}: model file is inconsistent ({str(exc).splitlines()[0][:120]})") from None
        return net.eval()

    def gains(self, index: int, t: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Gain and inverse gain (M,) float32 of level ``index`` (0-based), or ``t`` of the way to the next.

        As ``AutoEncoder.gains`` (log-gains interpolated linearly between levels), computed in
        float64 and rounded once to float32, so the same on every machine; torch's float32
        arithmetic gives values within 2 ulp of these.
        """
        return _gain(self.weights["log_gain"], index, t), _gain(self.weights["log_inverse_gain"], index, t)

    @property
    def gaussian(self) -> Tables | None:
        """Hyperprior: one table per scale."""
        return self.parts.get("gaussian")

    @property
    def hyper(self) -> IntegerHyperSynthesis | None:
        """Hyperprior: the integer h_s."""
        return self.parts.get("hyper")

    @property
    def context(self) -> IntegerContext | None:
        """Checkerboard: the integer context."""
        return self.parts.get("context")


def _gain(log_gains: np.ndarray, index: int, t: float) -> np.ndarray:
    """exp of row ``index`` of ``log_gains``, or of its linear interpolation ``t`` of the way to the next row."""
    log = log_gains[index].astype(np.float64)
    if t:
        log = log + t * (log_gains[index + 1].astype(np.float64) - log)
    return np.exp(log).astype(np.float32)


# The dtype names in the id are torch's (model files were first hashed with torch tensors).
_DTYPE_NAMES = {
    np.dtype(np.float32): "torch.float32",
    np.dtype(np.float16): "torch.float16",
    np.dtype(np.float64): "torch.float64",
    np.dtype(np.int64): "torch.int64",
    np.dtype(np.int32): "torch.int32",
    np.dtype(np.int16): "torch.int16",
    np.dtype(np.int8): "torch.int8",
    np.dtype(np.uint8): "torch.uint8",
    np.dtype(np.bool_): "torch.bool",
}


def model_id_of(tensors: dict) -> str:
    """16 hex digits of SHA-256 over every tensor's name, shape, dtype and bytes (torch or numpy tensors)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, np.ndarray):
            array, dtype = np.ascontiguousarray(t), _DTYPE_NAMES[t.dtype]
        else:  # a torch tensor
            array, dtype = t.detach().cpu().contiguous().numpy(), str(t.dtype)
        h.update(f"{name}|{tuple(array.shape)}|{dtype}|".encode())
        h.update(array.tobytes())
    return h.hexdigest()[:16]


def _without_subnormals(a: np.ndarray) -> np.ndarray:
    """Weights below float32's normal range become 0 (x86 CPUs compute with subnormals ~100x slower).

    Training drives unused GDN cross terms towards 0 through subnormal values.  The CLI also
    flushes subnormal results; library users get at least this.
    """
    a = np.asarray(a, np.float32)
    return np.where(np.abs(a) < np.finfo(np.float32).tiny, np.float32(0), a)


def save_model(net: AutoEncoder, path: str | os.PathLike, training: dict | None = None, half: bool = False) -> str:
    """Build the tables, write ``path`` atomically, return the model id.

    ``half`` stores the float weights as float16 (half the file; how a model ships, see
    docs/RELEASES.md).  The entropy tables and the integer networks are integers either
    way, so the symbols a file decodes to do not depend on it; the id covers the stored
    bytes, and encoder and decoder both compute with the stored values.
    """
    import torch
    from safetensors.torch import save

    from .density import build_tables

    net = net.cpu().eval()
    coder = coder_class(net.preset.entropy)
    integer = coder.integer_modules  # stored once, as the integers that coding uses
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in net.state_dict().items() if not k.startswith(integer)}
    tensors.update(build_tables(net.density).tensors())
    tensors.update(coder.model_tensors(net))
    mid = model_id_of(tensors)
    metadata = {
        "format": FORMAT,
        "format_version": str(coder.format_version),
        "preset": json.dumps(net.preset.to_dict()),
        "model_id": mid,
        "training": json.dumps(training or {}),
    }
    data = save(tensors, metadata=metadata)
    atomic_write(Path(path), data)
    return mid


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Read a model file (no torch needed); every problem becomes a one-line ``ModelFileError``."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
        metadata = raw_metadata(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a model file") from None
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not a readable model file ({str(exc).splitlines()[0][:120]})") from None
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not an aecompress model (safetensors without our metadata)")
    if metadata.get("format_version") not in READABLE_VERSIONS:
        raise ModelFileError(f"{path}: model format version {metadata.get('format_version')} is not supported")
    try:
        preset = Preset.from_dict(json.loads(metadata["preset"]))
        coder = coder_class(preset.entropy)
        tables = Tables.from_tensors(tensors)
        parts = coder.restore(tensors, preset)
        if metadata["format_version"] != str(coder.format_version):
            raise FormatError(f"a {preset.entropy} model in a format-version-{metadata['format_version']} file")
        stored = {k: v for k, v in tensors.items() if not k.startswith(("tables.", *coder_tensor_prefixes()))}
        if any(v.dtype.kind != "f" for v in stored.values()):
            raise FormatError("a float weight is stored as integers")
        weights = {k: _without_subnormals(v) for k, v in stored.items()}
        for name in ("log_gain", "log_inverse_gain"):
            if weights[name].shape != (len(preset.lambdas), preset.M):
                raise FormatError(f"{name} does not match the architecture")
    except (KeyError, ValueError, FormatError) as exc:
        raise ModelFileError(f"{path}: model file is inconsistent ({str(exc).splitlines()[0][:120]})") from None
    mid = model_id_of(tensors)
    if mid != metadata.get("model_id"):
        raise ModelFileError(f"{path}: model file was modified (its content does not match its id)")
    if tables.freqs.shape[0] != preset.coded_channels * len(preset.lambdas):
        raise ModelFileError(f"{path}: entropy tables do not match the architecture")
    return LoadedModel(preset, weights, tables, mid, decoded(metadata), str(path), parts)
