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

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .entropy import FormatError, Tables, build_gaussian_tables, build_tables
from .integer import IntegerContext, IntegerHyperSynthesis
from .model import AutoEncoder, Preset
from .outputs import atomic_write

FORMAT = "aecompress-model"
FORMAT_VERSION = 3  # written for checkerboard models; hyperprior models are still written as 2, factorized as 1
READABLE_VERSIONS = ("1", "2", "3")


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
    gaussian: Tables | None = None  # hyperprior: one table per scale
    hyper: IntegerHyperSynthesis | None = None  # hyperprior: the integer h_s
    context: IntegerContext | None = None  # checkerboard: the integer context

    @property
    def qualities(self) -> int:
        return self.net.qualities


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


def save_model(net: AutoEncoder, path: str | os.PathLike, training: dict | None = None) -> str:
    """Build the tables, write ``path`` atomically, return the model id."""
    net = net.cpu().eval()
    tensors = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    tensors.update(build_tables(net.density).tensors())
    if net.hyperprior:  # h_s is stored once, as the integers that coding uses
        tensors = {k: v for k, v in tensors.items() if not k.startswith("h_s.")}
        tensors.update(build_gaussian_tables().tensors("gaussian"))
        tensors.update(IntegerHyperSynthesis.from_float(net.h_s).tensors())
    if net.checkerboard:  # so is the context
        tensors = {k: v for k, v in tensors.items() if not k.startswith("context.")}
        tensors.update(IntegerContext.from_float(net.context).tensors())
    mid = model_id_of(tensors)
    metadata = {
        "format": FORMAT,
        "format_version": str(format_version(net)),
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
        with open(path, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(header_len))
        metadata = header.get("__metadata__") or {}
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
        weights = {k: v for k, v in tensors.items() if not k.startswith(("tables.", "gaussian.", "hyper_int.", "context_int."))}
        tables = Tables.from_tensors(tensors)
        gaussian = hyper = context = None
        if net.hyperprior:
            gaussian = Tables.from_tensors(tensors, "gaussian")
            hyper = IntegerHyperSynthesis.from_tensors(tensors)
            expected = [tuple(c.weight.shape) for c in net.h_s.convs]
            if [w.shape for w in hyper.weights] != expected:
                raise FormatError("integer hyper-synthesis does not match the architecture")
            hyper.to_float(net.h_s)
            weights.update({f"h_s.{k}": v for k, v in net.h_s.state_dict().items()})
        if net.checkerboard:
            context = IntegerContext.from_tensors(tensors)
            convs = [net.context.context, *net.context.params]
            if [w.shape for w in context.weights] != [tuple(c.weight.shape) for c in convs]:
                raise FormatError("integer context does not match the architecture")
            context.to_float(net.context)
            weights.update({f"context.{k}": v for k, v in net.context.state_dict().items()})
        if metadata["format_version"] != str(format_version(net)):
            raise FormatError(f"a {preset.entropy} model in a format-version-{metadata['format_version']} file")
        net.load_state_dict({k: _without_subnormals(v) for k, v in weights.items()}, strict=True)
    except (KeyError, RuntimeError, ValueError, FormatError) as exc:
        raise ModelFileError(f"{path}: model file is inconsistent ({str(exc).splitlines()[0][:120]})") from None
    mid = model_id_of(tensors)
    if mid != metadata.get("model_id"):
        raise ModelFileError(f"{path}: model file was modified (its content does not match its id)")
    if tables.freqs.shape[0] != net.coded_channels * len(preset.lambdas):
        raise ModelFileError(f"{path}: entropy tables do not match the architecture")
    meta = {k: _maybe_json(v) for k, v in metadata.items()}
    return LoadedModel(net.eval(), tables, mid, meta, str(path), gaussian, hyper, context)


def format_version(net: AutoEncoder) -> int:
    """The model file version a model is written in: the oldest that can hold it (older releases read it)."""
    return 3 if net.checkerboard else 2 if net.hyperprior else 1


def _maybe_json(value: str):
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value
