"""What storing a model's float weights as float16 costs: file size, PSNR, and that decoding stays exact.

    python benchmarks/half_storage.py KODAK_DIR [-m MODEL] [--qualities 1,6,10]

Writes a float16 copy of the model, compares its integer tensors (entropy tables,
integer hyper-synthesis and context) with the original's, then encodes every image
with the original model and decodes the same symbols with both: the symbols must
be identical, and the PSNR change is what float16 synthesis weights cost a file
written before the switch.  A model that ships in float16 is used by encoder and
decoder alike, so its own files see no such change at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from aecompress import Codec, bitstream, load_model
from aecompress.data import find_images
from aecompress.images import read_image
from aecompress.metrics import psnr
from aecompress.modelfile import save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("--qualities", default="1,6,10")
    args = ap.parse_args()
    original = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        half_path = Path(tmp) / "half.safetensors"
        save_model(original.net, half_path, original.metadata.get("training"), half=True)
        half = load_model(half_path)
        a, b = load_file(original.path), load_file(str(half_path))
        integer = [k for k, v in a.items() if not v.is_floating_point()]
        exact = all(torch.equal(a[k], b[k]) for k in integer) and set(integer) == {k for k, v in b.items() if not v.is_floating_point()}
        print(f"model {original.model_id}: {Path(original.path).stat().st_size / 1e6:.2f} MB -> {half_path.stat().st_size / 1e6:.2f} MB")
        print(f"integer tensors ({len(integer)}) identical: {exact}")
        plain, compact = Codec(original), Codec(half)
        for q in (float(x) for x in args.qualities.split(",")):
            deltas, worst, same = [], 0, True
            for path in find_images(Path(args.folder)):
                picture = read_image(path.read_bytes(), str(path))
                data = plain.encode(picture, q, reconstruct=False).data
                header, payload = bitstream.unpack(data)
                other = bitstream.pack(dataclasses.replace(header, model_id=half.model_id), payload)
                sa, sb = plain.decode_symbols(data), compact.decode_symbols(other)
                same &= sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
                xa, xb = plain.decode(data).picture.rgb(), compact.decode(other).picture.rgb()
                deltas.append(psnr(picture.rgb(), xb) - psnr(picture.rgb(), xa))
                worst = max(worst, int(np.abs(xa.astype(int) - xb.astype(int)).max()))
            print(
                f"q{q:g}: symbols identical {same}; PSNR change mean {np.mean(deltas):+.4f} dB, "
                f"range {min(deltas):+.4f}..{max(deltas):+.4f} dB; largest pixel change {worst}"
            )


if __name__ == "__main__":
    main()
