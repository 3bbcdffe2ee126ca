"""Make the golden files of tests/test_hyperprior.py, tests/test_context.py and tests/test_channel.py (run once; committed).

    python tests/golden/make_golden.py                 # golden-*: the hyperprior (format 2)
    python tests/golden/make_golden.py --checkerboard  # golden-cb-*: the checkerboard context (format 3)
    python tests/golden/make_golden.py --channel       # golden-cc-*: the channel-wise context too (format 4)

Trains a tiny model of that kind through the CLI (a few seconds), encodes a crop of a
sample photo at every quality, and records what decoding must give on any machine:
the SHA-256 of the decoded integers (ẑ, table indices, residuals) and the decoded
pixels (kept as PNGs; another CPU may differ by ±1 in the float synthesis).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from aecompress import Codec, load_model  # noqa: E402
from aecompress.images import from_pil  # noqa: E402


def symbols_digest(symbols: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(symbols):
        array = np.ascontiguousarray(symbols[name], dtype=np.int64)
        h.update(f"{name}|{array.shape}|".encode())
        h.update(array.tobytes())
    return h.hexdigest()


# The files' prefix and the preset trained, by command-line flag (none: the hyperprior).
KINDS = {"": ("golden", "tiny-hp"), "--checkerboard": ("golden-cb", "tiny-cb"), "--channel": ("golden-cc", "tiny-cc")}


def main(checkerboard: bool = False, channel: bool = False) -> None:
    prefix, preset = KINDS["--channel" if channel else "--checkerboard" if checkerboard else ""]
    model_path = HERE / f"{prefix}-model.safetensors"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "aecompress",
            "train",
            str(REPO / "sample_data"),
            "-o",
            str(model_path),
            "-f",
            "--preset",
            preset,
            "--steps",
            "150",
            "--batch-size",
            "8",
            "--patch-size",
            "64",
            "--lr",
            "3e-3",
            "--threads",
            "1",
            "--precision",
            "fp32",
        ],
        check=True,
    )
    codec = Codec(load_model(model_path))
    with Image.open(REPO / "sample_data" / "david-clode-Oq9JrJb6K7M.jpg") as im:
        crop = im.convert("RGB").crop((200, 150, 200 + 150, 150 + 100))  # not a multiple of 16 or 64
    picture = from_pil(crop)
    record = {"model": model_path.name, "files": []}
    for quality in range(1, codec.model.qualities + 1):
        data = codec.encode(picture, quality, reconstruct=False).data
        name = f"{prefix}-q{quality}"
        (HERE / f"{name}.aec").write_bytes(data)
        decoded = codec.decode(data).picture.rgb()
        Image.fromarray(decoded).save(HERE / f"{name}.png")
        record["files"].append({"aec": f"{name}.aec", "png": f"{name}.png", "symbols_sha256": symbols_digest(codec.decode_symbols(data))})
    (HERE / f"{prefix}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main(checkerboard="--checkerboard" in sys.argv[1:], channel="--channel" in sys.argv[1:])
