"""The cost model shared by the solver, the baselines and the sweeps.

A model is a chain of n layers. Cut k (0..n) sits before layer k; cut 0 carries the
model input and cut n the output. A bundle is a run of consecutive layers
[start, end] (0-based, inclusive). Devices take part in a placement by *role*:
role 0 is the edge (holds the input, gets the output back), role 1 the cloud.
Two roles may name the same profiled device with different settings. With more than two
devices (dime.core.network) roles are numbered 0..n-1 and the network says which one is
the source; the two-role case is a network of one link, source 0. A role with compute
False is a relay (a router, an access point): it runs no bundle, has no settings and no
profiled device, and only forwards transfers along routes.

Wake-up: a device that sat idle before a segment (a run of bundles on it) computes it slower
than the back-to-back runs of its profile (docs/run.md, "Where the compute gap of split
placements comes from"). Where a profile measured it (`dime.profile --wakeup`), each segment
pays its device's extra time after the idle it followed, in single-stream queries run back to
back: the time since the device's previous segment of the query, or, for its first segment, the
rest of the previous query.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dime.core.links import DOWN, UP, Link
from dime.core.network import Network
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
    latency_source: str = "measured"  # or "predicted" (dime.predict: from the measured bundles)
    latency_sd_s: float | None = None  # a predicted latency's uncertainty (sd)
    energy_origin: str = ""  # "measured", "predicted" or "" (no energy)
    energy_sd_j: float | None = None  # a predicted energy's uncertainty (sd)
    wakeup_s: float | None = None  # extra seconds after its device idled WakeUp.ref_idle_s (None: not timed)

    @property
    def predicted(self) -> bool:
        return self.latency_source == "predicted"


@dataclass(frozen=True)
class WakeUp:
    """How much longer a device's bundles take after it idled, at one setting.

    `extra(idle)` is the typical bundle's extra seconds after `idle_s` seconds of idle (the
    median over the bundles timed; piecewise linear between the measured idle times, flat beyond
    the last, 0 after no idle). A bundle whose own extra was timed after `ref_idle_s` (its
    BundleCost.wakeup_s) pays that after a longer idle, and less after a shorter one, as the
    curve falls below its value at ref_idle_s. Not extrapolated past ref_idle_s: over links
    where a split's devices idled 0.3-1.1 s, their bundles took about their own extra after
    0.1 s (docs/run.md). Non-decreasing and >= 0 (the reader makes it so), hence never below the
    back-to-back cost."""

    idle_s: tuple[float, ...]  # ascending, starting at 0.0
    extra_s: tuple[float, ...]  # the same length, starting at 0.0
    ref_idle_s: float | None = None  # the idle after which every bundle's own extra was timed

    def __post_init__(self) -> None:
        if len(self.idle_s) != len(self.extra_s) or not self.idle_s or self.idle_s[0] != 0.0:
            raise ValueError("WakeUp needs matching idle_s and extra_s that start at idle 0")
        if any(b <= a for a, b in zip(self.idle_s, self.idle_s[1:])):
            raise ValueError("WakeUp idle_s must be ascending")
        if self.extra_s[0] != 0.0 or any(b < a for a, b in zip(self.extra_s, self.extra_s[1:])):
            raise ValueError("WakeUp extra_s must start at 0 and never fall")

    def extra(self, idle_s: float) -> float:
        xs, ys = self.idle_s, self.extra_s
        if idle_s <= 0.0:
            return 0.0
        if idle_s >= xs[-1]:
            return ys[-1]
        i = next(i for i in range(1, len(xs)) if idle_s < xs[i])
        return ys[i - 1] + (ys[i] - ys[i - 1]) * (idle_s - xs[i - 1]) / (xs[i] - xs[i - 1])

    def bundle_extra(self, idle_s: float, own_s: float | None) -> float:
        """A bundle's extra seconds after `idle_s` of idle: its own extra after ref_idle_s
        (`own_s`) times the curve's fraction of its value there (1 from ref_idle_s on); the
        curve's, up to ref_idle_s, where the bundle's own was not timed."""
        if self.ref_idle_s is None:
            return self.extra(idle_s)
        if own_s is None:
            return self.extra(min(idle_s, self.ref_idle_s))
        if idle_s >= self.ref_idle_s:
            return own_s
        at_ref = self.extra(self.ref_idle_s)
        return own_s * self.extra(idle_s) / at_ref if at_ref > 0 else 0.0


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
    param_bytes: dict[tuple[int, int], int] = field(default_factory=dict)  # (start, end) -> bytes, when profiled
    device_files: dict[str, tuple[str, ...]] = field(default_factory=dict)  # device -> the files with its rows
    wakeup: dict[tuple[str, str], WakeUp] = field(default_factory=dict)  # (device, setting), where measured

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
    """A device taking part in a placement, restricted to some of its settings.

    `device` is the profiled device whose costs it uses; `name` is what the placement calls
    it ("" : edge/cloud for two roles, else the device). `energy` None: only the source's
    energy counts (DIME's edge energy). `compute` False: a relay, which runs no bundle
    (device "", settings ()) and appears in routes only; its `energy` counts the radio
    energy of links whose ends[0] it is.
    """

    device: str
    settings: tuple[str, ...]
    name: str = ""
    energy: bool | None = None
    memory_bytes: int | None = None
    compute: bool = True


def resolve_roles(roles: Sequence[Role], source: int = 0) -> tuple[Role, ...]:
    """Roles with their names and energy flags filled in."""
    out = []
    for i, r in enumerate(roles):
        name = r.name or (ROLE_NAMES[i] if len(roles) == 2 else r.device)
        energy = (i == source) if r.energy is None else r.energy
        out.append(r if (name, energy) == (r.name, r.energy) else dataclasses.replace(r, name=name, energy=energy))
    return tuple(out)


@dataclass(frozen=True)
class Assignment:
    """One chosen bundle: layers start..end (inclusive) on a role at a setting."""

    start: int
    end: int
    role: int  # index into the roles (EDGE or CLOUD for two)
    setting: str


@dataclass(frozen=True)
class Evaluation:
    latency_s: float
    compute_latency_s: float
    comm_latency_s: float
    energy_j: float  # energy of the energy-counted roles; NaN when one of their bundles has none
    compute_energy_j: float
    comm_energy_j: float
    energy_assumed: bool = False
    period_s: float = math.nan  # pipelined: the busiest device's compute or link direction's wire time
    bottleneck: str = ""  # the device or link direction behind period_s
    device_compute_s: tuple[float, ...] = ()  # each role's compute latency (its bundles + its wake-ups)
    wakeup_s: float = 0.0  # the part of latency_s (and compute_latency_s) that is wake-up after idling


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


def moves(placement: Sequence[Assignment], n_layers: int, source: int = 0) -> list[tuple[int, int, int]]:
    """The cuts where data changes role, as (cut, from role, to role).

    The input starts on the source and the output must end there, so cut 0 and cut n
    count when the first/last bundle runs elsewhere.
    """
    check_chain(placement, n_layers)
    out: list[tuple[int, int, int]] = []
    prev = source
    for a in placement:
        if a.role != prev:
            out.append((a.start, prev, a.role))
        prev = a.role
    if prev != source:
        out.append((n_layers, prev, source))
    return out


def transfers(placement: Sequence[Assignment], n_layers: int) -> list[tuple[int, str]]:
    """Two roles: the cuts where data crosses the link, as (cut, direction)."""
    return [(cut, UP if src == EDGE else DOWN) for cut, src, _ in moves(placement, n_layers)]


def check_chain(placement: Sequence[Assignment], n_layers: int, layer_names: Sequence[str] | None = None) -> None:
    """ValueError unless the bundles cover layers 0..n_layers-1 in order, each once; the
    message names layers by `layer_names` where given (dime.core.placement.check_placement
    adds the placement's text)."""
    def name(i: int) -> str:
        return layer_names[i] if layer_names is not None and 0 <= i < len(layer_names) else str(i)

    def span(s: int, e: int) -> str:
        return f"layer {name(s)}" if s == e else f"layers {name(s)}..{name(e)}"

    pos = 0
    for a in placement:
        if a.end < a.start:
            raise ValueError(f"a bundle runs backwards (from layer {name(a.start)} to layer {name(a.end)})")
        if a.start > pos:
            raise ValueError(f"not a chain of bundles: {span(pos, a.start - 1)} placed nowhere")
        if a.start < pos:
            raise ValueError(f"not a chain of bundles: {span(a.start, min(pos, a.end + 1) - 1)} placed twice")
        pos = a.end + 1
    if pos != n_layers:
        raise ValueError(f"placement covers {pos} of {n_layers} layers")


def as_network(link: Link | Network) -> Network:
    return Network.two_roles(link) if isinstance(link, Link) else link


def link_direction_name(roles: Sequence[Role], network: Network, link: int, direction: str) -> str:
    nl = network.links[link]
    a, b = (nl.a, nl.b) if direction == UP else (nl.b, nl.a)
    return f"{roles[a].name}->{roles[b].name}"


def evaluate(
    table: CostTable, roles: Sequence[Role], link: Link | Network, placement: Sequence[Assignment]
) -> Evaluation:
    """Latency, energy and pipelined period of a placement, straight from the cost model.

    `link` is the edge-cloud link of two roles or a Network of any number.
    """
    network = as_network(link)
    roles = resolve_roles(roles, network.source)
    energy = tuple(bool(r.energy) for r in roles)
    comp_lat = comp_en = 0.0
    assumed = False
    busy = [0.0] * len(roles)
    for a in placement:
        if not roles[a.role].compute:
            raise ValueError(f"{roles[a.role].name} is a relay (compute False): it runs no bundle, got {a}")
        c = table.cost(roles[a.role].device, a.setting, a.start, a.end)
        comp_lat += c.latency_s
        busy[a.role] += c.latency_s
        if energy[a.role]:
            if c.energy_j is None:
                comp_en = math.nan
            else:
                comp_en += c.energy_j
                assumed |= c.energy_source.startswith("assumed")
    comm_lat = comm_en = 0.0
    wire: dict[tuple[int, str], float] = {}
    route_s: dict[int, float] = {}  # cut -> the latency of its move
    for cut, src, dst in moves(placement, table.n_layers, network.source):
        route = network.route(src, dst, table.cut_bytes[cut], energy)
        comm_lat += route.latency_s
        comm_en += route.energy_j
        route_s[cut] = route.latency_s
        for key, t in route.wire_s:
            wire[key] = wire.get(key, 0.0) + t
    loads = [(busy[r], roles[r].name) for r in range(len(roles))]
    loads += [(t, link_direction_name(roles, network, i, d)) for (i, d), t in wire.items()]
    # A saturated pipeline's bottleneck never idles: the period has no wake-up.
    period, bottleneck = max(loads, key=lambda x: x[0])
    wake = wakeup_times(table, roles, placement, route_s, comp_lat + comm_lat)
    wake_s = sum(wake)
    wake_en = 0.0
    device_compute = list(busy)
    for a, extra in zip(placement, wake):
        device_compute[a.role] += extra
        if extra and energy[a.role]:
            c = table.cost(roles[a.role].device, a.setting, a.start, a.end)
            # the extra time at the bundle's mean power
            wake_en += math.nan if c.energy_j is None else extra * c.energy_j / max(c.latency_s, 1e-12)
    return Evaluation(
        latency_s=comp_lat + wake_s + comm_lat,
        compute_latency_s=comp_lat + wake_s,
        comm_latency_s=comm_lat,
        energy_j=comp_en + wake_en + comm_en,
        compute_energy_j=comp_en + wake_en,
        comm_energy_j=comm_en,
        energy_assumed=assumed,
        period_s=period,
        bottleneck=bottleneck,
        device_compute_s=tuple(device_compute),
        wakeup_s=wake_s,
    )


def wakeup_times(table: CostTable, roles: Sequence[Role], placement: Sequence[Assignment],
                 route_s: Mapping[int, float], base_latency_s: float) -> list[float]:
    """Each bundle's wake-up seconds (see the module's docstring), in single-stream queries run
    back to back: every bundle of a segment pays its own after the idle before the segment (its
    weights went cold alike); the least fixed point of latency = base + wake-ups (the wake-ups
    grow with the latency, through the idle before each device's first segment).

    `route_s` maps the cut of each move to its latency; `base_latency_s` is the query's
    latency without wake-up. All zeros where no role's profile measured wake-up.
    """
    segs = segments(placement)
    costs = [[table.cost(roles[r].device, a.setting, a.start, a.end) for a in bs] for r, _, _, bs in segs]
    curves = [[table.wakeup.get((roles[r].device, a.setting)) for a in bs] for r, _, _, bs in segs]
    if not any(c for cs in curves for c in cs):
        return [0.0] * len(placement)
    compute = [sum(c.latency_s for c in cs) for cs in costs]

    def seg_extras(i: int, idle: float) -> list[float]:
        return [w.bundle_extra(idle, c.wakeup_s) if w is not None else 0.0 for w, c in zip(curves[i], costs[i])]

    per_bundle = [[0.0] * len(cs) for cs in costs]
    extras = [0.0] * len(segs)
    latency = base_latency_s
    for _ in range(10_000):
        # one query's timeline with the current wake-ups; a device's first segment idled since
        # its last one of the previous query, `latency` earlier
        t = 0.0
        start, end = [0.0] * len(segs), [0.0] * len(segs)
        for i, (_, s, _, _) in enumerate(segs):
            t += route_s.get(s, 0.0)
            start[i] = t
            t += compute[i] + extras[i]
            end[i] = t
        new = []
        for i, (r, _, _, _) in enumerate(segs):
            earlier = [j for j in range(i) if segs[j][0] == r]
            if earlier:
                idle = start[i] - end[earlier[-1]]
            else:
                last = max(j for j in range(len(segs)) if segs[j][0] == r)
                idle = latency + start[i] - end[last]
            per_bundle[i] = seg_extras(i, idle)
            new.append(sum(per_bundle[i]))
        latency_new = base_latency_s + sum(new)
        # Each round's wake-ups are at least the last's (every idle grows by the wake-ups it spans):
        # a rising sequence, bounded by the curves' last values, so it settles.
        done = max(abs(a - b) for a, b in zip(new, extras)) <= 1e-13
        extras, latency = new, latency_new
        if done:
            break
    return [x for xs in per_bundle for x in xs]


def memory_use(table: CostTable, placement: Sequence[Assignment], role: int) -> int:
    """Bytes a role needs: its bundles' parameters and buffers + the largest in + out of them."""
    mine = [a for a in placement if a.role == role]
    if not mine:
        return 0
    params = sum(table.param_bytes[(a.start, a.end)] for a in mine)
    return params + max(table.cut_bytes[a.start] + table.cut_bytes[a.end + 1] for a in mine)


def merge_violation(placement: Sequence[Assignment], max_bundle: int) -> int | None:
    """The first cut between two same-role, same-setting bundles whose union is at most
    `max_bundle` layers (the merge rule: the union's own measurement is the prediction)."""
    for a, b in zip(placement, placement[1:]):
        if (a.role, a.setting) == (b.role, b.setting) and b.end - a.start + 1 <= max_bundle:
            return b.start
    return None


def layer_names_of(table: CostTable, placement: Sequence[Assignment], role: int) -> list[str]:
    return [table.layer_names[i] for a in placement if a.role == role for i in range(a.start, a.end + 1)]


def bundles(n_layers: int, max_bundle: int) -> list[tuple[int, int]]:
    """Every (start, end) with 1..max_bundle layers."""
    return [(s, e) for s in range(n_layers) for e in range(s, min(n_layers, s + max_bundle))]


def role_settings(roles: Sequence[Role]) -> Mapping[int, tuple[str, ...]]:
    return {i: r.settings for i, r in enumerate(roles)}
