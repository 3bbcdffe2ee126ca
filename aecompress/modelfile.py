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
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .coders import coder_class, coder_tensor_prefixes, format_versions
from .density import build_tables
from .entropy import FormatError, Tables
from .integer import IntegerContext, IntegerHyperSynthesis
from .model import AutoEncoder, Preset
from .outputs import atomic_write
from .store import decoded, raw_metadata

FORMAT = "aecompress-model"
READABLE_VERSIONS = tuple(str(v) for v in format_versions())


class ModelFileError(ValueError):
    """A model file that cannot be used: missing, truncated, tampered, wrong kind."""


@dataclass(eq=False)  # compared and hashed by identity: usable as a cache key
class LoadedModel:
    """An autoencoder ready for coding, with its tables, id and metadata."""

    net: AutoEncoder
    tables: Tables
    model_id: str
    metadata: dict = field(default_factory=dict)
    path: str = ""
    parts: dict[str, Any] = field(default_factory=dict)  # the entropy model's own, by name (its coder's ``restore``)

    @property
    def qualities(self) -> int:
        return self.net.qualities

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


def model_id_of(tensors: dict[str, torch.Tensor]) -> str:
    """16 hex digits of SHA-256 over every tensor's name, shape, dtype and bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _without_subnormals(t: torch.Tensor) -> torch.Tensor:
    """Weights below float32's normal range become 0 (x86 CPUs compute with subnormals ~100x slower).

    Training drives unused GDN cross terms towards 0 through subnormal values.  The CLI also
    flushes subnormal results (``torch.set_flush_denormal``); library users get at least this.
    """
    if not t.is_floating_point():
        return t
    return torch.where(t.abs() < torch.finfo(torch.float32).tiny, torch.zeros_like(t), t)


def save_model(net: AutoEncoder, path: str | os.PathLike, training: dict | None = None, half: bool = False) -> str:
    """Build the tables, write ``path`` atomically, return the model id.

    ``half`` stores the float weights as float16 (half the file; how a model ships, see
    docs/RELEASES.md).  The entropy tables and the integer networks are integers either
    way, so the symbols a file decodes to do not depend on it; the id covers the stored
    bytes, and encoder and decoder both compute with the stored values.
    """
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
    """Read a model file; every problem becomes a one-line ``ModelFileError``."""
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
        net = AutoEncoder(preset)
        coder = coder_class(preset.entropy)
        tables = Tables.from_tensors(tensors)
        parts = coder.restore(tensors, net)  # sets the net's integer-stored modules
        if metadata["format_version"] != str(coder.format_version):
            raise FormatError(f"a {preset.entropy} model in a format-version-{metadata['format_version']} file")
        weights = {k: v for k, v in tensors.items() if not k.startswith(("tables.", *coder_tensor_prefixes()))}
        weights.update({k: v for k, v in net.state_dict().items() if k.startswith(coder.integer_modules)})
        net.load_state_dict({k: _without_subnormals(v) for k, v in weights.items()}, strict=True)
    except (KeyError, RuntimeError, ValueError, FormatError) as exc:
        raise ModelFileError(f"{path}: model file is inconsistent ({str(exc).splitlines()[0][:120]})") from None
    mid = model_id_of(tensors)
    if mid != metadata.get("model_id"):
        raise ModelFileError(f"{path}: model file was modified (its content does not match its id)")
    if tables.freqs.shape[0] != net.coded_channels * len(preset.lambdas):
        raise ModelFileError(f"{path}: entropy tables do not match the architecture")
    meta = decoded(metadata)
    return LoadedModel(net.eval(), tables, mid, meta, str(path), parts)
