"""Make a trained model the package's default for the next release (maintainers; see docs/RELEASES.md).

    python tools/ship_model.py MODEL --release 0.3.0

1. writes MODEL with its float weights stored as float16 (half the size; the id is
   computed over what is stored, so encoder and decoder compute alike) to
   aecompress/weights/<id>.safetensors;
2. makes it the default in aecompress/weights/models.json and records the release;
   every earlier released default stays listed and shipped;
3. writes its golden files (tests/golden/release/<id>/), which tests/test_compat.py
   decodes on every CI machine from then on.

Then: name the model in CHANGELOG.md under that release, update BENCHMARKS.md, commit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aecompress.modelfile import load_model, save_model  # noqa: E402
from aecompress.store import INDEX, SHIPPED_DIR  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--release", required=True, help="the version that ships it, e.g. 0.3.0")
    args = ap.parse_args()
    model = load_model(args.model)
    staging = SHIPPED_DIR / ".staging.safetensors"
    model_id = save_model(model.net, staging, model.metadata.get("training"), half=True)
    target = SHIPPED_DIR / f"{model_id}.safetensors"
    staging.replace(target)
    index = json.loads(INDEX.read_text())
    if model_id in index["released"]:
        sys.exit(f"model {model_id} was already released in {index['released'][model_id]['release']}")
    index["default"] = model_id
    index["released"][model_id] = {"release": args.release, "date": datetime.date.today().isoformat(), "file": target.name}
    INDEX.write_text(json.dumps(index, indent=2) + "\n")
    subprocess.run([sys.executable, str(REPO / "tests" / "golden" / "make_release_golden.py"), model_id], check=True)
    print(f"model {model_id} ({target.stat().st_size / 1e6:.1f} MB) is the default of {args.release}: {target}")


if __name__ == "__main__":
    main()
