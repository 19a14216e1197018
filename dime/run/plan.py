"""What a split run executes and what the profiles predict for it (no torch needed).

A plan names the model, its layers and cut sizes, and a list of configs: a placement
(a chain of bundles, each on the edge or the cloud at a setting) over a link, with
the bundle and layer-sum predictions. The edge sends it to the cloud at the start of
a run; dime.validate writes one per model.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from dime.core.costs import (
    CLOUD,
    EDGE,
    ROLE_NAMES,
    Assignment,
    CostTable,
    Role,
    check_chain,
    evaluate,
    transfers,
)
from dime.core.links import Link, parse_links
from dime.core.placement import format_placement
from dime.errors import DimeError, UsageError
from dime.fileio import atomic_write_text

if TYPE_CHECKING:
    from dime.capture.models import SplitModel

log = logging.getLogger("dime.run")

PLAN_VERSION = 1


# ---- plan -------------------------------------------------------------------------
@dataclass(frozen=True)
class RunConfig:
    """One placement to run over one link, with what the profiles predict for it."""

    label: str
    placement: tuple[Assignment, ...]
    link: Link
    pred_bundle_s: float | None = None  # bundle costs + communication (what the solver uses)
    pred_layersum_s: float | None = None  # single-layer costs summed + the same communication
    solver_latency_s: float | None = None  # latency_s of the solution file, as written

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "placement": [[a.start, a.end, a.role, a.setting] for a in self.placement],
            "link": dataclasses.asdict(self.link),
            "pred_bundle_s": self.pred_bundle_s,
            "pred_layersum_s": self.pred_layersum_s,
            "solver_latency_s": self.solver_latency_s,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunConfig":
        return cls(
            label=str(d["label"]),
            placement=tuple(Assignment(int(s), int(e), int(r), str(t)) for s, e, r, t in d["placement"]),
            link=Link(**d["link"]),
            pred_bundle_s=d.get("pred_bundle_s"),
            pred_layersum_s=d.get("pred_layersum_s"),
            solver_latency_s=d.get("solver_latency_s"),
        )


@dataclass(frozen=True)
class Plan:
    """Everything both roles must agree on, sent by the edge at the start."""

    model: str
    layer_names: tuple[str, ...]
    cut_bytes: tuple[int, ...]
    configs: tuple[RunConfig, ...]
    edge_device: str = ""
    cloud_device: str = ""

    def to_json(self) -> str:
        return json.dumps({
            "version": PLAN_VERSION,
            "model": self.model,
            "layer_names": list(self.layer_names),
            "cut_bytes": list(self.cut_bytes),
            "edge_device": self.edge_device,
            "cloud_device": self.cloud_device,
            "configs": [c.to_json() for c in self.configs],
        }, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "plan") -> "Plan":
        try:
            d = json.loads(text)
            if d.get("version") != PLAN_VERSION:
                raise UsageError(f"{where}: plan version {d.get('version')} is not {PLAN_VERSION}")
            plan = cls(
                model=str(d["model"]),
                layer_names=tuple(d["layer_names"]),
                cut_bytes=tuple(int(b) for b in d["cut_bytes"]),
                configs=tuple(RunConfig.from_json(c) for c in d["configs"]),
                edge_device=str(d.get("edge_device", "")),
                cloud_device=str(d.get("cloud_device", "")),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{where}: not a dime run plan ({type(e).__name__}: {e})") from None
        for c in plan.configs:
            try:
                check_chain(c.placement, len(plan.layer_names))
            except ValueError as e:
                raise UsageError(f"{where}: config {c.label}: {e}") from None
        return plan

    def check_model(self, model: "SplitModel") -> None:
        if tuple(model.layer_names) != self.layer_names:
            raise UsageError(
                f"the plan's model {self.model} has layers {','.join(self.layer_names)} but the loaded "
                f"{model.name} has {','.join(model.layer_names)} (same --model/--cuts on both sides?)"
            )
        if tuple(model.cut_bytes) != self.cut_bytes:
            raise UsageError(
                f"cut sizes of the loaded {model.name} differ from the plan's (another input shape?): "
                f"{list(model.cut_bytes)} vs {list(self.cut_bytes)}"
            )


# ---- placements -------------------------------------------------------------------
def split_placement(
    n_layers: int, k: int, edge_setting: str, cloud_setting: str, max_bundle: int | None = None
) -> tuple[Assignment, ...]:
    """Layers 0..k on the edge, k+1..n-1 in the cloud (k = -1: all cloud, n-1: all edge),
    each side cut into bundles of at most max_bundle layers (default: one bundle)."""
    if not -1 <= k < n_layers:
        raise UsageError(f"split {k} out of range -1..{n_layers - 1}")
    step = max_bundle or n_layers
    out: list[Assignment] = []
    for lo, hi, role, setting in ((0, k, EDGE, edge_setting), (k + 1, n_layers - 1, CLOUD, cloud_setting)):
        s = lo
        while s <= hi:
            e = min(hi, s + step - 1)
            out.append(Assignment(s, e, role, setting))
            s = e + 1
    return tuple(out)


def split_label(layer_names: Sequence[str], k: int) -> str:
    if k < 0:
        return "cloud-only"
    if k == len(layer_names) - 1:
        return "edge-only"
    return f"split@{layer_names[k]}"


def parse_splits(text: str, n_layers: int, layer_names: Sequence[str]) -> list[int]:
    """'all', or a comma list of split points: -1..n-1, the name of the last edge layer,
    cloud-only (= -1) or edge-only (= n-1)."""
    if text.strip() == "all":
        return list(range(-1, n_layers))
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        if item in ("cloud-only", "edge-only"):
            out.append(-1 if item == "cloud-only" else n_layers - 1)
            continue
        if item in layer_names:
            out.append(layer_names.index(item))
            continue
        try:
            k = int(item)
        except ValueError:
            raise UsageError(f"--split {item!r}: give -1..{n_layers - 1}, a layer name or 'all'") from None
        if not -1 <= k < n_layers:
            raise UsageError(f"--split {k} out of range -1..{n_layers - 1}")
        out.append(k)
    if not out:
        raise UsageError("--split: empty list")
    return list(dict.fromkeys(out))


def parse_solution(
    data: dict[str, Any], layer_names: Sequence[str], where: str, edge_device: str | None = None
) -> tuple[Assignment, ...]:
    """The placement of a `python -m dime.solve --json` file."""
    entries = data.get("placement") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{where}: no placement in the solution")
    index = {name: i for i, name in enumerate(layer_names)}
    out = []
    for i, e in enumerate(entries, 1):
        if not isinstance(e, dict):
            raise UsageError(f"{where}: placement entry {i} is not an object")
        for key in ("start", "end", "setting"):
            if key not in e:
                raise UsageError(f"{where}: placement entry {i} has no {key!r}")
        if e["start"] not in index or e["end"] not in index:
            bad = e["start"] if e["start"] not in index else e["end"]
            raise UsageError(f"{where}: layer {bad!r} is not a layer of the model ({', '.join(layer_names)})")
        role_name = e.get("role")
        if role_name is None:
            if edge_device is None:
                raise UsageError(f"{where}: placement entry {i} has no role; give --edge-device NAME to map devices")
            role_name = "edge" if e.get("device") == edge_device else "cloud"
        if role_name not in ROLE_NAMES:
            raise UsageError(f"{where}: placement entry {i}: role {role_name!r} is not edge or cloud")
        out.append(Assignment(index[e["start"]], index[e["end"]], ROLE_NAMES.index(role_name), str(e["setting"])))
    try:
        check_chain(out, len(layer_names))
    except ValueError as e:
        raise UsageError(f"{where}: {e}") from None
    return tuple(out)


def read_solution(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"solution file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a JSON solution ({e})") from None


def comm_latency_s(cut_bytes: Sequence[int], link: Link, placement: Sequence[Assignment]) -> float:
    return sum(link.transfer_latency_s(cut_bytes[c], d) for c, d in transfers(placement, len(cut_bytes) - 1))


def layer_sum_placement(placement: Sequence[Assignment]) -> list[Assignment]:
    """The same placement with every bundle split into single layers (same transfers)."""
    return [Assignment(i, i, a.role, a.setting) for a in placement for i in range(a.start, a.end + 1)]


def predict(
    table: CostTable, roles: Sequence[Role], link: Link, placement: Sequence[Assignment]
) -> tuple[float | None, float | None]:
    """(bundle prediction, layer-sum prediction) from the profile; None where a cost is missing."""
    out: list[float | None] = []
    for p in (list(placement), layer_sum_placement(placement)):
        try:
            out.append(evaluate(table, roles, link, p).latency_s)
        except DimeError as e:
            log.warning("no prediction for %s: %s", format_placement(table.layer_names, placement), e)
            out.append(None)
    return out[0], out[1]


def _links(args: argparse.Namespace) -> list[Link]:
    return parse_links(args.link, args.uplink_mbps, args.downlink_mbps, args.rtt_ms)


def parse_scenarios(text: str) -> list[str]:
    from dime.run.measure import SCENARIOS

    items = [s.strip() for s in text.split(",") if s.strip()]
    for s in items:
        if s not in SCENARIOS:
            raise UsageError(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    if not items:
        raise UsageError("--scenario: empty list")
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class _Candidate:
    """A placement to run, before it is paired with each link."""

    label: str
    placement: tuple[Assignment, ...]
    devices: tuple[str, str]  # profiled (edge, cloud) device names, "" when unknown
    solver_latency_s: float | None = None
    bundle_costs_s: tuple[float, ...] | None = None  # as written in a solution file


def _solution_candidate(path: Path, label: str, names: Sequence[str], edge_device: str | None) -> _Candidate:
    data = read_solution(path)
    placement = parse_solution(data, names, str(path), edge_device)
    devices = ["", ""]
    for a, e in zip(placement, data["placement"]):
        devices[a.role] = devices[a.role] or str(e.get("device", ""))
    costs = [e.get("latency_s") for e in data["placement"]]
    lat = data.get("latency_s")
    return _Candidate(
        label,
        placement,
        (devices[EDGE], devices[CLOUD]),
        float(lat) if isinstance(lat, (int, float)) else None,
        tuple(float(c) for c in costs) if all(isinstance(c, (int, float)) for c in costs) else None,
    )


def build_plan(args: argparse.Namespace, model: "SplitModel") -> Plan:
    """The edge's plan from --plan, or from --solution/--split and --link."""
    if args.plan is not None:
        if args.solution or args.split:
            raise UsageError("--plan replaces --solution and --split; give one or the other")
        try:
            plan = Plan.from_json(args.plan.read_text(), str(args.plan))
        except FileNotFoundError:
            raise UsageError(f"plan file not found: {args.plan}") from None
        plan.check_model(model)
        return plan
    if not args.solution and not args.split:
        raise UsageError("give a placement: --solution JSON, --split LIST or --plan JSON")
    from dime.profiling.reader import (  # pandas: only when planning
        common_max_bundle,
        load_profiles,
        make_role,
    )

    names = list(model.layer_names)
    n = len(names)
    table: CostTable | None = None
    if args.profile:
        table = load_profiles(args.profile, model=model.name)
        if tuple(table.layer_names) != tuple(names):
            raise UsageError(f"the profile's layers {','.join(table.layer_names)} are not the model's {','.join(names)}")
    cands = [
        _solution_candidate(path, "solver" if len(args.solution) == 1 else f"solver:{path.stem}", names, args.edge_device)
        for path in args.solution
    ]
    edge_dev, cloud_dev = args.edge_device or "", args.cloud_device or ""
    if args.split:
        edge_set, cloud_set = args.edge_setting or "", args.cloud_setting or ""
        max_bundle = None
        if table is not None:
            known = list(table.settings)
            if len(known) == 1:
                edge_dev, cloud_dev = edge_dev or known[0], cloud_dev or known[0]
            if not edge_dev or not cloud_dev:
                raise UsageError(f"the profiles hold several devices ({', '.join(known)}): "
                                 "give --edge-device and --cloud-device")
            edge_set = edge_set or make_role(table, edge_dev).settings[0]
            cloud_set = cloud_set or make_role(table, cloud_dev).settings[0]
            roles = (make_role(table, edge_dev, [edge_set]), make_role(table, cloud_dev, [cloud_set]))
            # bundles no longer than profiled, so that every one has a cost
            max_bundle = common_max_bundle(table, roles)
        for k in parse_splits(args.split, n, names):
            cands.append(_Candidate(split_label(names, k), split_placement(n, k, edge_set, cloud_set,
                                                                            max_bundle), (edge_dev, cloud_dev)))
    configs = []
    for link in _links(args):
        for c in cands:
            bundle_pred = layer_pred = None
            ed, cd = c.devices[EDGE] or edge_dev, c.devices[CLOUD] or cloud_dev
            # a side without bundles costs nothing: any profiled device stands in for it
            if not any(a.role == CLOUD for a in c.placement):
                cd = cd or ed
            if not any(a.role == EDGE for a in c.placement):
                ed = ed or cd
            if table is not None and ed and cd:
                roles = (make_role(table, ed, {a.setting for a in c.placement if a.role == EDGE} or None),
                         make_role(table, cd, {a.setting for a in c.placement if a.role == CLOUD} or None))
                bundle_pred, layer_pred = predict(table, roles, link, c.placement)
            elif c.bundle_costs_s is not None:
                bundle_pred = sum(c.bundle_costs_s) + comm_latency_s(model.cut_bytes, link, c.placement)
            elif c.solver_latency_s is not None:
                bundle_pred = c.solver_latency_s
            if c.solver_latency_s is not None and bundle_pred is not None and \
                    abs(bundle_pred - c.solver_latency_s) > 0.01 * c.solver_latency_s:
                log.warning("%s over %s: predicted %.4g s, the solution says %.4g s (solved for another link?)",
                            c.label, link.name, bundle_pred, c.solver_latency_s)
            configs.append(RunConfig(c.label, c.placement, link, bundle_pred, layer_pred, c.solver_latency_s))
    edge_dev = edge_dev or next((c.devices[EDGE] for c in cands if c.devices[EDGE]), "")
    cloud_dev = cloud_dev or next((c.devices[CLOUD] for c in cands if c.devices[CLOUD]), "")
    return Plan(model.name, tuple(names), tuple(model.cut_bytes), tuple(configs), edge_dev, cloud_dev)


# ---- results ----------------------------------------------------------------------
RESULT_COLUMNS: tuple[str, ...] = (
    "model", "config", "placement", "edge_device", "cloud_device", "link", "uplink_mbps", "downlink_mbps",
    "rtt_ms", "emulation", "achieved_up_mbps", "achieved_down_mbps", "scenario", "driver", "count",
    "mean_s", "p50_s", "p90_s", "p95_s", "p99_s", "min_s", "max_s", "throughput_qps", "target_qps",
    "valid", "measured_s", "pred_bundle_s", "pred_layersum_s", "solver_latency_s", "err_bundle",
    "err_layersum", "edge_compute_s", "upload_s", "cloud_wait_s", "up_bytes", "down_bytes", "transfers",
    "up_overruns", "edge_threads", "cloud_threads", "edge_torch_device", "cloud_torch_device",
    "edge_whole_profiled_s", "edge_whole_start_s", "edge_whole_end_s",
    "samples", "warmup", "host", "cloud_host", "timestamp", "note",
)


def rel_err(pred: float | None, meas: float) -> float | None:
    """(predicted - measured) / measured; None when there is no prediction."""
    if pred is None or not math.isfinite(meas) or meas <= 0:
        return None
    return (pred - meas) / meas


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Append rows to a results CSV (created with a header when new), atomically."""
    path = Path(path)
    old = ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        header = old.splitlines()[0] if old.strip() else ""
        if header and header.split(",") != list(RESULT_COLUMNS):
            raise UsageError(f"{path} holds other columns than dime.run writes; choose another --out")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    if not old.strip():
        w.writeheader()
    for r in rows:
        w.writerow({k: _cell(r.get(k)) for k in RESULT_COLUMNS})
    atomic_write_text(path, (old if old.endswith("\n") or not old else old + "\n") + buf.getvalue())
