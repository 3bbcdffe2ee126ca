"""Speed of aecompress against CompressAI and Pillow's codecs, measured in one run.

For each Kodak image (2 CPU threads by default): encode and decode milliseconds
(median over the images), split into image I/O, transform, entropy coding and
container; the payload against the model's own bit estimate; peak memory (each
codec runs in its own subprocess, whose max RSS is reported).  Then training
throughput: our training step for the default preset against CompressAI's own
training step (forward, loss, backward, Adam, auxiliary loss) for the same
architecture and batch, and the share of our step spent loading data.

    python benchmarks/speed.py [--images ../shared/data/kodak] [--threads 2]

CompressAI is installed into the benchmark environment only (see BENCHMARKS.md).
It imports torchvision just to list torchvision's data transforms; where that
cannot be installed beside the CPU torch, a stub module stands in (models untouched).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the command line sets it (aecompress/cli/__init__.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (128, 192)  # CompressAI's bmshj2018-factorized at qualities 6-8: the speed target's yardstick


def _median(values):
    return statistics.median(values) * 1000 if values else float("nan")


def _images(folder: str, limit: int | None) -> list[Path]:
    paths = sorted(Path(folder).glob("*.png"))
    return paths[:limit] if limit else paths


def _import_compressai():
    try:
        import torchvision  # noqa: F401
    except Exception:  # PyPI's torchvision does not load beside the CPU torch here
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.transforms"] = tv.transforms
    from compressai.models import FactorizedPrior, MeanScaleHyperprior

    return FactorizedPrior, MeanScaleHyperprior


def run_ours(args) -> dict:
    from aecompress import Codec, load_model
    from aecompress.codec import default_quality
    from aecompress.images import encode_picture, read_image

    model = load_model(args.model)
    codec = Codec(model, precision=args.precision or "fp32")
    q = args.quality or default_quality(model)
    t = {
        k: []
        for k in (
            "enc_io",
            "enc_transform",
            "enc_entropy",
            "enc_container",
            "enc_total",
            "dec_io",
            "dec_transform",
            "dec_entropy",
            "dec_container",
            "dec_total",
        )
    }
    bpp, payload, estimate = [], 0, 0.0
    paths = _images(args.images, args.limit)
    for i, path in enumerate([paths[0]] + paths):  # the first is a warm-up
        t0 = time.perf_counter()
        picture = read_image(path.read_bytes(), str(path))
        t1 = time.perf_counter()
        enc = codec.encode(picture, q, reconstruct=False, estimate=False)
        t2 = time.perf_counter()
        dec = codec.decode(enc.data)
        t3 = time.perf_counter()
        png, _ = encode_picture(dec.picture, "PNG")
        t4 = time.perf_counter()
        if i == 0:
            continue
        t["enc_io"].append(t1 - t0)
        t["enc_transform"].append(enc.timings["transform"])
        t["enc_entropy"].append(enc.timings["entropy"])
        t["enc_container"].append(enc.timings["container"])
        t["enc_total"].append(t2 - t0)
        t["dec_io"].append(t4 - t3)
        t["dec_transform"].append(dec.timings["transform"])
        t["dec_entropy"].append(dec.timings["entropy"])
        t["dec_container"].append(dec.timings["container"])
        t["dec_total"].append(t4 - t2)
        bpp.append(8 * len(enc.data) / (picture.width * picture.height))
        payload += enc.payload_bytes
        estimate += codec.encode(picture, q, reconstruct=False, estimate=True).estimated_bits / 8
    out = {k: _median(v) for k, v in t.items()}
    out.update(
        bpp=float(np.mean(bpp)),
        payload_vs_estimate=payload / estimate,
        quality=q,
        model_id=model.model_id,
        N=model.net.preset.N,
        M=model.net.preset.M,
    )
    return out


def run_compressai(args) -> dict:
    FactorizedPrior, _ = _import_compressai()
    net = FactorizedPrior(args.N, args.M).eval()
    net.update(force=True)
    enc, dec = [], []
    paths = _images(args.images, args.limit)
    with torch.inference_mode():
        for i, path in enumerate([paths[0]] + paths):
            t0 = time.perf_counter()
            with Image.open(path) as im:
                x = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)[None].float() / 255
            H, W = x.shape[2:]
            x = torch.nn.functional.pad(x, (0, -W % 64, 0, -H % 64))
            out = net.compress(x)
            t1 = time.perf_counter()
            rec = net.decompress(out["strings"], out["shape"])["x_hat"][:, :, :H, :W]
            arr = rec.clamp(0, 1).mul(255).round().byte()[0].permute(1, 2, 0).numpy()
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "PNG", compress_level=1)  # as aecompress writes PNG
            t2 = time.perf_counter()
            if i:
                enc.append(t1 - t0)
                dec.append(t2 - t1)
    return {"enc_total": _median(enc), "dec_total": _median(dec)}


def run_pillow(args, target_bpp: float) -> dict:
    from aecompress import baselines

    result = {}
    paths = _images(args.images, args.limit)
    for name in ("jpeg", "webp", "avif"):
        if not baselines.available(name):
            continue
        enc, dec, bpps = [], [], []
        for path in paths:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
            data, q = baselines.encode_at_size(rgb, name, int(target_bpp * rgb.width * rgb.height / 8))
            for _ in range(2):  # second run timed (warm caches)
                t0 = time.perf_counter()
                baselines.encode(rgb, name, q)
                t1 = time.perf_counter()
                baselines.decode(data)
                t2 = time.perf_counter()
            enc.append(t1 - t0)
            dec.append(t2 - t1)
            bpps.append(8 * len(data) / (rgb.width * rgb.height))
        result[name] = {"enc_total": _median(enc), "dec_total": _median(dec), "bpp": float(np.mean(bpps))}
    return result


def run_train(args) -> dict:
    from aecompress.data import PatchSampler, find_images
    from aecompress.model import AutoEncoder
    from aecompress.presets import PRESETS
    from aecompress.train import cpu_has_native_bf16

    preset = PRESETS[args.preset]
    B, P, steps = args.batch, args.patch, args.train_steps
    sampler = PatchSampler(find_images(Path(args.train_data)), P, (2.0, 4.0) if "unsplash" in args.train_data else (1.0, 1.0))
    lambdas = torch.tensor(preset.lambdas)

    def our_steps(bf16: bool) -> dict:
        torch.manual_seed(0)
        net = AutoEncoder(preset).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        load, total = [], []
        for i in range(steps + 2):
            t0 = time.perf_counter()
            x = sampler.sample(B).contiguous(memory_format=torch.channels_last)
            t1 = time.perf_counter()
            q = torch.randint(0, len(preset.lambdas), (B,))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # as `train --precision bf16`
                x_hat, bits = net(x, q)
            mse = (x_hat.float() - x).square().mean(dim=(1, 2, 3))
            loss = (lambdas[q] * 255**2 * mse + bits / (P * P)).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            t2 = time.perf_counter()
            if i >= 2:
                load.append(t1 - t0)
                total.append(t2 - t0)
        return {"step_s": statistics.median(total), "load_share": sum(load) / sum(total)}

    ours = our_steps(False)
    ours_bf16 = our_steps(True) if cpu_has_native_bf16() else None

    FactorizedPrior, MeanScaleHyperprior = _import_compressai()
    # The same architecture as ours: mean-scale hyperprior (its hyper width is N; ours is Nz).
    cai = MeanScaleHyperprior(preset.N, preset.M) if preset.entropy == "hyperprior" else FactorizedPrior(preset.N, preset.M)
    main_params = [p for n, p in cai.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in cai.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(main_params, 1e-3)
    aux_opt = torch.optim.Adam(aux_params, 1e-3)
    lam = float(lambdas[len(lambdas) // 2])
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        x = sampler.sample(B)
        out = cai(x)
        bpp = sum(torch.log(v).sum() / (-np.log(2) * B * P * P) for v in out["likelihoods"].values())
        loss = lam * 255**2 * (out["x_hat"] - x).square().mean() + bpp
        opt.zero_grad()
        aux_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        cai.aux_loss().backward()
        aux_opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return {
        "ours_step_s": ours["step_s"],
        "ours_load_share": ours["load_share"],
        "compressai_step_s": statistics.median(times),
        "ours_bf16_step_s": ours_bf16["step_s"] if ours_bf16 else None,
        "ours_bf16_load_share": ours_bf16["load_share"] if ours_bf16 else None,
        "batch": B,
        "patch": P,
        "preset": args.preset,
    }


def child(args) -> None:
    torch.set_num_threads(args.threads)
    if args.part == "ours":
        result = run_ours(args)
    elif args.part == "compressai":
        result = run_compressai(args)
    elif args.part == "pillow":
        result = run_pillow(args, args.target_bpp)
    else:
        result = run_train(args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def spawn(args, part: str, **extra) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--part",
        part,
        "--images",
        args.images,
        "--threads",
        str(args.threads),
        "--train-data",
        args.train_data,
        "--train-steps",
        str(args.train_steps),
        "--batch",
        str(args.batch),
        "--patch",
        str(args.patch),
        "--preset",
        args.preset,
    ]
    if args.model:
        cmd += ["--model", args.model]
    if args.quality:
        cmd += ["--quality", str(args.quality)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{part} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--model", help="model file (default: the shipped model)")
    p.add_argument("--quality", type=int)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-data", default=str(ROOT / "sample_data"))
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--preset", default="small-hp", help="training comparison's architecture")
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--target-bpp", type=float, help=argparse.SUPPRESS)
    p.add_argument("--N", type=int, help=argparse.SUPPRESS)
    p.add_argument("--M", type=int, help=argparse.SUPPRESS)
    p.add_argument("--precision", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.part:
        child(args)
        return

    from aecompress.train import cpu_has_native_bf16

    ours = spawn(args, "ours")
    ours_bf16 = spawn(args, "ours", precision="bf16") if cpu_has_native_bf16() else None  # encode --precision bf16
    cai = spawn(args, "compressai", N=ours["N"], M=ours["M"])
    # The reference the speed target names: bmshj2018-factorized at its published high-rate size.
    ref = cai if (ours["N"], ours["M"]) == REFERENCE else spawn(args, "compressai", N=REFERENCE[0], M=REFERENCE[1])
    pil = spawn(args, "pillow", target_bpp=ours["bpp"])
    train = spawn(args, "train")
    n = len(_images(args.images, args.limit))
    ours_total = ours["enc_total"] + ours["dec_total"]
    cai_total = cai["enc_total"] + cai["dec_total"]
    print(f"## Speed: {n} images from {args.images}, {args.threads} threads, torch {torch.__version__}")
    print()
    print(f"aecompress model {ours['model_id']} (N={ours['N']}, M={ours['M']}), quality {ours['quality']}, mean {ours['bpp']:.3f} bpp")
    print()
    print("| codec | encode ms | decode ms | enc+dec ms | vs aecompress | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    print(f"| aecompress | {ours['enc_total']:.0f} | {ours['dec_total']:.0f} | {ours_total:.0f} | 1.00× | {ours['peak_rss_mb']:.0f} |")
    if ours_bf16:
        total = ours_bf16["enc_total"] + ours_bf16["dec_total"]
        print(
            f"| aecompress, encode --precision bf16 ({ours_bf16['bpp']:.3f} bpp) | {ours_bf16['enc_total']:.0f} | {ours_bf16['dec_total']:.0f} | {total:.0f} | {total / ours_total:.2f}× | {ours_bf16['peak_rss_mb']:.0f} |"
        )
    ref_total = ref["enc_total"] + ref["dec_total"]
    rows = [((ours["N"], ours["M"]), cai)] + ([(REFERENCE, ref)] if ref is not cai else [])
    for (n, m), r in rows:
        total = r["enc_total"] + r["dec_total"]
        print(
            f"| CompressAI bmshj2018-factorized (N={n}, M={m}, random weights) | {r['enc_total']:.0f} | {r['dec_total']:.0f} | {total:.0f} | {total / ours_total:.2f}× slower | {r['peak_rss_mb']:.0f} |"
        )
    for name, v in pil.items():
        if name == "peak_rss_mb":
            continue
        tot = v["enc_total"] + v["dec_total"]
        print(
            f"| Pillow {name} at {v['bpp']:.3f} bpp | {v['enc_total']:.1f} | {v['dec_total']:.1f} | {tot:.1f} | {tot / ours_total:.3f}× | {pil['peak_rss_mb']:.0f} |"
        )
    print()
    enc_parts = ("enc_io", "enc_transform", "enc_entropy", "enc_container")
    print("| aecompress, median ms | image I/O | transform | entropy coding | container |")
    print("|---|---|---|---|---|")
    print(f"| encode | {ours['enc_io']:.1f} | {ours['enc_transform']:.1f} | {ours['enc_entropy']:.1f} | {ours['enc_container']:.2f} |")
    print(f"| decode | {ours['dec_io']:.1f} | {ours['dec_transform']:.1f} | {ours['dec_entropy']:.1f} | {ours['dec_container']:.2f} |")
    share = (ours["enc_entropy"] + ours["enc_container"]) / sum(ours[k] for k in enc_parts)
    print()
    print(f"- entropy coding + container: {100 * share:.1f}% of encode time; payload / model estimate: {ours['payload_vs_estimate']:.4f}")
    print(f"- enc+dec speed-up over CompressAI (same N, M): {cai_total / ours_total:.2f}×")
    print(f"- enc+dec speed-up over CompressAI bmshj2018-factorized (N={REFERENCE[0]}, M={REFERENCE[1]}): {ref_total / ours_total:.2f}×")
    if ours_bf16:
        fast = ours_bf16["enc_total"] + ours_bf16["dec_total"]
        print(
            f"- with encode --precision bf16: {ref_total / fast:.2f}× over that reference; files {100 * (ours_bf16['bpp'] / ours['bpp'] - 1):+.2f}% in size"
        )
    print()
    print(f"Training, preset {train['preset']}, batch {train['batch']} of {train['patch']}², data {args.train_data}:")
    print()
    print("| | s per step | steps/s | images/s |")
    print("|---|---|---|---|")
    rows = [("aecompress, fp32", train["ours_step_s"]), ("CompressAI, fp32", train["compressai_step_s"])]
    if train["ours_bf16_step_s"]:
        rows.append(("aecompress, bf16 autocast (this CPU has native bf16)", train["ours_bf16_step_s"]))
    for label, s in rows:
        print(f"| {label} | {s:.3f} | {1 / s:.2f} | {train['batch'] / s:.1f} |")
    print()
    print(
        f"- training step speed-up: {train['compressai_step_s'] / train['ours_step_s']:.2f}× in fp32; data loading: {100 * train['ours_load_share']:.1f}% of our fp32 step"
    )
    if train["ours_bf16_step_s"]:
        print(
            f"- with bf16 autocast: {train['compressai_step_s'] / train['ours_bf16_step_s']:.2f}× CompressAI's fp32 step; data loading: {100 * train['ours_bf16_load_share']:.1f}% of the step"
        )


if __name__ == "__main__":
    main()
