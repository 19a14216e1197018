"""Where the source's placements come from: solution files, single splits, or a plan file
(no torch). The result is always a Plan (dime.run.plan).

Two devices: `--solution`/`--split` over each `--link` (edge = the source, cloud), with
predictions from `--profile`. N devices: `--system sys.toml` gives the devices, the network and
the profiles, and `--solution` the placements (from `dime.solve --system ... --json`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from dime.core.costs import CLOUD, EDGE, ROLE_NAMES, Assignment, CostTable, Role, check_chain, memory_use
from dime.core.network import Network
from dime.errors import UsageError
from dime.fileio import check_output_path
from dime.run.options import PlanOptions, RunOptions
from dime.run.plan import DeviceInfo, Plan, RunConfig, from_file_costs, merged_config, routes_of

if TYPE_CHECKING:
    from dime.plan.problem import PlacementProblem

log = logging.getLogger("dime.run")


# ---- single splits -------------------------------------------------------------------
def split_placement(
    n_layers: int, k: int, edge_setting: str, cloud_setting: str, max_bundle: int | None = None,
    edge: int = EDGE, cloud: int = CLOUD,
) -> tuple[Assignment, ...]:
    """Layers 0..k on `edge`, k+1..n-1 on `cloud` (k = -1: all cloud, n-1: all edge), each side
    cut into bundles of at most max_bundle layers (default: one bundle)."""
    if not -1 <= k < n_layers:
        raise UsageError(f"split {k} out of range -1..{n_layers - 1}")
    step = max_bundle or n_layers
    out: list[Assignment] = []
    for lo, hi, dev, setting in ((0, k, edge, edge_setting), (k + 1, n_layers - 1, cloud, cloud_setting)):
        s = lo
        while s <= hi:
            e = min(hi, s + step - 1)
            out.append(Assignment(s, e, dev, setting))
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
            out.append(list(layer_names).index(item))
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


# ---- N devices: the alternatives to the solver's placements -------------------------
def alternative_placements(problem: PlacementProblem, splits: Sequence[int]) -> list[tuple[str, tuple[Assignment, ...]]]:
    """(label, placement) of what `dime.validate --system` runs beside the solver's placements:
    `source-only`; `<device>-only` for every other device that computes (the input sent there,
    the output back); for every inner split k of `splits` (0 <= k < n-1) and every such device,
    `split@<layer k>-><device>` (layers 0..k on the source, the rest there). Each device at its
    first setting, in bundles of at most the problem's K; relays never compute. A placement that
    breaks the system's memory limits, private layers or pins is left out, with a log line."""
    table, roles, src, k = problem.table, problem.roles, problem.source, problem.k
    n, first = table.n_layers, [r.settings[0] if r.compute else "" for r in roles]
    others = [d for d, r in enumerate(roles) if r.compute and d != src]
    out = [("source-only", split_placement(n, n - 1, first[src], first[src], k, src, src))]
    out += [(f"{roles[d].name}-only", split_placement(n, -1, first[src], first[d], k, src, d)) for d in others]
    out += [(f"split@{table.layer_names[s]}->{roles[d].name}", split_placement(n, s, first[src], first[d], k, src, d))
            for s in splits if 0 <= s < n - 1 for d in others]
    return [(label, p) for label, p in out if _runs_on(problem, label, p)]


def _runs_on(problem: PlacementProblem, label: str, placement: Sequence[Assignment]) -> bool:
    """Whether the system allows the placement: private layers, pins and memory."""
    bad = next((a for a in placement if not problem.allowed(a.start, a.end, a.role)), None)
    if bad is not None:
        log.info("%s: skipped, layer %s may not run on %s (private layers or pins)", label,
                 problem.table.layer_names[bad.start], problem.roles[bad.role].name)
        return False
    for r, role in enumerate(problem.roles):
        if role.memory_bytes is not None and memory_use(problem.table, placement, r) > role.memory_bytes:
            log.info("%s: skipped, does not fit the memory of %s (%d bytes)", label, role.name, role.memory_bytes)
            return False
    return True


# ---- solution files ------------------------------------------------------------------
def parse_solution(
    data: dict[str, Any], layer_names: Sequence[str], where: str, edge_device: str | None = None,
    device_names: Sequence[str] = ROLE_NAMES,
) -> tuple[Assignment, ...]:
    """The placement of a `python -m dime.solve --json` file; each entry's `role` names one of
    `device_names` (edge/cloud for two devices, the system's device names for N)."""
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
            if edge_device is None or tuple(device_names) != ROLE_NAMES:
                raise UsageError(f"{where}: placement entry {i} has no role; give --edge-device NAME to map devices")
            role_name = "edge" if e.get("device") == edge_device else "cloud"
        if role_name not in device_names:
            raise UsageError(f"{where}: placement entry {i}: {role_name!r} is not one of the devices "
                             f"({', '.join(device_names)})")
        out.append(Assignment(index[e["start"]], index[e["end"]], list(device_names).index(role_name),
                              str(e["setting"])))
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


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of the loaded model: its name, layers and cut sizes."""

    name: str
    layer_names: tuple[str, ...]
    cut_bytes: tuple[int, ...]


@dataclass(frozen=True)
class _Candidate:
    """A placement to run, before it is paired with each network."""

    label: str
    placement: tuple[Assignment, ...]
    devices: tuple[str, ...] = ()  # profiled device of each device index, "" when unknown (two devices)
    solver_latency_s: float | None = None
    solver_throughput_fps: float | None = None
    bundle_costs_s: tuple[float, ...] | None = None  # as written in a solution file


def _solution_candidate(path: Path, label: str, model: ModelShape, edge_device: str | None,
                        device_names: Sequence[str]) -> _Candidate:
    data = read_solution(path)
    check_solution_model(data, str(path), model.name, model.layer_names, model.cut_bytes)
    placement = parse_solution(data, model.layer_names, str(path), edge_device, device_names)
    devices = [""] * len(device_names)
    for a, e in zip(placement, data["placement"]):
        devices[a.role] = devices[a.role] or str(e.get("device", ""))
    costs = [_number(e.get("latency_s")) for e in data["placement"]]
    return _Candidate(label, placement, tuple(devices), _number(data.get("latency_s")),
                      _number(data.get("throughput_fps")),
                      tuple(c for c in costs if c is not None) if None not in costs else None)


def _solution_label(paths: Sequence[Path], path: Path) -> str:
    return "solver" if len(paths) == 1 else f"solver:{path.stem}"


# ---- plans ------------------------------------------------------------------------------
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
        if opts.solutions or opts.split or opts.system:
            raise UsageError("--plan replaces --solution, --split and --system; give one or the other")
        read_plan(opts.plan)
    elif opts.system is not None:
        if opts.split:
            raise UsageError("--split is for two devices; with --system give --solution (from dime.solve --system)")
        if not opts.solutions:
            raise UsageError("--system needs a placement: --solution JSON (from python -m dime.solve --system ... --json)")
    elif not opts.solutions and not opts.split:
        raise UsageError("give a placement: --solution JSON, --split LIST or --plan JSON")
    for path in opts.solutions:
        read_solution(path)
    for path in opts.profiles:
        if not Path(path).is_file():
            raise UsageError(f"profile file not found: {path}")


def build_plan(opts: PlanOptions, model: ModelShape) -> Plan:
    """The source's plan: the --plan file, the --system's solutions, or the two-device
    solutions and splits over every link."""
    check_plan_options(opts)
    if opts.plan is not None:
        plan = read_plan(opts.plan)
        plan.check_model(model.name, model.layer_names, model.cut_bytes)
        return plan
    if opts.system is not None:
        return _system_plan(opts, model)
    return _two_device_plan(opts, model)


def _system_plan(opts: PlanOptions, model: ModelShape) -> Plan:
    from dime.plan.system import build_problem, load_system  # pandas: only when planning

    assert opts.system is not None
    system = load_system(opts.system)
    problem = build_problem(dataclasses.replace(system, model=model.name))  # the profiles may hold several
    table, roles, net = problem.table, problem.roles, problem.network
    _check_table(table, model)
    names = tuple(d.name for d in system.devices)
    configs = []
    for path in opts.solutions:
        c = _solution_candidate(path, _solution_label(opts.solutions, path), model, None, names)
        relay = next((a for a in c.placement if not roles[a.role].compute), None)
        if relay is not None:
            raise UsageError(f"{path}: places {table.bundle_name(relay.start, relay.end)} on "
                             f"{names[relay.role]}, which only forwards (compute = false in {opts.system})")
        cfg = merged_config(c.label, c.placement, net, table, roles, problem.max_bundle, c.solver_latency_s,
                            c.solver_throughput_fps, network_label=Path(opts.system).stem)
        _warn_if_other(cfg, c)
        configs.append(cfg)
    devices = tuple(DeviceInfo(d.name, d.profile_device) for d in system.devices)
    return Plan(model.name, model.layer_names, model.cut_bytes, tuple(configs), devices, net.source)


def _warn_if_other(cfg: RunConfig, c: _Candidate) -> None:
    if c.solver_latency_s is not None and cfg.pred_bundle_s is not None and not cfg.planned and \
            abs(cfg.pred_bundle_s - c.solver_latency_s) > 0.01 * c.solver_latency_s:
        log.warning("%s over %s: predicted %.4g s, the solution says %.4g s (solved for another network?)",
                    c.label, cfg.network_label, cfg.pred_bundle_s, c.solver_latency_s)


def _check_table(table: CostTable, model: ModelShape) -> None:
    if tuple(table.layer_names) != tuple(model.layer_names):
        raise UsageError(f"the profile's layers {','.join(table.layer_names)} are not the model's "
                         f"{','.join(model.layer_names)}")


def _profile_table(opts: PlanOptions, model: ModelShape) -> CostTable | None:
    if not opts.profiles:
        return None
    from dime.profiling.reader import load_profiles  # pandas: only when planning

    table = load_profiles(list(opts.profiles), model=model.name)
    _check_table(table, model)
    return table


def _two_device_plan(opts: PlanOptions, model: ModelShape) -> Plan:
    table = _profile_table(opts, model)
    edge_dev, cloud_dev = opts.edge_device or "", opts.cloud_device or ""
    cands = [_solution_candidate(path, _solution_label(opts.solutions, path), model, opts.edge_device, ROLE_NAMES)
             for path in opts.solutions]
    if opts.split:
        split_cands, edge_dev, cloud_dev = _split_candidates(opts, model.layer_names, table, edge_dev, cloud_dev)
        cands += split_cands
    configs = [_config(c, Network.two_roles(link), table, model, edge_dev, cloud_dev)
               for link in opts.links for c in cands]
    edge_dev = edge_dev or next((c.devices[EDGE] for c in cands if c.devices[EDGE]), "")
    cloud_dev = cloud_dev or next((c.devices[CLOUD] for c in cands if c.devices[CLOUD]), "")
    return Plan(model.name, model.layer_names, model.cut_bytes, tuple(configs),
                (DeviceInfo(ROLE_NAMES[EDGE], edge_dev), DeviceInfo(ROLE_NAMES[CLOUD], cloud_dev)), EDGE)


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


def _config(c: _Candidate, network: Network, table: CostTable | None, model: ModelShape, edge_dev: str,
            cloud_dev: str) -> RunConfig:
    """One two-device candidate over one link, with its predictions: from the profile, else from
    the solution file."""
    ed, cd = c.devices[EDGE] or edge_dev, c.devices[CLOUD] or cloud_dev
    # a side without bundles costs nothing: any profiled device stands in for it
    if not any(a.role == CLOUD for a in c.placement):
        cd = cd or ed
    if not any(a.role == EDGE for a in c.placement):
        ed = ed or cd
    if table is not None and ed and cd:
        from dime.profiling.reader import make_role

        roles: list[Role] = [
            make_role(table, dev, {a.setting for a in c.placement if a.role == r} or None)
            for r, dev in ((EDGE, ed), (CLOUD, cd))
        ]
        cfg = merged_config(c.label, c.placement, network, table, roles, solver_latency_s=c.solver_latency_s,
                            solver_throughput_fps=c.solver_throughput_fps)
        _warn_if_other(cfg, c)
        return cfg
    bundle = None
    if c.bundle_costs_s is not None:
        bundle = from_file_costs(c.placement, c.bundle_costs_s, network, model.layer_names, model.cut_bytes,
                                 ROLE_NAMES)
    return RunConfig(c.label, c.placement, network, network.links[0].link.name,
                     routes_of(c.placement, network, model.cut_bytes), bundle, None, c.solver_latency_s,
                     c.solver_throughput_fps)


def precheck_source(opts: RunOptions, model_name: str | None = None) -> None:
    """The source's options that can be checked without torch or the model, so that a typo
    fails at once instead of after model loading or at a peer."""
    from dime.run.measure import resolve_driver

    resolve_driver(opts.driver)
    check_plan_options(opts.plan)
    for path in opts.plan.solutions:
        check_solution_model(read_solution(path), str(path), model_name)
    if opts.images is not None and not opts.images.is_dir():
        raise UsageError(f"image folder not found: {opts.images}")
    for flag, path in (("--out", opts.out), ("--outputs", opts.outputs)):
        if path is not None:
            check_output_path(path, flag)


def with_plan_file(opts: RunOptions, plan: Path) -> RunOptions:
    return dataclasses.replace(opts, plan=PlanOptions(plan=plan))
