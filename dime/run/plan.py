"""What a split run executes and what the profiles predict for it (no torch needed).

A plan names the model, its layers and cut sizes, and a list of configs: a placement
(a chain of bundles, each on the edge or the cloud at a setting) over a link, with
the bundle and layer-sum predictions. The edge sends it to the cloud at the start of
a run; dime.validate writes one per model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

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
from dime.core.links import Link
from dime.core.placement import format_placement
from dime.errors import DimeError, UsageError
from dime.run.options import PlanOptions, RunOptions

if TYPE_CHECKING:
    from dime.capture.models import SplitModel

log = logging.getLogger("dime.run")

PLAN_VERSION = 1


# ---- plan -------------------------------------------------------------------------
_PRED_PARTS = ("pred_bundle_edge_s", "pred_bundle_cloud_s", "pred_layersum_edge_s", "pred_layersum_cloud_s")


@dataclass(frozen=True)
class RunConfig:
    """One placement to run over one link, with what the profiles predict for it."""

    label: str
    placement: tuple[Assignment, ...]
    link: Link
    pred_bundle_s: float | None = None  # bundle costs + communication (what the solver uses)
    pred_layersum_s: float | None = None  # single-layer costs summed + the same communication
    solver_latency_s: float | None = None  # latency_s of the solution file, as written
    # each role's compute part of the two predictions (the rest is communication)
    pred_bundle_edge_s: float | None = None
    pred_bundle_cloud_s: float | None = None
    pred_layersum_edge_s: float | None = None
    pred_layersum_cloud_s: float | None = None
    # the placement as solved or given, where the plan merged same-setting runs of it (else empty)
    planned: tuple[Assignment, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "placement": [[a.start, a.end, a.role, a.setting] for a in self.placement],
            "link": dataclasses.asdict(self.link),
            "pred_bundle_s": self.pred_bundle_s,
            "pred_layersum_s": self.pred_layersum_s,
            "solver_latency_s": self.solver_latency_s,
            **{k: getattr(self, k) for k in _PRED_PARTS},
            "planned": [[a.start, a.end, a.role, a.setting] for a in self.planned],
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
            **{k: d.get(k) for k in _PRED_PARTS},
            planned=tuple(Assignment(int(s), int(e), int(r), str(t)) for s, e, r, t in d.get("planned") or ()),
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

    def links(self) -> list[Link]:
        """The configs' distinct links, in order: link probes are numbered by it."""
        return list({dataclasses.astuple(c.link): c.link for c in self.configs}.values())

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
    """A `dime.solve --json` file: a JSON object with a placement list, else UsageError."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"solution file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"solution {path} is a folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a JSON solution ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a solution (a JSON {type(data).__name__}, not an object)")
    if not isinstance(data.get("placement"), list) or not data["placement"]:
        raise UsageError(f"{path}: no placement in the solution")
    return data


def check_solution_model(data: dict[str, Any], where: str, model: str | None = None,
                         layer_names: Sequence[str] | None = None, cut_bytes: Sequence[int] | None = None) -> None:
    """Refuse a solution of another model: its `model`, `layer_names` and `cut_bytes`, where it
    records them, must be the loaded model's (the layers of its placement are checked always,
    by parse_solution)."""
    if model is not None and "model" in data and str(data["model"]) != model:
        raise UsageError(f"{where} is a solution of model {data['model']}, not {model}")
    if layer_names is not None and "layer_names" in data and list(data["layer_names"]) != list(layer_names):
        raise UsageError(f"{where}: its layers {','.join(map(str, data['layer_names']))} are not the model's "
                         f"{','.join(layer_names)} (same --cuts as when solving?)")
    if cut_bytes is not None and "cut_bytes" in data and list(data["cut_bytes"]) != list(cut_bytes):
        raise UsageError(f"{where}: its cut sizes differ from the model's (another input shape?)")


def comm_latency_s(cut_bytes: Sequence[int], link: Link, placement: Sequence[Assignment]) -> float:
    return sum(link.transfer_latency_s(cut_bytes[c], d) for c, d in transfers(placement, len(cut_bytes) - 1))


def layer_sum_placement(placement: Sequence[Assignment]) -> list[Assignment]:
    """The same placement with every bundle split into single layers (same transfers)."""
    return [Assignment(i, i, a.role, a.setting) for a in placement for i in range(a.start, a.end + 1)]


def mergeable_runs(placement: Sequence[Assignment], is_profiled: Callable[[Assignment], bool]) -> list[int]:
    """Indices i where bundles i and i+1 share role and setting and their union is profiled:
    a placement solved with summed bundle costs (DIME semantics) can hold such pairs; the
    merge rule does not."""
    out = []
    for i, (a, b) in enumerate(zip(placement, placement[1:])):
        if a.role == b.role and a.setting == b.setting and is_profiled(Assignment(a.start, b.end, a.role, a.setting)):
            out.append(i)
    return out


def merge_runs(placement: Sequence[Assignment], is_profiled: Callable[[Assignment], bool]) -> tuple[Assignment, ...]:
    """The placement that runs: consecutive bundles on one role at one setting merged, left to
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


@dataclass(frozen=True)
class Prediction:
    """A placement's predicted latency: the whole, and each role's compute part."""

    latency_s: float
    edge_compute_s: float
    cloud_compute_s: float


def predict_one(table: CostTable, roles: Sequence[Role], link: Link,
                placement: Sequence[Assignment]) -> Prediction:
    ev = evaluate(table, roles, link, placement)
    per_role = [0.0, 0.0]
    for a in placement:
        per_role[a.role] += table.cost(roles[a.role].device, a.setting, a.start, a.end).latency_s
    return Prediction(ev.latency_s, per_role[EDGE], per_role[CLOUD])


def predict(
    table: CostTable, roles: Sequence[Role], link: Link, placement: Sequence[Assignment]
) -> tuple[Prediction | None, Prediction | None]:
    """(bundle prediction, layer-sum prediction) from the profile; None where a cost is missing."""
    out: list[Prediction | None] = []
    for p in (list(placement), layer_sum_placement(placement)):
        try:
            out.append(predict_one(table, roles, link, p))
        except DimeError as e:
            log.warning("no prediction for %s: %s", format_placement(table.layer_names, placement), e)
            out.append(None)
    return out[0], out[1]


def run_config(label: str, placement: tuple[Assignment, ...], link: Link, bundle: Prediction | None,
               layers: Prediction | None, solver_latency_s: float | None = None,
               planned: tuple[Assignment, ...] = ()) -> RunConfig:
    """A RunConfig with the predictions' parts filled in."""
    return RunConfig(
        label, placement, link,
        pred_bundle_s=bundle.latency_s if bundle else None,
        pred_layersum_s=layers.latency_s if layers else None,
        solver_latency_s=solver_latency_s,
        pred_bundle_edge_s=bundle.edge_compute_s if bundle else None,
        pred_bundle_cloud_s=bundle.cloud_compute_s if bundle else None,
        pred_layersum_edge_s=layers.edge_compute_s if layers else None,
        pred_layersum_cloud_s=layers.cloud_compute_s if layers else None,
        planned=tuple(planned) if tuple(planned) != tuple(placement) else (),
    )


def merged_config(label: str, placement: tuple[Assignment, ...], link: Link, table: CostTable,
                  roles: Sequence[Role], max_bundle: int | None = None,
                  solver_latency_s: float | None = None) -> RunConfig:
    """The config that runs `placement` with its mergeable runs merged, predicted from the table."""
    runs = merge_runs(placement, profiled_in(table, roles, max_bundle))
    if runs != tuple(placement):
        log.info("%s over %s: runs %s as %s (same-setting bundles whose union is profiled, merged)", label,
                 link.name, format_placement(table.layer_names, placement), format_placement(table.layer_names, runs))
    bundle, layers = predict(table, roles, link, runs)
    return run_config(label, runs, link, bundle, layers, solver_latency_s, tuple(placement))


@dataclass(frozen=True)
class _Candidate:
    """A placement to run, before it is paired with each link."""

    label: str
    placement: tuple[Assignment, ...]
    devices: tuple[str, str]  # profiled (edge, cloud) device names, "" when unknown
    solver_latency_s: float | None = None
    bundle_costs_s: tuple[float, ...] | None = None  # as written in a solution file


def _solution_candidate(path: Path, label: str, model: "SplitModel", edge_device: str | None) -> _Candidate:
    data = read_solution(path)
    check_solution_model(data, str(path), model.name, model.layer_names, model.cut_bytes)
    placement = parse_solution(data, model.layer_names, str(path), edge_device)
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


def read_plan(path: Path) -> Plan:
    try:
        return Plan.from_json(path.read_text(), str(path))
    except FileNotFoundError:
        raise UsageError(f"plan file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"plan {path}: {e}") from None


def check_plan_options(opts: PlanOptions) -> None:
    """What can be checked without the model: one source of placements, readable files."""
    if opts.plan is not None:
        if opts.solutions or opts.split:
            raise UsageError("--plan replaces --solution and --split; give one or the other")
        read_plan(opts.plan)
    elif not opts.solutions and not opts.split:
        raise UsageError("give a placement: --solution JSON, --split LIST or --plan JSON")
    for path in opts.solutions:
        read_solution(path)
    for path in opts.profiles:
        if not Path(path).is_file():
            raise UsageError(f"profile file not found: {path}")


def build_plan(opts: PlanOptions, model: "SplitModel") -> Plan:
    """The edge's plan: the --plan file, or the solutions and splits over every link."""
    if opts.plan is not None:
        check_plan_options(opts)
        plan = read_plan(opts.plan)
        plan.check_model(model)
        return plan
    check_plan_options(opts)
    table = _profile_table(opts, model)
    edge_dev, cloud_dev = opts.edge_device or "", opts.cloud_device or ""
    cands = [
        _solution_candidate(path, "solver" if len(opts.solutions) == 1 else f"solver:{path.stem}", model,
                            opts.edge_device)
        for path in opts.solutions
    ]
    if opts.split:
        split_cands, edge_dev, cloud_dev = _split_candidates(opts, model.layer_names, table, edge_dev, cloud_dev)
        cands += split_cands
    configs = [_config(c, link, table, model.cut_bytes, edge_dev, cloud_dev) for link in opts.links for c in cands]
    edge_dev = edge_dev or next((c.devices[EDGE] for c in cands if c.devices[EDGE]), "")
    cloud_dev = cloud_dev or next((c.devices[CLOUD] for c in cands if c.devices[CLOUD]), "")
    return Plan(model.name, tuple(model.layer_names), tuple(model.cut_bytes), tuple(configs), edge_dev, cloud_dev)


def _profile_table(opts: PlanOptions, model: "SplitModel") -> CostTable | None:
    if not opts.profiles:
        return None
    from dime.profiling.reader import load_profiles  # pandas: only when planning

    table = load_profiles(list(opts.profiles), model=model.name)
    if tuple(table.layer_names) != tuple(model.layer_names):
        raise UsageError(f"the profile's layers {','.join(table.layer_names)} are not the model's "
                         f"{','.join(model.layer_names)}")
    return table


def _split_candidates(opts: PlanOptions, names: Sequence[str], table: CostTable | None, edge_dev: str,
                      cloud_dev: str) -> tuple[list[_Candidate], str, str]:
    """The --split placements, each side in bundles no longer than profiled; the devices they run as."""
    n = len(names)
    edge_set, cloud_set = opts.edge_setting or "", opts.cloud_setting or ""
    max_bundle = None
    if table is not None:
        from dime.profiling.reader import common_max_bundle, make_role

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
    assert opts.split is not None
    cands = [_Candidate(split_label(names, k), split_placement(n, k, edge_set, cloud_set, max_bundle),
                        (edge_dev, cloud_dev)) for k in parse_splits(opts.split, n, names)]
    return cands, edge_dev, cloud_dev


def _config(c: _Candidate, link: Link, table: CostTable | None, cut_bytes: Sequence[int], edge_dev: str,
            cloud_dev: str) -> RunConfig:
    """One candidate over one link, with its predictions: from the profile, else from the solution file."""
    bundle = layers = None
    ed, cd = c.devices[EDGE] or edge_dev, c.devices[CLOUD] or cloud_dev
    # a side without bundles costs nothing: any profiled device stands in for it
    if not any(a.role == CLOUD for a in c.placement):
        cd = cd or ed
    if not any(a.role == EDGE for a in c.placement):
        ed = ed or cd
    if table is not None and ed and cd:
        from dime.profiling.reader import make_role

        roles = (make_role(table, ed, {a.setting for a in c.placement if a.role == EDGE} or None),
                 make_role(table, cd, {a.setting for a in c.placement if a.role == CLOUD} or None))
        cfg = merged_config(c.label, c.placement, link, table, roles, solver_latency_s=c.solver_latency_s)
        if c.solver_latency_s is not None and cfg.pred_bundle_s is not None and not cfg.planned and \
                abs(cfg.pred_bundle_s - c.solver_latency_s) > 0.01 * c.solver_latency_s:
            log.warning("%s over %s: predicted %.4g s, the solution says %.4g s (solved for another link?)",
                        c.label, link.name, cfg.pred_bundle_s, c.solver_latency_s)
        return cfg if cfg.pred_bundle_s is not None else dataclasses.replace(cfg, pred_bundle_s=c.solver_latency_s)
    if c.bundle_costs_s is not None:
        parts = [0.0, 0.0]
        for a, cost in zip(c.placement, c.bundle_costs_s):
            parts[a.role] += cost
        bundle = Prediction(sum(parts) + comm_latency_s(cut_bytes, link, c.placement), parts[EDGE], parts[CLOUD])
    cfg = run_config(c.label, c.placement, link, bundle, layers, c.solver_latency_s)
    return cfg if bundle else dataclasses.replace(cfg, pred_bundle_s=c.solver_latency_s)


def precheck_edge(opts: RunOptions, model_name: str | None = None) -> None:
    """The edge's options that can be checked without torch or the model, so that a typo
    fails at once instead of after model loading or at the peer."""
    from dime.run.measure import resolve_driver

    resolve_driver(opts.driver)
    check_plan_options(opts.plan)
    for path in opts.plan.solutions:
        check_solution_model(read_solution(path), str(path), model_name)
    if opts.images is not None and not opts.images.is_dir():
        raise UsageError(f"image folder not found: {opts.images}")
    for flag, path in (("--out", opts.out), ("--outputs", opts.outputs)):
        if path is not None and path.is_dir():
            raise UsageError(f"{flag} {path} is a folder")
