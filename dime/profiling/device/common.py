"""Operating-point controllers: the abstract base, sysfs helpers and the factory.

A controller lists the operating points (settings) of one piece of hardware, applies one, and
puts everything it touched back afterwards. Use it as a context manager::

    with make_controller("cpufreq") as ctl:
        for setting in ctl.settings():
            ctl.apply(setting)
            ...  # measure
    # original min/max/governor restored here, also on an exception, SIGINT or SIGTERM

Safety net: before the first change, `save()` writes a small JSON state file (under
``~/.cache/dime/dvfs-state/`` unless `state_dir` is given) holding the original values; `restore()`
removes it. If a run dies without restoring (SIGKILL, power loss of the host process), the next
`save()` for the same hardware finds the file of a dead process, restores from it and logs that.
After a reboot the file is discarded (the kernel has reset the settings already).
"""

from __future__ import annotations

import abc
import errno
import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from dime.errors import DvfsError, UsageError
from dime.fileio import atomic_write_text

log = logging.getLogger(__name__)

STATE_VERSION = 1
CONTROLLER_KINDS: tuple[str, ...] = ("none", "cpufreq", "jetson-gpu", "nvml-gpu")
_HANDLED_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)


# --------------------------------------------------------------------------------------------
# sysfs helpers


def sysfs_path(sysfs_root: str | os.PathLike, *parts: str) -> Path:
    """`<sysfs_root>/<parts...>`; parts are absolute-looking paths like "sys/class/devfreq"."""
    return Path(sysfs_root).joinpath(*(p.lstrip("/") for p in parts))


def read_sysfs(path: str | os.PathLike, what: str = "this setting") -> str:
    """Read a sysfs attribute, stripped of whitespace and NULs (device-tree strings end in NUL)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except PermissionError as e:
        raise DvfsError(f"permission denied reading {path}: reading {what} needs root") from e
    except FileNotFoundError as e:
        raise DvfsError(f"{path} does not exist") from e
    except OSError as e:
        raise DvfsError(f"cannot read {path}: {e.strerror or e}") from e
    return data.decode("utf-8", "replace").replace("\x00", "").strip()


def write_sysfs(path: str | os.PathLike, value: str, what: str = "this setting") -> None:
    """Write one value to a sysfs attribute in a single write(2) call (never creates files)."""
    data = (str(value).strip() + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except PermissionError as e:
        raise DvfsError(
            f"permission denied writing {path}: changing {what} needs root (run as root, e.g. sudo)"
        ) from e
    except FileNotFoundError as e:
        raise DvfsError(f"{path} does not exist") from e
    except OSError as e:
        raise DvfsError(f"cannot open {path} for writing: {e.strerror or e}") from e
    try:
        os.write(fd, data)
    except PermissionError as e:
        raise DvfsError(
            f"permission denied writing {path}: changing {what} needs root (run as root, e.g. sudo)"
        ) from e
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise DvfsError(f"the kernel rejected {value.strip()!s} for {path} (EINVAL)") from e
        raise DvfsError(f"cannot write {value.strip()} to {path}: {e.strerror or e}") from e
    finally:
        os.close(fd)


def set_min_max(
    min_path: Path,
    max_path: Path,
    new_min: int,
    new_max: int,
    write: Callable[[Path, str], None],
    read: Callable[[Path], str],
) -> None:
    """Set a [min, max] pair without ever passing through min > max.

    If the new max is at or above the current min, max goes first (this covers raising);
    otherwise min goes first (lowering below the current min). Values equal to the current
    one are not written.
    """
    if new_min > new_max:
        raise DvfsError(f"min {new_min} above max {new_max} for {min_path.parent}")
    cur_min = int(read(min_path))
    cur_max = int(read(max_path))
    if new_max >= cur_min:
        order = [(max_path, new_max, cur_max), (min_path, new_min, cur_min)]
    else:
        order = [(min_path, new_min, cur_min), (max_path, new_max, cur_max)]
    for path, new, cur in order:
        if new != cur:
            write(path, str(new))


# --------------------------------------------------------------------------------------------
# state file helpers


def default_state_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dime" / "dvfs-state"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _process_alive(pid: int, start_ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start_ticks is not None:
        now = _proc_start_ticks(pid)
        if now is not None and now != start_ticks:
            return False  # the pid was reused
    # a zombie (killed, not yet reaped) counts as dead
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    return True


# --------------------------------------------------------------------------------------------
# the base class


class Controller(abc.ABC):
    """Operating-point controller for one piece of hardware.

    Subclasses set `kind` (the ``setting_kind`` written to profiles), `name` (short id used in
    logs and state-file names) and implement `settings`, `apply`, `_identity`, `_read_state`
    and `_write_state`. `_read_state` returns a JSON-serialisable dict of everything `apply`
    may change; `_write_state` puts such a dict back.
    """

    kind: str = "freq_hz"
    name: str = "controller"

    def __init__(self, *, state_dir: str | os.PathLike | None = None) -> None:
        self._state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self._saved: dict[str, Any] | None = None
        self._prev_handlers: dict[int, Any] = {}
        self._handler: Callable[[int, Any], None] | None = None
        self._lock = threading.RLock()

    # ---- to implement

    @abc.abstractmethod
    def settings(self) -> list[str]:
        """Labels of the available operating points, lowest first."""

    @abc.abstractmethod
    def apply(self, setting: str) -> None:
        """Switch to one operating point (saves the original state first if not done yet)."""

    @abc.abstractmethod
    def _identity(self) -> str:
        """A string naming the controlled hardware (used for the state-file name)."""

    @abc.abstractmethod
    def _read_state(self) -> dict[str, Any]:
        """Everything `apply` may change, as a JSON-serialisable dict."""

    @abc.abstractmethod
    def _write_state(self, state: dict[str, Any]) -> None:
        """Put back a dict returned by `_read_state` (in a safe order)."""

    @classmethod
    def unavailable_reason(cls, **kw: Any) -> str | None:
        """Why this controller cannot be used with these arguments, or None if it can."""
        return None

    @classmethod
    def is_available(cls, **kw: Any) -> bool:
        """True if usable; otherwise log why and return False."""
        reason = cls.unavailable_reason(**kw)
        if reason:
            log.info("%s: not available: %s", cls.name, reason)
            return False
        return True

    # ---- state file

    @property
    def state_path(self) -> Path:
        digest = hashlib.sha1(self._identity().encode()).hexdigest()[:12]
        return self._state_dir / f"{self.name}-{digest}.json"

    @property
    def saved(self) -> dict[str, Any] | None:
        """The original state recorded by `save()`, or None when nothing is pending."""
        return self._saved

    def _write_state_file(self, state: dict[str, Any]) -> None:
        doc = {
            "version": STATE_VERSION,
            "controller": self.name,
            "identity": self._identity(),
            "pid": os.getpid(),
            "pid_start_ticks": _proc_start_ticks(os.getpid()),
            "boot_id": _boot_id(),
            "host": socket.gethostname(),
            "created": time.time(),
            "state": state,
        }
        try:
            atomic_write_text(self.state_path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
        except OSError as e:
            raise DvfsError(
                f"cannot write the DVFS state file {self.state_path}: {e.strerror or e}"
            ) from e

    def _remove_state_file(self) -> None:
        try:
            self.state_path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("%s: cannot remove state file %s: %s", self.name, self.state_path, e)

    def recover(self) -> bool:
        """Restore from a state file left by a dead run. True if something was restored.

        Raises DvfsError if a live process holds the file (two runs changing the same clocks).
        """
        path = self.state_path
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as e:
            raise DvfsError(
                f"unreadable DVFS state file {path} ({e}); check the settings by hand and delete it"
            ) from e
        pid = int(doc.get("pid", -1))
        if pid == os.getpid() and self._saved is not None:
            return False  # our own, current
        if pid != os.getpid() and pid > 0 and _process_alive(pid, doc.get("pid_start_ticks")):
            raise DvfsError(
                f"another process (pid {pid}) is changing {self.name} settings "
                f"(state file {path}); wait for it to finish"
            )
        boot = doc.get("boot_id", "")
        if boot and _boot_id() and boot != _boot_id():
            log.warning(
                "%s: discarding state file %s from before a reboot (settings were reset by it)",
                self.name, path,
            )
            self._remove_state_file()
            return False
        log.warning(
            "%s: a previous run (pid %s) did not restore its settings; restoring them from %s",
            self.name, pid, path,
        )
        self._write_state(doc["state"])
        self._remove_state_file()
        return True

    # ---- save / restore

    def save(self) -> None:
        """Record everything `apply` may touch (and write the state file) before any change.

        A leftover state file from a dead run is restored first, so the original values are
        the ones recorded.
        """
        with self._lock:
            if self._saved is not None:
                return
            self.recover()
            state = self._read_state()
            self._write_state_file(state)
            self._saved = state
            log.debug("%s: saved %s", self.name, state)

    def _ensure_saved(self) -> None:
        if self._saved is None:
            self.save()

    def restore(self) -> None:
        """Put back what `save()` recorded and remove the state file. No-op if nothing saved.

        If restoring fails, the state file is kept so that the next run can retry.
        """
        with self._lock:
            if self._saved is None:
                return
            self._write_state(self._saved)
            self._saved = None
            self._remove_state_file()
            log.info("%s: restored original settings", self.name)

    def close(self) -> None:
        """Release vendor handles (NVML); the base class holds none."""

    # ---- context manager and signals

    def __enter__(self) -> "Controller":
        self.save()
        self._install_signal_handlers()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.restore()
        finally:
            self._uninstall_signal_handlers()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.debug("%s: not in the main thread; no signal handlers installed", self.name)
            return
        handler = self._on_signal
        for signum in _HANDLED_SIGNALS:
            prev = signal.getsignal(signum)
            if prev == signal.SIG_IGN:
                continue  # ignored signals stay ignored
            self._prev_handlers[signum] = prev
            signal.signal(signum, handler)
        self._handler = handler

    def _uninstall_signal_handlers(self) -> None:
        if not self._prev_handlers:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, prev in list(self._prev_handlers.items()):
            if signal.getsignal(signum) == self._handler:
                signal.signal(signum, prev if prev is not None else signal.SIG_DFL)
            else:
                log.debug("%s: handler for signal %d was replaced; leaving it", self.name, signum)
        self._prev_handlers.clear()
        self._handler = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        prev = self._prev_handlers.get(signum, signal.SIG_DFL)
        log.warning("%s: signal %d received; restoring original settings", self.name, signum)
        try:
            self.restore()
        except Exception as e:  # keep going: the signal must still take effect
            log.error("%s: restore failed: %s (state file %s kept)", self.name, e, self.state_path)
        self._uninstall_signal_handlers()
        if callable(prev):
            prev(signum, frame)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kind={self.kind} id={self._identity()!r}>"


class NoneController(Controller):
    """No control: a single operating point, "default"."""

    kind = "default"
    name = "none"

    def settings(self) -> list[str]:
        return ["default"]

    def apply(self, setting: str) -> None:
        if setting != "default":
            raise UsageError(f"unknown setting {setting!r} for --dvfs none; the only one is 'default'")

    def _identity(self) -> str:
        return "none"

    def _read_state(self) -> dict[str, Any]:
        return {}

    def _write_state(self, state: dict[str, Any]) -> None:
        pass

    def save(self) -> None:  # nothing to record; no state file
        return

    def restore(self) -> None:
        return


def check_setting(ctl: Controller, setting: str, available: list[str]) -> None:
    if setting not in available:
        shown = ", ".join(available[:8]) + (" ..." if len(available) > 8 else "")
        raise UsageError(f"unknown setting {setting!r} for {ctl.name}; available: {shown}")
