"""The hyper-synthesis in exact integer arithmetic: the same table choice on every machine.

A hyperprior decoder must pick, for every symbol of y, the very table the encoder
used.  That choice comes from a network, and floating-point results differ between
CPUs, GPUs, thread counts and summation orders; one flipped index and the rest of
the file decodes to garbage.  So at coding time ``h_s`` runs on integers only
(Ballé et al. 2019, "Integer networks for data compression"):

- weights are integers ``round(w · 2^S)`` (|w| < 2^14), biases ``round(b · 2^(S+F))``;
- activations are fixed-point numbers with ``FRACTION`` = 8 fractional bits, clamped to
  [0, 2^24) (the ReLU and the clamp are one step), ẑ is clamped to ±2^12;
- each layer's sum is an integer below 2^53, so float64 holds it exactly and the
  order of summation cannot matter: the float64 matrix products below and the tests'
  int64 reference (tests/reference_integer.py) give identical results, and both are exact;
- rescaling is a rounding right shift ``(acc + 2^(k−1)) >> k``.

The outputs are the means (fixed-point, exact, added back to the residuals after
decoding) and the fixed-point ln σ, turned into a table index by integer arithmetic
(``entropy.scale_index_from_q8``).  Training uses the float ``HyperSynthesis``; the
integer network is its rounding, built when the model file is written.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from .engine import threads_here
from .entropy import LOG_SCALE_MIN_Q8, LOG_SCALE_STEP_Q8, FormatError, scale_index_from_q8
from .layout import CONTEXT_TAPS, anchor_grid

FRACTION = 8  # fractional bits of activations and of the log-scale output
WEIGHT_LIMIT = 1 << 14  # |integer weight| < this
ACT_LIMIT = 1 << 24  # activations in [0, ACT_LIMIT)
Z_LIMIT = 1 << 12  # ẑ is clamped to ±Z_LIMIT inside this network (the coded ẑ is not)
EXACT_LIMIT = 1 << 53  # float64 holds every integer below this exactly
HALO = 2  # ẑ rows of context on each side of a band (receptive field: 1 + 1/2 + 1/4 rows)


def _to_integers(weight, bias, input_fraction: int, min_bits: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """One layer (torch tensors) rounded to integers: ``round(w · 2^S)`` (|w| < 2^14), ``round(b · 2^(S + input_fraction))``, and S."""
    w = weight.detach().double().cpu().numpy()
    b = bias.detach().double().cpu().numpy()
    largest = max(float(np.abs(w).max()), 1e-12)
    S = max(min(int(np.floor(np.log2((WEIGHT_LIMIT - 1) / largest))), 30), min_bits)
    return np.round(w * 2.0**S).astype(np.int32), np.round(b * 2.0 ** (S + input_fraction)).astype(np.int64), S


def _set(parameter, values: np.ndarray) -> None:
    """Copy ``values`` into a torch parameter (a float network takes an integer network's weights)."""
    import torch

    with torch.no_grad():
        parameter.copy_(torch.from_numpy(values))


def band_rows(rows: int, most: int, least: int = 1) -> int:
    """Rows per band: ``most``, or fewer (not under ``least``) so that every worker gets a band."""
    return max(least, min(most, -(-rows // threads_here())))


def run_bands(job: Callable[[int], None], starts: range) -> None:
    """``job(start)`` for every band, on worker threads (one per core, or ``--threads``) when there are several.

    Bands write disjoint parts of the output, and the arithmetic is exact, so the result
    cannot depend on the order.  numpy releases the GIL in the products and element-wise
    work; one band per core beat one band at a time with OpenBLAS's threads (24 MP
    hyper-synthesis: 2.0 s against 3.3 s on two cores).
    """
    workers = min(len(starts), threads_here())
    if workers <= 1:
        for start in starts:
            job(start)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="aecompress-bands") as pool:
        for _ in pool.map(job, starts):
            pass


@dataclass
class IntegerLayers:
    """Integer weights, biases and scale bits of a network's layers, as model files store them."""

    weights: list[np.ndarray]  # int32 (Cout, Cin, k, k)
    biases: list[np.ndarray]  # int64 (Cout,)
    scale_bits: list[int]  # S of each layer: weight = w_int / 2^S

    PREFIX: ClassVar[str] = ""  # tensor names in the model file: PREFIX.weightI, PREFIX.biasI, PREFIX.scale_bits
    STORED_AS: ClassVar[type] = np.int32  # weights' dtype in the model files this writes

    def validate(self) -> None:
        raise NotImplementedError

    @cached_property
    def as_float64(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each layer's weights (Cout, Cin·k·k) and biases as float64: exact, and what the products run on."""
        return [
            (w.reshape(w.shape[0], -1).astype(np.float64), b.astype(np.float64)) for w, b in zip(self.weights, self.biases, strict=True)
        ]

    def tensors(self, prefix: str | None = None) -> dict:
        """The tensors a model file stores (torch, as model files are written), named ``PREFIX.…`` unless given ``prefix``."""
        import torch

        prefix = prefix or self.PREFIX
        out = {f"{prefix}.scale_bits": torch.tensor(self.scale_bits, dtype=torch.int32)}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{prefix}.weight{i}"] = torch.from_numpy(np.ascontiguousarray(w, self.STORED_AS))
            out[f"{prefix}.bias{i}"] = torch.from_numpy(np.ascontiguousarray(b))
        return out

    @classmethod
    def from_tensors(cls, tensors: dict, prefix: str | None = None) -> IntegerLayers:
        """Read and validate a model file's tensors, torch or numpy (a missing one is a KeyError: an inconsistent model file)."""
        prefix = prefix or cls.PREFIX
        bits = [int(v) for v in np.asarray(tensors[f"{prefix}.scale_bits"]).tolist()]
        stored = [np.asarray(tensors[f"{prefix}.weight{i}"]) for i in range(len(bits))]
        if any(w.dtype not in (np.int16, np.int32) for w in stored):  # never truncate a float silently
            raise FormatError(f"{prefix} weights are not integers")
        weights = [w.astype(np.int32) for w in stored]
        biases = [np.asarray(tensors[f"{prefix}.bias{i}"]).astype(np.int64) for i in range(len(bits))]
        net = cls(weights, biases, bits)
        net.validate()
        return net


@dataclass
class IntegerHyperSynthesis(IntegerLayers):
    """Integer weights of the three 3×3 layers; two pixel shuffles between them."""

    PREFIX: ClassVar[str] = "hyper_int"

    @property
    def shifts(self) -> list[int]:
        """Right shift that brings each layer's sum to FRACTION fractional bits."""
        return [s + (0 if i == 0 else FRACTION) - FRACTION for i, s in enumerate(self.scale_bits)]

    @property
    def mean_channels(self) -> int:
        return self.weights[-1].shape[0] // 2

    @staticmethod
    def from_float(h_s) -> IntegerHyperSynthesis:
        """Round a trained ``model.HyperSynthesis`` to integers."""
        layers = [  # the first layer's input ẑ is an integer (no fractional bits); its shift must not be negative
            _to_integers(conv.weight, conv.bias, 0 if i == 0 else FRACTION, FRACTION if i == 0 else 0) for i, conv in enumerate(h_s.convs)
        ]
        net = IntegerHyperSynthesis(*map(list, zip(*layers, strict=True)))
        net.validate()
        return net

    def to_float(self, h_s) -> None:
        """Set a ``model.HyperSynthesis``'s weights to this network's values (model files store only these)."""
        for i, conv in enumerate(h_s.convs):
            S = self.scale_bits[i]
            _set(conv.weight, self.weights[i].astype(np.float64) / 2.0**S)
            _set(conv.bias, self.biases[i].astype(np.float64) / 2.0 ** (S + (0 if i == 0 else FRACTION)))

    def validate(self) -> None:
        """Check the bounds that make every sum exact (a model file is input too)."""
        if len(self.weights) != 3 or len(self.biases) != 3 or len(self.scale_bits) != 3:
            raise FormatError("integer hyper-synthesis must have three layers")
        cin = None
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 4 or w.shape[2:] != (3, 3) or b.shape != (w.shape[0],):
                raise FormatError("integer hyper-synthesis has bad shapes")
            if cin is not None and w.shape[1] != cin:
                raise FormatError("integer hyper-synthesis layers do not chain")
            cin = w.shape[0] // 4 if i < 2 else None
            if i < 2 and w.shape[0] % 4:
                raise FormatError("integer hyper-synthesis has bad shapes")
            if not 0 <= self.shifts[i] <= 40 or int(np.abs(w).max(initial=0)) >= WEIGHT_LIMIT:
                raise FormatError("integer hyper-synthesis weights out of range")
            fan_in = w.shape[1] * 9
            largest_input = Z_LIMIT if i == 0 else ACT_LIMIT
            if fan_in * largest_input * WEIGHT_LIMIT + int(np.abs(b).max(initial=0)) >= EXACT_LIMIT:
                raise FormatError("integer hyper-synthesis sums could exceed 2^53")
        if self.weights[-1].shape[0] % 2:
            raise FormatError("integer hyper-synthesis has bad shapes")

    def __call__(self, z_hat: np.ndarray, height: int, width: int, band: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ẑ (Cz, h, w) integers → means (float32, M × height × width) and table indices (int64).

        The means are exact fixed-point numbers rounded once to float32 (IEEE: the same
        everywhere).

        Runs in bands of ``band`` ẑ rows (with a halo), so memory stays bounded on any
        image; the result does not depend on ``band``.  By default up to 16 rows, fewer
        (down to 4) where that gives every core a band: the halo's work grows as bands shrink.
        """
        h = z_hat.shape[1]
        band = band or band_rows(h, most=16, least=4)
        mean = np.empty((self.mean_channels, height, width), np.float32)
        index = np.empty((self.mean_channels, height, width), np.uint8)

        def one_band(top: int) -> None:
            lo, hi = max(0, top - HALO), min(h, top + band + HALO)
            rows = slice(4 * top, min(height, 4 * (top + band)))  # output rows of this band
            n = rows.stop - rows.start
            if n <= 0:
                return
            m, s = self._forward(np.asarray(z_hat[:, lo:hi], np.float64))
            r0 = 4 * (top - lo)
            mean[:, rows] = m[:, r0 : r0 + n, :width]
            index[:, rows] = scale_index_from_q8(s[:, r0 : r0 + n, :width].astype(np.int64))

        run_bands(one_band, range(0, h, band))
        return mean, index

    def _forward(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float64 products: exact because every value and partial sum is an integer below 2^53."""
        x = np.clip(z, -Z_LIMIT, Z_LIMIT)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(self.as_float64):
            acc = _conv3x3_float64(x, w, b)
            if i < last:
                x = np.clip(_shift_right(acc, self.shifts[i]), 0, ACT_LIMIT - 1)
                x = _pixel_shuffle(x)
        M = self.mean_channels
        mean = (acc[:M] / 2.0 ** (self.shifts[last] + FRACTION)).astype(np.float32)
        return mean, _shift_right(acc[M:], self.shifts[last])


WINDOW_BYTES = 64 << 20  # memory for the unfolded windows of one matrix product


def _shift_right(acc: np.ndarray, k: int) -> np.ndarray:
    """The rounding right shift (acc + 2^(k−1)) >> k of exact integers held in float64."""
    return np.floor((acc + 2.0 ** (k - 1)) / 2.0**k) if k else acc


def _pixel_shuffle(x: np.ndarray) -> np.ndarray:
    """(4C, H, W) → (C, 2H, 2W): channel 4c + 2i + j goes to row 2h + i, column 2w + j (torch's pixel_shuffle)."""
    C, H, W = x.shape[0] // 4, x.shape[1], x.shape[2]
    return x.reshape(C, 2, 2, H, W).transpose(0, 3, 1, 4, 2).reshape(C, 2 * H, 2 * W)


def _conv3x3_float64(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3×3 convolution, zero padding, as matrix products over unfolded windows (no transform-based algorithms).

    ``w`` is (Cout, C·9) in (C, dy, dx) order.  Row chunks keep the unfolded copy (nine
    times the input) within ``WINDOW_BYTES``.
    """
    C, H, W = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.empty((w.shape[0], H, W), np.float64)
    rows = max(1, WINDOW_BYTES // (C * 9 * W * 8))
    for top in range(0, H, rows):
        n = min(rows, H - top)
        windows = np.empty((C, 9, n, W), np.float64)
        for k in range(9):
            windows[:, k] = padded[:, top + k // 3 : top + k // 3 + n, k % 3 : k % 3 + W]
        product = w @ windows.reshape(C * 9, n * W)
        product += b[:, None]
        out[:, top : top + n] = product.reshape(-1, n, W)
    return out


# ---------------------------------------------------------------- the checkerboard context

Y_LIMIT = 1 << 22  # anchors' ŷ in fixed point (8 fractional bits) is clamped to ±Y_LIMIT
CONTEXT_HALO = 2  # y rows of anchors a band needs on each side (the 5×5 window)


def mean_q8(mean: np.ndarray) -> np.ndarray:
    """The float32 mean in fixed point, round(256·μ) half up: exact in float64, the same everywhere."""
    return np.floor(np.asarray(mean, np.float32).astype(np.float64) * 256 + 0.5).astype(np.int64)


def index_log_scale_q8(index: np.ndarray) -> np.ndarray:
    """ln σ (8 fractional bits) of each table index: what the context sees of the hyperprior's scale."""
    return LOG_SCALE_MIN_Q8 + np.asarray(index, np.int64) * LOG_SCALE_STEP_Q8


@dataclass
class IntegerContext(IntegerLayers):
    """The checkerboard context (``model.CheckerboardContext``) in exact integer arithmetic.

    Same scheme as ``IntegerHyperSynthesis``: every input has 8 fractional bits (the
    anchors' ŷ, the hyperprior's mean and table ln σ), weights are ``round(w · 2^S)``,
    biases ``round(b · 2^(S+8))``, each layer's sum an integer below 2^53 that float64
    holds exactly, rescaled by a rounding right shift.  Layer 0 is the masked 5×5
    convolution over the anchors (only its 12 taps are used; the others must be zero),
    layers 1–3 the 1×1 parameter layers.  Outputs at the non-anchors: Δmean (exact,
    added to the float32 mean in float64, then rounded to float32: IEEE, the same
    everywhere) and Δln σ in fixed point, which picks the table.
    """

    PREFIX: ClassVar[str] = "context_int"  # weights: (M, M, 5, 5), then (Cout, Cin, 1, 1) ×3
    STORED_AS: ClassVar[type] = np.int16  # |w| < 2^14 fits; halves the context's share of a model file

    @property
    def channels(self) -> int:
        return self.weights[0].shape[0]

    @staticmethod
    def from_float(context) -> IntegerContext:
        """Round a trained ``model.CheckerboardContext`` to integers."""
        layers = [(context.context.weight * context.mask, context.context.bias)] + [(c.weight, c.bias) for c in context.params]
        net = IntegerContext(*map(list, zip(*(_to_integers(w, b, FRACTION) for w, b in layers), strict=True)))
        net.validate()
        return net

    def to_float(self, context) -> None:
        """Set a ``model.CheckerboardContext``'s weights to this network's values (model files store only these)."""
        convs = [context.context, *context.params]
        for conv, w, b, S in zip(convs, self.weights, self.biases, self.scale_bits, strict=True):
            _set(conv.weight, w.astype(np.float64) / 2.0**S)
            _set(conv.bias, b.astype(np.float64) / 2.0 ** (S + FRACTION))

    def validate(self) -> None:
        """Check the shapes, the mask and the bounds that make every sum exact (a model file is input too)."""
        if len(self.weights) != 4 or len(self.biases) != 4 or len(self.scale_bits) != 4:
            raise FormatError("integer context must have four layers")
        M = self.weights[0].shape[0]
        kernels = [(5, 5), (1, 1), (1, 1), (1, 1)]
        inputs = [M, 3 * M, self.weights[1].shape[0], self.weights[2].shape[0]]
        limits = [Y_LIMIT, ACT_LIMIT, ACT_LIMIT, ACT_LIMIT]
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 4 or w.shape[1] != inputs[i] or w.shape[2:] != kernels[i] or b.shape != (w.shape[0],):
                raise FormatError("integer context has bad shapes")
            if not 0 <= self.scale_bits[i] <= 40 or int(np.abs(w).max(initial=0)) >= WEIGHT_LIMIT:
                raise FormatError("integer context weights out of range")
            fan_in = w.shape[1] * (len(CONTEXT_TAPS) if i == 0 else 1)
            if fan_in * limits[i] * WEIGHT_LIMIT + int(np.abs(b).max(initial=0)) >= EXACT_LIMIT:
                raise FormatError("integer context sums could exceed 2^53")
        if self.weights[0].shape[:2] != (M, M) or self.weights[3].shape[0] != 2 * M:
            raise FormatError("integer context has bad shapes")
        taps = np.zeros((5, 5), bool)
        for dy, dx in CONTEXT_TAPS:
            taps[dy + 2, dx + 2] = True
        if np.any(self.weights[0][:, :, ~taps]):
            raise FormatError("integer context looks at symbols the decoder does not have yet")

    def __call__(self, residual: np.ndarray, mean: np.ndarray, index: np.ndarray, band: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Means and table indices of the non-anchors, from the anchors' residuals and the hyperprior's estimates.

        ``residual`` (M, h, w) integers, read at the anchors only; ``mean`` (float32) and
        ``index`` (uint8): the hyperprior's, everywhere.  Returns the non-anchors' new mean
        (float32) and index (uint8), flat, in (channel, row, column) order.  Runs in bands
        of ``band`` rows (with a halo of two), so memory stays bounded on any image; the
        result does not depend on ``band``.
        """
        M, h, w = residual.shape
        non_anchor = ~anchor_grid(h, w)
        starts = np.concatenate([[0], np.cumsum(non_anchor.sum(axis=1))])  # where each row's non-anchors start
        new_mean = np.empty((M, int(starts[-1])), np.float32)
        new_index = np.empty((M, int(starts[-1])), np.uint8)

        def one_band(top: int) -> None:
            lo, hi = max(0, top - CONTEXT_HALO), min(h, top + band + CONTEXT_HALO)
            rows, cols = np.nonzero(non_anchor[top : min(h, top + band)])  # row-major, as the output
            if rows.size == 0:
                return
            rows = rows + top
            out = slice(int(starts[top]), int(starts[min(h, top + band)]))
            anchors = _anchors_q8(residual[:, lo:hi], mean[:, lo:hi], ~non_anchor[lo:hi])
            base_mean = mean[:, rows, cols]
            base_q8 = np.stack([mean_q8(base_mean), index_log_scale_q8(index[:, rows, cols])])
            delta_mean, delta_q8 = self._forward(anchors.astype(np.float64), base_q8.astype(np.float64), rows - lo, cols)
            new_mean[:, out] = (base_mean.astype(np.float64) + delta_mean).astype(np.float32)
            new_index[:, out] = scale_index_from_q8(base_q8[1] + delta_q8.astype(np.int64))

        run_bands(one_band, range(0, h, band))
        return new_mean, new_index

    @cached_property
    def tap_weights(self) -> list[np.ndarray]:
        """Layer 0's (M, M) float64 matrix of each of ``CONTEXT_TAPS``."""
        w0 = self.weights[0].astype(np.float64)
        return [np.ascontiguousarray(w0[:, :, dy + 2, dx + 2]) for dy, dx in CONTEXT_TAPS]

    def _forward(self, anchors: np.ndarray, base_q8: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float64 products over the listed positions: exact, every value and partial sum is an integer below 2^53."""
        M = self.channels
        padded = np.pad(anchors, ((0, 0), (2, 2), (2, 2)))
        acc = np.repeat(self.as_float64[0][1][:, None], rows.size, axis=1)
        for (dy, dx), w in zip(CONTEXT_TAPS, self.tap_weights, strict=True):
            acc += w @ padded[:, rows + 2 + dy, cols + 2 + dx]
        context = np.clip(_shift_right(acc, self.scale_bits[0]), -(ACT_LIMIT - 1), ACT_LIMIT - 1)
        x = np.concatenate([np.clip(base_q8.reshape(2 * M, -1), -(ACT_LIMIT - 1), ACT_LIMIT - 1), context])
        last = len(self.weights) - 1
        for i in range(1, last + 1):
            w, b = self.as_float64[i]
            acc = w @ x
            acc += b[:, None]
            if i < last:
                x = np.clip(_shift_right(acc, self.scale_bits[i]), 0, ACT_LIMIT - 1)
        k = self.scale_bits[last]
        return acc[:M] / 2.0 ** (k + FRACTION), _shift_right(acc[M:], k)


def _anchors_q8(residual: np.ndarray, mean: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """The anchors' ŷ = round(y − μ) + μ in fixed point (8 fractional bits); zero at the non-anchors."""
    y = np.asarray(residual, np.int64) * 256 + mean_q8(mean)
    return np.where(anchor, y, 0).clip(-Y_LIMIT, Y_LIMIT)


# ---------------------------------------------------------------- the channel-wise context

POSITIONS_PER_PRODUCT = 16384  # positions of one chunk of the channel-wise context's products


def decoded_q8(residual: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """ŷ = round(y − μ) + μ in fixed point (8 fractional bits), clamped to ±Y_LIMIT, as int64."""
    return (np.asarray(residual, np.int64) * 256 + mean_q8(mean)).clip(-Y_LIMIT, Y_LIMIT)


@dataclass
class IntegerGroupNetwork(IntegerLayers):
    """One group's network of the channel-wise context: three 1×1 layers, in exact integer arithmetic."""

    PREFIX: ClassVar[str] = "channel_int"  # the model file numbers them: channel_int1, channel_int2, …
    STORED_AS: ClassVar[type] = np.int16

    def validate(self) -> None:
        """Check the shapes and the bounds that make every sum exact (a model file is input too)."""
        if len(self.weights) != 3 or len(self.biases) != 3 or len(self.scale_bits) != 3:
            raise FormatError("integer channel context must have three layers per group")
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 4 or w.shape[2:] != (1, 1) or b.shape != (w.shape[0],):
                raise FormatError("integer channel context has bad shapes")
            if i and w.shape[1] != self.weights[i - 1].shape[0]:
                raise FormatError("integer channel context layers do not chain")
            if not 0 <= self.scale_bits[i] <= 40 or int(np.abs(w).max(initial=0)) >= WEIGHT_LIMIT:
                raise FormatError("integer channel context weights out of range")
            if w.shape[1] * ACT_LIMIT * WEIGHT_LIMIT + int(np.abs(b).max(initial=0)) >= EXACT_LIMIT:
                raise FormatError("integer channel context sums could exceed 2^53")
        if self.weights[-1].shape[0] % 2:
            raise FormatError("integer channel context has bad shapes")

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (Cin, P) in fixed point → Δmean (float64, exact) and Δln σ (fixed point) of the group."""
        x = np.clip(x, -(ACT_LIMIT - 1), ACT_LIMIT - 1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(self.as_float64):
            acc = w @ x
            acc += b[:, None]
            if i < last:
                x = np.clip(_shift_right(acc, self.scale_bits[i]), 0, ACT_LIMIT - 1)
        half, k = acc.shape[0] // 2, self.scale_bits[last]
        return acc[:half] / 2.0 ** (k + FRACTION), _shift_right(acc[half:], k)


@dataclass
class IntegerChannelContext:
    """The channel-wise context (``model.ChannelContext``) in exact integer arithmetic, one network per group after the first.

    Inputs, all with 8 fractional bits: the ŷ of the earlier groups at a position, and the
    group's own mean and table ln σ there.  Outputs: Δmean (exact, added to the float32 mean
    in float64, then rounded to float32) and Δln σ in fixed point, which picks the table;
    the same scheme as ``IntegerContext``'s parameter layers.
    """

    groups: tuple[int, ...]
    nets: list[IntegerGroupNetwork]

    @staticmethod
    def from_float(channel_context) -> IntegerChannelContext:
        """Round a trained ``model.ChannelContext`` to integers."""
        nets = []
        for layers in channel_context.nets:
            rounded = [_to_integers(conv.weight, conv.bias, FRACTION) for conv in layers]
            net = IntegerGroupNetwork(*map(list, zip(*rounded, strict=True)))
            net.validate()
            nets.append(net)
        return IntegerChannelContext(tuple(channel_context.groups), nets)

    def to_float(self, channel_context) -> None:
        """Set a ``model.ChannelContext``'s weights to this network's values (model files store only these)."""
        for layers, net in zip(channel_context.nets, self.nets, strict=True):
            for conv, w, b, S in zip(layers, net.weights, net.biases, net.scale_bits, strict=True):
                _set(conv.weight, w.astype(np.float64) / 2.0**S)
                _set(conv.bias, b.astype(np.float64) / 2.0 ** (S + FRACTION))

    def tensors(self) -> dict:
        out: dict = {}
        for g, net in enumerate(self.nets, start=1):
            out.update(net.tensors(f"{IntegerGroupNetwork.PREFIX}{g}"))
        return out

    @staticmethod
    def from_tensors(tensors: dict, groups: tuple[int, ...]) -> IntegerChannelContext:
        """Read and validate a model file's tensors for ``groups`` (``presets.channel_groups``)."""
        nets = [IntegerGroupNetwork.from_tensors(tensors, f"{IntegerGroupNetwork.PREFIX}{g}") for g in range(1, len(groups))]
        for g, net in enumerate(nets, start=1):
            width = 2 * groups[g]
            if net.weights[0].shape[1] != sum(groups[:g]) + width or net.weights[-1].shape[0] != width:
                raise FormatError("integer channel context does not match its groups")
        return IntegerChannelContext(tuple(groups), nets)

    def __call__(self, group: int, before_q8: np.ndarray, mean: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New mean (float32) and table index (uint8) of ``group`` (≥ 1) at P positions.

        ``before_q8`` (channels of the earlier groups, P): their ŷ in fixed point
        (``decoded_q8``); ``mean`` (float32) and ``index`` (uint8), (group's channels, P):
        the estimates so far.  Runs in chunks of positions; being 1×1, the result does not
        depend on them.
        """
        net = self.nets[group - 1]
        new_mean = np.empty(mean.shape, np.float32)
        new_index = np.empty(index.shape, np.uint8)

        def one_chunk(start: int) -> None:
            part = slice(start, start + POSITIONS_PER_PRODUCT)
            base_q8 = np.concatenate([mean_q8(mean[:, part]), index_log_scale_q8(index[:, part])])
            x = np.concatenate([before_q8[:, part], base_q8]).astype(np.float64)
            delta_mean, delta_q8 = net.forward(x)
            new_mean[:, part] = (mean[:, part].astype(np.float64) + delta_mean).astype(np.float32)
            new_index[:, part] = scale_index_from_q8(base_q8[mean.shape[0] :] + delta_q8.astype(np.int64))

        run_bands(one_chunk, range(0, mean.shape[1], POSITIONS_PER_PRODUCT))
        return new_mean, new_index
