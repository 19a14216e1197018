"""Rate estimates from a run's own transfers (no torch, no probe traffic).

Every transfer a device makes yields one sample of its link direction: payload bytes and wire
time, the time the direction was busy with those bytes (see dime.run.data.pipeline for how each
shaper measures it). The estimate of a direction is the median rate of its last `window`
samples, once it has `min_samples` of them: one outlier (a transfer delayed by the machine, a
TCP slow start after an idle spell) moves a median of three or more by one rank at most, and
after a real step half the window of new samples carries the median across it.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from dataclasses import dataclass

Key = tuple[int, str]  # (link index, direction: core.links.UP or DOWN)


@dataclass(frozen=True)
class Transfer:
    """One transfer over one link direction."""

    link: int
    direction: str
    payload_bytes: int
    wire_s: float

    @property
    def key(self) -> Key:
        return (self.link, self.direction)

    @property
    def rate_mbps(self) -> float:
        return self.payload_bytes * 8 / self.wire_s / 1e6


class RateEstimator:
    """Windowed median rate per link direction; thread-safe."""

    def __init__(self, window: int = 5, min_samples: int = 3) -> None:
        if window < 1 or not 1 <= min_samples <= window:
            raise ValueError(f"window {window} and min samples {min_samples}: need 1 <= min samples <= window")
        self.window = window
        self.min_samples = min_samples
        self._rates: dict[Key, collections.deque[float]] = {}
        self._last_at: dict[Key, float] = {}
        self._lock = threading.Lock()

    def add(self, t: Transfer, now: float | None = None) -> float | None:
        """Take one sample; the direction's estimate after it (None: too few samples yet)."""
        if not (t.wire_s > 0 and t.payload_bytes > 0):
            return self.estimate(t.key)
        with self._lock:
            rates = self._rates.setdefault(t.key, collections.deque(maxlen=self.window))
            rates.append(t.rate_mbps)
            self._last_at[t.key] = time.monotonic() if now is None else now
            return self._median(rates)

    def _median(self, rates: collections.deque[float]) -> float | None:
        return statistics.median(rates) if len(rates) >= self.min_samples else None

    def estimate(self, key: Key) -> float | None:
        with self._lock:
            rates = self._rates.get(key)
            return self._median(rates) if rates else None

    def estimates(self) -> dict[Key, float]:
        """Every direction that has an estimate."""
        with self._lock:
            out = {k: self._median(r) for k, r in self._rates.items()}
        return {k: v for k, v in out.items() if v is not None}

    def samples(self, key: Key) -> int:
        with self._lock:
            return len(self._rates.get(key, ()))

    def idle_s(self, key: Key, now: float | None = None) -> float | None:
        """Seconds since the direction's last sample (None: it never had one)."""
        with self._lock:
            last = self._last_at.get(key)
        return None if last is None else (time.monotonic() if now is None else now) - last

    def forget(self, key: Key) -> None:
        """Drop a direction's samples: its next estimate rests on new transfers only."""
        with self._lock:
            self._rates.pop(key, None)
            self._last_at.pop(key, None)
