"""Image ⇄ bytes: padding, quality levels, alpha, the container (the public API).

>>> from aecompress import load_model, encode_image, decode_image
>>> model = load_model()                      # the shipped default model
>>> data = encode_image("photo.png", model, quality=5)
>>> image = decode_image(data, model)         # a PIL image
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from . import bitstream, store
from .bitstream import ContainerError, Header
from .coders import LatentCoder, coder_class
from .cpu import cpu_has_amx_bf16
from .engine import transforms_for
from .entropy import FormatError, StreamDecoder, StreamEncoder, SymbolCoder, read_varint, write_varint
from .images import DEFAULT_MAX_PIXELS, Picture, from_pil, read_image
from .layout import DOWNSAMPLING
from .modelfile import LoadedModel, ModelFileError
from .modelfile import load_model as _load_model_file
from .quality import EFFORT_STEPS, MAX_EFFORT, STEPS, format_quality, fraction_of, interpolated_lambda, parse_quality
from .transforms import Transforms

_LUMA = np.array([0.299, 0.587, 0.114])
# Transforms run on tiles of TILE×TILE pixels with MARGIN pixels of context on each side,
# so memory is bounded and tiles join without seams: a latent depends on the pixels within
# ±30 of its centre (four 5×5 stride-2 convolutions), a pixel on the latents within ±1.9
# rows and columns, so 32 pixels (2 latents) cover both.  Images up to TILE on a side are one tile.
TILE = 1024
MARGIN = 32
# precision "auto": bf16 analysis from this size on, on AMX CPUs.  There bf16 runs g_a 6–7×
# faster; at about 0.2 s per megapixel saved, it pays for torch's 1–2 s import from here.
AUTO_BF16_PIXELS = 8_000_000


class DecodeError(ValueError):
    """A ``.aec`` file that cannot be decoded with the given model."""


def default_model_path() -> Path | None:
    """The shipped default model's file (None when this copy of aecompress has none)."""
    return store.default_path()


@lru_cache(maxsize=8)
def _cached_model(path: str, mtime_ns: int) -> LoadedModel:
    return _load_model_file(path)


def load_model(path: str | os.PathLike | None = None) -> LoadedModel:
    """Load a model (cached): a file, a model id (looked up in the model store), or ``None``/``"default"``."""
    wanted = None
    if path is None or str(path) == "default":
        wanted, path = store.default_id(), store.default_path()
        if path is None:
            raise ModelFileError("no default model is installed with this copy of aecompress; pass -m MODEL")
    elif store.is_model_id(str(path)) and not Path(path).exists():
        wanted = str(path)
        try:
            path = store.find(wanted).path
        except store.ModelNotFound as exc:
            raise ModelFileError(str(exc)) from None
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    model = _cached_model(str(path), mtime)
    if wanted is not None and model.model_id != wanted:
        raise ModelFileError(f"{path}: holds model {model.model_id}, not {wanted} (a model store's files are named by their id)")
    return model


def model_for(data: bytes) -> LoadedModel:
    """The model a ``.aec`` file names, found by id (user models, then the shipped ones)."""
    try:
        header = bitstream.read_header(data)
    except ContainerError as exc:
        raise DecodeError(str(exc)) from None
    return load_model(header.model_id)


def default_quality(model: LoadedModel) -> int:
    """The middle quality level (1-based)."""
    return model.qualities // 2 + 1


@dataclass
class Encoded:
    data: bytes
    header: Header
    reconstruction: Picture | None = None  # what decode will return (same machine)
    estimated_bits: float | None = None  # the model's own estimate: −Σ log₂ p of the coded symbols
    payload_bytes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    # With ``keep_latent``: computes ``reconstruction`` later (it holds ŷ; rate control keeps it for its best candidate only).
    synthesize: Callable[[], Picture] | None = field(default=None, repr=False)


@dataclass
class Decoded:
    picture: Picture
    header: Header
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Analysis:
    """The analysis transform's output for one picture, before any quality's gain.

    A quality's gain multiplies g_a's output, so one analysis serves every quality:
    rate control codes it at many settings for the price of one analysis transform.
    """

    picture: Picture
    features: np.ndarray  # (1, M, h, w) float32
    seconds: float = 0.0
    # A refined analysis keeps the rounded hyper-latent ẑ it was optimized against, to be coded with it at that quality.
    hyper_latent: np.ndarray | None = None
    hyper_hundredths: int | None = None


@dataclass
class RateMap:
    """The model's own cost of a picture at one quality, without coding it (``aecompress score``)."""

    bits: np.ndarray  # (h, w) float64: −log₂ p at each latent position (ẑ's bits spread over the positions they predict)
    total_bits: float
    reconstruction: Picture  # exactly what decode would return


class Codec:
    """Encode and decode with one model; per-quality coders are built once and kept."""

    def __init__(
        self,
        model: LoadedModel,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        tile: int = TILE,
        margin: int = MARGIN,
        precision: str = "fp32",
        transforms: Transforms | None = None,
    ) -> None:
        """``precision`` is the analysis transform's arithmetic: "fp32", "bf16" autocast, or
        "auto": bf16 for images of ``AUTO_BF16_PIXELS`` or more on CPUs with AMX-BF16 (where
        it runs the analysis several times faster, enough to pay for loading torch), fp32
        otherwise.

        Only the encoder's g_a may run in bf16: its output is the encoder's choice, sent as
        integers, so every decoder still decodes the file exactly.  Decoding is always fp32
        (bf16 synthesis moves pixels by up to 2 levels, outside the ±1 promised across machines).
        ``transforms`` runs the networks (default: ``engine.transforms_for``, ONNX Runtime
        where installed, else torch).
        """
        if tile % DOWNSAMPLING or margin % DOWNSAMPLING or tile <= 0:
            raise ValueError(f"tile and margin must be positive multiples of {DOWNSAMPLING}")
        if precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be fp32, bf16 or auto, not {precision!r}")
        self.tile, self.margin = tile, margin
        self.precision = precision
        self.model = model
        self.transforms = transforms if transforms is not None else transforms_for(model, "fp32" if precision == "auto" else precision)
        self._torch: dict[str, Transforms] = {}  # torch engines by precision, built on first use
        self.max_pixels = max_pixels
        self.latent_coder: LatentCoder = coder_class(model.preset.entropy)(model)

    @property
    def has_lanes(self) -> bool:
        """Whether ``lane`` can make codecs that code one image per core: not where the
        transforms are torch's (its threads belong to the process), nor in bf16."""
        from .onnxrt import OnnxTransforms

        return isinstance(self.transforms, OnnxTransforms) and self.precision != "bf16"

    def lane(self) -> Codec:
        """A codec for one of several images coded at once, one per core: the same model and
        settings, its transforms on one thread (see ``has_lanes``)."""
        from .onnxrt import OnnxTransforms

        if not self.has_lanes:
            raise ValueError("this codec's transforms cannot run as one of several")
        return Codec(self.model, self.max_pixels, self.tile, self.margin, self.precision, transforms=OnnxTransforms(self.model, 1))

    @property
    def net(self):
        """The model's torch network (built on first use: encoder effort, bit estimates)."""
        return self.model.net

    def coder(self, quality: int) -> SymbolCoder:
        """Coder of the factorized part: y's channels, or z's with a hyperprior (by integer level)."""
        return self.latent_coder.symbol_coder(quality)

    def check_quality(self, quality: int | float | str) -> int:
        """A quality this model can code, in hundredths; ``ValueError`` with the reason otherwise.

        Fractions need a hyperprior model: a factorized model's entropy tables belong to
        its levels, so it has nothing to code an in-between gain with.
        """
        hundredths = parse_quality(quality)
        top = self.model.qualities
        if not STEPS <= hundredths <= STEPS * top:
            raise ValueError(f"quality {format_quality(hundredths)} is out of range for this model (1–{top})")
        if fraction_of(hundredths) and not self.latent_coder.fractional:
            kind = self.latent_coder.describe(self.model.preset)
            raise ValueError(
                f"quality {format_quality(hundredths)}: this model has a {kind}, whose qualities are the "
                f"integer levels 1–{top} (fractions need a hyperprior model)"
            )
        return hundredths

    def grid(self) -> list[int]:
        """Every quality this model can code, in hundredths: the levels, and with a hyperprior the hundredths between."""
        step = 1 if self.latent_coder.fractional else STEPS
        return list(range(STEPS, STEPS * self.model.qualities + 1, step))

    def analyze(self, picture: Picture) -> Analysis:
        """Run the analysis transform once (see ``Analysis``)."""
        if picture.width * picture.height > self.max_pixels:
            raise ValueError(f"image is {picture.width}x{picture.height}, over the limit of {self.max_pixels} pixels")
        t0 = time.perf_counter()
        features = self._analyze(picture.rgb())
        return Analysis(picture, features, time.perf_counter() - t0)

    def encode(
        self, picture: Picture, quality: int | float | str | None = None, reconstruct: bool = True, estimate: bool = False, effort: int = 0
    ) -> Encoded:
        """Picture → ``.aec`` bytes (plus, optionally, the decoder's exact output); ``effort`` > 0 refines the latent first."""
        hundredths = self.check_quality(default_quality(self.model) if quality is None else quality)
        analysis = self.analyze(picture)
        refined = self.refine(analysis, format_quality(hundredths), effort) if effort else analysis
        if refined is analysis:
            return self._encode(analysis, hundredths, reconstruct, estimate, reuse=False)
        return self._better(analysis, refined, hundredths, reconstruct, estimate)

    def _better(self, plain: Analysis, refined: Analysis, hundredths: int, reconstruct: bool, estimate: bool) -> Encoded:
        """The file of lower rate + λ·distortion, measured on the real files: effort never makes a file worse."""
        lam = interpolated_lambda(self.model.preset.lambdas, hundredths)
        picture = plain.picture
        best, best_cost = None, float("inf")
        for analysis in (refined, plain):
            encoded = self._encode(analysis, hundredths, True, estimate, reuse=True)
            error = picture.rgb().astype(np.float64) - encoded.reconstruction.rgb()
            cost = 8 * len(encoded.data) / (picture.width * picture.height) + lam * float(np.mean(error**2))
            if cost < best_cost:
                best, best_cost = encoded, cost
        if not reconstruct:
            best.reconstruction = None
        return best

    def refine(self, analysis: Analysis, quality: int | float | str, effort: int) -> Analysis:
        """A new analysis whose latent is optimized for this picture at ``quality`` (encoder effort, ``refine``).

        Only the encoder's choice of symbols changes: the decoder, the format and the
        bit-exactness of decoding do not.  ``effort`` 0 returns ``analysis`` itself.
        """
        if not 0 <= effort <= MAX_EFFORT:
            raise ValueError(f"effort {effort} is out of range (0–{MAX_EFFORT})")
        return self.refine_steps(analysis, quality, EFFORT_STEPS[effort])

    def refine_steps(self, analysis: Analysis, quality: int | float | str, steps: int) -> Analysis:
        """``refine`` by a number of optimizer steps instead of an effort level (benchmarks)."""
        if not steps or not self.model.preset.hyperprior:
            return analysis
        import torch

        from .cpu import cpu_has_native_bf16
        from .refine import refine as refine_latent
        from .refine import target as refine_target

        t0 = time.perf_counter()
        hundredths = self.check_quality(quality)
        level, fraction = divmod(hundredths, STEPS)
        goal = refine_target(self.model.preset.lambdas, level - 1, fraction / STEPS)
        gain = self.model.gains(goal.level, goal.t)[0][None, :, None, None]
        rgb = torch.from_numpy(analysis.picture.rgb().copy()).permute(2, 0, 1).float().div_(255.0)
        low_precision = self.precision == "bf16" or cpu_has_native_bf16()  # the encoder's choice: decoding stays exact
        y = analysis.features * gain
        z_hat = self.latent_coder.hyper_latent(y, self.transforms.hyper_analysis)
        refined = refine_latent(self.net, rgb, torch.from_numpy(y), torch.from_numpy(z_hat), goal, steps, low_precision).numpy()
        return Analysis(analysis.picture, refined / gain, analysis.seconds + time.perf_counter() - t0, z_hat, hundredths)

    def encode_analysis(
        self, analysis: Analysis, quality: int | float | str, reconstruct: bool = True, estimate: bool = False, keep_latent: bool = False
    ) -> Encoded:
        """Code a kept analysis at one quality; the analysis stays usable for others (rate control)."""
        return self._encode(analysis, self.check_quality(quality), reconstruct, estimate, reuse=True, keep_latent=keep_latent)

    def _encode(
        self, analysis: Analysis, hundredths: int, reconstruct: bool, estimate: bool, reuse: bool, keep_latent: bool = False
    ) -> Encoded:
        picture = analysis.picture
        level, fraction = divmod(hundredths, STEPS)
        gain, inverse_gain = self.model.gains(level - 1, fraction / STEPS)
        timings = {}
        t0 = time.perf_counter()
        H, W = picture.height, picture.width
        gain = gain[None, :, None, None]
        y = analysis.features * gain if reuse else np.multiply(analysis.features, gain, out=analysis.features)
        _check_latent(y)
        if analysis.hyper_hundredths == hundredths:  # a refined latent's own ẑ
            z_hat = analysis.hyper_latent
        else:
            z_hat = self.latent_coder.hyper_latent(y, self.transforms.hyper_analysis)
        latents = self.latent_coder.quantize(y, level, z_hat)  # in place: memory for huge images
        t1 = time.perf_counter()
        stream = StreamEncoder()
        self.latent_coder.encode(stream, latents, level)
        bits = self.latent_coder.estimate_bits(latents, level) if estimate else None
        y = self.latent_coder.dequantize(latents)
        latent = stream.finish()
        t2 = time.perf_counter()
        flags, payload = 0, latent
        if picture.alpha is not None:
            flags = bitstream.FLAG_ALPHA
            payload = write_varint(len(latent)) + latent + zlib.compress(picture.alpha.tobytes(), 9)
        if fraction:
            flags |= bitstream.FLAG_FRACTION
        header = Header(self.model.model_id, W, H, picture.channels, level, flags, self.format_version, fraction)
        data = bitstream.pack(header, payload)
        t3 = time.perf_counter()
        timings.update(transform=analysis.seconds + t1 - t0, entropy=t2 - t1, container=t3 - t2)
        result = Encoded(data, header, estimated_bits=bits, payload_bytes=len(latent), timings=timings)
        if reconstruct:
            t4 = time.perf_counter()
            result.reconstruction = self._reconstruct(y, inverse_gain, picture)
            timings["reconstruct"] = time.perf_counter() - t4
        elif keep_latent:
            result.synthesize = lambda: self._reconstruct(y, inverse_gain, picture)
        return result

    def _reconstruct(self, y_hat: np.ndarray, inverse_gain: np.ndarray, picture: Picture) -> Picture:
        """What decode returns for ŷ: synthesis, 8 bits, the source's channels and alpha."""
        return self._picture(self._synthesize(y_hat, inverse_gain, picture.height, picture.width), picture.channels, picture.alpha)

    def transform_only(self, picture: Picture, quality: int | float | str) -> np.ndarray:
        """uint8 RGB from the transforms alone, ŷ = y (no rounding): the curve's PSNR ceiling."""
        level, fraction = divmod(self.check_quality(quality), STEPS)
        gain, inverse_gain = self.model.gains(level - 1, fraction / STEPS)
        y = self._analyze(picture.rgb()) * gain[None, :, None, None]
        return self._synthesize(y, inverse_gain, picture.height, picture.width)

    def rate_map(self, picture: Picture, quality: int | float | str) -> RateMap:
        """Where the model spends its bits on a picture, and its exact reconstruction, with no coding.

        The bits are the model's own −log₂ p of ŷ (and ẑ) with the probabilities coding
        would use: what a file would cost, up to the range coder's few bytes.
        """
        level, fraction = divmod(self.check_quality(quality), STEPS)
        gain, inverse_gain = self.model.gains(level - 1, fraction / STEPS)
        y = self.analyze(picture).features * gain[None, :, None, None]
        _check_latent(y)
        latents = self.latent_coder.quantize(y, level, self.latent_coder.hyper_latent(y, self.transforms.hyper_analysis))
        bits = self.latent_coder.bit_map(latents, level)
        y = self.latent_coder.dequantize(latents)
        return RateMap(bits, float(bits.sum()), self._reconstruct(y, inverse_gain, picture))

    def decode(self, data: bytes) -> Decoded:
        """``.aec`` bytes → Picture; every problem is a one-line ``DecodeError``."""
        t0 = time.perf_counter()
        try:
            header, payload = bitstream.unpack(data, self.max_pixels)
        except ContainerError as exc:
            raise DecodeError(str(exc)) from None
        if header.model_id != self.model.model_id:
            raise DecodeError(
                f"file was encoded with model {header.model_id}, but model {self.model.model_id} is loaded (pass -m with the right model)"
            )
        if header.hundredths > STEPS * self.model.qualities:
            raise DecodeError(f"quality {format_quality(header.hundredths)} is out of range for this model (1–{self.model.qualities})")
        if header.version != self.format_version:
            raise DecodeError(f"format version {header.version} does not match this model's entropy model")
        H, W = header.height, header.width
        h, w = -(-H // DOWNSAMPLING), -(-W // DOWNSAMPLING)
        try:
            latent, alpha_data = _sections(header, payload)
            alpha = None if alpha_data is None else _inflate_exact(alpha_data, H * W).reshape(H, W)
            t1 = time.perf_counter()
            y = self._decode_latent(latent, header.quality, h, w)
        except FormatError as exc:
            raise DecodeError(str(exc)) from None
        t2 = time.perf_counter()
        # The entropy decoding above used integers only (the level's tables); a fraction moves the inverse gain alone.
        _, inverse_gain = self.model.gains(header.quality - 1, header.fraction / STEPS)
        picture = self._picture(self._synthesize(y, inverse_gain, H, W), header.channels, alpha)
        t3 = time.perf_counter()
        return Decoded(picture, header, {"container": t1 - t0, "entropy": t2 - t1, "transform": t3 - t2})

    def _decode_latent(self, latent: bytes, quality: int, h: int, w: int, keep: dict | None = None) -> np.ndarray:
        """Latent section → ŷ (1, M, h, w), by the model's latent coder (from integers only).

        ``keep`` (a dict), if given, receives the decoded integers: ``y`` (factorized) or
        ``z``, ``index`` and ``residual`` (hyperprior).
        """
        keep = {} if keep is None else keep
        stream = StreamDecoder(latent)
        y = self.latent_coder.decode(stream, quality, h, w, keep)
        stream.finish()
        return y

    def decode_symbols(self, data: bytes) -> dict[str, np.ndarray]:
        """The integers a file decodes to (for determinism checks): see ``_decode_latent``."""
        header, payload = bitstream.unpack(data, self.max_pixels)
        keep: dict[str, np.ndarray] = {}
        self._decode_latent(
            _sections(header, payload)[0], header.quality, -(-header.height // DOWNSAMPLING), -(-header.width // DOWNSAMPLING), keep
        )
        return keep

    @property
    def format_version(self) -> int:
        """The container version of this model's files: the model file's own (1 factorized, 2 hyperprior, 3 checkerboard)."""
        return self.latent_coder.format_version

    def _tiles(self, h: int, w: int):
        """Latent tiles: (core rows, core cols, rows with margin, cols with margin).

        The grid depends only on the image size, so the bytes never depend on memory.
        """
        core, margin = self.tile // DOWNSAMPLING, self.margin // DOWNSAMPLING
        for top in range(0, h, core):
            for left in range(0, w, core):
                inner = (slice(top, min(h, top + core)), slice(left, min(w, left + core)))
                outer = (
                    slice(max(0, top - margin), min(h, top + core + margin)),
                    slice(max(0, left - margin), min(w, left + core + margin)),
                )
                yield inner, outer

    def _torch_transforms(self, precision: str) -> Transforms:
        if precision not in self._torch:
            from .engine import prepare_torch
            from .transforms import TorchTransforms

            prepare_torch()
            self._torch[precision] = TorchTransforms(self.model.net, precision)
        return self._torch[precision]

    def _analysis_transforms(self, pixels: int) -> Transforms:
        """What runs g_a on an image of ``pixels``: bf16 torch where ``precision`` "auto" says so (see ``__init__``)."""
        if self.precision != "auto" or pixels < AUTO_BF16_PIXELS or not cpu_has_amx_bf16():
            return self.transforms
        return self._torch_transforms("bf16")

    def _analyze(self, rgb: np.ndarray) -> np.ndarray:
        """Analysis transform g_a of a uint8 (H, W, 3) image, tile by tile with overlap (no gain yet).

        Edge pixels are replicated up to a multiple of 16; only one tile at a time is
        ever in float, so memory stays bounded for any image size.
        """
        H, W = rgb.shape[:2]
        transforms = self._analysis_transforms(H * W)
        h, w = -(-H // DOWNSAMPLING), -(-W // DOWNSAMPLING)
        y = np.empty((1, self.model.preset.M, h, w), np.float32)
        s = DOWNSAMPLING
        tiles = list(self._tiles(h, w))
        for (ci, cj), (oi, oj) in tiles:
            rows = np.minimum(np.arange(oi.start * s, oi.stop * s), H - 1)
            cols = np.minimum(np.arange(oj.start * s, oj.stop * s), W - 1)
            x = rgb[rows[:, None], cols[None, :]].transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
            out = transforms.analysis(x)
            y[:, :, ci, cj] = out[:, :, ci.start - oi.start : ci.stop - oi.start, cj.start - oj.start : cj.stop - oj.start]
        if len(tiles) > 1:
            transforms.release()  # else the arena keeps the tiles' peak through the coding that follows
        return y

    def _synthesize(self, y: np.ndarray, inverse_gain: np.ndarray, H: int, W: int) -> np.ndarray:
        """Synthesis transform of ŷ · inverse gain (M,) to a uint8 (H, W, 3) image, tile by tile with overlap."""
        out = np.empty((H, W, 3), np.uint8)
        s = DOWNSAMPLING
        transforms = self.transforms
        inverse_gain = inverse_gain[None, :, None, None]
        tiles = list(self._tiles(y.shape[2], y.shape[3]))
        for (ci, cj), (oi, oj) in tiles:
            x_hat = transforms.synthesis(y[:, :, oi, oj] * inverse_gain)[0]
            r0, c0 = (ci.start - oi.start) * s, (cj.start - oj.start) * s
            top, left = ci.start * s, cj.start * s
            bottom, right = min(H, ci.stop * s), min(W, cj.stop * s)
            block = x_hat[:, r0 : r0 + bottom - top, c0 : c0 + right - left]
            out[top:bottom, left:right] = np.rint(np.clip(block, 0, 1) * np.float32(255)).astype(np.uint8).transpose(1, 2, 0)
        if len(tiles) > 1:
            transforms.release()
        return out

    @staticmethod
    def _picture(rgb: np.ndarray, channels: int, alpha: np.ndarray | None) -> Picture:
        if channels in (1, 2):
            gray = np.clip(np.round(rgb.astype(np.float64) @ _LUMA), 0, 255).astype(np.uint8)[:, :, None]
            return Picture(gray, alpha if channels == 2 else None)
        return Picture(rgb, alpha if channels == 4 else None)


def _check_latent(y: np.ndarray) -> None:
    if not np.isfinite(y).all() or float(np.abs(y).max(initial=0)) >= 2**30:
        raise ValueError("the model produced latents out of range (a broken model?)")


def _sections(header: Header, payload: bytes) -> tuple[bytes, bytes | None]:
    """The latent section and, with the alpha flag, the compressed alpha section."""
    if not header.flags & bitstream.FLAG_ALPHA:
        return payload, None
    n, pos = read_varint(payload, 0)
    if pos + n > len(payload):
        raise FormatError("alpha section is missing")
    return payload[pos : pos + n], payload[pos + n :]


def _inflate_exact(data: bytes, size: int) -> np.ndarray:
    """zlib-inflate exactly ``size`` bytes, never more (no decompression bombs)."""
    try:
        d = zlib.decompressobj()
        out = d.decompress(data, size + 1)
        if len(out) != size or not d.eof or d.unused_data:
            raise FormatError("alpha section is corrupt")
    except zlib.error:
        raise FormatError("alpha section is corrupt") from None
    return np.frombuffer(out, np.uint8)


@lru_cache(maxsize=8)
def _codec_for(model: LoadedModel) -> Codec:
    return Codec(model)


def _as_picture(image) -> Picture:
    if isinstance(image, Picture):
        return image
    if isinstance(image, Image.Image):
        return from_pil(image)
    if isinstance(image, np.ndarray):
        return from_pil(Image.fromarray(image))
    if isinstance(image, (str, os.PathLike)):
        return read_image(Path(image).read_bytes(), str(image))
    raise TypeError(f"cannot encode a {type(image).__name__}")


def encode_image(image, model: LoadedModel | None = None, quality: int | float | None = None) -> bytes:
    """Encode a path, PIL image or uint8 array into ``.aec`` bytes (``quality`` 5.37: hyperprior models only)."""
    model = model or load_model()
    return _codec_for(model).encode(_as_picture(image), quality, reconstruct=False).data


def decode_image(data: bytes, model: LoadedModel | None = None) -> Image.Image:
    """Decode ``.aec`` bytes into a PIL image (mode L, LA, RGB or RGBA); without ``model``, the one the file names."""
    model = model or model_for(data)
    return _codec_for(model).decode(data).picture.to_pil()
