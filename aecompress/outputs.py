"""Writing outputs safely: temporary file beside the target, then an atomic rename.

A failure or Ctrl-C while writing never leaves a partial file at the target, and
an existing file is only replaced when the caller says so.
"""

from __future__ import annotations

import os
from pathlib import Path


class OutputExistsError(FileExistsError):
    """The target exists and overwriting was not allowed."""


def atomic_write(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputExistsError(f"{path}: already exists (use -f to overwrite)")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not overwrite and path.exists():  # appeared meanwhile
            raise OutputExistsError(f"{path}: already exists (use -f to overwrite)")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
