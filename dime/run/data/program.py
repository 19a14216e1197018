"""What each device does for one query of a placement (no torch).

A placement over a network becomes *streams* and *tasks*:

- a stream is one hop of one transfer: the cut's tensors going from one device to a
  neighbour over one link direction. A transfer over a route of h hops is h streams; the
  devices in between receive the cut and send it on (store and forward, as the cost model
  charges it) without running anything.
- a task is what one device does between receiving and sending: take its input (a
  stream, or the query's input on the source), run zero or more bundles in order, and
  hand the result on (a stream, or the query's output on the source). A device has one
  task per visit of the data; a relay's task runs no bundle.

Every device runs its tasks for query after query in the same order, so a pipeline of
queries needs no other coordination: streams are FIFO and carry the query's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dime.core.costs import Assignment, check_chain, segments
from dime.core.network import Network


@dataclass(frozen=True)
class Stream:
    """One hop of one transfer: cut `cut` from device src to its neighbour dst."""

    sid: int
    cut: int
    src: int
    dst: int
    link: int  # index into the network's links
    direction: str  # core.links.UP (link.a -> link.b) or DOWN


@dataclass(frozen=True)
class Task:
    """One device's work between receiving and sending, for one query."""

    device: int
    inp: int | None  # stream id it receives from; None: the query's input (the source only)
    out: int | None  # stream id it sends on; None: the query's output (the source only)
    in_cut: int  # the cut it starts from
    out_cut: int  # the cut it ends at
    bundles: tuple[Assignment, ...] = ()  # run in order; none for a relay

    @property
    def relay(self) -> bool:
        return not self.bundles and self.inp is not None and self.out is not None


@dataclass(frozen=True)
class Program:
    """The streams and tasks of one placement over one network."""

    streams: tuple[Stream, ...]
    tasks: tuple[Task, ...]  # in chain order

    def tasks_of(self, device: int) -> list[Task]:
        return [t for t in self.tasks if t.device == device]

    def devices(self) -> set[int]:
        """Every device that runs a bundle, relays or sends: the ones this placement needs."""
        return {t.device for t in self.tasks}

    def streams_into(self, device: int) -> list[Stream]:
        return [s for s in self.streams if s.dst == device]

    def streams_out_of(self, device: int) -> list[Stream]:
        return [s for s in self.streams if s.src == device]


def build_program(placement: Sequence[Assignment], network: Network, cut_bytes: Sequence[int],
                  routes: dict[tuple[int, int, int], Sequence[tuple[int, str, int, int]]] | None = None) -> Program:
    """The program of `placement`: transfers follow `routes[(cut, src, dst)]` (hops as
    (link, direction, from, to)), by default the network's least-latency route for the cut's
    bytes, as the cost model charges it."""
    n_layers = len(cut_bytes) - 1
    check_chain(placement, n_layers)
    streams: list[Stream] = []
    tasks: list[Task] = []
    source = network.source
    # the one open task: the device holding the data, what it received it from, the cut, its bundles
    holder, inp, in_cut, bundles = source, None, 0, []

    def move(cut: int, dst: int) -> None:
        nonlocal holder, inp, in_cut, bundles
        for link, direction, u, v in hops_of(network, cut_bytes, cut, holder, dst, routes):
            sid = len(streams)
            streams.append(Stream(sid, cut, u, v, link, direction))
            tasks.append(Task(u, inp, sid, in_cut, cut, tuple(bundles)))
            holder, inp, in_cut, bundles = v, sid, cut, []

    for device, start, _end, bs in segments(placement):
        if device != holder:
            move(start, device)
        bundles.extend(bs)
    if holder != source:
        move(n_layers, source)
    tasks.append(Task(source, inp, None, in_cut, n_layers, tuple(bundles)))
    return Program(tuple(streams), tuple(tasks))


def hops_of(network: Network, cut_bytes: Sequence[int], cut: int, src: int, dst: int,
            routes: dict[tuple[int, int, int], Sequence[tuple[int, str, int, int]]] | None = None
            ) -> list[tuple[int, str, int, int]]:
    """The hops (link, direction, from, to) of the transfer of `cut` from src to dst."""
    if routes is not None and (cut, src, dst) in routes:
        return [tuple(h) for h in routes[(cut, src, dst)]]  # type: ignore[misc]
    route = network.route(src, dst, cut_bytes[cut], [False] * network.n_devices)
    return [(h.link, h.direction, h.src, h.dst) for h in route.hops]
