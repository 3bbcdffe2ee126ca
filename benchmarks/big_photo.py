"""A phone-sized photo: where encode and decode spend their time, and what the CLI takes.

Builds a 6000×4000 (24 MP) PNG from one photo (Lanczos), then

1. runs the installed CLI in child processes (`encode`, `encode --no-psnr`, `decode`),
   reporting each one's wall time and peak resident memory (wait4's ru_maxrss);
2. times each stage in one process: PNG reading, the analysis transform, the
   hyper-analysis with the integer hyper-synthesis and context (quantization), range
   coding, the reconstruction for the PSNR report, and on the decoding side range
   decoding, the integer networks, the synthesis transform and PNG writing.

    python benchmarks/big_photo.py [--photo PATH] [--threads 2] [--precision auto] [--keep DIR]

Times are seconds and seconds per megapixel; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the command line sets it (aecompress/cli/__init__.py)

import numpy as np  # noqa: E402
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
SIZE = (6000, 4000)


def make_photo(source: Path, out: Path) -> None:
    with Image.open(source) as im:
        im = ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), SIZE, Image.LANCZOS)
    im.save(out, compress_level=1)


def run_cli(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `aecompress` child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "aecompress", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"aecompress {' '.join(args)} failed: {proc.stderr.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss / 1024


class Clock:
    """Seconds per named stage of the side being timed (encode or decode)."""

    def __init__(self) -> None:
        self.sides: dict[str, dict[str, float]] = {"encode": {}, "decode": {}}
        self.side = "encode"

    def add(self, stage: str, seconds: float) -> None:
        here = self.sides[self.side]
        here[stage] = here.get(stage, 0.0) + seconds

    def wrap(self, owner, name: str, stage: str) -> None:
        """Time every call of ``owner.name`` (an attribute holding a callable) as ``stage``."""
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - t0)

        setattr(owner, name, timed)

    def time(self, stage: str, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        self.add(stage, time.perf_counter() - t0)
        return result

    def integer(self) -> float:
        return sum(v for k, v in self.sides[self.side].items() if k.startswith("integer"))


def stages(photo: Path, threads: int, precision: str) -> tuple[dict[str, float], dict[str, float]]:
    """In-process seconds of each encoding and decoding stage."""
    import torch

    from aecompress import load_model
    from aecompress.cli.encode import _codec
    from aecompress.images import encode_picture, read_image

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    codec = _codec(load_model(), None, precision)
    coder = codec.latent_coder
    clock = Clock()
    clock.wrap(coder, "hyper", "integer hyper-synthesis")
    if hasattr(coder, "context"):
        clock.wrap(coder, "context", "integer context")
    picture = clock.time("read PNG", read_image, photo.read_bytes(), str(photo))
    analysis = clock.time("analysis transform", codec.analyze, picture)
    encoded = codec.encode_analysis(analysis, 6, reconstruct=True)
    clock.add("hyper-analysis, rounding", encoded.timings["transform"] - analysis.seconds - clock.integer())
    clock.add("range coding", encoded.timings["entropy"])
    clock.add("reconstruction (PSNR)", encoded.timings["reconstruct"])
    clock.side = "decode"
    decoded = codec.decode(encoded.data)
    clock.add("range decoding", decoded.timings["entropy"] - clock.integer())
    clock.add("synthesis transform", decoded.timings["transform"])
    clock.time("write PNG", encode_picture, decoded.picture, "PNG")
    assert np.array_equal(decoded.picture.rgb(), encoded.reconstruction.rgb())
    return clock.sides["encode"], clock.sides["decode"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT.parent / "shared" / "data" / "photos" / "budgie-backgrounds_casa-mila.jpg"
    parser.add_argument("--photo", type=Path, default=default)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--keep", type=Path, help="Folder to keep the 24 MP PNG and its outputs in.")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    png, aec, out = work / "24mp.png", work / "24mp.aec", work / "24mp.decoded.png"
    if not png.exists():
        make_photo(args.photo, png)
    mp = SIZE[0] * SIZE[1] / 1e6
    common = ["--threads", str(args.threads)]
    print(f"{SIZE[0]}x{SIZE[1]} ({mp:.0f} MP) from {args.photo.name}, {args.threads} threads, --precision {args.precision}")
    print("\ncommand                          wall s   s/MP  peak MB")
    for label, cli in (
        ("encode", ["encode", png, "-o", aec, "-f", "--precision", args.precision, *common]),
        ("encode --no-psnr", ["encode", png, "-o", aec, "-f", "--no-psnr", "--precision", args.precision, *common]),
        ("decode", ["decode", aec, "-o", out, "-f", *common]),
    ):
        seconds, peak = run_cli([str(a) for a in cli])
        print(f"{label:<32} {seconds:6.1f} {seconds / mp:6.2f} {peak:8.0f}")
    print(f"\nfile: {aec.stat().st_size:,} bytes ({8 * aec.stat().st_size / (mp * 1e6):.3f} bpp)")
    for side, seconds in zip(("encode", "decode"), stages(png, args.threads, args.precision), strict=True):
        print(f"\n{side} stage                       s   s/MP")
        for stage, value in seconds.items():
            print(f"  {stage:<30} {value:5.2f} {value / mp:6.3f}")
        print(f"  {'total':<30} {sum(seconds.values()):5.2f} {sum(seconds.values()) / mp:6.3f}")


if __name__ == "__main__":
    main()
