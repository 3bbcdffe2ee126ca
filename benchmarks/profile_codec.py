"""Where encode and decode spend their time: torch.profiler over one Kodak image.

    python benchmarks/profile_codec.py [-m MODEL] [--image kodim23.png] [--threads 2]

Prints the operators that take the most CPU time (self time) for an encode and
a decode, and the multiply-adds of the transforms per pixel next to CompressAI's
same-size model (same layer shapes: 5×5 convolutions, GDN as a 1×1 convolution).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from aecompress import Codec, load_model
from aecompress.codec import default_quality
from aecompress.images import read_image

ROOT = Path(__file__).resolve().parent.parent


def macs_per_pixel(N: int, M: int) -> dict[str, float]:
    """Multiply-adds per input pixel of the analysis and synthesis transforms."""
    k = 25
    convs = 3 * N * k / 4 + N * N * k / 16 + N * N * k / 64 + N * M * k / 256
    gdn = N * N / 4 + N * N / 16 + N * N / 64
    return {"convolutions": convs, "GDN": gdn, "total": convs + gdn}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model")
    p.add_argument("--image", default=str(ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    codec = Codec(model)
    picture = read_image(Path(args.image).read_bytes())
    q = default_quality(model)
    data = codec.encode(picture, q, reconstruct=False).data  # warm-up
    codec.decode(data)
    for label, fn in (("encode", lambda: codec.encode(picture, q, reconstruct=False)), ("decode", lambda: codec.decode(data))):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        print(f"### {label} ({Path(args.image).name}, {args.threads} threads)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    m = macs_per_pixel(model.net.preset.N, model.net.preset.M)
    print(
        f"analysis transform, multiply-adds per pixel (synthesis is the mirror): {m['convolutions']:.0f} in convolutions + {m['GDN']:.0f} in GDN = {m['total']:.0f}"
    )
    print("CompressAI's bmshj2018-factorized of the same N, M has exactly the same layer shapes, so the same count.")


if __name__ == "__main__":
    main()
