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

import numpy as np
import torch
import torch.nn.functional as F

from .entropy import FormatError, scale_index_from_q8

FRACTION = 8  # fractional bits of activations and of the log-scale output
WEIGHT_LIMIT = 1 << 14  # |integer weight| < this
ACT_LIMIT = 1 << 24  # activations in [0, ACT_LIMIT)
Z_LIMIT = 1 << 12  # ẑ is clamped to ±Z_LIMIT inside this network (the coded ẑ is not)
EXACT_LIMIT = 1 << 53  # float64 holds every integer below this exactly
HALO = 3  # ẑ rows of context on each side of a band (receptive field: < 2 rows)


@dataclass
class IntegerHyperSynthesis:
    """Integer weights of the three 3×3 layers; two pixel shuffles between them."""

    weights: list[np.ndarray]  # int32 (Cout, Cin, 3, 3)
    biases: list[np.ndarray]  # int64 (Cout,)
    scale_bits: list[int]  # S of each layer: weight = w_int / 2^S

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
        weights, biases, bits = [], [], []
        for i, conv in enumerate(h_s.convs):
            w = conv.weight.detach().double().cpu().numpy()
            b = conv.bias.detach().double().cpu().numpy()
            largest = max(float(np.abs(w).max()), 1e-12)
            S = int(np.floor(np.log2((WEIGHT_LIMIT - 1) / largest)))
            S = max(min(S, 30), FRACTION if i == 0 else 0)  # shifts never negative
            weights.append(np.round(w * 2.0**S).astype(np.int32))
            biases.append(np.round(b * 2.0 ** (S + (0 if i == 0 else FRACTION))).astype(np.int64))
            bits.append(S)
        net = IntegerHyperSynthesis(weights, biases, bits)
        net.validate()
        return net

    @torch.no_grad()
    def to_float(self, h_s) -> None:
        """Set a ``model.HyperSynthesis``'s weights to this network's values (model files store only these)."""
        for i, conv in enumerate(h_s.convs):
            S = self.scale_bits[i]
            conv.weight.copy_(torch.from_numpy(self.weights[i].astype(np.float64) / 2.0**S))
            conv.bias.copy_(torch.from_numpy(self.biases[i].astype(np.float64) / 2.0 ** (S + (0 if i == 0 else FRACTION))))

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"hyper_int.scale_bits": torch.tensor(self.scale_bits, dtype=torch.int32)}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"hyper_int.weight{i}"] = torch.from_numpy(np.ascontiguousarray(w))
            out[f"hyper_int.bias{i}"] = torch.from_numpy(np.ascontiguousarray(b))
        return out

    @staticmethod
    def from_tensors(tensors: dict[str, torch.Tensor]) -> IntegerHyperSynthesis:
        bits = [int(v) for v in tensors["hyper_int.scale_bits"].tolist()]
        net = IntegerHyperSynthesis(
            [tensors[f"hyper_int.weight{i}"].numpy().astype(np.int32) for i in range(len(bits))],
            [tensors[f"hyper_int.bias{i}"].numpy().astype(np.int64) for i in range(len(bits))],
            bits,
        )
        net.validate()
        return net

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

    def reference(self, z_hat: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The same network in numpy int64, written independently: for tests."""
        x = np.clip(np.asarray(z_hat, np.int64), -Z_LIMIT, Z_LIMIT)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            C, H, W = x.shape
            padded = np.zeros((C, H + 2, W + 2), np.int64)
            padded[:, 1:-1, 1:-1] = x
            acc = np.repeat(b.astype(np.int64)[:, None], H * W, axis=1).reshape(-1, H, W)
            for dy in range(3):
                for dx in range(3):
                    acc = acc + np.einsum("oc,chw->ohw", w[:, :, dy, dx].astype(np.int64), padded[:, dy : dy + H, dx : dx + W])
            if i < last:
                k = self.shifts[i]
                x = np.clip((acc + (1 << (k - 1) if k else 0)) >> k, 0, ACT_LIMIT - 1)
                Co = x.shape[0] // 4
                x = x.reshape(Co, 2, 2, H, W).transpose(0, 3, 1, 4, 2).reshape(Co, 2 * H, 2 * W)
        M = self.mean_channels
        k = self.shifts[last]
        mean = acc[:M].astype(np.float64) / 2.0 ** (k + FRACTION)
        log_scale = (acc[M:] + (1 << (k - 1) if k else 0)) >> k
        return mean[:, :height, :width], scale_index_from_q8(log_scale[:, :height, :width])


def _conv3x3_float64(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """3×3 convolution, zero padding, as nine matrix products (no transform-based algorithms)."""
    C, H, W = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    acc = b[:, None].expand(-1, H * W).clone()
    for dy in range(3):
        for dx in range(3):
            acc += w[:, :, dy, dx] @ padded[:, dy : dy + H, dx : dx + W].reshape(C, H * W)
    return acc.reshape(-1, H, W)
