"""User-space link emulation at the sender.

A transfer of B payload bytes over a link of rate r Mbps and round-trip time rtt is
emulated to take what the cost model says it takes (dime.core.costs.Link.transfer_latency_s):

    target = 8 B / (r * 1e6) + rtt / 2

The sender hands all but the last few bytes to the transport, measures how long that
really took, sleeps the remainder of `target`, then sends the last bytes. The receiver
cannot use a cut before its last bytes arrive, so it sees the data no earlier than
`target` after the send began (plus one small message), whatever the real network
does. When the real transfer alone takes longer than `target` the real network is
slower than the emulated link; the transfer is counted as an overrun (when over by more
than OVERRUN_SLACK_S) and not slowed further.

This is the only emulation dime implements (no `tc`/netem): it needs no root, works
the same across two real machines, and touches only dime's own traffic.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from dime.core.links import Link

log = logging.getLogger(__name__)

EMULATION = "user-space sender pacing"
# A send that takes this much longer than the model says counts as an overrun: below
# it, the excess is the transport's per-message cost, not a too-slow network.
OVERRUN_SLACK_S = 1e-3


@dataclass(frozen=True)
class ShapedSend:
    """Timing of one emulated transfer, as seen by the sender."""

    payload_bytes: int
    direction: str  # dime.core.costs.UP or DOWN
    target_s: float  # what the link model says: bytes / rate + rtt / 2
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
    """Paces sends so that each transfer takes the link model's time.

    `send_body` and `send_release` do the real sends (the body of a message, then its
    last bytes); the shaper only decides how long to wait between them.
    """

    def __init__(self, link: Link, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.link = link
        self._clock = clock
        self._sleep = sleep
        self.stats = ShaperStats()

    def target_s(self, payload_bytes: int, direction: str) -> float:
        return self.link.transfer_latency_s(payload_bytes, direction)

    def send(self, payload_bytes: int, direction: str, send_body: Callable[[], None],
             send_release: Callable[[], None]) -> ShapedSend:
        target = self.target_s(payload_bytes, direction)
        t0 = self._clock()
        send_body()
        real = self._clock() - t0
        slept = 0.0
        if target > real:
            slept = target - real
            self._sleep(slept)
        send_release()
        total = self._clock() - t0
        rec = ShapedSend(payload_bytes, direction, target, real, slept, total)
        if rec.overrun:
            log.debug("transfer of %d B took %.6f s, more than the emulated %.6f s", payload_bytes, real, target)
        self.stats.add(rec)
        return rec


def achieved_mbps(payload_bytes: int, transfer_s: float, rtt_ms: float) -> float:
    """Rate seen by the receiver: payload over the measured time less the link's rtt/2."""
    wire_s = transfer_s - rtt_ms / 2000.0
    if wire_s <= 0:
        return float("inf")
    return payload_bytes * 8 / wire_s / 1e6
