"""Link probes: time transfers both ways over a link, to report the rate it achieves.

The link's first end (`a`, whose uplink is a -> b) times; the second end answers. Both ends
pace their sends in user space when the links are emulated (a probe is always the body and
its last 64 bytes, as a paced stream sends it), and the receiver holds the data back by rtt/2
when delays are added in user space. The achieved rate is bytes / (time seen by the timing end
- half a ping - rtt/2).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from dime.core.links import DOWN, UP, Link
from dime.run.data.peer import Group
from dime.run.data.wire import PROBE_TAG, TAIL_BYTES
from dime.run.links.linkemu import LinkShaper, achieved_mbps

log = logging.getLogger("dime.run")

PINGS = 5


@dataclass(frozen=True)
class ProbeResult:
    a: str  # the link's ends, by name: up is a -> b
    b: str
    link: str
    up_bytes: int
    down_bytes: int
    up_s: float  # median transfer time seen by the timing end
    down_s: float
    achieved_up_mbps: float
    achieved_down_mbps: float
    ping_s: float  # the round trip of a small message, as it goes over the link


def probe_sizes(link: Link, probe_s: float) -> tuple[int, int]:
    size = [int(max(16 * 1024, min(64 * 2**20, link.rate_mbps(d) * 1e6 * probe_s / 8))) for d in (UP, DOWN)]
    return size[0], size[1]


class _Ends:
    """The messages of one probe between this end and the other."""

    def __init__(self, group: Group, other: int, link: Link, pace: bool, delay: bool) -> None:
        self.group, self.other, self.link = group, other, link
        self.pace, self.delay_s = pace, (link.rtt_ms / 2000.0 if delay else 0.0)
        self._small = torch.zeros(8, dtype=torch.uint8)

    def ping(self) -> None:
        self.group.send(self.other, self._small, PROBE_TAG)

    def pong(self) -> None:
        self.group.recv(self.other, self._small, PROBE_TAG)

    def send(self, nbytes: int, direction: str) -> None:
        buf = torch.zeros(nbytes + TAIL_BYTES, dtype=torch.uint8)
        body, tail = buf[:-TAIL_BYTES], buf[-TAIL_BYTES:]
        if self.pace:
            LinkShaper.of(self.link, direction).send(nbytes, lambda: self.group.send(self.other, body, PROBE_TAG),
                                                     lambda: self.group.send(self.other, tail, PROBE_TAG))
        else:
            self.group.send(self.other, body, PROBE_TAG)
            self.group.send(self.other, tail, PROBE_TAG)

    def recv(self, nbytes: int) -> None:
        buf = torch.zeros(nbytes + TAIL_BYTES, dtype=torch.uint8)
        self.group.recv(self.other, buf[:-TAIL_BYTES], PROBE_TAG)
        self.group.recv(self.other, buf[-TAIL_BYTES:], PROBE_TAG)
        if self.delay_s:
            time.sleep(self.delay_s)


def probe_first_end(group: Group, other: int, link: Link, up_bytes: int, down_bytes: int, reps: int,
                    pace: bool, delay: bool, names: tuple[str, str]) -> ProbeResult:
    """The timing end (the link's `a`): pings, then `reps` transfers up and `reps` down."""
    ends = _Ends(group, other, link, pace, delay)
    clock = time.perf_counter
    pings = []
    for _ in range(PINGS):
        t0 = clock()
        ends.ping()
        ends.pong()
        pings.append(clock() - t0)
    ping = sorted(pings)[len(pings) // 2]
    t_up, t_down = [], []
    for _ in range(reps):
        t0 = clock()
        ends.send(up_bytes, UP)
        ends.pong()
        t_up.append(clock() - t0 - ping / 2)
    for _ in range(reps):
        t0 = clock()
        ends.ping()
        ends.recv(down_bytes)
        t_down.append(clock() - t0 - ping / 2)
    res = probe_result(names, link, up_bytes, down_bytes, sorted(t_up)[reps // 2], sorted(t_down)[reps // 2], ping)
    log.info("link %s-%s (%s): up %.3f Mbps achieved of %g (%d B in %.4f s), down %.3f of %g (%d B in %.4f s), "
             "ping %.0f us", names[0], names[1], link.name, res.achieved_up_mbps, link.uplink_mbps, up_bytes, res.up_s,
             res.achieved_down_mbps, link.downlink_mbps, down_bytes, res.down_s, ping * 1e6)
    return res


def probe_result(names: tuple[str, str], link: Link, up_bytes: int, down_bytes: int, up_s: float, down_s: float,
                 ping_s: float) -> ProbeResult:
    """The achieved rates of median transfer times seen by the timing end."""
    return ProbeResult(names[0], names[1], link.name, up_bytes, down_bytes, up_s, down_s,
                       achieved_mbps(up_bytes, up_s, link.rtt_ms), achieved_mbps(down_bytes, down_s, link.rtt_ms), ping_s)


def probe_second_end(group: Group, other: int, link: Link, up_bytes: int, down_bytes: int, reps: int,
                     pace: bool, delay: bool) -> None:
    """The answering end (the link's `b`)."""
    ends = _Ends(group, other, link, pace, delay)
    for _ in range(PINGS):
        ends.pong()
        ends.ping()
    for _ in range(reps):
        ends.recv(up_bytes)
        ends.ping()
    for _ in range(reps):
        ends.pong()
        ends.send(down_bytes, DOWN)
