"""Variable rate: per-level gain vectors against a quantization-step ladder (the A/B that chose gains).

    python benchmarks/variable_rate.py top MODEL -o TOP.safetensors
    python benchmarks/variable_rate.py curve FOLDER -m GAINS.safetensors -m TOP.safetensors \
        --steps-from GAINS.safetensors [--anchor EVAL.json] [-j 2] [-o curve.json]

The shipped model reaches its ten rates with ten learned gain vectors (Cui et al. 2021):
level q codes round(y · g_q − μ).  The alternative is one model trained at the high-λ end,
whose rates come from a quantization step Δ alone: it codes s = round((y − μ) / Δ) under
N(0, (σ/Δ)²) and decodes μ + Δ·s, with ẑ, μ and σ unchanged (the hyperprior and the
checkerboard context see y in the units they were trained on).

``top`` cuts a model down to its top level (its gains, and its z density for that level),
ready for ``aecompress train --init TOP.safetensors`` at the top λ alone.  ``curve``
measures each model over a folder: a multi-level model at each of its levels (Δ = 1), a
one-level model at each step of the ladder.  ``--steps-from`` derives the ladder from a
gain model: Δ_q = mean gain of the top level / mean gain of level q (geometric means over
channels), the steps the jointly trained gains settled on.  ``--steps 1,2,4`` gives them
by hand.

Rates are the models' own estimates: −Σ log₂ p of ẑ and of y's symbols under the
continuous densities, over the image padded to a multiple of 16 as coding pads it, per
pixel of the image.  Both arms are measured the same way.  For a gain model the estimate
is the payload's (the real files add a 32-byte container); with ``--anchor`` holding the
same model's real files both BD-rates are printed (the default model on BSDS val: −44.3% estimated,
−43.9% real).
PSNR is measured on the 8-bit reconstruction.
"""

from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aecompress.codec import load_model
from aecompress.data import find_images
from aecompress.density import gaussian_likelihood
from aecompress.images import read_image
from aecompress.metrics import bd_rate, psnr
from aecompress.model import AutoEncoder, anchor_mask, table_log_scale
from aecompress.modelfile import save_model


def top_level(model_path: str, output: str) -> None:
    """Write ``model_path`` cut down to its top quality level (one gain vector, one z density)."""
    loaded = load_model(model_path)
    net, preset = loaded.net, loaded.net.preset
    Q, C = net.qualities, net.coded_channels
    top = AutoEncoder(preset.with_lambdas((preset.lambdas[-1],)))
    state = {}
    for name, tensor in net.state_dict().items():
        if name in ("log_gain", "log_inverse_gain"):
            tensor = tensor[Q - 1 : Q]
        elif name.startswith("density."):
            tensor = tensor[(Q - 1) * C : Q * C]
        state[name] = tensor
    top.load_state_dict(state)
    training = dict(loaded.metadata.get("training") or {})
    mid = save_model(top, output, training={**training, "cut_to_top_level_of": loaded.model_id})
    print(f"{output}: the top level (λ = {preset.lambdas[-1]:g}) of {model_path}, model {mid}")


def step_ladder(gain_model: str) -> list[float]:
    """Δ_q of each level of a gain model: how much coarser level q quantizes y than the top level."""
    log_gain = load_model(gain_model).net.log_gain.detach().double()
    mean_log = log_gain.mean(dim=1)  # geometric mean over channels
    return [float(math.exp(mean_log[-1] - m)) for m in mean_log]


@torch.no_grad()
def estimate(net: AutoEncoder, x: torch.Tensor, level: int, step: float) -> tuple[float, torch.Tensor]:
    """Estimated bits of image ``x`` (1, 3, H, W) at ``level`` and quantization step ``step``; the 8-bit reconstruction."""
    H, W = x.shape[2:]
    padded = F.pad(x, (0, -W % 16, 0, -H % 16), mode="replicate")
    quality = torch.tensor([level])
    y = net.analysis(padded, quality)
    if not net.hyperprior:
        if step != 1:
            raise ValueError("a step ladder needs a hyperprior model (a factorized prior has no σ to scale)")
        y_hat = torch.round(y)
        bits = -torch.log2(net.density.likelihood(y_hat, net.channel_index(quality))).sum()
    else:
        z_hat = torch.round(net.h_a(y))
        bits = -torch.log2(net.density.likelihood(z_hat, net.channel_index(quality))).sum()
        mean, log_scale = net.hyper_parameters(z_hat, y.shape[2], y.shape[3])
        if net.checkerboard:
            anchor = anchor_mask(y.shape[2], y.shape[3])
            anchors = (mean + step * torch.round((y - mean) / step)) * anchor
            table = table_log_scale(log_scale)
            delta_mean, delta_log_scale = net.context(anchors, mean, table)
            mean = torch.where(anchor, mean, mean + delta_mean)
            log_scale = torch.where(anchor, log_scale, table + delta_log_scale)
        symbols = torch.round((y - mean) / step)
        bits = bits - torch.log2(gaussian_likelihood(symbols, log_scale - math.log(step))).sum()
        y_hat = mean + step * symbols
    x_hat = net.synthesis(y_hat, quality)[0, :, :H, :W].clamp(0, 1)
    return float(bits), x_hat.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _image_points(path: Path, plans: list[tuple[str, list[tuple[int, float]]]]) -> list[list[tuple[float, float]]]:
    """(bpp, PSNR) of one image at every point of every model."""
    torch.set_num_threads(1)
    image = read_image(path.read_bytes(), path.name).color
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    out = []
    for model_path, points in plans:
        net = load_model(model_path).net
        rows = []
        for level, step in points:
            bits, x_hat = estimate(net, x, level, step)
            rows.append((bits / (image.shape[0] * image.shape[1]), psnr(image, x_hat)))
        out.append(rows)
    return out


def curve(folder: str, models: list[str], steps: list[float], jobs: int) -> dict[str, list[dict]]:
    """Mean (bpp, PSNR) per point of each model over the images of ``folder``."""
    paths = find_images(Path(folder))
    plans = []
    for model in models:
        net = load_model(model).net
        Q = net.qualities
        if Q == 1 and not net.hyperprior and steps != [1.0]:
            raise SystemExit(f"{model}: a step ladder needs a hyperprior model (a factorized prior has no σ to scale)")
        plans.append((model, [(q, 1.0) for q in range(Q)] if Q > 1 else [(0, s) for s in steps]))
    with ProcessPoolExecutor(jobs) as pool:
        per_image = list(pool.map(_image_points, paths, [plans] * len(paths)))
    result = {}
    for i, (model, points) in enumerate(plans):
        rows = np.array([image[i] for image in per_image])  # (images, points, 2)
        mean = rows.mean(axis=0)
        result[model] = [
            {"level": q + 1, "step": round(s, 4), "bpp": round(float(b), 4), "psnr": round(float(p), 3)}
            for (q, s), (b, p) in zip(points, mean, strict=True)
        ]
    return result


def _points(rows: list[dict]) -> list[tuple[float, float]]:
    return [(r["bpp"], r["psnr"]) for r in rows]


def report(result: dict[str, list[dict]], anchor: str | None) -> None:
    """Markdown tables: each model's points, BD-rates against JPEG (from an eval JSON) and between the models."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for p in json.loads(Path(anchor).read_text())["points"] if anchor else []:
        curves.setdefault(p["codec"], []).append((p["bpp"], p["psnr"]))
    jpeg = curves.get("jpeg")
    for model, rows in result.items():
        print(f"\n{model}\n\n| level | Δ | est. bpp | PSNR |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['level']} | {r['step']:g} | {r['bpp']:.4f} | {r['psnr']:.2f} |")
        if jpeg:
            print(f"\nBD-rate against JPEG: {bd_rate(jpeg, _points(rows)):+.1f}%")
            real = curves.get(Path(model).stem)
            if real:
                print(f"the same model's real files, from {anchor}: {bd_rate(jpeg, real):+.1f}%")
    names = list(result)
    for a in names:
        for b in names:
            if a < b:
                print(f"\n{Path(b).name} against {Path(a).name}: {bd_rate(_points(result[a]), _points(result[b])):+.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cut = sub.add_parser("top", help="cut a model down to its top quality level")
    cut.add_argument("model")
    cut.add_argument("-o", "--output", required=True)
    measure = sub.add_parser("curve", help="estimated rate–distortion points of models over a folder")
    measure.add_argument("folder")
    measure.add_argument("-m", "--model", action="append", required=True)
    measure.add_argument("--steps", help="quantization steps for one-level models, e.g. 1,2,4")
    measure.add_argument("--steps-from", help="a gain model whose levels give the steps")
    measure.add_argument("--anchor", help="an `aecompress eval -o` JSON of the same folder with --baselines jpeg")
    measure.add_argument("-j", "--jobs", type=int, default=1)
    measure.add_argument("-o", "--output")
    args = parser.parse_args()
    if args.command == "top":
        top_level(args.model, args.output)
        return
    steps = [float(s) for s in args.steps.split(",")] if args.steps else step_ladder(args.steps_from) if args.steps_from else [1.0]
    result = curve(args.folder, args.model, steps, args.jobs)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    report(result, args.anchor)


if __name__ == "__main__":
    main()
