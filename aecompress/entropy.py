"""Entropy coding: integer tables, range coding, the hyperprior's scale table; no torch.

Training uses continuous densities (``aecompress.density``).  For coding, each
channel's density is turned once, at model-build time, into an integer frequency
table (``Tables``) stored in the model file.  Encoder and decoder drive the range
coder (constriction) from those integers only, so decoding is bit-exact on every
machine.  Values outside a table's support are coded as an escape symbol followed
by the value itself in a small side stream: never clipped.

The hyperprior codes y with Gaussian conditionals from a fixed table of scales:
one integer table per scale, built in float64 when the model file is written;
which table codes a symbol is decided by integer arithmetic (``aecompress.integer``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import constriction
import numpy as np

PRECISION = 16  # bits of the integer frequency tables
TAIL_MASS = 1e-6  # probability left outside a table's support (on each side)
MAX_SUPPORT = 2048  # widest table; rarer values go through the escape
LIKELIHOOD_BOUND = 1e-9


class FormatError(ValueError):
    """A payload that cannot be decoded (corrupt or made by another model)."""


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

    def tensors(self, prefix: str = "tables") -> dict:
        """The tensors a model file stores (torch, as model files are written)."""
        import torch

        return {
            f"{prefix}.freqs": torch.from_numpy(self.freqs),
            f"{prefix}.offsets": torch.from_numpy(self.offsets),
            f"{prefix}.lengths": torch.from_numpy(self.lengths),
        }

    @staticmethod
    def from_tensors(tensors: dict, prefix: str = "tables") -> Tables:
        """Read and validate a model file's tables (torch or numpy tensors)."""
        t = Tables(
            freqs=np.asarray(tensors[f"{prefix}.freqs"]).astype(np.int32),
            offsets=np.asarray(tensors[f"{prefix}.offsets"]).astype(np.int32),
            lengths=np.asarray(tensors[f"{prefix}.lengths"]).astype(np.int32),
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


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Probabilities → integer frequencies ≥ 1 summing to exactly ``2**PRECISION``."""
    total = 1 << PRECISION
    pmf = np.clip(pmf, 0.0, None)
    pmf = pmf / pmf.sum() if pmf.sum() > 0 else np.full_like(pmf, 1 / len(pmf))
    freqs = np.floor(pmf * (total - len(pmf))).astype(np.int64) + 1
    freqs[int(np.argmax(freqs))] += total - int(freqs.sum())
    return freqs.astype(np.int32)


class TableModels:
    """The range coder's models for the rows of a ``Tables``, built once per row on demand."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self._models: dict[int, object] = {}

    def __getitem__(self, row: int):
        if row not in self._models:
            t = self.tables
            self._models[row] = constriction.stream.model.Categorical(
                t.freqs[row, : t.lengths[row] + 1].astype(np.float64) / (1 << PRECISION), perfect=False
            )
        return self._models[row]


Positions = slice | np.ndarray  # where one table's symbols sit in the flat latent


def index_groups(index: np.ndarray) -> Iterator[tuple[int, Positions]]:
    """(row, positions) for every table row used in ``index``: rows ascending, positions in order.

    One pass per possible row over a small-integer array: memory stays at a mask and one
    group's positions (a 50-megapixel image has 31 million symbols).
    """
    flat = index.reshape(-1)
    if flat.size == 0:
        return
    for row in range(int(flat.min()), int(flat.max()) + 1):
        positions = np.flatnonzero(flat == row)
        if positions.size:
            yield row, positions


def channel_groups(rows: np.ndarray, per_row: int) -> Iterator[tuple[int, Positions]]:
    """Groups of a (C, H, W) latent coded channel by channel: row ``rows[c]`` for channel c."""
    for c, row in enumerate(np.asarray(rows).tolist()):
        yield int(row), slice(c * per_row, (c + 1) * per_row)


def _positions_of(positions: Positions, mask: np.ndarray) -> np.ndarray:
    return positions.start + np.flatnonzero(mask) if isinstance(positions, slice) else positions[mask]


class StreamEncoder:
    """One range-coded stream plus its escape list; symbols coded in groups of one table each.

    ``encode(values, groups)`` codes, group after group, the values at each group's
    positions (in order) with that group's table row.  Groups come ascending by row
    (``index_groups``, ``channel_groups``).  A payload is the coded words followed by the
    escaped values of every call, in coding order.
    """

    def __init__(self) -> None:
        self.coder = constriction.stream.queue.RangeEncoder()
        self.escaped: list[np.ndarray] = []

    def encode(self, values: np.ndarray, groups: Iterable[tuple[int, Positions]], models: TableModels) -> None:
        values = values.reshape(-1)
        if values.size and (int(values.min()) < -(1 << 31) or int(values.max()) >= 1 << 31):
            raise ValueError("latent values out of the coder's 32-bit range")
        t = models.tables
        for row, positions in groups:
            group = values[positions].astype(np.int64)
            symbols = group - int(t.offsets[row])
            outside = (symbols < 0) | (symbols >= t.lengths[row])
            if outside.any():
                symbols[outside] = t.lengths[row]
                self.escaped.append(group[outside])
            self.coder.encode(symbols.astype(np.int32), models[row])

    def finish(self) -> bytes:
        words = self.coder.get_compressed().astype("<u4").tobytes()
        side = np.concatenate(self.escaped) if self.escaped else np.zeros(0, np.int64)
        return write_varint(len(words) // 4) + words + b"".join(write_varint(zigzag(int(v))) for v in side)


class StreamDecoder:
    """Reads what ``StreamEncoder`` wrote, call for call; every problem is a ``FormatError``."""

    def __init__(self, payload: bytes) -> None:
        n_words, pos = read_varint(payload, 0)
        end = pos + 4 * n_words
        if end > len(payload):
            raise FormatError("payload is shorter than its coded stream")
        words = np.frombuffer(payload[pos:end], dtype="<u4").astype(np.uint32)
        self.coder = constriction.stream.queue.RangeDecoder(words)
        self.payload, self.pos = payload, end

    def decode(self, size: int, groups: Iterable[tuple[int, Positions]], models: TableModels) -> np.ndarray:
        """``size`` values (flat, int32), group by group as ``StreamEncoder.encode`` coded them."""
        out = np.empty(size, np.int32)
        t = models.tables
        escapes: list[np.ndarray] = []
        for row, positions in groups:
            count = positions.stop - positions.start if isinstance(positions, slice) else len(positions)
            try:
                symbols = np.asarray(self.coder.decode(models[row], count), dtype=np.int32)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # constriction reports corrupt streams as exceptions (a Rust panic is a BaseException)
                raise FormatError(f"coded stream is corrupt ({str(exc).splitlines()[0][:80]})") from None
            escape = symbols == t.lengths[row]
            out[positions] = symbols + t.offsets[row]
            if escape.any():
                escapes.append(_positions_of(positions, escape))
        for positions in escapes:
            for p in positions.tolist():
                v, self.pos = read_varint(self.payload, self.pos)
                if v >= 1 << 32:
                    raise FormatError("escaped value out of range")
                out[p] = unzigzag(v)
        return out

    def finish(self) -> None:
        if self.pos != len(self.payload):
            raise FormatError("payload has trailing bytes")


class SymbolCoder:
    """Range coding of a whole latent (C, H, W) with one table per channel (the factorized prior)."""

    def __init__(self, tables: Tables, channels: np.ndarray) -> None:
        self.models = TableModels(tables)
        self.channels = np.asarray(channels, np.int64)

    def _groups(self, shape: tuple[int, int, int]) -> Iterator[tuple[int, Positions]]:
        C, H, W = shape
        if C != len(self.channels):
            raise ValueError(f"latent has {C} channels, the coder {len(self.channels)}")
        return channel_groups(self.channels, H * W)

    def encode(self, y: np.ndarray) -> bytes:
        """Integer latent (C, H, W) → payload bytes."""
        stream = StreamEncoder()
        self.encode_into(stream, y)
        return stream.finish()

    def encode_into(self, stream: StreamEncoder, y: np.ndarray) -> None:
        stream.encode(y, self._groups(y.shape), self.models)

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Payload bytes → integer latent of ``shape`` (C, H, W)."""
        stream = StreamDecoder(payload)
        out = self.decode_from(stream, shape)
        stream.finish()
        return out

    def decode_from(self, stream: StreamDecoder, shape: tuple[int, int, int]) -> np.ndarray:
        C, H, W = shape
        return stream.decode(C * H * W, self._groups(shape), self.models).reshape(shape)


# ---------------------------------------------------------------- Gaussian conditionals

# The fixed scale table of the hyperprior: σ_i = exp((LOG_SCALE_MIN_Q8 + i·LOG_SCALE_STEP_Q8) / 256),
# i = 0 … SCALES−1 (0.11 … 290, 1/8 apart in ln σ).  Log-scales are fixed-point numbers with
# 8 fractional bits, so the index is pure integer arithmetic.
LOG_SCALE_MIN_Q8 = -565
LOG_SCALE_STEP_Q8 = 32
SCALES = 64
GAUSSIAN_TAIL = 4.75  # table support ±(4.75σ + ½): tail mass ≈ 1e-6 on each side, then escapes


def scale_table() -> np.ndarray:
    """σ of every table (float64)."""
    return np.exp((LOG_SCALE_MIN_Q8 + LOG_SCALE_STEP_Q8 * np.arange(SCALES)) / 256.0)


def scale_index_from_q8(log_scale_q8: np.ndarray) -> np.ndarray:
    """Fixed-point ln σ (8 fractional bits, integers) → nearest table index, in integers."""
    q = np.asarray(log_scale_q8, np.int64)
    return np.clip((q - LOG_SCALE_MIN_Q8 + LOG_SCALE_STEP_Q8 // 2) // LOG_SCALE_STEP_Q8, 0, SCALES - 1).astype(np.uint8)


LOG_SCALE_LOW = (LOG_SCALE_MIN_Q8 - LOG_SCALE_STEP_Q8 / 2) / 256  # ln σ of the table's first bin edge
LOG_SCALE_HIGH = (LOG_SCALE_MIN_Q8 + LOG_SCALE_STEP_Q8 * (SCALES - 0.5)) / 256


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
