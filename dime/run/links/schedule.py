"""Link rates that change during a run (no torch): `--link-schedule LINK=T1:RATE,T2:RATE,...`.

LINK names a link by its ends as system files and dime.sweep name it, ``a-b`` (up is a -> b;
``edge-cloud`` for two devices). At T seconds into the run the link's rates become RATE,
``UP/DOWN[/RTT]`` in Mbps and ms or a preset, as in ``--link``; without RTT the link keeps its
round-trip time. Before the first change a link has its configured rates. A link changes at
most once per second (MIN_GAP_S): a change takes effect on the next transfer (user-space
pacing) or the next packet (the kernel's tbf), and a faster schedule would measure the switch
machinery rather than the plans.

"Into the run" counts from the schedule's clock start (:class:`Clock`), which the source sets
once the run is warmed up and sends to every device (dime.run.control.source); every process
that paces or shapes a link reads its rates from a :class:`LinkView` against that start.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass
from typing import Sequence

from dime.core.links import DOWN, UP, Link, parse_link
from dime.core.network import NetLink, Network
from dime.errors import UsageError

MIN_GAP_S = 1.0


@dataclass(frozen=True)
class RateChange:
    """From `at_s` seconds into the run, a link's rates (rtt_ms None: its rtt stays)."""

    at_s: float
    uplink_mbps: float
    downlink_mbps: float
    rtt_ms: float | None = None

    def text(self) -> str:
        rates = f"{self.uplink_mbps:g}/{self.downlink_mbps:g}" + ("" if self.rtt_ms is None else f"/{self.rtt_ms:g}")
        return f"{self.at_s:g}:{rates}"

    def apply(self, link: Link) -> Link:
        return dataclasses.replace(link, uplink_mbps=self.uplink_mbps, downlink_mbps=self.downlink_mbps,
                                   rtt_ms=link.rtt_ms if self.rtt_ms is None else self.rtt_ms)


@dataclass(frozen=True)
class LinkSchedule:
    """The changes of one link, by its name (``a-b``), in time order."""

    link: str
    changes: tuple[RateChange, ...]

    def text(self) -> str:
        return f"{self.link}=" + ",".join(c.text() for c in self.changes)


def parse_link_schedule(text: str, flag: str = "--link-schedule") -> LinkSchedule:
    """`LINK=T1:RATE,T2:RATE,...`; UsageError with one line on anything else."""
    name, sep, items = text.partition("=")
    name = name.strip()
    if not sep or not name or not items.strip():
        raise UsageError(f"{flag} {text!r}: give LINK=T1:RATE,T2:RATE,... (LINK as a-b, RATE as UP/DOWN[/RTT])")
    changes: list[RateChange] = []
    for item in (s.strip() for s in items.split(",")):
        at, sep, rate = item.partition(":")
        try:
            at_s = float(at)
        except ValueError:
            at_s = math.nan
        if not sep or not (at_s >= 0 and math.isfinite(at_s)) or not rate.strip():
            raise UsageError(f"{flag} {name}: {item!r} is not T:RATE (T seconds >= 0, RATE as UP/DOWN[/RTT])")
        try:
            link = parse_link(rate)
        except UsageError as e:
            raise UsageError(f"{flag} {name}: {item!r}: {e}") from None
        keeps_rtt = "/" in rate and len(rate.split("/")) == 2
        changes.append(RateChange(at_s, link.uplink_mbps, link.downlink_mbps, None if keeps_rtt else link.rtt_ms))
    for a, b in zip(changes, changes[1:]):
        if b.at_s - a.at_s < MIN_GAP_S:
            raise UsageError(f"{flag} {name}: changes at {a.at_s:g} s and {b.at_s:g} s; a link changes at most once "
                             f"per {MIN_GAP_S:g} s, in time order")
    return LinkSchedule(name, tuple(changes))


def schedule_text(schedules: Sequence[LinkSchedule]) -> str:
    """The schedules as given, for the results' `schedule` column ("" when none)."""
    return "; ".join(s.text() for s in schedules)


def link_names(names: Sequence[str], network: Network) -> list[str]:
    """Each link of `network` named by its ends, ``a-b`` (as dime.sweep names them)."""
    return [f"{names[nl.a]}-{names[nl.b]}" for nl in network.links]


Schedule = tuple[tuple[int, tuple[RateChange, ...]], ...]  # (link index, its changes), by link index


def resolve_schedule(schedules: Sequence[LinkSchedule], names: Sequence[str], network: Network,
                     where: str = "the network") -> Schedule:
    """The schedules by link index of `network`; UsageError for a link it does not have, or one
    named twice."""
    return resolve_named(schedules, link_names(names, network), where)


def resolve_named(schedules: Sequence[LinkSchedule], known: Sequence[str], where: str = "the network") -> Schedule:
    """The schedules by index into `known`, the link names in network order."""
    known = list(known)
    out: dict[int, tuple[RateChange, ...]] = {}
    for s in schedules:
        if s.link not in known:
            raise UsageError(f"--link-schedule {s.link}: {where} has no link {s.link!r}; its links: "
                             f"{', '.join(known)}")
        if known.count(s.link) > 1:
            raise UsageError(f"--link-schedule {s.link}: {where} has {known.count(s.link)} links {s.link!r}")
        i = known.index(s.link)
        if i in out:
            raise UsageError(f"--link-schedule {s.link}: scheduled twice; give one list per link")
        out[i] = s.changes
    return tuple(sorted(out.items()))


def change_times(schedule: Schedule) -> list[float]:
    """Every time at which some link changes, in order, each once."""
    return sorted({c.at_s for _, changes in schedule for c in changes})


def link_at(link: Link, changes: Sequence[RateChange], at_s: float | None) -> Link:
    """`link` as the changes make it `at_s` seconds into the run (None: before the start)."""
    if at_s is None:
        return link
    now = [c for c in changes if c.at_s <= at_s]
    return now[-1].apply(link) if now else link


def network_at(network: Network, schedule: Schedule, at_s: float | None) -> Network:
    """`network` with each scheduled link's rates as they are `at_s` seconds into the run (None:
    before the start)."""
    if at_s is None or not schedule:
        return network
    links = list(network.links)
    for i, changes in schedule:
        links[i] = NetLink(links[i].a, links[i].b, link_at(links[i].link, changes, at_s))
    return dataclasses.replace(network, links=tuple(links))


class Clock:
    """The start of the schedule on this device (CLOCK_MONOTONIC seconds), set once per run."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._lock = threading.Lock()

    def start(self, t0: float | None = None) -> float:
        with self._lock:
            self._t0 = time.monotonic() if t0 is None else t0
            return self._t0

    @property
    def t0(self) -> float | None:
        return self._t0

    def elapsed_s(self, now: float | None = None) -> float | None:
        """Seconds since the start, None before it."""
        t0 = self._t0
        if t0 is None:
            return None
        return (time.monotonic() if now is None else now) - t0


class LinkView:
    """The links as they are now: the configured network, changed by the schedule from the
    clock's start (a fixed network without a schedule)."""

    def __init__(self, network: Network, schedule: Schedule = (), clock: Clock | None = None) -> None:
        self.network = network
        self.schedule = schedule
        self.clock = clock or Clock()
        self._changes = dict(schedule)

    def link(self, i: int) -> Link:
        base = self.network.links[i].link
        changes = self._changes.get(i)
        return link_at(base, changes, self.clock.elapsed_s()) if changes else base

    def rate_mbps(self, i: int, direction: str) -> float:
        return self.link(i).rate_mbps(direction)

    def rtt_ms(self, i: int) -> float:
        return self.link(i).rtt_ms


DIRECTIONS = (UP, DOWN)  # a direction's code in messages: its index here
