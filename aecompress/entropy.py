"""Factorized entropy model: learned densities, integer CDF tables, range coding.

Training uses the continuous density (``FactorizedDensity``).  For coding, each
channel's density is turned once, at model-build time, into an integer frequency
table (``Tables``) stored in the model file.  Encoder and decoder drive the range
coder (constriction) from those integers only, so decoding is bit-exact on every
machine.  Values outside a table's support are coded as an escape symbol followed
by the value itself in a small side stream: never clipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import constriction
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

PRECISION = 16  # bits of the integer frequency tables
TAIL_MASS = 1e-6  # probability left outside a table's support (on each side)
MAX_SUPPORT = 2048  # widest table; rarer values go through the escape
LIKELIHOOD_BOUND = 1e-9


class FormatError(ValueError):
    """A payload that cannot be decoded (corrupt or made by another model)."""


class FactorizedDensity(nn.Module):
    """One learned, non-parametric density per channel (Ballé et al. 2018, app. 6.1).

    A monotone chain of small per-channel layers models the cumulative
    distribution; its difference at ±½ gives the likelihood of a unit bin.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, x: Tensor, index: Tensor) -> Tensor:
        """Logit of the CDF at ``x`` (B, M, 1, S) for channels ``index`` (B, M)."""
        logits = x
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            logits = F.softplus(matrix[index]) @ logits + bias[index]
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i][index]) * torch.tanh(logits)
        return logits

    def likelihood(self, y: Tensor, index: Tensor) -> Tensor:
        """Probability mass of the unit bin around each value of ``y`` (B, M, H, W)."""
        B, M, H, W = y.shape
        x = y.reshape(B, M, 1, H * W)
        lower = self.logits_cdf(x - 0.5, index)
        upper = self.logits_cdf(x + 0.5, index)
        # Work in the tail that keeps precision: 1 - σ(t) = σ(-t).
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.clamp_min(LIKELIHOOD_BOUND).reshape(B, M, H, W)


@dataclass
class Tables:
    """Integer frequency tables for C channels, as stored in a model file.

    Channel ``c`` codes values ``offsets[c] … offsets[c] + lengths[c] - 1`` as
    symbols ``0 … lengths[c] - 1``; symbol ``lengths[c]`` is the escape.
    ``freqs[c, :lengths[c] + 1]`` sum to ``2**PRECISION``.
    """

    freqs: np.ndarray  # int32 (C, max_length + 1)
    offsets: np.ndarray  # int32 (C,)
    lengths: np.ndarray  # int32 (C,)

    def tensors(self) -> dict[str, Tensor]:
        return {
            "tables.freqs": torch.from_numpy(self.freqs),
            "tables.offsets": torch.from_numpy(self.offsets),
            "tables.lengths": torch.from_numpy(self.lengths),
        }

    @staticmethod
    def from_tensors(tensors: dict[str, Tensor]) -> Tables:
        t = Tables(
            freqs=tensors["tables.freqs"].numpy().astype(np.int32),
            offsets=tensors["tables.offsets"].numpy().astype(np.int32),
            lengths=tensors["tables.lengths"].numpy().astype(np.int32),
        )
        t.validate()
        return t

    def validate(self) -> None:
        C, width = self.freqs.shape
        if self.offsets.shape != (C,) or self.lengths.shape != (C,):
            raise FormatError("entropy tables have inconsistent shapes")
        if np.any(self.lengths < 1) or np.any(self.lengths + 1 > width):
            raise FormatError("entropy tables have invalid lengths")
        for c in range(C):
            f = self.freqs[c, : self.lengths[c] + 1]
            if np.any(f < 1) or int(f.sum()) != 1 << PRECISION:
                raise FormatError(f"entropy table {c} is not normalized")


@torch.no_grad()
def build_tables(density: FactorizedDensity, max_range: int = 4096) -> Tables:
    """Turn every channel's density into an integer table (float64, done once)."""
    density = _to_double(density)
    C = density.matrices[0].shape[0]
    edges = torch.arange(-max_range, max_range + 2, dtype=torch.float64) - 0.5  # k - ½ for k in [-R, R+1]
    x = edges.expand(1, C, 1, -1).contiguous()
    cdf = torch.sigmoid(density.logits_cdf(x, torch.arange(C)[None])).reshape(C, -1).numpy()
    cdf = np.maximum.accumulate(cdf, axis=1)  # guard monotonicity against rounding
    freqs, offsets, lengths = [], np.zeros(C, np.int32), np.zeros(C, np.int32)
    for c in range(C):
        lo = int(np.searchsorted(cdf[c], TAIL_MASS, side="right")) - 1  # first k with cdf(k+½) > tail
        hi = int(np.searchsorted(cdf[c], 1 - TAIL_MASS, side="left")) - 1  # last k with cdf(k-½) < 1-tail
        lo = max(lo, 0)
        hi = min(max(hi, lo), cdf.shape[1] - 2)
        if hi - lo + 1 > MAX_SUPPORT:  # keep the most probable window
            centre = int(np.argmax(np.diff(cdf[c])))
            lo = max(0, min(centre - MAX_SUPPORT // 2, cdf.shape[1] - 1 - MAX_SUPPORT))
            hi = lo + MAX_SUPPORT - 1
        pmf = np.diff(cdf[c, lo : hi + 2])
        escape = max(cdf[c, lo] + 1.0 - cdf[c, hi + 1], 0.0)
        freqs.append(quantize_pmf(np.append(pmf, escape)))
        offsets[c] = lo - max_range
        lengths[c] = hi - lo + 1
    table = np.zeros((C, int(lengths.max()) + 1), np.int32)
    for c, f in enumerate(freqs):
        table[c, : len(f)] = f
    return Tables(table, offsets, lengths)


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Probabilities → integer frequencies ≥ 1 summing to exactly ``2**PRECISION``."""
    total = 1 << PRECISION
    pmf = np.clip(pmf, 0.0, None)
    pmf = pmf / pmf.sum() if pmf.sum() > 0 else np.full_like(pmf, 1 / len(pmf))
    freqs = np.floor(pmf * (total - len(pmf))).astype(np.int64) + 1
    freqs[int(np.argmax(freqs))] += total - int(freqs.sum())
    return freqs.astype(np.int32)


def _to_double(density: FactorizedDensity) -> FactorizedDensity:
    copy = FactorizedDensity.__new__(FactorizedDensity)
    nn.Module.__init__(copy)
    copy.matrices = nn.ParameterList([nn.Parameter(p.detach().double()) for p in density.matrices])
    copy.biases = nn.ParameterList([nn.Parameter(p.detach().double()) for p in density.biases])
    copy.factors = nn.ParameterList([nn.Parameter(p.detach().double()) for p in density.factors])
    return copy


class SymbolCoder:
    """Range coding of integer latents with a model's tables (one quality's channels)."""

    def __init__(self, tables: Tables, channels: np.ndarray) -> None:
        self.offsets = tables.offsets[channels].astype(np.int64)
        self.lengths = tables.lengths[channels].astype(np.int64)
        self.models = [
            constriction.stream.model.Categorical(
                tables.freqs[c, : tables.lengths[c] + 1].astype(np.float64) / (1 << PRECISION), perfect=False
            )
            for c in channels
        ]

    def encode(self, y: np.ndarray) -> bytes:
        """Integer latent (M, H, W) → payload bytes."""
        if y.size and (int(y.min()) < -(1 << 31) or int(y.max()) >= 1 << 31):
            raise ValueError("latent values out of the coder's 32-bit range")
        encoder = constriction.stream.queue.RangeEncoder()
        escaped: list[np.ndarray] = []
        for c, model in enumerate(self.models):
            values = y[c].reshape(-1).astype(np.int64)
            symbols = values - self.offsets[c]
            outside = (symbols < 0) | (symbols >= self.lengths[c])
            if outside.any():
                symbols[outside] = self.lengths[c]
                escaped.append(values[outside])
            encoder.encode(symbols.astype(np.int32), model)
        words = encoder.get_compressed().astype("<u4").tobytes()
        side = np.concatenate(escaped) if escaped else np.zeros(0, np.int64)
        return write_varint(len(words) // 4) + words + b"".join(write_varint(zigzag(int(v))) for v in side)

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Payload bytes → integer latent of ``shape`` (M, H, W)."""
        M, H, W = shape
        n_words, pos = read_varint(payload, 0)
        end = pos + 4 * n_words
        if end > len(payload):
            raise FormatError("payload is shorter than its coded stream")
        words = np.frombuffer(payload[pos:end], dtype="<u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        out = np.empty((M, H * W), np.int32)
        for c, model in enumerate(self.models):
            try:
                out[c] = decoder.decode(model, H * W)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # constriction reports corrupt streams as exceptions (a Rust panic is a BaseException)
                raise FormatError(f"coded stream is corrupt ({str(exc).splitlines()[0][:80]})") from None
        escape = out == self.lengths[:, None].astype(np.int32)
        out += self.offsets[:, None].astype(np.int32)
        pos = end
        if escape.any():
            values = np.empty(int(escape.sum()), np.int32)
            for i in range(len(values)):
                v, pos = read_varint(payload, pos)
                if v >= 1 << 32:
                    raise FormatError("escaped value out of range")
                values[i] = unzigzag(v)
            out[escape] = values
        if pos != len(payload):
            raise FormatError("payload has trailing bytes")
        return out.reshape(M, H, W)


def write_varint(n: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Unsigned LEB128 at ``pos`` → (value, next position); at most 10 bytes."""
    value = shift = 0
    for i in range(10):
        if pos + i >= len(data):
            raise FormatError("payload ends inside a number")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos + i + 1
    raise FormatError("payload holds an over-long number")


def zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def unzigzag(u: int) -> int:
    return u // 2 if u % 2 == 0 else -(u + 1) // 2
