"""What a run executes and what the profiles predict for it (no torch needed).

A plan names the model, its layers and cut sizes, the devices (the source holds the input
and gets the output back) and a list of configs: a placement (a chain of bundles, each on
a device at a setting) over a network of links, the route of every transfer, and the
predictions. The source sends it to every other device at the start of a run;
dime.validate writes one per model. Two devices (edge and cloud, one link) are the case
of a one-link network; several links of a two-device run are several configs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from dime.core.costs import (
    Assignment,
    BundleCost,
    CostTable,
    Role,
    evaluate,
    moves,
    resolve_roles,
)
from dime.core.links import Link
from dime.core.network import NetLink, Network
from dime.core.placement import check_placement, format_placement
from dime.errors import DimeError, UsageError
from dime.run.data.program import Program, build_program, hops_of
from dime.run.links.schedule import LinkSchedule, RateChange, Schedule, link_names

log = logging.getLogger("dime.run")

PLAN_VERSION = 2

Hop = tuple[int, str, int, int]  # link, direction, from, to


@dataclass(frozen=True)
class DeviceInfo:
    """A device of the plan: its name and the profiled device its predictions use."""

    name: str
    profile_device: str = ""


@dataclass(frozen=True)
class Prediction:
    """A placement's predicted latency, each device's compute part, and its pipelined period."""

    latency_s: float
    compute_s: tuple[float, ...]  # per device
    comm_s: float
    period_s: float
    bottleneck: str


@dataclass(frozen=True)
class RunConfig:
    """One placement to run over one network, with what the profiles predict for it."""

    label: str
    placement: tuple[Assignment, ...]  # Assignment.role: the device index
    network: Network
    network_label: str = ""  # a one-link network: the link's name
    routes: tuple[tuple[int, int, int, tuple[Hop, ...]], ...] = ()  # (cut, from, to, hops), every transfer
    bundle: Prediction | None = None  # bundle costs + communication (what the solver uses)
    layersum: Prediction | None = None  # single-layer costs summed + the same communication
    solver_latency_s: float | None = None  # latency_s of the solution file, as written
    solver_throughput_fps: float | None = None
    # the placement as solved or given, where the plan merged same-setting runs of it (else empty)
    planned: tuple[Assignment, ...] = ()

    @property
    def link(self) -> Link | None:
        """The link of a one-link network (the two-device case), else None."""
        return self.network.links[0].link if len(self.network.links) == 1 else None

    @property
    def pred_bundle_s(self) -> float | None:
        return self.bundle.latency_s if self.bundle else None

    @property
    def pred_layersum_s(self) -> float | None:
        return self.layersum.latency_s if self.layersum else None

    def program(self, cut_bytes: Sequence[int]) -> Program:
        return build_program(self.placement, self.network, cut_bytes,
                             {(c, s, d): hops for c, s, d, hops in self.routes})

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "placement": _assignments_json(self.placement),
            "network": network_json(self.network),
            "network_label": self.network_label,
            "routes": [[c, s, d, [list(h) for h in hops]] for c, s, d, hops in self.routes],
            "bundle": dataclasses.asdict(self.bundle) if self.bundle else None,
            "layersum": dataclasses.asdict(self.layersum) if self.layersum else None,
            "solver_latency_s": self.solver_latency_s,
            "solver_throughput_fps": self.solver_throughput_fps,
            "planned": _assignments_json(self.planned),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunConfig":
        return cls(
            label=str(d["label"]),
            placement=_assignments(d["placement"]),
            network=network_from_json(d["network"]),
            network_label=str(d.get("network_label", "")),
            routes=tuple((int(c), int(s), int(t), tuple((int(h[0]), str(h[1]), int(h[2]), int(h[3])) for h in hops))
                         for c, s, t, hops in d.get("routes") or ()),
            bundle=_prediction(d.get("bundle")),
            layersum=_prediction(d.get("layersum")),
            solver_latency_s=d.get("solver_latency_s"),
            solver_throughput_fps=d.get("solver_throughput_fps"),
            planned=_assignments(d.get("planned") or ()),
        )


def _assignments_json(placement: Sequence[Assignment]) -> list[list[Any]]:
    return [[a.start, a.end, a.role, a.setting] for a in placement]


def _assignments(items: Any) -> tuple[Assignment, ...]:
    return tuple(Assignment(int(s), int(e), int(r), str(t)) for s, e, r, t in items)


def _prediction(d: dict[str, Any] | None) -> Prediction | None:
    if not d:
        return None
    return Prediction(float(d["latency_s"]), tuple(float(x) for x in d["compute_s"]), float(d["comm_s"]),
                      float(d["period_s"]), str(d.get("bottleneck", "")))


def network_json(net: Network) -> dict[str, Any]:
    return {"n_devices": net.n_devices, "source": net.source,
            "links": [[nl.a, nl.b, dataclasses.asdict(nl.link)] for nl in net.links]}


def network_from_json(d: dict[str, Any]) -> Network:
    return Network(int(d["n_devices"]), tuple(NetLink(int(a), int(b), Link(**lk)) for a, b, lk in d["links"]),
                   int(d.get("source", 0)))


@dataclass(frozen=True)
class Plan:
    """Everything the devices must agree on, sent by the source at the start."""

    model: str
    layer_names: tuple[str, ...]
    cut_bytes: tuple[int, ...]
    configs: tuple[RunConfig, ...]
    devices: tuple[DeviceInfo, ...] = (DeviceInfo("edge"), DeviceInfo("cloud"))
    source: int = 0
    shaper: str = "user"  # how the links are realized: dime.run.links.SHAPERS (the source's choice)
    schedule: Schedule = ()  # rate changes during the run, by link index (dime.run.links.schedule)
    # --adapt: the source may re-plan, so every device takes part, the computing ones build every bundle
    # of up to adapt_max_bundle layers ahead, and every device reports its transfers (0: no re-planning)
    adapt_max_bundle: int = 0
    adapt_computing: tuple[int, ...] = ()

    @property
    def device_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.devices)

    def rank_names(self) -> tuple[str, ...]:
        """The process group's ranks: the source first, then the other participants in device order."""
        return (self.devices[self.source].name,) + tuple(
            self.devices[d].name for d in self.participants() if d != self.source)

    def rank_of(self) -> list[int]:
        """Each device's rank in the process group, by device index (-1: not in the run)."""
        ranks = self.rank_names()
        return [ranks.index(d) if d in ranks else -1 for d in self.device_names]

    def computing_devices(self) -> list[int]:
        """Devices that run a bundle in some config (the ones whose whole model is timed)."""
        return sorted({a.role for c in self.configs for a in c.placement})

    def participants(self) -> list[int]:
        """Devices that run a bundle or relay a transfer in some config, and the source; every
        device where the source may re-plan."""
        if self.adapt_max_bundle:
            return list(range(len(self.devices)))
        used = {self.source}
        for c in self.configs:
            used |= c.program(self.cut_bytes).devices()
        return sorted(used)

    def link_schedules(self) -> tuple[LinkSchedule, ...]:
        """The schedule by link name, as given (empty: none)."""
        if not self.schedule:
            return ()
        names = link_names(self.device_names, self.configs[0].network)
        return tuple(LinkSchedule(names[i], changes) for i, changes in self.schedule)

    def probe_links(self) -> list[tuple[int, int, Link]]:
        """The distinct links (a, b, link) whose two ends both take part: probed before measuring."""
        parts = set(self.participants())
        out: dict[tuple[Any, ...], tuple[int, int, Link]] = {}
        for c in self.configs:
            for nl in c.network.links:
                if nl.a in parts and nl.b in parts:
                    out.setdefault((nl.a, nl.b, dataclasses.astuple(nl.link)), (nl.a, nl.b, nl.link))
        return list(out.values())

    def to_json(self) -> str:
        return json.dumps({
            "version": PLAN_VERSION,
            "model": self.model,
            "layer_names": list(self.layer_names),
            "cut_bytes": list(self.cut_bytes),
            "devices": [dataclasses.asdict(d) for d in self.devices],
            "source": self.source,
            "shaper": self.shaper,
            "configs": [c.to_json() for c in self.configs],
            "schedule": [[i, [[c.at_s, c.uplink_mbps, c.downlink_mbps, c.rtt_ms] for c in changes]]
                         for i, changes in self.schedule],
            "adapt_max_bundle": self.adapt_max_bundle,
            "adapt_computing": list(self.adapt_computing),
        }, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "plan") -> "Plan":
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or d.get("version") != PLAN_VERSION:
                raise UsageError(f"{where}: plan version {d.get('version') if isinstance(d, dict) else None} "
                                 f"is not {PLAN_VERSION}")
            plan = cls(
                model=str(d["model"]),
                layer_names=tuple(d["layer_names"]),
                cut_bytes=tuple(int(b) for b in d["cut_bytes"]),
                configs=tuple(RunConfig.from_json(c) for c in d["configs"]),
                devices=tuple(DeviceInfo(str(x["name"]), str(x.get("profile_device", ""))) for x in d["devices"]),
                source=int(d.get("source", 0)),
                shaper=str(d.get("shaper", "user")),
                schedule=tuple((int(i), tuple(RateChange(float(a), float(u), float(w), None if r is None else float(r))
                                              for a, u, w, r in changes)) for i, changes in d.get("schedule") or ()),
                adapt_max_bundle=int(d.get("adapt_max_bundle", 0)),
                adapt_computing=tuple(int(i) for i in d.get("adapt_computing") or ()),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise UsageError(f"{where}: not a dime run plan ({type(e).__name__}: {e})") from None
        for c in plan.configs:
            check_placement(plan.layer_names, c.placement, plan.device_names, f"{where}: config {c.label}")
            try:
                if c.network.n_devices != len(plan.devices) or c.network.source != plan.source:
                    raise ValueError("its network does not have the plan's devices and source")
                c.program(plan.cut_bytes)
            except (ValueError, IndexError) as e:
                raise UsageError(f"{where}: config {c.label}: {e}") from None
        n_links = len(plan.configs[0].network.links) if plan.configs else 0
        bad = next((i for i, _ in plan.schedule if not 0 <= i < n_links), None)
        if bad is not None:
            raise UsageError(f"{where}: the schedule changes link {bad}; the network has {n_links}")
        return plan

    def check_model(self, name: str, layer_names: Sequence[str], cut_bytes: Sequence[int]) -> None:
        if tuple(layer_names) != self.layer_names:
            raise UsageError(
                f"the plan's model {self.model} has layers {','.join(self.layer_names)} but the loaded "
                f"{name} has {','.join(layer_names)} (same --model/--cuts on every device?)"
            )
        if tuple(cut_bytes) != self.cut_bytes:
            raise UsageError(
                f"cut sizes of the loaded {name} differ from the plan's (another input shape?): "
                f"{list(cut_bytes)} vs {list(self.cut_bytes)}"
            )

    def placement_text(self, placement: Sequence[Assignment]) -> str:
        return format_placement(self.layer_names, placement, self.device_names)


# ---- merged runs ------------------------------------------------------------------
def layer_sum_placement(placement: Sequence[Assignment]) -> list[Assignment]:
    """The same placement with every bundle split into single layers (same transfers)."""
    return [Assignment(i, i, a.role, a.setting) for a in placement for i in range(a.start, a.end + 1)]


def mergeable_runs(placement: Sequence[Assignment], is_profiled: Callable[[Assignment], bool]) -> list[int]:
    """Indices i where bundles i and i+1 share device and setting and their union is profiled:
    a placement solved with summed bundle costs (DIME semantics) can hold such pairs; the
    merge rule does not."""
    out = []
    for i, (a, b) in enumerate(zip(placement, placement[1:])):
        if a.role == b.role and a.setting == b.setting and is_profiled(Assignment(a.start, b.end, a.role, a.setting)):
            out.append(i)
    return out


def merge_runs(placement: Sequence[Assignment], is_profiled: Callable[[Assignment], bool]) -> tuple[Assignment, ...]:
    """The placement that runs: consecutive bundles on one device at one setting merged, left to
    right, while their union is profiled (such a segment is physically one module, and its own
    measurement is the best prediction of it). A run whose union is not profiled (longer than
    K) keeps its bundles, run in order; no two neighbours of the result can be merged."""
    out: list[Assignment] = []
    for a in placement:
        if out and out[-1].role == a.role and out[-1].setting == a.setting:
            union = Assignment(out[-1].start, a.end, a.role, a.setting)
            if is_profiled(union):
                out[-1] = union
                continue
        out.append(a)
    return tuple(out)


def profiled_in(table: CostTable, roles: Sequence[Role], max_bundle: int | None = None
                ) -> Callable[[Assignment], bool]:
    """Whether a bundle has its own measured cost in the table (and is at most max_bundle long)."""
    def is_profiled(a: Assignment) -> bool:
        if max_bundle is not None and a.end - a.start + 1 > max_bundle:
            return False
        return (roles[a.role].device, a.setting, a.start, a.end) in table.costs
    return is_profiled


# ---- predictions --------------------------------------------------------------------
def predict_one(table: CostTable, roles: Sequence[Role], network: Network,
                placement: Sequence[Assignment]) -> Prediction:
    ev = evaluate(table, roles, network, placement)
    return Prediction(ev.latency_s, ev.device_compute_s, ev.comm_latency_s, ev.period_s, ev.bottleneck)


def predict(table: CostTable, roles: Sequence[Role], network: Network, placement: Sequence[Assignment]
            ) -> tuple[Prediction | None, Prediction | None]:
    """(bundle prediction, layer-sum prediction) from the profile; None where a cost is missing."""
    out: list[Prediction | None] = []
    for p in (list(placement), layer_sum_placement(placement)):
        try:
            out.append(predict_one(table, roles, network, p))
        except DimeError as e:
            log.warning("no prediction for %s: %s",
                        format_placement(table.layer_names, placement, [r.name for r in roles]), e)
            out.append(None)
    return out[0], out[1]


def from_file_costs(placement: Sequence[Assignment], costs_s: Sequence[float], network: Network,
                    layer_names: Sequence[str], cut_bytes: Sequence[int], device_names: Sequence[str]) -> Prediction:
    """A prediction from the bundle costs written in a solution file (no profile at hand): those
    costs in a table of their own, evaluated by the cost model like any profile."""
    costs = {(device_names[a.role], a.setting, a.start, a.end): BundleCost(float(c)) for a, c in zip(placement, costs_s)}
    settings: dict[str, tuple[str, ...]] = {}
    for dev, setting, _, _ in costs:
        settings[dev] = tuple(dict.fromkeys(settings.get(dev, ()) + (setting,)))
    table = CostTable("", tuple(layer_names), tuple(cut_bytes), settings, costs)
    roles = [Role(name, settings.get(name, ()), name) for name in device_names]
    return predict_one(table, roles, network, placement)


def routes_of(placement: Sequence[Assignment], network: Network, cut_bytes: Sequence[int]
              ) -> tuple[tuple[int, int, int, tuple[Hop, ...]], ...]:
    """Every transfer of the placement with the hops of its least-latency route."""
    return tuple((cut, src, dst, tuple(hops_of(network, cut_bytes, cut, src, dst)))
                 for cut, src, dst in moves(placement, len(cut_bytes) - 1, network.source))


def merged_config(label: str, placement: Sequence[Assignment], network: Network, table: CostTable,
                  roles: Sequence[Role], max_bundle: int | None = None, solver_latency_s: float | None = None,
                  solver_throughput_fps: float | None = None, network_label: str = "") -> RunConfig:
    """The config that runs `placement` with its mergeable runs merged, predicted from the table."""
    roles = resolve_roles(roles, network.source)
    runs = merge_runs(placement, profiled_in(table, roles, max_bundle))
    names = [r.name for r in roles]
    label_net = network_label or (network.links[0].link.name if len(network.links) == 1 else "")
    if runs != tuple(placement):
        log.info("%s over %s: runs %s as %s (same-setting bundles whose union is profiled, merged)", label,
                 label_net, format_placement(table.layer_names, placement, names),
                 format_placement(table.layer_names, runs, names))
    bundle, layers = predict(table, roles, network, runs)
    return RunConfig(label, runs, network, label_net, routes_of(runs, network, table.cut_bytes), bundle, layers,
                     solver_latency_s, solver_throughput_fps, tuple(placement) if runs != tuple(placement) else ())


def pred_throughput_fps(pred: Prediction | None, in_flight: int) -> float | None:
    """Frames per second with `in_flight` queries in the chain at once: at most in_flight per
    latency (each query takes the whole latency) and at most one per period (the busiest device
    or link direction)."""
    if pred is None or not (pred.latency_s > 0):
        return None
    rate = in_flight / pred.latency_s
    if pred.period_s > 0 and math.isfinite(pred.period_s):
        rate = min(rate, 1.0 / pred.period_s)
    return rate
