"""Writing outputs safely: checked before the work, then written through a temporary file.

Every output of every command follows one rule: its path is checked before any
work starts (the directory exists and is writable, the target exists only when
overwriting is allowed), so a user never waits for a result that cannot then be
written; the file is written beside the target and renamed into place, so a
failure or Ctrl-C never leaves a partial file.  Errors are one line naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path

EXISTS_HINT = "already exists (use -f to overwrite)"


class OutputError(Exception):
    """An output that cannot be written; the message is one line naming the path."""


class OutputExistsError(FileExistsError, OutputError):
    """The target exists and overwriting was not allowed."""


def check_output_path(path: str | os.PathLike, force: bool) -> None:
    """Refuse now, before the work, an output that could not be written (or would replace a file without ``force``)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    if not force and (path.exists() or path.is_symlink()):
        raise OutputExistsError(f"{path}: {EXISTS_HINT}")
    _check_writable_dir(path.parent, path)


def prepare_output_dir(path: str | os.PathLike) -> None:
    """Make sure ``-d DIR`` is a directory we can write in, creating it if needed."""
    directory = Path(path)
    for ancestor in (directory, *directory.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                where = "" if ancestor == directory else f" ({ancestor} is a file)"
                raise OutputError(f"{directory}: not a directory{where}")
            break
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{directory}: cannot create the directory ({exc.strerror or exc})") from None
    _check_writable_dir(directory, directory)


def _check_writable_dir(directory: Path, target: Path) -> None:
    """Create and remove a file in ``directory``: the only test that also holds for root and odd file systems."""
    if not directory.exists():
        raise OutputError(f"{target}: directory {directory} does not exist")
    if not directory.is_dir():
        raise OutputError(f"{target}: {directory} is not a directory")
    probe = directory / f".{target.name}.{os.getpid()}.probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except FileExistsError:
        pass  # a stale probe of a process with our pid: the directory is writable
    except OSError as exc:
        raise OutputError(f"{target}: cannot write in {directory} ({exc.strerror or exc})") from None


def atomic_write(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputExistsError(f"{path}: {EXISTS_HINT}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not overwrite and path.exists():  # appeared meanwhile
            raise OutputExistsError(f"{path}: {EXISTS_HINT}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_output(path: str | os.PathLike, data: bytes, force: bool) -> None:
    """``atomic_write`` with every failure as a one-line ``OutputError`` naming the path."""
    try:
        atomic_write(path, data, overwrite=force)
    except OutputExistsError:
        raise
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
