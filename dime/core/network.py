"""A network of devices joined by links, and the least-latency route of a transfer.

Devices are numbered as the roles of a placement (0..n-1). A link joins two of them:
``up`` goes from ``a`` to ``b``, ``down`` the reverse, each at its own rate (core.links.Link
stays the per-link model, radio power included). A transfer of B bytes from device a to
device b goes over the route with the least latency for B bytes, a hop costing
8B/rate + rtt/2 in its direction; routes are fixed by networkx before any solver runs, so
they may differ with B. The radio energy of a hop is charged to the link's ``a`` end (the
device whose radio the preset models) when that device's energy counts: it sends on ``up``
and receives on ``down``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

from dime.core.links import DOWN, UP, Link
from dime.errors import UsageError


@dataclass(frozen=True)
class NetLink:
    """One link of a network: ``up`` is a -> b."""

    a: int
    b: int
    link: Link


@dataclass(frozen=True)
class Hop:
    link: int  # index into Network.links
    direction: str  # UP or DOWN
    src: int
    dst: int


@dataclass(frozen=True)
class Route:
    """The chosen way of B bytes from src to dst, with its costs."""

    src: int
    dst: int
    nbytes: int
    hops: tuple[Hop, ...]
    latency_s: float
    energy_j: float  # radio energy of energy-counted link ends
    wire_s: tuple[tuple[tuple[int, str], float], ...]  # ((link, direction), seconds on the wire)

    @property
    def nodes(self) -> tuple[int, ...]:
        return (self.src,) + tuple(h.dst for h in self.hops)


@dataclass(frozen=True)
class Network:
    """Links among `n_devices` devices; `source` holds the input and gets the output back."""

    n_devices: int
    links: tuple[NetLink, ...]
    source: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "links", tuple(self.links))
        if not 0 <= self.source < self.n_devices:
            raise UsageError(f"source device {self.source} is not one of the {self.n_devices} devices")
        for nl in self.links:
            if not (0 <= nl.a < self.n_devices and 0 <= nl.b < self.n_devices) or nl.a == nl.b:
                raise UsageError(f"link {nl.link.name} must join two different devices, got {nl.a} and {nl.b}")

    @classmethod
    def two_roles(cls, link: Link) -> Network:
        """DIME's setting: the edge (0) and the cloud (1) joined by one link."""
        return cls(2, (NetLink(0, 1, link),), 0)

    def hop_options(self, src: int, dst: int) -> list[tuple[int, str]]:
        """The (link, direction) pairs that go from src to dst in one hop."""
        out = []
        for i, nl in enumerate(self.links):
            if (nl.a, nl.b) == (src, dst):
                out.append((i, UP))
            elif (nl.b, nl.a) == (src, dst):
                out.append((i, DOWN))
        return out

    def unreachable(self) -> list[int]:
        """Devices that no chain of links joins to the source."""
        g = nx.Graph()
        g.add_nodes_from(range(self.n_devices))
        g.add_edges_from((nl.a, nl.b) for nl in self.links)
        reach = nx.node_connected_component(g, self.source)
        return [d for d in range(self.n_devices) if d not in reach]

    def route(self, src: int, dst: int, nbytes: int, energy: Sequence[bool]) -> Route:
        """The least-latency route of `nbytes` from src to dst; `energy[d]`: d's energy counts."""
        return _route(self, src, dst, int(nbytes), tuple(bool(e) for e in energy))


@functools.lru_cache(maxsize=65536)
def _route(net: Network, src: int, dst: int, nbytes: int, energy: tuple[bool, ...]) -> Route:
    if src == dst:
        raise ValueError("a route joins two different devices")
    g = nx.DiGraph()
    g.add_nodes_from(range(net.n_devices))
    best: dict[tuple[int, int], tuple[float, int, str]] = {}
    for i, nl in enumerate(net.links):
        for u, v, d in ((nl.a, nl.b, UP), (nl.b, nl.a, DOWN)):
            w = nl.link.transfer_latency_s(nbytes, d)
            if (u, v) not in best or w < best[(u, v)][0]:
                best[(u, v)] = (w, i, d)
    for (u, v), (w, _, _) in best.items():
        g.add_edge(u, v, weight=w)
    try:
        nodes = nx.shortest_path(g, src, dst, weight="weight")
    except nx.NetworkXNoPath:
        raise UsageError(f"no route from device {src} to device {dst}") from None
    hops, lat, en, wire = [], 0.0, 0.0, []
    for u, v in zip(nodes, nodes[1:]):
        _, i, d = best[(u, v)]
        link = net.links[i].link
        hops.append(Hop(i, d, u, v))
        lat += link.transfer_latency_s(nbytes, d)
        if energy[net.links[i].a]:
            en += link.transfer_energy_j(nbytes, d)
        wire.append(((i, d), link.transfer_time_s(nbytes, d)))
    return Route(src, dst, nbytes, tuple(hops), lat, en, tuple(wire))
