"""Writes that never leave a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from dime.errors import UsageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place.

    The temporary name keeps `path`'s suffix (some writers choose the format by it) and
    gets the permissions a plain open() would give.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and an atomic rename."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def _first_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_creatable(path: Path, what: str) -> None:
    """`path` does not exist: the nearest existing folder above must be a writable folder."""
    anchor = _first_existing(path.parent)
    if not anchor.is_dir():
        raise UsageError(f"{what} {path}: {anchor} is a file, not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: folder {anchor} is not writable")


def check_output_path(path: str | os.PathLike, what: str = "output") -> Path:
    """Refuse an output file that could not be written, before any long work starts.

    The target must not be a folder, whatever exists above it must be folders, and the
    file (or the folder that will hold it) must be writable. Nothing is created.
    Raises UsageError naming `what` (e.g. "--json") and the path.
    """
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise UsageError(f"{what} {str(path)!r}: not a file name")
    if p.is_dir():
        raise UsageError(f"{what} {p}: is a folder, not a file")
    if p.exists() or p.is_symlink():
        if not p.exists():
            raise UsageError(f"{what} {p}: a dangling symbolic link")
        if not p.is_file():
            raise UsageError(f"{what} {p}: not a regular file")
        if not os.access(p, os.W_OK) or not os.access(p.parent, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {p}: not writable")
        return p
    _check_creatable(p, what)
    return p


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Like check_output_path for a folder that will receive files: an existing one must be
    a writable folder; a missing one must be creatable."""
    p = Path(path)
    if str(path) == "":
        raise UsageError(f"{what}: empty path")
    if p.exists():
        if not p.is_dir():
            raise UsageError(f"{what} {p}: is a file, not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {p}: folder is not writable")
        return p
    _check_creatable(p, what)
    return p
