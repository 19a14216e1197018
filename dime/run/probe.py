"""Link probes: time emulated transfers both ways, to report the rate a link achieves."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from dime.core.links import DOWN, UP, Link
from dime.run.linkemu import EMULATION, LinkShaper, achieved_mbps
from dime.run.peer import Peer, PeerError
from dime.run.wire import CMD_PING, CMD_PONG, CMD_PROBE, DATA_RUN, CutLayout

log = logging.getLogger("dime.run")


@dataclass(frozen=True)
class ProbeResult:
    link: str
    up_bytes: int
    down_bytes: int
    up_s: float  # median transfer time seen by the receiver
    down_s: float
    achieved_up_mbps: float
    achieved_down_mbps: float
    ping_s: float  # unshaped round trip of a control message


def _probe_sizes(link: Link, probe_s: float) -> tuple[int, int]:
    size = [int(max(16 * 1024, min(16 * 2**20, link.rate_mbps(d) * 1e6 * probe_s / 8))) for d in (UP, DOWN)]
    return size[0], size[1]


def probe_edge(peer: Peer, index: int, link: Link, probe_s: float, reps: int = 3) -> ProbeResult:
    """Time emulated transfers both ways; the rate the receiver sees, less the link's rtt/2."""
    up_bytes, down_bytes = _probe_sizes(link, probe_s)
    peer.send_ctrl(CMD_PROBE, index, up_bytes, down_bytes, reps)
    clock = time.perf_counter
    pings = []
    for _ in range(5):
        t0 = clock()
        peer.send_ctrl(CMD_PING)
        peer.recv_ctrl(CMD_PONG)
        pings.append(clock() - t0)
    ping = sorted(pings)[len(pings) // 2]
    shaper = LinkShaper(link)
    up = CutLayout.of([((up_bytes,), torch.uint8)])
    down = CutLayout.of([((down_bytes,), torch.uint8)])
    ubuf, dbuf = up.new_buffer(), down.new_buffer()
    payload = [torch.zeros(up_bytes, dtype=torch.uint8)]
    t_up, t_down = [], []
    for _ in range(reps):
        t0 = clock()
        peer.send_cut(up, ubuf, DATA_RUN, 0, payload, shaper, UP)
        peer.recv_ctrl(CMD_PONG)
        t_up.append(clock() - t0 - ping / 2)
    for _ in range(reps):
        t0 = clock()
        peer.send_ctrl(CMD_PING)
        peer.recv_cut(down, dbuf)
        t_down.append(clock() - t0 - ping / 2)
    up_s, down_s = sorted(t_up)[reps // 2], sorted(t_down)[reps // 2]
    res = ProbeResult(link.name, up_bytes, down_bytes, up_s, down_s,
                      achieved_mbps(up_bytes, up_s, link.rtt_ms), achieved_mbps(down_bytes, down_s, link.rtt_ms), ping)
    log.info(
        "link %s (%s): up %.3f Mbps achieved of %g (%d B in %.4f s), down %.3f of %g (%d B in %.4f s), ping %.0f us",
        link.name, EMULATION, res.achieved_up_mbps, link.uplink_mbps, up_bytes, up_s,
        res.achieved_down_mbps, link.downlink_mbps, down_bytes, down_s, ping * 1e6,
    )
    return res


def probe_cloud(peer: Peer, msg: list[int], links: Sequence[Link]) -> None:
    _, index, up_bytes, down_bytes, reps, _ = msg
    if not 0 <= index < len(links):
        raise PeerError(f"protocol error: probe of link {index}")
    for _ in range(5):
        peer.recv_ctrl(CMD_PING)
        peer.send_ctrl(CMD_PONG)
    shaper = LinkShaper(links[index])
    up = CutLayout.of([((up_bytes,), torch.uint8)])
    down = CutLayout.of([((down_bytes,), torch.uint8)])
    ubuf, dbuf = up.new_buffer(), down.new_buffer()
    payload = [torch.zeros(down_bytes, dtype=torch.uint8)]
    for _ in range(reps):
        peer.recv_cut(up, ubuf)
        peer.send_ctrl(CMD_PONG)
    for _ in range(reps):
        peer.recv_ctrl(CMD_PING)
        peer.send_cut(down, dbuf, DATA_RUN, 0, payload, shaper, DOWN)
