"""Writes that never leave a half-written file behind, and reads of user-given files that
never hang or exhaust memory."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from dime.errors import DimeError, UsageError

# The most a user-given file of each kind may hold: far more than any dime writes, far less
# than would take the machine down (a path to /dev/zero or a runaway log).
MAX_TEXT_BYTES = 64 * 2**20  # a system file, solution, plan, manifest, options
MAX_TABLE_BYTES = 2 * 2**30  # a CSV of profile runs, power readings, sweep or run rows


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
            kind = "a file" if p.is_file() else next((name for test, name in _KINDS if test(p.stat().st_mode)),
                                                      "a special file")
            raise UsageError(f"{what} {p}: is {kind}, not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {p}: folder is not writable")
        return p
    _check_creatable(p, what)
    return p


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _size_text(n: int) -> str:
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB"


def _stat_problem(st: os.stat_result, what: str, max_bytes: int | None) -> str | None:
    if stat.S_ISDIR(st.st_mode):
        return f"is a folder, not a {what}"
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
        return f"is {kind}, not a regular file"
    if max_bytes is not None and st.st_size > max_bytes:
        return f"{st.st_size} bytes, more than a {what} may hold ({_size_text(max_bytes)})"
    return None


def _missing_problem(path: Path, what: str) -> str:
    anchor = _first_existing(path.parent)
    if anchor.exists() and not anchor.is_dir():
        return f"{anchor} is a file, not a folder"
    return f"{what} not found"


def input_problem(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None) -> str | None:
    """Why `path` cannot be read as a `what` (missing, a folder, a FIFO or device, over
    `max_bytes`), or None when it is a regular file that can be. Opens nothing: opening a
    FIFO would block."""
    p = Path(path)
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        return _missing_problem(p, what)
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    problem = _stat_problem(st, what, max_bytes)
    if problem is None and not os.access(p, os.R_OK):
        return "cannot read (permission denied)"
    return problem


def check_input_file(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None,
                     error: type[DimeError] = UsageError) -> Path:
    """Refuse an input that is not a readable regular file of at most `max_bytes`, with one line
    `PATH: why` (raised as `error`), before anything opens it."""
    problem = input_problem(path, what, max_bytes)
    if problem is not None:
        raise error(f"{path}: {problem}")
    return Path(path)


def read_input_bytes(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_TEXT_BYTES,
                     error: type[DimeError] = UsageError) -> bytes:
    """The bytes of a user-given file, checked as check_input_file does; what is opened is
    checked again (a FIFO put in its place meanwhile neither blocks the open nor is read)."""
    check_input_file(path, what, max_bytes, error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        problem = _stat_problem(os.fstat(fd), what, max_bytes)
        if problem is not None:
            raise error(f"{path}: {problem}")
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise error(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > max_bytes:  # grew since it was checked
        raise error(f"{path}: more than a {what} may hold ({_size_text(max_bytes)})")
    return data


def read_input_text(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_TEXT_BYTES,
                    error: type[DimeError] = UsageError) -> str:
    """A user-given UTF-8 text file (see read_input_bytes); one line naming it otherwise."""
    data = read_input_bytes(path, what, max_bytes, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a text {what} (undecodable byte at offset {e.start})") from None


def check_input_dir(path: str | os.PathLike, what: str = "folder", error: type[DimeError] = UsageError) -> Path:
    """Refuse an input folder that is missing or not a folder, with one line naming it."""
    p = Path(path)
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{path}: {_missing_problem(p, what)}") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "a regular file" if stat.S_ISREG(st.st_mode) else \
            next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
        raise error(f"{path}: is {kind}, not a {what}")
    return p
