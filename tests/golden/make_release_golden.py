"""Make the golden files of a released model (run once per release's new default; the result is committed).

    python tests/golden/make_release_golden.py b61e5c91503b6362
    python tests/golden/make_release_golden.py --factorized      # one format-version-1 file, tiny factorized model

Encodes a crop of the packaged demo photo at a few qualities with the model of that
id (found in the model store) and records what decoding must give on any machine and
with every later release: the SHA-256 of the decoded integers and the decoded pixels
(kept as PNGs; another CPU may differ by ±1 in the float synthesis).  The files go to
tests/golden/release/<id>/, which tests/test_compat.py decodes through the installed
command without -m.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from make_golden import symbols_digest  # noqa: E402

from aecompress import Codec, load_model  # noqa: E402
from aecompress.images import from_pil  # noqa: E402

PHOTO = REPO / "aecompress" / "samples" / "david-clode-Oq9JrJb6K7M.jpg"
CROP = (120, 90, 120 + 150, 90 + 100)  # not a multiple of 16 or 64


def record(model_path: Path, folder: Path, qualities: list[float]) -> dict:
    codec = Codec(load_model(model_path))
    with Image.open(PHOTO) as im:
        picture = from_pil(im.convert("RGB").crop(CROP))
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for quality in qualities:
        data = codec.encode(picture, quality, reconstruct=False).data
        name = f"q{quality:g}"
        (folder / f"{name}.aec").write_bytes(data)
        Image.fromarray(codec.decode(data).picture.rgb()).save(folder / f"{name}.png")
        files.append({"aec": f"{name}.aec", "png": f"{name}.png", "symbols_sha256": symbols_digest(codec.decode_symbols(data))})
    result = {"model_id": codec.model.model_id, "format_version": int(data[4]), "files": files}
    (folder / "golden.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def factorized() -> dict:
    """A tiny factorized model (format version 1) trained through the CLI in a few seconds, committed with its file."""
    folder = HERE / "release" / "format-1"
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.safetensors"
    subprocess.run(
        [sys.executable, "-m", "aecompress", "train", str(REPO / "sample_data"), "-o", str(model), "-f", "--preset", "tiny"]
        + ["--steps", "100", "--batch-size", "8", "--patch-size", "64", "--lr", "3e-3", "--threads", "1", "--precision", "fp32"],
        check=True,
    )
    return record(model, folder, [1, 4])


if __name__ == "__main__":
    if "--factorized" in sys.argv[1:]:
        print(json.dumps(factorized(), indent=2))
    else:
        for model_id in sys.argv[1:]:
            print(json.dumps(record(Path(load_model(model_id).path), HERE / "release" / model_id, [1, 3.5, 6, 10]), indent=2))
