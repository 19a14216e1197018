"""CPU package energy through Linux powercap RAPL (Intel; AMD Zen exposes the same files).

Zones ``<root>/sys/class/powercap/intel-rapl:N`` whose ``name`` starts with "package" are summed
(sub-zones such as core/uncore/dram are inside the package and are not added). ``energy_uj`` is a
counter in µJ that wraps at ``max_energy_range_uj``; each read adds the difference, plus the range
when the counter went down. A background thread reads every `poll_s` so no wrap is missed during
long windows. Reading energy_uj needs root on recent kernels.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dime.errors import MeterError
from dime.profiling.device.common import sysfs_path
from dime.profiling.meters.common import Meter

log = logging.getLogger(__name__)

POWERCAP_DIR = "sys/class/powercap"


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str
    max_range_uj: int

    def read_uj(self) -> int:
        f = self.path / "energy_uj"
        try:
            return int(f.read_text().strip())
        except PermissionError as e:
            raise MeterError(f"permission denied reading {f}: reading RAPL needs root") from e
        except (OSError, ValueError) as e:
            raise MeterError(f"cannot read {f}: {e}") from e


def find_package_zones(sysfs_root: str | os.PathLike = "/") -> list[RaplZone]:
    base = sysfs_path(sysfs_root, POWERCAP_DIR)
    if not base.is_dir():
        return []
    zones = []
    for d in sorted(base.iterdir()):
        if not re.fullmatch(r"intel-rapl:\d+", d.name):
            continue
        try:
            name = (d / "name").read_text().strip()
            max_range = int((d / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError) as e:
            log.debug("rapl: skipping %s: %s", d, e)
            continue
        if name.startswith("package") and (d / "energy_uj").exists():
            zones.append(RaplZone(d, name, max_range))
    return zones


def counter_delta(prev: int, cur: int, max_range: int) -> int:
    """Increase of a counter that wraps to 0 after reaching `max_range`."""
    return cur - prev if cur >= prev else cur + max_range - prev


class RaplMeter(Meter):
    name = "rapl"
    min_window_s = 0.1  # the counter updates about every ms

    def __init__(
        self,
        sysfs_root: str | os.PathLike = "/",
        poll_s: float = 5.0,
        min_window_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.zones = find_package_zones(sysfs_root)
        if not self.zones:
            raise MeterError(f"no RAPL package zones under {sysfs_path(sysfs_root, POWERCAP_DIR)}")
        if min_window_s is not None:
            self.min_window_s = float(min_window_s)
        self.poll_s = float(poll_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: list[int] = []
        self._total_uj = 0
        self._running = False
        self._power_mark: tuple[float, int] | None = None

    @classmethod
    def unavailable_reason(cls, sysfs_root: str | os.PathLike = "/", **kw: Any) -> str | None:
        zones = find_package_zones(sysfs_root)
        if not zones:
            return f"no RAPL package zones under {sysfs_path(sysfs_root, POWERCAP_DIR)}"
        try:
            zones[0].read_uj()
        except MeterError as e:
            return str(e)
        return None

    def _update(self) -> int:
        with self._lock:
            cur = [z.read_uj() for z in self.zones]
            for i, z in enumerate(self.zones):
                self._total_uj += counter_delta(self._last[i], cur[i], z.max_range_uj)
            self._last = cur
            return self._total_uj

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._update()
            except MeterError as e:
                log.error("rapl: %s", e)
                return

    def start(self) -> None:
        self.stop()
        with self._lock:
            self._last = [z.read_uj() for z in self.zones]
            self._total_uj = 0
        self._power_mark = (self._clock(), 0)
        self._running = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rapl poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if not self._running:
            return
        self._update()
        self._running = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def energy_j(self) -> float:
        if not self._last:
            raise MeterError("rapl meter: energy_j() before start()")
        total = self._update() if self._running else self._total_uj
        return total / 1e6

    def power_w(self) -> float:
        """Average power since the previous power_w() call (or start)."""
        if not self._running or self._power_mark is None:
            return math.nan
        t = self._clock()
        uj = self._update()
        t0, uj0 = self._power_mark
        self._power_mark = (t, uj)
        return (uj - uj0) / 1e6 / (t - t0) if t > t0 else math.nan
