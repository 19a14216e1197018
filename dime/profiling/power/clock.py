"""Clock offset between this host and a power logger's host, from timed round trips."""

from __future__ import annotations

from typing import Iterable

from dime.errors import UsageError


def estimate_offset_s(round_trips: Iterable[tuple[float, float, float]]) -> tuple[float, float]:
    """Clock offset (remote minus local) from round trips (t_send, t_remote, t_recv).

    Uses the fastest round trip (least queueing) and assumes the reply was stamped halfway:
    offset = t_remote - (t_send + t_recv) / 2, uncertain by at most half its round trip.
    Returns (offset_s, round_trip_s).
    """
    best: tuple[float, float] | None = None
    for t_send, t_remote, t_recv in round_trips:
        rtt = t_recv - t_send
        if rtt < 0:
            raise UsageError(f"round trip ends before it starts ({t_send} > {t_recv})")
        offset = t_remote - 0.5 * (t_send + t_recv)
        if best is None or rtt < best[1]:
            best = (offset, rtt)
    if best is None:
        raise UsageError("no round trips to estimate a clock offset from")
    return best
