"""The cost model shared by the solver, the baselines and the sweeps.

A model is a chain of n layers. Cut k (0..n) sits before layer k; cut 0 carries the
model input and cut n the output. A bundle is a run of consecutive layers
[start, end] (0-based, inclusive). Devices take part in a placement by *role*:
role 0 is the edge (holds the input, gets the output back), role 1 the cloud.
Two roles may name the same profiled device with different settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from dime.core.links import DOWN, UP, Link
from dime.errors import UsageError

EDGE = 0
CLOUD = 1
ROLE_NAMES = ("edge", "cloud")  # indexed by role


@dataclass(frozen=True)
class BundleCost:
    """Aggregated cost of one bundle at one (device, setting)."""

    latency_s: float
    energy_j: float | None = None  # None: not measured
    energy_source: str = ""  # "", "nvml", "assumed:3.5", ...
    runs: int = 0


@dataclass
class CostTable:
    """Bundle costs of one model on one or more devices, as read from profiles."""

    model: str
    layer_names: tuple[str, ...]
    cut_bytes: tuple[int, ...]  # n + 1 entries
    settings: dict[str, tuple[str, ...]]  # device -> its settings, in profile order
    costs: dict[tuple[str, str, int, int], BundleCost]  # (device, setting, start, end)
    setting_kinds: dict[tuple[str, str], str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # the profile files read, for error messages

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    def bundle_name(self, start: int, end: int) -> str:
        return "+".join(self.layer_names[start : end + 1])

    def cost(self, device: str, setting: str, start: int, end: int) -> BundleCost:
        try:
            return self.costs[(device, setting, start, end)]
        except KeyError:
            raise UsageError(
                f"no profile for bundle {self.bundle_name(start, end)} on {device} ({setting})"
            ) from None

    def max_bundle(self, device: str, setting: str) -> int:
        """Largest K such that every bundle of 1..K layers is profiled at (device, setting)."""
        n = self.n_layers
        for k in range(1, n + 1):
            if any((device, setting, s, s + k - 1) not in self.costs for s in range(n - k + 1)):
                return k - 1
        return n


@dataclass(frozen=True)
class Role:
    """A device taking part in a placement, restricted to some of its settings."""

    device: str
    settings: tuple[str, ...]


@dataclass(frozen=True)
class Assignment:
    """One chosen bundle: layers start..end (inclusive) on a role at a setting."""

    start: int
    end: int
    role: int  # EDGE or CLOUD
    setting: str


@dataclass(frozen=True)
class Evaluation:
    latency_s: float
    compute_latency_s: float
    comm_latency_s: float
    energy_j: float  # edge energy; NaN when an edge bundle has no energy
    compute_energy_j: float
    comm_energy_j: float
    energy_assumed: bool = False


def segments(placement: Sequence[Assignment]) -> list[tuple[int, int, int, list[Assignment]]]:
    """Runs of consecutive bundles on one role: (role, first layer, last layer, bundles)."""
    out: list[tuple[int, int, int, list[Assignment]]] = []
    for a in placement:
        if out and out[-1][0] == a.role:
            role, s, _, bs = out[-1]
            out[-1] = (role, s, a.end, bs + [a])
        else:
            out.append((a.role, a.start, a.end, [a]))
    return out


def transfers(
    placement: Sequence[Assignment], n_layers: int
) -> list[tuple[int, str]]:
    """The cuts where data crosses the link, as (cut, direction).

    The input starts on the edge and the output must end there, so cut 0 and cut n
    count as transfers when the first/last bundle runs in the cloud.
    """
    check_chain(placement, n_layers)
    out: list[tuple[int, str]] = []
    prev = EDGE
    for a in placement:
        if a.role != prev:
            out.append((a.start, UP if prev == EDGE else DOWN))
        prev = a.role
    if prev != EDGE:
        out.append((n_layers, DOWN))
    return out


def check_chain(placement: Sequence[Assignment], n_layers: int) -> None:
    pos = 0
    for a in placement:
        if a.start != pos or a.end < a.start:
            raise ValueError(f"placement is not a chain of bundles at layer {pos}: {placement}")
        pos = a.end + 1
    if pos != n_layers:
        raise ValueError(f"placement covers {pos} of {n_layers} layers")


def evaluate(
    table: CostTable, roles: Sequence[Role], link: Link, placement: Sequence[Assignment]
) -> Evaluation:
    """Latency and edge energy of a placement, straight from the cost model."""
    comp_lat = comp_en = 0.0
    assumed = False
    for a in placement:
        c = table.cost(roles[a.role].device, a.setting, a.start, a.end)
        comp_lat += c.latency_s
        if a.role == EDGE:
            if c.energy_j is None:
                comp_en = math.nan
            else:
                comp_en += c.energy_j
                assumed |= c.energy_source.startswith("assumed")
    comm_lat = comm_en = 0.0
    for cut, direction in transfers(placement, table.n_layers):
        nbytes = table.cut_bytes[cut]
        comm_lat += link.transfer_latency_s(nbytes, direction)
        comm_en += link.transfer_energy_j(nbytes, direction)
    return Evaluation(
        latency_s=comp_lat + comm_lat,
        compute_latency_s=comp_lat,
        comm_latency_s=comm_lat,
        energy_j=comp_en + comm_en,
        compute_energy_j=comp_en,
        comm_energy_j=comm_en,
        energy_assumed=assumed,
    )


def layer_names_of(table: CostTable, placement: Sequence[Assignment], role: int) -> list[str]:
    return [table.layer_names[i] for a in placement if a.role == role for i in range(a.start, a.end + 1)]


def bundles(n_layers: int, max_bundle: int) -> list[tuple[int, int]]:
    """Every (start, end) with 1..max_bundle layers."""
    return [(s, e) for s in range(n_layers) for e in range(s, min(n_layers, s + max_bundle))]


def role_settings(roles: Sequence[Role]) -> Mapping[int, tuple[str, ...]]:
    return {i: r.settings for i, r in enumerate(roles)}
