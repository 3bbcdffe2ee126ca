"""Where models live, found by id: a file written with any released default decodes after every upgrade.

A ``.aec`` names its model by id.  ``decode`` without ``-m`` looks the id up, in order,
in the user's model directory (``AECOMPRESS_MODELS``, or the platform's data directory)
and among the models shipped in the package.  The package ships the current default
and every earlier released default, listed in ``weights/models.json`` with the release
that first shipped each.  That index also names the models that were only ever
development snapshots between releases, so their files get an error that says where
to find them instead of a bare "not found".

This module reads no weights and imports no torch: listing and looking up are cheap.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MODELS_ENV = "AECOMPRESS_MODELS"
SHIPPED_DIR = Path(__file__).parent / "weights"
INDEX = SHIPPED_DIR / "models.json"
MODEL_ID = re.compile(r"^[0-9a-f]{16}$")
SUFFIX = ".safetensors"


class ModelNotFound(LookupError):
    """No model with the id a file names is installed anywhere aecompress looks."""


@dataclass(frozen=True)
class Entry:
    """A model aecompress can see: its id, where it is, and which release shipped it (if one did)."""

    model_id: str
    path: Path
    where: str  # "user" or "shipped"
    release: str | None = None

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def raw_metadata(path: Path) -> dict[str, str]:
    """A model file's metadata strings from its safetensors header alone: no torch, no weights read.

    ``ValueError`` when the file is not safetensors.
    """
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        if not 2 <= size <= 100_000_000:
            raise ValueError("not a safetensors file")
        header = json.loads(fh.read(size))
    return (header.get("__metadata__") or {}) if isinstance(header, dict) else {}


def decoded(metadata: dict[str, str]) -> dict:
    """Metadata with its JSON values (preset, training) decoded; plain strings stay strings."""
    return {k: _maybe_json(v) for k, v in metadata.items()}


def read_metadata(path: Path) -> dict:
    """``raw_metadata``, decoded."""
    return decoded(raw_metadata(path))


def _maybe_json(value: str):
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value


def user_dir() -> Path:
    """The user's model directory: ``$AECOMPRESS_MODELS``, else the platform's per-user data directory.

    Written by hand rather than with platformdirs: three platforms, one line each.
    """
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV]).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "aecompress" / "models"


@lru_cache(maxsize=1)
def index() -> dict:
    """The shipped index: ``default``, ``released`` ({id: {release, date, file}}), ``development`` ({id: {date, commit}})."""
    try:
        return json.loads(INDEX.read_text())
    except FileNotFoundError:
        return {"default": None, "released": {}, "development": {}}


def default_id() -> str | None:
    return index().get("default")


def release_of(model_id: str) -> str | None:
    """The release that first shipped a model as its default, or None."""
    info = index().get("released", {}).get(model_id)
    return info["release"] if info else None


def shipped_path(model_id: str) -> Path | None:
    info = index().get("released", {}).get(model_id)
    if info is None:
        return None
    path = SHIPPED_DIR / info["file"]
    return path if path.is_file() else None


def default_path() -> Path | None:
    """The shipped default model's file, or None when this copy has none."""
    mid = default_id()
    return shipped_path(mid) if mid else None


def is_model_id(text: str) -> bool:
    return bool(MODEL_ID.match(text))


def find(model_id: str) -> Entry:
    """The installed model with this id: the user's directory first, then the package."""
    user = user_dir() / f"{model_id}{SUFFIX}"
    if user.is_file():
        return Entry(model_id, user, "user", release_of(model_id))
    shipped = shipped_path(model_id)
    if shipped is not None:
        return Entry(model_id, shipped, "shipped", release_of(model_id))
    raise ModelNotFound(not_found_message(model_id))


def not_found_message(model_id: str) -> str:
    """One line: the id, the places searched, and where the model can be had."""
    searched = f"searched {user_dir()} and the models shipped with this copy of aecompress"
    release = release_of(model_id)
    if release:
        hint = f"aecompress {release} shipped it as its default: reinstall the package, or pass -m MODEL"
    elif model_id in index().get("development", {}):
        dev = index()["development"][model_id]
        hint = (
            f"it was a development model of {dev['date']} that no release shipped; get it from the source repository "
            f"(git show {dev['commit']}:aecompress/weights/default.safetensors > {model_id}.safetensors), "
            f"then `aecompress models add {model_id}.safetensors` or pass -m"
        )
    else:
        hint = "add the model with `aecompress models add MODEL`, or pass -m MODEL"
    return f"model {model_id} is not installed ({searched}); {hint}"


def entries() -> list[Entry]:
    """Every model aecompress can see without -m: the user's first, then the shipped ones (a user copy hides a shipped one)."""
    seen: dict[str, Entry] = {}
    folder = user_dir()
    if folder.is_dir():
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            mid = path.name[: -len(SUFFIX)]
            if is_model_id(mid):
                seen[mid] = Entry(mid, path, "user", release_of(mid))
    for mid in index().get("released", {}):
        path = shipped_path(mid)
        if path is not None and mid not in seen:
            seen[mid] = Entry(mid, path, "shipped", release_of(mid))
    return list(seen.values())


def install(source: Path, model_id: str, force: bool = False) -> Path:
    """Copy a model file (already checked by the caller) into the user's directory as ID.safetensors, atomically."""
    folder = user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{model_id}{SUFFIX}"
    if target.exists() and not force:
        raise FileExistsError(f"{target}: model {model_id} is already installed (use -f to replace it)")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{model_id}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
