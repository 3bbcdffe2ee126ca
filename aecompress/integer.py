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
  order of summation cannot matter: the torch path below (float64 matrix products)
  and the numpy path (int64) give identical results, and both are exact;
- rescaling is a rounding right shift ``(acc + 2^(k−1)) >> k``.

The outputs are the means (fixed-point, exact, added back to the residuals after
decoding) and the fixed-point ln σ, turned into a table index by integer arithmetic
(``entropy.scale_index_from_q8``).  Training uses the float ``HyperSynthesis``; the
integer network is its rounding, built when the model file is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .entropy import LOG_SCALE_MIN_Q8, LOG_SCALE_STEP_Q8, FormatError, scale_index_from_q8
from .model import CONTEXT_TAPS, anchor_mask

FRACTION = 8  # fractional bits of activations and of the log-scale output
WEIGHT_LIMIT = 1 << 14  # |integer weight| < this
ACT_LIMIT = 1 << 24  # activations in [0, ACT_LIMIT)
Z_LIMIT = 1 << 12  # ẑ is clamped to ±Z_LIMIT inside this network (the coded ẑ is not)
EXACT_LIMIT = 1 << 53  # float64 holds every integer below this exactly
HALO = 2  # ẑ rows of context on each side of a band (receptive field: 1 + 1/2 + 1/4 rows)


def _to_integers(weight: torch.Tensor, bias: torch.Tensor, input_fraction: int, min_bits: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """One layer rounded to integers: ``round(w · 2^S)`` (|w| < 2^14), ``round(b · 2^(S + input_fraction))``, and S."""
    w = weight.detach().double().cpu().numpy()
    b = bias.detach().double().cpu().numpy()
    largest = max(float(np.abs(w).max()), 1e-12)
    S = max(min(int(np.floor(np.log2((WEIGHT_LIMIT - 1) / largest))), 30), min_bits)
    return np.round(w * 2.0**S).astype(np.int32), np.round(b * 2.0 ** (S + input_fraction)).astype(np.int64), S


@dataclass
class IntegerLayers:
    """Integer weights, biases and scale bits of a network's layers, as model files store them."""

    weights: list[np.ndarray]  # int32 (Cout, Cin, k, k)
    biases: list[np.ndarray]  # int64 (Cout,)
    scale_bits: list[int]  # S of each layer: weight = w_int / 2^S

    PREFIX: ClassVar[str] = ""  # tensor names in the model file: PREFIX.weightI, PREFIX.biasI, PREFIX.scale_bits
    STORED_AS: ClassVar[torch.dtype] = torch.int32  # weights' dtype in the model files this writes

    def validate(self) -> None:
        raise NotImplementedError

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"{self.PREFIX}.scale_bits": torch.tensor(self.scale_bits, dtype=torch.int32)}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{self.PREFIX}.weight{i}"] = torch.from_numpy(np.ascontiguousarray(w)).to(self.STORED_AS)
            out[f"{self.PREFIX}.bias{i}"] = torch.from_numpy(np.ascontiguousarray(b))
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> IntegerLayers:
        """Read and validate (a missing tensor is a KeyError: an inconsistent model file)."""
        bits = [int(v) for v in tensors[f"{cls.PREFIX}.scale_bits"].tolist()]
        stored = [tensors[f"{cls.PREFIX}.weight{i}"] for i in range(len(bits))]
        if any(w.dtype not in (torch.int16, torch.int32) for w in stored):  # never truncate a float silently
            raise FormatError(f"{cls.PREFIX} weights are not integers")
        weights = [w.numpy().astype(np.int32) for w in stored]
        biases = [tensors[f"{cls.PREFIX}.bias{i}"].numpy().astype(np.int64) for i in range(len(bits))]
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
    @torch.no_grad()
    def from_float(h_s) -> IntegerHyperSynthesis:
        """Round a trained ``model.HyperSynthesis`` to integers."""
        layers = [  # the first layer's input ẑ is an integer (no fractional bits); its shift must not be negative
            _to_integers(conv.weight, conv.bias, 0 if i == 0 else FRACTION, FRACTION if i == 0 else 0) for i, conv in enumerate(h_s.convs)
        ]
        net = IntegerHyperSynthesis(*map(list, zip(*layers, strict=True)))
        net.validate()
        return net

    @torch.no_grad()
    def to_float(self, h_s) -> None:
        """Set a ``model.HyperSynthesis``'s weights to this network's values (model files store only these)."""
        for i, conv in enumerate(h_s.convs):
            S = self.scale_bits[i]
            conv.weight.copy_(torch.from_numpy(self.weights[i].astype(np.float64) / 2.0**S))
            conv.bias.copy_(torch.from_numpy(self.biases[i].astype(np.float64) / 2.0 ** (S + (0 if i == 0 else FRACTION))))

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

    def __call__(self, z_hat: np.ndarray, height: int, width: int, band: int = 16, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """ẑ (Cz, h, w) integers → means (float32, M × height × width) and table indices (int64).

        The means are exact fixed-point numbers rounded once to float32 (IEEE: the same
        everywhere).

        Runs in bands of ``band`` ẑ rows (with a halo), so memory stays bounded on any
        image; the result does not depend on ``band`` or ``device``.
        """
        h = z_hat.shape[1]
        mean = np.empty((self.mean_channels, height, width), np.float32)
        index = np.empty((self.mean_channels, height, width), np.uint8)
        for top in range(0, h, band):
            lo, hi = max(0, top - HALO), min(h, top + band + HALO)
            z = torch.from_numpy(np.asarray(z_hat[:, lo:hi], np.int64)).to(device)
            m, s = self._forward_torch(z)
            r0 = 4 * (top - lo)
            rows = slice(4 * top, min(height, 4 * (top + band)))  # output rows of this band
            n = rows.stop - rows.start
            if n <= 0:
                continue
            mean[:, rows] = m[:, r0 : r0 + n, :width].float().cpu().numpy()
            index[:, rows] = scale_index_from_q8(s[:, r0 : r0 + n, :width].cpu().numpy().astype(np.int64))
        return mean, index

    def _forward_torch(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 path: exact because every value and partial sum is an integer below 2^53."""
        x = z.double().clamp(-Z_LIMIT, Z_LIMIT)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            acc = _conv3x3_float64(x, torch.from_numpy(w).to(x.device).double(), torch.from_numpy(b).to(x.device).double())
            if i < last:
                x = torch.floor((acc + 2.0 ** (self.shifts[i] - 1)) / 2.0 ** self.shifts[i]).clamp(0, ACT_LIMIT - 1)
                x = F.pixel_shuffle(x[None], 2)[0]
        M = self.mean_channels
        mean = acc[:M] / 2.0 ** (self.shifts[last] + FRACTION)
        shift = self.shifts[last]
        log_scale = torch.floor((acc[M:] + (2.0 ** (shift - 1) if shift else 0.0)) / 2.0**shift)
        return mean, log_scale


WINDOW_BYTES = 64 << 20  # memory for the unfolded windows of one matrix product


def _conv3x3_float64(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """3×3 convolution, zero padding, as matrix products over unfolded windows (no transform-based algorithms).

    Row chunks keep the unfolded copy (nine times the input) within ``WINDOW_BYTES``.
    """
    C, H, W = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    weights = w.reshape(w.shape[0], C * 9)  # (Cout, C·9), in unfold's (C, dy, dx) order
    out = torch.empty(w.shape[0], H, W, dtype=x.dtype, device=x.device)
    rows = max(1, WINDOW_BYTES // (C * 9 * W * x.element_size()))
    for top in range(0, H, rows):
        n = min(rows, H - top)
        windows = F.unfold(padded[None, :, top : top + n + 2], 3)[0]  # (C·9, n·W)
        out[:, top : top + n] = torch.addmm(b[:, None], weights, windows).reshape(-1, n, W)
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
    STORED_AS: ClassVar[torch.dtype] = torch.int16  # |w| < 2^14 fits; halves the context's share of a model file

    @property
    def channels(self) -> int:
        return self.weights[0].shape[0]

    @staticmethod
    @torch.no_grad()
    def from_float(context) -> IntegerContext:
        """Round a trained ``model.CheckerboardContext`` to integers."""
        layers = [(context.context.weight * context.mask, context.context.bias)] + [(c.weight, c.bias) for c in context.params]
        net = IntegerContext(*map(list, zip(*(_to_integers(w, b, FRACTION) for w, b in layers), strict=True)))
        net.validate()
        return net

    @torch.no_grad()
    def to_float(self, context) -> None:
        """Set a ``model.CheckerboardContext``'s weights to this network's values (model files store only these)."""
        convs = [context.context, *context.params]
        for conv, w, b, S in zip(convs, self.weights, self.biases, self.scale_bits, strict=True):
            conv.weight.copy_(torch.from_numpy(w.astype(np.float64) / 2.0**S))
            conv.bias.copy_(torch.from_numpy(b.astype(np.float64) / 2.0 ** (S + FRACTION)))

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

    def __call__(
        self, residual: np.ndarray, mean: np.ndarray, index: np.ndarray, band: int = 32, device: str = "cpu"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Means and table indices of the non-anchors, from the anchors' residuals and the hyperprior's estimates.

        ``residual`` (M, h, w) integers, read at the anchors only; ``mean`` (float32) and
        ``index`` (uint8): the hyperprior's, everywhere.  Returns the non-anchors' new mean
        (float32) and index (uint8), flat, in (channel, row, column) order.  Runs in bands
        of ``band`` rows (with a halo of two), so memory stays bounded on any image; the
        result depends on neither ``band`` nor ``device``.
        """
        M, h, w = residual.shape
        non_anchor = ~anchor_mask(h, w).numpy()
        starts = np.concatenate([[0], np.cumsum(non_anchor.sum(axis=1))])  # where each row's non-anchors start
        new_mean = np.empty((M, int(starts[-1])), np.float32)
        new_index = np.empty((M, int(starts[-1])), np.uint8)
        for top in range(0, h, band):
            lo, hi = max(0, top - CONTEXT_HALO), min(h, top + band + CONTEXT_HALO)
            rows, cols = np.nonzero(non_anchor[top : min(h, top + band)])  # row-major, as the output
            if rows.size == 0:
                continue
            rows = rows + top
            out = slice(int(starts[top]), int(starts[min(h, top + band)]))
            anchors = _anchors_q8(residual[:, lo:hi], mean[:, lo:hi], ~non_anchor[lo:hi])
            base_mean = mean[:, rows, cols]
            base_q8 = np.stack([mean_q8(base_mean), index_log_scale_q8(index[:, rows, cols])])
            delta_mean, delta_q8 = self._forward_torch(
                torch.from_numpy(anchors).to(device), torch.from_numpy(base_q8).to(device), rows - lo, cols
            )
            new_mean[:, out] = (base_mean.astype(np.float64) + delta_mean.cpu().numpy()).astype(np.float32)
            new_index[:, out] = scale_index_from_q8(base_q8[1] + delta_q8.cpu().numpy().astype(np.int64))
        return new_mean, new_index

    def _forward_torch(self, anchors: torch.Tensor, base_q8: torch.Tensor, rows: np.ndarray, cols: np.ndarray):
        """Float64 path over the listed positions: exact, every value and partial sum is an integer below 2^53."""
        x = anchors.double()
        M = self.channels
        padded = F.pad(x, (2, 2, 2, 2))
        w0 = torch.from_numpy(self.weights[0]).to(x.device).double()
        acc = torch.from_numpy(self.biases[0]).to(x.device).double()[:, None].expand(-1, rows.size).clone()
        r = torch.from_numpy(rows + 2).to(x.device)
        c = torch.from_numpy(cols + 2).to(x.device)
        for dy, dx in CONTEXT_TAPS:
            acc += w0[:, :, dy + 2, dx + 2] @ padded[:, r + dy, c + dx]
        k = self.scale_bits[0]
        context = torch.floor((acc + 2.0 ** (k - 1) if k else acc) / 2.0**k).clamp(-(ACT_LIMIT - 1), ACT_LIMIT - 1)
        x = torch.cat([base_q8.double().reshape(2 * M, -1).clamp(-(ACT_LIMIT - 1), ACT_LIMIT - 1), context])
        last = len(self.weights) - 1
        for i in range(1, last + 1):
            w = torch.from_numpy(self.weights[i][:, :, 0, 0]).to(x.device).double()
            acc = w @ x + torch.from_numpy(self.biases[i]).to(x.device).double()[:, None]
            k = self.scale_bits[i]
            if i < last:
                x = torch.floor((acc + 2.0 ** (k - 1) if k else acc) / 2.0**k).clamp(0, ACT_LIMIT - 1)
        delta_mean = acc[:M] / 2.0 ** (k + FRACTION)
        delta_q8 = torch.floor((acc[M:] + (2.0 ** (k - 1) if k else 0.0)) / 2.0**k)
        return delta_mean, delta_q8


def _anchors_q8(residual: np.ndarray, mean: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """The anchors' ŷ = round(y − μ) + μ in fixed point (8 fractional bits); zero at the non-anchors."""
    y = np.asarray(residual, np.int64) * 256 + mean_q8(mean)
    return np.where(anchor, y, 0).clip(-Y_LIMIT, Y_LIMIT)
