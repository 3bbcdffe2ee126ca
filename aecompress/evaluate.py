"""Rate–distortion evaluation: a model's qualities against classical codecs, same images.

Conventions (those of the field's reference figures, docs/DESIGN.md): bpp from whole files (header included),
PSNR on 8-bit RGB per image then averaged, BD-rate by PCHIP over PSNR.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from PIL import Image

from . import baselines
from .codec import Codec, load_model
from .images import ImageError, Picture, find_images, read_image
from .metrics import bd_rate, ms_ssim, psnr
from .modelfile import LoadedModel

# The low end of the qualities people use for photos: full-overlap BD-rates reward the very low end,
# where JPEG falls apart, so every comparison is also reported over PSNR ≥ this.
USED_PSNR = 28.0


@dataclass
class Point:
    """Mean over the images of one codec at one setting."""

    codec: str
    setting: float
    bpp: float
    psnr: float
    ms_ssim: float | None
    encode_ms: float
    decode_ms: float
    images: int
    ceiling_psnr: float | None = None  # models with --ceiling: PSNR with the quantizer switched off

    def to_dict(self) -> dict:
        d = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}
        if d["ceiling_psnr"] is None:
            del d["ceiling_psnr"]
        return d


@dataclass
class Evaluation:
    images: list[str]
    points: list[Point] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)  # name → model id of each learned model
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, why) of each image that could not be read
    effort: int = 0  # the models' encoder effort

    def curve(self, codec: str) -> list[tuple[float, float]]:
        return [(p.bpp, p.psnr) for p in self.points if p.codec == codec]

    def codecs(self) -> list[str]:
        return list(dict.fromkeys(p.codec for p in self.points))

    def bd_rates(self, anchor: str, min_psnr: float | None = None) -> dict[str, float]:
        """BD-rate (%) of every other codec against ``anchor`` (over PSNR ≥ ``min_psnr`` only, if given)."""
        return {c: bd_rate(self.curve(anchor), self.curve(c), min_psnr=min_psnr) for c in self.codecs() if c != anchor}

    def top(self, codec: str) -> Point:
        """The point of ``codec``'s highest setting: the best quality it offers."""
        return max((p for p in self.points if p.codec == codec), key=lambda p: p.setting)

    def to_dict(self) -> dict:
        codecs = self.codecs()
        return {
            "images": self.images,
            "skipped": [{"image": name, "reason": reason} for name, reason in self.skipped],
            "models": self.models,
            "effort": self.effort,
            "points": [p.to_dict() for p in self.points],
            "bd_rate": {anchor: {k: _round(v) for k, v in self.bd_rates(anchor).items()} for anchor in codecs},
            f"bd_rate_psnr_{USED_PSNR:g}": {a: {k: _round(v) for k, v in self.bd_rates(a, USED_PSNR).items()} for a in codecs},
            "top": {
                name: {"setting": self.top(name).setting, "bpp": _round(self.top(name).bpp), "psnr": _round(self.top(name).psnr)}
                for name in self.models
            },
        }


def _round(value: float) -> float | None:
    return None if value != value else round(value, 2)


def evaluate(
    source: Path | list[Path],
    models: dict[str, LoadedModel],
    codecs: list[str],
    measure_ms_ssim: bool = True,
    progress: Callable[[Path, str | None], None] | None = None,
    qualities: list[int | float] | None = None,
    jobs: int = 1,
    ceiling: bool = False,
    step: Callable[[str], None] | None = None,
    root: Path | None = None,
    effort: int = 0,
) -> Evaluation:
    """Encode every image of ``source`` (a folder, or a list of image files) with each model and each baseline, at every setting.

    ``models`` maps a display name to a model; ``qualities`` are the models' qualities as
    ``-q`` takes them (5, 5.5; default: every level).  ``jobs > 1`` spreads the images over
    that many processes (one thread each).  ``progress(path, reason)`` is called as each
    image is done (``reason``: why it was skipped, an image that cannot be read), and with
    one process ``step(label)`` after each setting of each codec.  ``ceiling`` also measures
    each model's transforms alone (ŷ = y, no rounding): the PSNR its curve could reach with
    an infinite rate.  A low ceiling means undertrained transforms; a curve far below a
    good ceiling means a weak entropy model or rate trade-off.  When no image can be read,
    the result has no points (and every image in ``skipped``).  Images are named by their
    path under ``root`` (default: ``source`` when it is a folder; see ``image_name``).
    ``effort`` is the models' encoder effort (``encode -e``).
    """
    paths = find_images(source) if isinstance(source, Path) else list(source)
    if not paths:
        raise ValueError(f"{source}: no images found")
    if root is None and isinstance(source, Path):
        root = source
    result = Evaluation([], models={name: m.model_id for name, m in models.items()}, effort=effort)
    plan = _plan(models, qualities)
    task = partial(_evaluate_or_skip, models=plan, codecs=codecs, with_ms_ssim=measure_ms_ssim, ceiling=ceiling, root=root, effort=effort)
    rows: dict[tuple[str, float], list[tuple]] = {}
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_one_thread) as pool:
            for path, done in zip(paths, pool.map(task, paths), strict=True):
                _merge(rows, result, path, image_name(path, root), done, progress)
    else:
        for path in paths:
            _merge(rows, result, path, image_name(path, root), task(path, step=step), progress)
    for (name, setting), values in rows.items():
        result.points.append(_mean_point(name, setting, values))
    order = [*models, *codecs]  # a model's rows by quality, a baseline's by rate (JPEG 2000's setting is a ratio)
    result.points.sort(key=lambda p: (order.index(p.codec), p.setting if p.codec in models else p.bpp))
    return result


def _plan(models: dict[str, LoadedModel], qualities: list[int | float] | None) -> tuple:
    """(name, model file, qualities) of each model: what every image is coded with."""
    return tuple((name, m.path, tuple(qualities or range(1, m.qualities + 1))) for name, m in models.items())


def steps_per_image(models: dict[str, LoadedModel], codecs: list[str], qualities: list[int | float] | None = None) -> int:
    """How many settings each image is coded at: every model quality and every baseline setting."""
    return sum(len(q) for _, _, q in _plan(models, qualities)) + sum(len(baselines.BASELINES[c].settings) for c in codecs)


def _mean_point(name: str, setting: float, values: list[tuple]) -> Point:
    """The mean over the images of one codec at one setting."""
    arr = np.array([[v if v is not None else np.nan for v in row] for row in values], dtype=np.float64)
    mean = arr.mean(axis=0)
    has_ceiling = len(mean) > 5 and not np.isnan(mean[5])
    return Point(
        name,
        setting,
        float(mean[0]),
        float(mean[1]),
        None if np.isnan(mean[2]) else float(mean[2]),
        float(mean[3] * 1000),
        float(mean[4] * 1000),
        len(values),
        float(mean[5]) if has_ceiling else None,
    )


def _one_thread() -> None:
    """A worker of ``-j N``: one thread per process, for whichever engine runs its transforms."""
    from .engine import configure

    configure(threads=1)


def image_name(path: Path, root: Path | None) -> str:
    """How results name an image: its path under the folder evaluated, so that a/x.png and b/x.png stay apart;
    an image outside any folder given (a file argument, a list) keeps its path as given."""
    if root is not None and root.is_dir() and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return str(path)


def _merge(rows: dict, result: Evaluation, path: Path, name: str, done: tuple[dict, str | None], progress) -> None:
    image_rows, reason = done
    if reason is None:
        result.images.append(name)
        for key, row in image_rows.items():
            rows.setdefault(key, []).append(row)
    else:
        result.skipped.append((name, reason))
    if progress:
        progress(path, reason)


def _evaluate_or_skip(path: Path, step=None, root: Path | None = None, **plan) -> tuple[dict, str | None]:
    """``_evaluate_image``'s rows and None, or no rows and why the image cannot be read (it is skipped, not fatal)."""
    try:
        data = path.read_bytes()
        picture = read_image(data, str(path))
    except ImageError as exc:
        return {}, str(exc)
    except OSError as exc:
        return {}, exc.strerror or str(exc)
    return _evaluate_image(path, picture=picture, step=step, label=image_name(path, root), **plan), None


def _evaluate_image(
    path: Path,
    models: tuple,
    codecs: list[str],
    with_ms_ssim: bool,
    ceiling: bool = False,
    picture: Picture | None = None,
    step=None,
    label: str | None = None,
    effort: int = 0,
) -> dict:
    """Every setting of every codec on one image: {(codec, setting): (bpp, psnr, ms-ssim, t_enc, t_dec[, ceiling psnr])}.

    ``label`` names the image in ``step``'s calls (default: its file name)."""
    label = label or path.name
    picture = picture if picture is not None else read_image(path.read_bytes(), str(path))
    rgb = picture.rgb()
    pixels = picture.width * picture.height
    rows = {}
    source = Picture(rgb)
    for name, model_path, qualities in models:
        codec = _codec(model_path)
        for q in qualities:
            t0 = time.perf_counter()
            enc = codec.encode(source, q, reconstruct=False, effort=effort)
            t1 = time.perf_counter()
            out = codec.decode(enc.data).picture.rgb()
            t2 = time.perf_counter()
            rows[(name, q)] = _measure(rgb, out, len(enc.data), pixels, t1 - t0, t2 - t1, with_ms_ssim)
            if ceiling:
                rows[(name, q)] += (min(psnr(rgb, codec.transform_only(source, q)), 100.0),)
            if step:
                step(f"{label}: {name} q{q:g}")
    image = Image.fromarray(rgb)
    for name in codecs:
        for setting in baselines.BASELINES[name].settings:
            t0 = time.perf_counter()
            data = baselines.encode(image, name, setting)
            t1 = time.perf_counter()
            out = baselines.decode(data)
            t2 = time.perf_counter()
            rows[(name, setting)] = _measure(rgb, out, len(data), pixels, t1 - t0, t2 - t1, with_ms_ssim)
            if step:
                step(f"{label}: {name} {setting:g}")
    return rows


@lru_cache(maxsize=2)
def _codec(model_path: str) -> Codec:
    return Codec(load_model(model_path))


def _measure(ref: np.ndarray, out: np.ndarray, n_bytes: int, pixels: int, t_enc: float, t_dec: float, with_ms_ssim: bool):
    p = psnr(ref, out)
    return 8.0 * n_bytes / pixels, min(p, 100.0), ms_ssim(ref, out) if with_ms_ssim else None, t_enc, t_dec


def format_table(ev: Evaluation, anchor: str = "jpeg") -> str:
    ids = ", ".join(f"{name} = model {mid}" for name, mid in ev.models.items())
    skipped = f" ({len(ev.skipped)} unreadable skipped)" if ev.skipped else ""
    effort = f"; encoder effort {ev.effort}" if ev.effort and ev.models else ""
    lines = [f"{len(ev.images)} images{skipped}" + (f"; {ids}" if ids else "") + effort, ""]
    width = max([11, *(len(c) + 1 for c in ev.codecs())])
    ceiling = any(p.ceiling_psnr is not None for p in ev.points)
    extra = f" {'ceiling':>8}" if ceiling else ""
    lines.append(f"{'codec':<{width}} {'setting':>8} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'enc ms':>8} {'dec ms':>8}{extra}")
    for p in ev.points:
        setting = f"q{p.setting:g}" if p.codec in ev.models else f"{p.setting:g}"
        ms = f"{p.ms_ssim:.4f}" if p.ms_ssim is not None else "-"
        cell = (f" {p.ceiling_psnr:>8.2f}" if p.ceiling_psnr is not None else f" {'-':>8}") if ceiling else ""
        lines.append(f"{p.codec:<{width}} {setting:>8} {p.bpp:>7.3f} {p.psnr:>7.2f} {ms:>8} {p.encode_ms:>8.1f} {p.decode_ms:>8.1f}{cell}")
    if ceiling:
        lines += [
            "",
            "ceiling: PSNR of the model's transforms alone (quantizer off, infinite rate). A ceiling close to the",
            "curve's PSNR means the transforms limit the model (train longer or larger); a high ceiling far above",
            "the curve means the rate side (entropy model, λ) is what costs quality.",
        ]
    codecs = ev.codecs()
    if len(codecs) > 1:
        lines.append("")
        if anchor in codecs:
            lines.append(f"BD-rate against {anchor} (PSNR; negative = fewer bits for the same quality):")
            for name, value in ev.bd_rates(anchor).items():
                lines.append(f"  {name:<{width}} {_fmt_pct(value)}")
        for model in ev.models:
            lines += _direct_lines(ev, model, width)
    return "\n".join(lines)


def _direct_lines(ev: Evaluation, model: str, width: int) -> list[str]:
    """A model measured directly against each codec, over the full overlap and over the qualities people use."""
    top = ev.top(model)
    lines = [
        f"{model} directly against each codec (BD-rate; negative = {model} needs fewer bits):",
        f"  {'':<{width + 3}} {'full':>10} {f'≥ {USED_PSNR:g} dB':>10}",
    ]
    for name in ev.codecs():
        if name != model:
            full = bd_rate(ev.curve(name), ev.curve(model))
            used = bd_rate(ev.curve(name), ev.curve(model), min_psnr=USED_PSNR)
            lines.append(f"  vs {name:<{width}} {_fmt_pct(full):>10} {_fmt_pct(used):>10}")
    lines.append(f"  top quality q{top.setting:g}: {top.psnr:.2f} dB at {top.bpp:.3f} bpp")
    lowest = min(psnr for _, psnr in ev.curve(model))
    if lowest >= USED_PSNR:
        lines.append(f"  (its lowest quality is already at {lowest:.2f} dB: both columns cover the same range)")
    return lines


def _fmt_pct(value: float) -> str:
    return "no overlap" if value != value else f"{value:+.1f}%"


def plot_format(path: Path) -> str:
    """The image format a plot written to ``path`` will have; checked before the evaluation, not after it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'aecompress[plot]'") from None
    fmt = path.suffix.lstrip(".").lower() or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise RuntimeError(f"{path}: matplotlib cannot write .{fmt} plots (use one of .{', .'.join(sorted(supported))})")
    return fmt


@dataclass
class PlotView:
    """What an RD plot shows: its axes fitted to the data, and the curves that lie entirely outside them."""

    bpp: tuple[float, float]
    psnr: tuple[float, float]
    ms_ssim: tuple[float, float] | None  # in dB, -10·log10(1 − MS-SSIM); None without MS-SSIM
    outside: list[str]  # codecs with no point in the bpp range: not drawn


def _ssim_db(p: Point) -> float:
    return float(-10 * np.log10(max(1e-10, 1 - (p.ms_ssim or 0))))


def _span(values: list[float]) -> tuple[float, float]:
    """A range around ``values`` with a margin of 5% (at least 0.5)."""
    low, high = min(values), max(values)
    pad = max(0.05 * (high - low), 0.5)
    return low - pad, high + pad


def plot_view(ev: Evaluation) -> PlotView:
    """The x axis from 0 to the models' highest bpp (every point without a model), plus 5%;
    the y axes fitted to the points within it; a curve with no point within it is listed as outside."""
    ours = [p for p in ev.points if p.codec in ev.models] or ev.points
    top = 1.05 * max(p.bpp for p in ours)
    shown = [p for p in ev.points if p.bpp <= top]
    has_ssim = any(p.ms_ssim is not None for p in shown)
    return PlotView(
        (0.0, top),
        _span([p.psnr for p in shown]),
        _span([_ssim_db(p) for p in shown if p.ms_ssim is not None]) if has_ssim else None,
        [c for c in ev.codecs() if not any(p.codec == c for p in shown)],
    )


def plot_image(ev: Evaluation, fmt: str = "png", title: str = "") -> bytes:
    """RD curves (PSNR and MS-SSIM over bpp) as the bytes of an image file; needs matplotlib.

    The axes are fitted to the models' points and the baselines' points within their rate
    (``plot_view``); a curve entirely outside is left out of the plot and its legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = plot_view(ev)
    has_ssim = view.ms_ssim is not None
    fig, axes = plt.subplots(1, 2 if has_ssim else 1, figsize=(12 if has_ssim else 7, 5), squeeze=False)
    for name in ev.codecs():
        if name in view.outside:
            continue
        pts = [p for p in ev.points if p.codec == name]
        style = dict(marker="o", linewidth=2.5 if name in ev.models else 1.2, markersize=4)
        label = _plain(name)
        axes[0][0].plot([p.bpp for p in pts], [p.psnr for p in pts], label=label, **style)
        if has_ssim:
            axes[0][1].plot([p.bpp for p in pts], [_ssim_db(p) for p in pts], label=label, **style)
    axes[0][0].set(
        xlabel="bits per pixel", ylabel="PSNR (dB, RGB)", title=_plain(title) or "Rate–distortion", xlim=view.bpp, ylim=view.psnr
    )
    if has_ssim:
        axes[0][1].set(xlabel="bits per pixel", ylabel="MS-SSIM (dB)", title="MS-SSIM", xlim=view.bpp, ylim=view.ms_ssim)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _plain(text: str) -> str:
    """Text shown as typed: a '$' in a folder or model name must not start matplotlib's math mode."""
    return text.replace("$", r"\$")
