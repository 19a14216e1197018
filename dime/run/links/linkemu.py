"""User-space link emulation: pacing at the sender, delay at the receiver.

A transfer of B payload bytes over a link direction of rate r Mbps and round-trip time rtt
costs what the cost model says (dime.core.costs.Link.transfer_latency_s):

    8 B / (r * 1e6)   on the wire: the direction is busy for that long (the pipelined period
                      counts it), so the sender holds the direction that long, and
    rtt / 2           of delay, which occupies nothing: the receiver holds the data back
                      until rtt / 2 after it arrived (dime.run.data.pipeline), so pipelined
                      queries overlap their delays as on a real link.

The sender takes the direction's lock, hands all but the last few bytes to the transport,
measures how long that really took, sleeps the remainder of the wire time, then sends the
last bytes and lets the direction go. The receiver cannot use a cut before its last bytes
arrive, so it sees the data no earlier than the wire time after the send began, whatever the
real network does. When the real transfer alone takes longer, the real network is slower than
the emulated link; the transfer is counted as an overrun (when over by more than
OVERRUN_SLACK_S) and not slowed further.

This needs no root, works the same across real machines, and touches only dime's own
traffic. `dime.run.links.netns` shapes links with the kernel instead.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from dime.core.links import Link

log = logging.getLogger(__name__)

# A send that takes this much longer than the model says counts as an overrun: below
# it, the excess is the transport's per-message cost, not a too-slow network.
OVERRUN_SLACK_S = 1e-3


@dataclass(frozen=True)
class ShapedSend:
    """Timing of one emulated transfer, as seen by the sender."""

    payload_bytes: int
    target_s: float  # what the link model says the wire takes: bytes / rate
    real_s: float  # time the transport took for the body of the message
    slept_s: float  # sleep added to reach target_s
    total_s: float  # from the start until the release message was sent

    @property
    def overrun(self) -> bool:
        return self.real_s > self.target_s + OVERRUN_SLACK_S


@dataclass
class ShaperStats:
    """Running totals of a shaper's transfers."""

    transfers: int = 0
    payload_bytes: int = 0
    target_s: float = 0.0
    real_s: float = 0.0
    total_s: float = 0.0
    overruns: int = 0
    worst_overrun_s: float = 0.0
    recent: list[ShapedSend] = field(default_factory=list)

    def add(self, s: ShapedSend, keep: int = 64) -> None:
        self.transfers += 1
        self.payload_bytes += s.payload_bytes
        self.target_s += s.target_s
        self.real_s += s.real_s
        self.total_s += s.total_s
        if s.overrun:
            self.overruns += 1
            self.worst_overrun_s = max(self.worst_overrun_s, s.real_s - s.target_s)
        self.recent.append(s)
        del self.recent[:-keep]


class LinkShaper:
    """Paces the sends over one link direction so that each takes the link's wire time, one
    transfer at a time (several streams of a pipeline may share the direction).

    `send_body` and `send_release` do the real sends (the body of a message, then its
    last bytes); the shaper only decides how long to wait between them. The rate is a number,
    or a function that says the rate now (a link whose rate follows a schedule): a transfer
    takes the rate of the moment its wire time begins.
    """

    def __init__(self, rate_mbps: float | Callable[[], float], clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._rate = rate_mbps if callable(rate_mbps) else (lambda: float(rate_mbps))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.stats = ShaperStats()

    @classmethod
    def of(cls, link: Link, direction: str, **kw: Any) -> "LinkShaper":
        return cls(link.rate_mbps(direction), **kw)

    @property
    def rate_mbps(self) -> float:
        return self._rate()

    def wire_s(self, payload_bytes: int) -> float:
        return payload_bytes * 8 / (self.rate_mbps * 1e6)

    def send(self, payload_bytes: int, send_body: Callable[[], None], send_release: Callable[[], None]) -> ShapedSend:
        with self._lock:
            target = self.wire_s(payload_bytes)  # the rate when this transfer gets the direction
            t0 = self._clock()
            send_body()
            real = self._clock() - t0
            slept = 0.0
            if target > real:
                slept = target - real
                self._sleep(slept)
            send_release()
            total = self._clock() - t0
            rec = ShapedSend(payload_bytes, target, real, slept, total)
            self.stats.add(rec)
        if rec.overrun:
            log.debug("transfer of %d B took %.6f s, more than the emulated %.6f s", payload_bytes, real, target)
        return rec


def achieved_mbps(payload_bytes: int, transfer_s: float, rtt_ms: float) -> float:
    """Rate seen by the receiver: payload over the measured time less the link's rtt/2."""
    wire_s = transfer_s - rtt_ms / 2000.0
    if wire_s <= 0:
        return float("inf")
    return payload_bytes * 8 / wire_s / 1e6
