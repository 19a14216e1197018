"""Power meters: the abstract base, a background power sampler and the factory.

A meter reports cumulative energy since `start()`; the profiler reads `energy_j()` before and
after a timed window and takes the difference. A window should last at least `min_window_s`
(repeat the bundle until it does, then divide): shorter windows read mostly noise.

Meters whose energy only becomes known later (`deferred = True`, the external SmartPower3) return
NaN from `energy_j()`; the profiler then writes each window's device ``time.monotonic()`` bounds
(`t_start_s`, `t_end_s`) and ``python -m dime.energy join`` fills in the energy afterwards.
"""

from __future__ import annotations

import abc
import logging
import math
import threading
import time
from typing import Any, Callable, Mapping

from dime.errors import MeterError, UsageError

log = logging.getLogger(__name__)

METER_KINDS: tuple[str, ...] = ("none", "nvml", "jetson", "rapl", "smartpower3")


class Meter(abc.ABC):
    """Energy meter. `name` is the ``energy_source`` label written to profiles."""

    name: str = "meter"
    min_window_s: float = 1.0
    deferred: bool = False  # True: energy_j() is NaN; energy comes from a later join

    @abc.abstractmethod
    def start(self) -> None:
        """Begin measuring; `energy_j()` counts from here. Calling it again restarts."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop measuring (idempotent); `energy_j()` then keeps returning the final total."""

    @abc.abstractmethod
    def energy_j(self) -> float:
        """Joules since `start()` (cumulative; take differences over windows)."""

    def power_w(self) -> float:
        """Current power in watts where the meter has one, else NaN."""
        return math.nan

    @classmethod
    def unavailable_reason(cls, **kw: Any) -> str | None:
        """Why the meter cannot be used with these arguments, or None if it can."""
        return None

    @classmethod
    def is_available(cls, **kw: Any) -> bool:
        """True if usable; otherwise log why and return False."""
        reason = cls.unavailable_reason(**kw)
        if reason:
            log.info("%s meter: not available: %s", cls.name, reason)
            return False
        return True

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> "Meter":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name} min_window_s={self.min_window_s}>"


class PowerSampler:
    """Samples named power channels (W) in a background thread and integrates each with the
    trapezoid rule. `sample()` also takes a reading on demand, so totals read at a window's edge
    include power up to that instant.
    """

    def __init__(
        self,
        read_w: Callable[[], Mapping[str, float]],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        name: str = "power sampler",
    ) -> None:
        if interval_s <= 0:
            raise UsageError(f"sampling interval must be positive, got {interval_s}")
        self._read_w = read_w
        self.interval_s = float(interval_s)
        self._clock = clock
        self._name = name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self._last_t: float | None = None
        self._last_p: dict[str, float] = {}
        self._energy: dict[str, float] = {}
        self._error: BaseException | None = None
        self.samples = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self.stop()
        with self._lock:
            self._reset()
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5.0)  # the stop event wakes the wait at once
        if self._thread.is_alive():
            log.warning("%s: sampling thread did not stop in time", self._name)
        self._thread = None
        try:
            self.sample()
        except MeterError as e:
            log.warning("%s: final sample failed: %s", self._name, e)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception as e:  # keep the error for energy_j() to raise
                log.error("%s: sampling failed: %s", self._name, e)
                self._error = e
                return

    def sample(self) -> dict[str, float]:
        """Take one reading now and add the trapezoid since the previous one."""
        with self._lock:
            t = self._clock()
            try:
                p = {k: float(v) for k, v in self._read_w().items()}
            except MeterError:
                raise
            except Exception as e:
                raise MeterError(f"{self._name}: reading power failed: {e}") from e
            if self._last_t is not None:
                dt = t - self._last_t
                for k, v in p.items():
                    prev = self._last_p.get(k, v)
                    self._energy[k] = self._energy.get(k, 0.0) + 0.5 * (prev + v) * dt
            else:
                for k in p:
                    self._energy.setdefault(k, 0.0)
            self._last_t, self._last_p = t, p
            self.samples += 1
            return dict(p)

    def energy_j(self, *, fresh: bool = True) -> dict[str, float]:
        """Joules per channel since start; `fresh` takes a reading first (when running)."""
        if self._error is not None:
            raise MeterError(f"{self._name}: sampling stopped after an error: {self._error}")
        if fresh and self._thread is not None:
            self.sample()
        with self._lock:
            return dict(self._energy)

    def last_power_w(self) -> dict[str, float]:
        with self._lock:
            return dict(self._last_p)
