"""Check the cost model against real split runs: `python -m dime.validate`.

Two devices (`--profile --edge --cloud ...`): for each model and link, the solver's placement
plus every single split point (layers 0..k on the edge, the rest in the cloud, k = -1..n-1).
N devices (`--system sys.toml`): for each model, the solver's placement for each of
`--objectives` (labels `solver:latency`, ...; one run, labels joined, where two agree),
`source-only`, `<device>-only` for every other device that computes, and the single splits
`split@<layer>-><device>` (layers 0..k on the source, the rest on that device) for every k of
`--splits`; relays (compute = false) only forward. Either way every placement is a RunConfig
of dime.run.plan (merge rule, routes and predictions from one place), run for real by
dime.run.local (one process per device, emulated or kernel-shaped links), once per
`--in-flight` value, and measured. Each row gets two predictions from the profiles:

    bundle     the placement's bundle costs + communication (what the solver optimises)
    layer-sum  every bundle's cost replaced by the sum of its single-layer costs, + the
               same communication

and their relative errors against the measured latency, raw and drift-corrected. Before
every placement each device times its whole model as one bundle; the drift-corrected
prediction scales each device's compute part by (whole model timed now / whole model as
profiled at the setting it runs in that placement), so that a machine that got slower
since it was profiled does not count as a cost-model error. A device whose whole model is
not profiled is not corrected. Each error is also given for the compute part alone (the
link model's communication time, which the emulation reproduces almost exactly, taken off
both sides). The summary gives the median errors per model, network, scenario and in-flight
count and, for N devices, one line per placement: latency predicted and measured, and
throughput predicted and measured for every in-flight count, with the speed-up of in_flight=N
over in_flight=1, measured beside predicted.

    python -m dime.validate --profile profiles/*-xeon-2core.csv --links 4g,wifi \\
        --models alexnet,resnet18,mobilenet_v2 --edge xeon-2core --edge-settings threads=1 \\
        --cloud xeon-2core --cloud-settings threads=1 --out results/validate.csv
    python -m dime.validate --system examples/camera-jetson-server-cloud.toml --in-flight 1,4 \\
        --out results/validate-nd.csv --summary results/validate-nd.md
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from dime.cliargs import (
    OneLineParser,
    core_list,
    join_negative_values,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_main,
    setup_logging,
    shape,
)
from dime.core.costs import Assignment, CostTable, Role
from dime.core.links import Link, parse_links
from dime.core.network import Network
from dime.core.placement import format_placement
from dime.errors import InfeasibleError, UsageError
from dime.fileio import atomic_write_text, check_output_path
from dime.plan import PlacementProblem, build_model
from dime.plan.problem import ENERGY, LATENCY, OBJECTIVES, THROUGHPUT
from dime.plan.system import build_problem, load_system
from dime.profiling.reader import (
    load_profiles,
    make_role,
    max_bundle_for,
)
from dime.run.cli import add_process_arguments, process_options
from dime.run.local import SHAPER_CHOICES, run_local
from dime.run.measure import DRIVERS, OFFLINE, SCENARIOS, SINGLE_STREAM, parse_scenarios
from dime.run.options import (
    CLOUD_ROLE,
    EDGE_ROLE,
    LocalOptions,
    ModelSpec,
    PlanOptions,
    ProcessOptions,
    RunOptions,
)
from dime.run.placements import (
    alternative_placements,
    parse_splits,
    split_label,
    split_placement,
)
from dime.run.plan import DeviceInfo, Plan, merged_config
from dime.run.report import add_drift_columns, read_rows, summary_markdown, write_table

log = logging.getLogger("dime.validate")

DEFAULT_OBJECTIVES = (LATENCY, THROUGHPUT)
SYSTEM_SCENARIOS = f"{SINGLE_STREAM},{OFFLINE}"  # the default --scenario with --system
Row = dict[str, Any]


@dataclass(frozen=True)
class ValidateOptions:
    out: Path
    # two devices: profiles, edge and cloud (one setting each), links
    profiles: tuple[str, ...] = ()
    edge_device: str = ""
    cloud_device: str = ""
    edge_setting: str = ""
    cloud_setting: str = ""
    links: tuple[Link, ...] = field(default_factory=lambda: tuple(parse_links("4g,wifi")))
    # N devices: the system file (devices, links, profiles) and the solver's objectives
    system: Path | None = None
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    models: tuple[str, ...] = ()  # with a system: empty = its model (or the profiles' only one)
    splits: str = "all"  # 'all', 'none' or a comma list
    with_solver: bool = True
    solver: str = "auto"
    max_bundle: int | None = None
    run: RunOptions = field(default_factory=RunOptions)  # measurement settings; its plan is filled per model
    in_flight: tuple[int, ...] = (1,)  # one run of each plan per value
    input_shape: tuple[int, ...] | None = None
    cuts: tuple[str, ...] | None = None  # the model flags, as profiled
    inputs: str | None = None
    layers: int | None = None
    capture: str = "auto"
    bundle_sum: bool = False  # solve with DIME's any-partition semantics instead of the merge rule
    processes: tuple[tuple[str, ProcessOptions], ...] = ((EDGE_ROLE, ProcessOptions()), (CLOUD_ROLE, ProcessOptions()))
    timeout_s: float = 30.0
    shaper: str = "auto"
    verbose: int = 0


@dataclass(frozen=True)
class ModelPlan:
    """One model's plan, and the reference of every config's drift factors: each device's whole
    model as profiled, by (config label, network label)."""

    plan: Plan
    whole_profiled: dict[tuple[str, str], dict[str, float | None]]


@dataclass(frozen=True)
class Candidate:
    """A placement to run, before its predictions."""

    label: str
    placement: tuple[Assignment, ...]
    solver_latency_s: float | None = None
    solver_throughput_fps: float | None = None


# ---- plans: two devices -------------------------------------------------------------
def solve_placement(table: CostTable, roles: tuple[Role, Role], link: Link, max_bundle: int,
                    backend: str = "auto", bundle_sum: bool = False) -> tuple[tuple[Assignment, ...], float, str]:
    """The latency-optimal placement: (placement, predicted latency, solver used)."""
    problem = PlacementProblem(table=table, roles=roles, link=link, max_bundle=max_bundle, bundle_sum=bundle_sum)
    sol = build_model(problem).solve(backend)
    return tuple(sol.placement), sol.evaluation.latency_s, sol.solver


def model_plan(table: CostTable, roles: tuple[Role, Role], links: Sequence[Link], splits: Sequence[int],
               with_solver: bool, max_bundle: int | None, backend: str, bundle_sum: bool = False) -> Plan:
    """Every placement to run for one model: the solver's and each single split, per link."""
    n = table.n_layers
    k = max_bundle_for(table, roles, max_bundle)
    edge_set, cloud_set = roles[0].settings[0], roles[1].settings[0]
    configs = []
    for link in links:
        cands: list[Candidate] = []
        if with_solver:
            placement, lat, used = solve_placement(table, roles, link, k, backend, bundle_sum)
            log.info("%s over %s: %s chose %s (%.4g s)", table.model, link.name, used,
                     format_placement(table.layer_names, placement), lat)
            cands.append(Candidate("solver", placement, lat))
        cands += [Candidate(split_label(table.layer_names, s), split_placement(n, s, edge_set, cloud_set, k))
                  for s in splits]
        configs += [merged_config(c.label, c.placement, Network.two_roles(link), table, roles, k, c.solver_latency_s)
                    for c in cands]
    return Plan(table.model, tuple(table.layer_names), tuple(table.cut_bytes), tuple(configs),
                (DeviceInfo("edge", roles[0].device), DeviceInfo("cloud", roles[1].device)), 0)


def _splits(opts: ValidateOptions, table: CostTable) -> list[int]:
    return [] if opts.splits.strip() == "none" else parse_splits(opts.splits, table.n_layers, table.layer_names)


def _two_device_plans(opts: ValidateOptions) -> list[ModelPlan]:
    out = []
    for m in opts.models:
        table = load_profiles(list(opts.profiles), model=m)
        roles = (make_role(table, opts.edge_device, [opts.edge_setting]),
                 make_role(table, opts.cloud_device, [opts.cloud_setting]))
        splits = _splits(opts, table)
        if not opts.with_solver and not splits:
            raise UsageError("nothing to run: --no-solver and --splits none")
        plan = model_plan(table, roles, opts.links, splits, opts.with_solver, opts.max_bundle, opts.solver,
                          opts.bundle_sum)
        out.append(ModelPlan(plan, profiled_whole(table, roles, plan)))
    return out


# ---- plans: N devices ----------------------------------------------------------------
def has_energy(problem: PlacementProblem) -> bool:
    """Whether every bundle (up to K layers) of every computing device's settings has a profiled energy."""
    wanted = {(r.device, t) for r in problem.roles if r.compute for t in r.settings}
    return all(c.energy_j is not None for (dev, t, s, e), c in problem.table.costs.items()
               if (dev, t) in wanted and e - s < problem.k)


def solver_candidates(problem: PlacementProblem, objectives: Sequence[str], backend: str = "auto") -> list[Candidate]:
    """The solver's placement for each objective, under the problem's budgets: `solver:<objective>`,
    one candidate (labels joined by '+') where two objectives agree. An objective without the energy
    it needs, or whose solve is infeasible, is skipped with a log line."""
    model = build_model(problem)
    found: dict[tuple[Assignment, ...], Candidate] = {}
    for obj in objectives:
        if obj == ENERGY and not has_energy(problem):
            log.info("%s: solver:%s skipped: not every computing device's profile has energy", problem.table.model, obj)
            continue
        try:
            sol = model.with_budgets(objective=obj).solve(backend)
        except InfeasibleError as e:
            log.info("%s: solver:%s skipped: %s", problem.table.model, obj, e)
            continue
        ev, key = sol.evaluation, tuple(sol.placement)
        log.info("%s: %s for %s chose %s (%.4g s, period %.4g s)", problem.table.model, sol.solver, obj,
                 format_placement(problem.table.layer_names, key, [r.name for r in problem.roles]),
                 ev.latency_s, ev.period_s)
        if key in found:
            found[key] = dataclasses.replace(found[key], label=f"{found[key].label}+{obj}")
        else:
            fps = 1.0 / ev.period_s if ev.period_s > 0 and math.isfinite(ev.period_s) else None
            found[key] = Candidate(f"solver:{obj}", key, ev.latency_s, fps)
    return list(found.values())


def system_plan(problem: PlacementProblem, devices: Sequence[DeviceInfo], splits: Sequence[int],
                objectives: Sequence[str] = DEFAULT_OBJECTIVES, with_solver: bool = True, backend: str = "auto",
                network_label: str = "") -> Plan:
    """One model's placements over a system: the solver's for each objective, then
    dime.run.placements.alternative_placements; every one a merged_config of the problem."""
    table = problem.table
    cands = solver_candidates(problem, objectives, backend) if with_solver else []
    cands += [Candidate(label, placement) for label, placement in alternative_placements(problem, splits)]
    configs = tuple(merged_config(c.label, c.placement, problem.network, table, problem.roles, problem.max_bundle,
                                  c.solver_latency_s, c.solver_throughput_fps, network_label=network_label)
                    for c in cands)
    return Plan(table.model, tuple(table.layer_names), tuple(table.cut_bytes), configs, tuple(devices),
                problem.network.source)


def _system_plans(opts: ValidateOptions) -> list[ModelPlan]:
    assert opts.system is not None
    system = load_system(opts.system)
    if opts.max_bundle is not None:
        system = dataclasses.replace(system, max_bundle=opts.max_bundle)
    if opts.bundle_sum:
        system = dataclasses.replace(system, constraints=dataclasses.replace(system.constraints, bundle_sum=True))
    devices = tuple(DeviceInfo(d.name, d.profile_device) for d in system.devices)
    out = []
    for m in opts.models or (system.model,):
        problem = build_problem(dataclasses.replace(system, model=m))  # each model: the profiles' rows of it
        _warn_several_settings(problem)
        plan = system_plan(problem, devices, _splits(opts, problem.table), opts.objectives, opts.with_solver,
                           opts.solver, Path(opts.system).stem)
        if not plan.configs:
            raise UsageError(f"{problem.table.model}: nothing to run on {opts.system}")
        out.append(ModelPlan(plan, profiled_whole(problem.table, problem.roles, plan)))
    return out


def _warn_several_settings(problem: PlacementProblem) -> None:
    """A device process runs one thread count: placements at its other settings are predicted for
    another machine than the one measured (the two-device mode takes one setting per role)."""
    for r in problem.roles:
        if r.compute and len(r.settings) > 1:
            log.warning("%s has settings %s but its process runs one of them (--threads %s=N): list that one in "
                        "the system file's settings for a faithful check", r.name, ", ".join(r.settings), r.name)


def whole_model_s(table: CostTable, device: str, setting: str) -> float | None:
    """The profiled cost of the whole model as one bundle, where it was profiled."""
    c = table.costs.get((device, setting, 0, table.n_layers - 1))
    return c.latency_s if c is not None else None


def _setting_in(placement: Sequence[Assignment], d: int, role: Role) -> str:
    """The setting device d runs most layers at in the placement (its first setting when it runs none)."""
    layers: Counter[str] = Counter()
    for a in placement:
        if a.role == d:
            layers[a.setting] += a.end - a.start + 1
    return layers.most_common(1)[0][0] if layers else role.settings[0]


def profiled_whole(table: CostTable, roles: Sequence[Role], plan: Plan) -> dict[tuple[str, str], dict[str, float | None]]:
    """For every config, each device that computes in the plan (the ones whose whole model is
    timed before each placement): its whole model as profiled, at the setting it runs in that config."""
    used = plan.computing_devices()
    return {(c.label, c.network_label): {plan.device_names[d]: whole_model_s(
        table, roles[d].device, _setting_in(c.placement, d, roles[d])) for d in used} for c in plan.configs}


def plans_for(opts: ValidateOptions) -> list[ModelPlan]:
    """Every model's placements and predictions, with each config's profiled whole models:
    all first, so that bad profiles fail before any run."""
    return _system_plans(opts) if opts.system is not None else _two_device_plans(opts)


# ---- the run ----------------------------------------------------------------------------
def in_flight_runs(scenarios: Sequence[str], in_flight: Sequence[int]) -> list[tuple[int, tuple[str, ...]]]:
    """(in flight, scenarios) of each run of a plan: one per in-flight count, smallest first;
    single-stream (one query at a time, whatever the count) in the first only."""
    out = []
    for i, n in enumerate(sorted(set(in_flight))):
        runs = tuple(sc for sc in scenarios if i == 0 or sc != SINGLE_STREAM)
        if runs:
            out.append((n, runs))
        else:
            log.info("in flight %d: nothing to run (single-stream runs one query at a time)", n)
    return out


def run_model_plan(opts: ValidateOptions, mp: ModelPlan, tmp: Path) -> list[Row]:
    """Run one model's plan once per in-flight count, all devices on this machine; the rows
    with their validation columns."""
    plan = mp.plan
    tmp.mkdir()
    plan_path = tmp / "plan.json"
    atomic_write_text(plan_path, plan.to_json())
    spec = ModelSpec(plan.model, cuts=opts.cuts, input_shape=opts.input_shape, inputs=opts.inputs,
                     layers=opts.layers, capture=opts.capture)
    got: list[Row] = []
    for i, (n, scenarios) in enumerate(in_flight_runs(opts.run.scenarios, opts.in_flight)):
        log.info("%s: running %d placement(s), %d in flight", plan.model, len(plan.configs), n)
        out = tmp / f"rows-{i}.csv"
        run = dataclasses.replace(opts.run, plan=PlanOptions(plan=plan_path), out=out, verify=True, in_flight=n,
                                  scenarios=scenarios)
        run_local(LocalOptions(spec, run, opts.processes, plan.device_names[plan.source], timeout_s=opts.timeout_s,
                               shaper=opts.shaper, verbose=opts.verbose))
        for r in read_rows(out):
            row: Row = dict(r)
            add_drift_columns(row, mp.whole_profiled[(row["config"], row["link"])])
            got.append(row)
    return got


def validate(opts: ValidateOptions, on_model: Callable[[str, list[Row]], None] | None = None) -> list[Row]:
    """Run every model's plan and return the rows with their validation columns; the table
    at opts.out is rewritten after every model, so that a later failure keeps what was measured."""
    check_output_path(opts.out, "--out")
    plans = plans_for(opts)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dime-validate-") as tmp:
        for i, mp in enumerate(plans):
            got = run_model_plan(opts, mp, Path(tmp) / f"model-{i}")
            rows.extend(got)
            write_table(opts.out, rows)
            if on_model is not None:
                on_model(mp.plan.model, got)
    return rows


# ---- CLI ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m dime.validate",
        description="Run the solver's placements and the single splits for real (one local process per device, "
                    "emulated or kernel-shaped links) and compare measured latency and throughput with the bundle "
                    "and layer-sum predictions, raw and corrected for each machine's drift since it was profiled. "
                    "Two devices: --profile, --edge, --cloud and their settings; N devices: --system.",
    )
    p.add_argument("--system", type=Path, metavar="TOML",
                   help="N devices: a system file (devices, links, profiles); replaces --profile, --edge, --cloud, "
                        "--edge-settings, --cloud-settings and --links")
    p.add_argument("--profile", action="extend", nargs="+", default=[], metavar="CSV", help="profile CSV files")
    p.add_argument("--models", help="comma list of models (as profiled; with --system default its model)")
    p.add_argument("--links", help="comma list of presets or UP/DOWN[/RTT] (default 4g,wifi)")
    p.add_argument("--edge", metavar="DEV", help="profiled edge device")
    p.add_argument("--cloud", metavar="DEV", help="profiled cloud device")
    p.add_argument("--edge-settings", metavar="S", help="the edge's setting (one)")
    p.add_argument("--cloud-settings", metavar="S", help="the cloud's setting (one)")
    p.add_argument("--objectives", metavar="LIST",
                   help=f"--system: the solver's placement for each of these ({', '.join(OBJECTIVES)}; default "
                        f"{','.join(DEFAULT_OBJECTIVES)}; energy only where every computing device has energy)")
    p.add_argument("--splits", default="all",
                   help="'all', 'none' or a comma list of split points (layer names or indices; default all)")
    p.add_argument("--no-solver", action="store_true", help="skip the solver's placements")
    p.add_argument("--solver", default="auto", help="solver backend (default auto)")
    p.add_argument("--max-bundle", type=positive_int, help="longest bundle (default: largest profiled)")
    p.add_argument("--scenario", metavar="LIST",
                   help=f"comma list of {', '.join(SCENARIOS)} (default {SINGLE_STREAM}; with --system "
                        f"{SYSTEM_SCENARIOS})")
    p.add_argument("--in-flight", type=in_flight_list, default=(1,), metavar="LIST",
                   help="comma list of how many queries are in the chain at once (server, offline): one run of "
                        "every placement per value, e.g. 1,4 (default 1)")
    p.add_argument("--min-query-count", type=positive_int, default=16, help="queries per placement (default 16)")
    p.add_argument("--min-duration-s", type=non_negative_float, default=0.0)
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed queries per placement (default 2)")
    p.add_argument("--reference-runs", type=non_negative_int, default=10, metavar="N",
                   help="time each device's whole model N times before every placement, for the drift "
                        "correction (0: none; default 10)")
    p.add_argument("--probe-s", type=non_negative_float, default=0.2,
                   help="emulated seconds per link probe transfer (0: no probe; default 0.2)")
    p.add_argument("--driver", choices=DRIVERS, default="auto")
    p.add_argument("--images", type=Path, help="folder of images (default: generated images)")
    p.add_argument("--count", type=positive_int, default=8, help="number of sample inputs (default 8)")
    p.add_argument("--input-shape", type=shape, metavar="N,C,H,W", help="input shape (as profiled)")
    p.add_argument("--cuts", help="comma list of module/node names to cut after (as profiled)")
    p.add_argument("--inputs", metavar="SPEC", help="model inputs as name:dtype:shape, comma-separated (as profiled)")
    p.add_argument("--layers", type=positive_int, metavar="N", help="about N layers (as profiled)")
    p.add_argument("--capture", choices=["auto", "fx", "export"], default="auto", help="graph capture (as profiled)")
    p.add_argument("--bundle-sum", action="store_true",
                   help="solve with DIME's semantics (any partition, costs summed) instead of the merge rule")
    p.add_argument("--edge-threads", type=positive_int, default=1)
    p.add_argument("--cloud-threads", type=positive_int, default=1)
    p.add_argument("--edge-cores", type=core_list, metavar="LIST")
    p.add_argument("--cloud-cores", type=core_list, metavar="LIST")
    p.add_argument("--edge-torch-device", default="cpu", metavar="DEV", help="the edge's torch device (default cpu)")
    p.add_argument("--cloud-torch-device", default="cpu", metavar="DEV",
                   help="the cloud's torch device: cpu, cuda or cuda:N (default cpu)")
    add_process_arguments(p)
    p.add_argument("--timeout-s", type=positive_float, default=30.0)
    p.add_argument("--shaper", choices=SHAPER_CHOICES, default="auto",
                   help="links shaped by the kernel (netns, as root) or emulated in user space (user); "
                        "auto: netns where possible (default)")
    p.add_argument("--out", type=Path, required=True, metavar="CSV", help="result table (overwritten)")
    p.add_argument("--summary", type=Path, metavar="MD", help="also write the markdown summary here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def in_flight_list(text: str) -> tuple[int, ...]:
    """`1,4`: in-flight counts, each >= 1."""
    items = [positive_int(s.strip()) for s in text.split(",") if s.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"give a comma list of counts >= 1, got {text!r}")
    return tuple(dict.fromkeys(items))


def _one(text: str, flag: str) -> str:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if len(items) != 1:
        raise UsageError(f"{flag}: a run uses one setting per role, got {text!r}")
    return items[0]


def _names(text: str | None, flag: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(s.strip() for s in (text or "").split(",") if s.strip()))
    if text is not None and not items:
        raise UsageError(f"{flag}: empty list")
    return items


_TWO_DEVICE_FLAGS = (("profile", "--profile"), ("models", "--models"), ("edge", "--edge"), ("cloud", "--cloud"),
                     ("edge_settings", "--edge-settings"), ("cloud_settings", "--cloud-settings"))


def _with_mode(opts: ValidateOptions, args: argparse.Namespace) -> ValidateOptions:
    """The options of the mode: a system file, or the two-device flags (all of them)."""
    if args.system is not None:
        given = [flag for attr, flag in _TWO_DEVICE_FLAGS + (("links", "--links"),)
                 if attr != "models" and getattr(args, attr)]
        if given:
            raise UsageError(f"--system and {given[0]} do not go together: the system file gives the devices, "
                             "their profiles and the links")
        system = load_system(args.system)
        objectives = _names(args.objectives, "--objectives") or DEFAULT_OBJECTIVES
        bad = [o for o in objectives if o not in OBJECTIVES]
        if bad:
            raise UsageError(f"--objectives: {bad[0]!r} is not one of {', '.join(OBJECTIVES)}")
        return dataclasses.replace(opts, system=args.system, objectives=objectives,
                                   processes=process_options(args, [d.name for d in system.devices]))
    missing = [flag for attr, flag in _TWO_DEVICE_FLAGS if not getattr(args, attr)]
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)} (or --system FILE)")
    if args.objectives is not None:
        raise UsageError("--objectives needs --system (two devices: the solver's latency placement)")
    return dataclasses.replace(
        opts, profiles=tuple(args.profile), edge_device=args.edge, cloud_device=args.cloud,
        edge_setting=_one(args.edge_settings, "--edge-settings"),
        cloud_setting=_one(args.cloud_settings, "--cloud-settings"), links=tuple(parse_links(args.links or "4g,wifi")),
        processes=process_options(args, [EDGE_ROLE, CLOUD_ROLE]))


def validate_options(args: argparse.Namespace) -> ValidateOptions:
    scenarios = args.scenario or (SYSTEM_SCENARIOS if args.system is not None else SINGLE_STREAM)
    opts = ValidateOptions(
        out=args.out, models=_names(args.models, "--models"), splits=args.splits, with_solver=not args.no_solver,
        solver=args.solver, max_bundle=args.max_bundle, in_flight=args.in_flight,
        run=RunOptions(scenarios=parse_scenarios(scenarios), min_query_count=args.min_query_count,
                       min_duration_s=args.min_duration_s, warmup=args.warmup, reference_runs=args.reference_runs,
                       driver=args.driver, images=args.images, count=args.count, probe_s=args.probe_s),
        input_shape=args.input_shape,
        cuts=tuple(c.strip() for c in args.cuts.split(",") if c.strip()) if args.cuts else None,
        inputs=args.inputs, layers=args.layers, capture=args.capture, bundle_sum=args.bundle_sum,
        timeout_s=args.timeout_s, shaper=args.shaper, verbose=max(0, args.verbose) if not args.quiet else -1,
    )
    return _with_mode(opts, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    setup_logging(args.verbose - (1 if args.quiet else 0))
    opts = validate_options(args)
    if args.summary:
        check_output_path(args.summary, "--summary")  # now, not after the runs
    per_placement = opts.system is not None or len(opts.in_flight) > 1
    rows = validate(opts, lambda model, got: log.info("%s done:\n%s", model, summary_markdown(got, per_placement)))
    summary = summary_markdown(rows, per_placement)
    if args.summary:
        atomic_write_text(args.summary, summary + "\n")
    print(summary)
    print(f"\nwrote {len(rows)} row(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
