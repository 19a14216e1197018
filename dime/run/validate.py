"""Check the cost model against real split runs: `python -m dime.validate`.

For each model and link: the solver's placement plus every single split point (layers
0..k on the edge, the rest in the cloud, k = -1..n-1) are run for real (two local
processes, emulated link) and measured. Each row gets two predictions from the profiles:

    bundle     the placement's bundle costs + communication (what the solver optimises)
    layer-sum  every bundle's cost replaced by the sum of its single-layer costs, + the
               same communication

and their relative errors against the measured latency, raw and drift-corrected. Before
every placement each role times its whole model as one bundle; the drift-corrected
prediction scales each role's compute part by (whole model timed now / whole model as
profiled), so that a machine that got slower since it was profiled does not count as a
cost-model error. A role whose whole model is not profiled is not corrected. Each error
is also given for the compute part alone (the link model's communication time, which the
emulation reproduces almost exactly, taken off both sides).

    python -m dime.validate --profile profiles/*-xeon-2core.csv --links 4g,wifi \\
        --models alexnet,resnet18,mobilenet_v2 --edge xeon-2core --edge-settings threads=1 \\
        --cloud xeon-2core --cloud-settings threads=1 --out results/validate.csv
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import statistics
import sys
import tempfile
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
from dime.errors import UsageError
from dime.fileio import atomic_write_text
from dime.plan import PlacementProblem, build_model
from dime.profiling.reader import (
    load_profiles,
    make_role,
    max_bundle_for,
)
from dime.run.local import SHAPER_CHOICES, run_local
from dime.run.measure import DRIVERS, SCENARIOS, SINGLE_STREAM, parse_scenarios
from dime.run.options import (
    LocalOptions,
    ModelSpec,
    PlanOptions,
    ProcessOptions,
    RunOptions,
)
from dime.run.placements import parse_splits, split_label, split_placement
from dime.run.plan import DeviceInfo, Plan, merged_config
from dime.run.results import RESULT_COLUMNS, map_cell, parse_map, rel_err, rows_csv

log = logging.getLogger("dime.validate")

SEMANTICS = ("bundle", "layersum")
VALIDATE_COLUMNS: tuple[str, ...] = RESULT_COLUMNS + (
    "whole_profiled_s", "drift",
    "pred_bundle_drift_s", "pred_layersum_drift_s", "err_bundle_drift", "err_layersum_drift",
    "err_bundle_compute", "err_layersum_compute", "err_bundle_compute_drift", "err_layersum_compute_drift",
)


@dataclass(frozen=True)
class ValidateOptions:
    profiles: tuple[str, ...]
    models: tuple[str, ...]
    edge_device: str
    cloud_device: str
    edge_setting: str
    cloud_setting: str
    out: Path
    links: tuple[Link, ...] = field(default_factory=lambda: tuple(parse_links("4g,wifi")))
    splits: str = "all"  # 'all', 'none' or a comma list
    with_solver: bool = True
    solver: str = "auto"
    max_bundle: int | None = None
    run: RunOptions = field(default_factory=RunOptions)  # measurement settings; its plan is filled per model
    input_shape: tuple[int, ...] | None = None
    cuts: tuple[str, ...] | None = None  # the model flags, as profiled
    inputs: str | None = None
    layers: int | None = None
    capture: str = "auto"
    bundle_sum: bool = False  # solve with DIME's any-partition semantics instead of the merge rule
    edge: ProcessOptions = field(default_factory=ProcessOptions)
    cloud: ProcessOptions = field(default_factory=ProcessOptions)
    timeout_s: float = 30.0
    shaper: str = "auto"
    verbose: int = 0


# ---- plans --------------------------------------------------------------------------
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
        cands: list[tuple[str, tuple[Assignment, ...], float | None]] = []
        if with_solver:
            placement, lat, used = solve_placement(table, roles, link, k, backend, bundle_sum)
            log.info("%s over %s: %s chose %s (%.4g s)", table.model, link.name, used,
                     format_placement(table.layer_names, placement), lat)
            cands.append(("solver", placement, lat))
        for s in splits:
            cands.append((split_label(table.layer_names, s), split_placement(n, s, edge_set, cloud_set, k), None))
        for label, placement, lat in cands:
            configs.append(merged_config(label, placement, Network.two_roles(link), table, roles, k, lat))
    return Plan(table.model, tuple(table.layer_names), tuple(table.cut_bytes), tuple(configs),
                (DeviceInfo("edge", roles[0].device), DeviceInfo("cloud", roles[1].device)), 0)


def whole_model_s(table: CostTable, device: str, setting: str) -> float | None:
    """The profiled cost of the whole model as one bundle, where it was profiled."""
    c = table.costs.get((device, setting, 0, table.n_layers - 1))
    return c.latency_s if c is not None else None


# ---- errors, raw and drift-corrected ------------------------------------------------
def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def compute_err(row: dict[str, Any], pred: float | None) -> float | None:
    """Relative error of the compute part alone: the link model's communication time
    (`pred_comm_s`) taken off both sides."""
    meas, comm = _num(row.get("measured_s")), _num(row.get("pred_comm_s"))
    if pred is None or meas is None or comm is None or meas - comm <= 0:
        return None
    return (pred - meas) / (meas - comm)


def drift_factor(now_s: Any, profiled_s: Any) -> float | None:
    """How much slower (> 1) or faster a device runs its whole model now than when profiled."""
    now, then = _num(now_s), _num(profiled_s)
    return now / then if now is not None and then else None


def drift_corrected(row: dict[str, Any], sem: str) -> float | None:
    """The `sem` prediction with each device's compute part scaled by its drift factor (a
    device without a factor unscaled)."""
    pred = _num(row.get(f"pred_{sem}_s"))
    if pred is None:
        return None
    drift = parse_map(row.get("drift"))
    for device, part in parse_map(row.get(f"pred_{sem}_compute_s")).items():
        f, p = _num(drift.get(device)), _num(part)
        if p is not None and f is not None:
            pred += p * (f - 1.0)
    return pred


def add_drift_columns(row: dict[str, Any], profiled_s: dict[str, float | None]) -> None:
    """The validation columns of one measured row, in place; `profiled_s`: each device's whole
    model as profiled (at the setting it runs in this placement)."""
    before = parse_map(row.get("whole_before_s"))
    row["whole_profiled_s"] = map_cell(profiled_s)
    row["drift"] = map_cell({d: drift_factor(before.get(d), p) for d, p in profiled_s.items()})
    meas = _num(row.get("measured_s"))
    for sem in SEMANTICS:
        raw, corrected = _num(row.get(f"pred_{sem}_s")), drift_corrected(row, sem)
        row[f"pred_{sem}_drift_s"] = corrected
        row[f"err_{sem}_drift"] = rel_err(corrected, meas)
        row[f"err_{sem}_compute"] = compute_err(row, raw)
        row[f"err_{sem}_compute_drift"] = compute_err(row, corrected)


# ---- summary --------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _median(rows: Sequence[dict[str, Any]], col: str, f: Callable[[float], float] = abs) -> float | None:
    vals = [f(x) for x in (_num(r.get(col)) for r in rows) if x is not None]
    return statistics.median(vals) if vals else None


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v * 100:+.1f}%" if signed else f"{v * 100:.1f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def _pair(rows: Sequence[dict[str, Any]], col: str) -> str:
    """median |error|: raw / drift-corrected."""
    return f"{_pct(_median(rows, col))} / {_pct(_median(rows, col + '_drift'))}"


def _bundle_closer(rows: Sequence[dict[str, Any]]) -> str:
    """In how many rows the bundle prediction is closer to the measurement than the layer sum."""
    pairs = [(_num(r.get("err_bundle")), _num(r.get("err_layersum"))) for r in rows]
    pairs = [(b, s) for b, s in pairs if b is not None and s is not None]
    if not pairs:
        return "-"
    return f"{sum(abs(b) < abs(s) for b, s in pairs)}/{len(pairs)}"


def _whole(rows: Sequence[dict[str, Any]]) -> str:
    """Each device's whole model: profiled / timed before the placements (range) / at the end."""
    parts = []
    for device, profiled in parse_map(rows[0].get("whole_profiled_s")).items():
        before = [v for v in (_num(parse_map(r.get("whole_before_s")).get(device)) for r in rows) if v is not None]
        span = "-" if not before else _ms(min(before)) if min(before) == max(before) \
            else f"{_ms(min(before))}-{_ms(max(before))}"
        end = _num(parse_map(rows[-1].get("whole_end_s")).get(device))
        parts.append(f"{device} {_ms(_num(profiled))} / {span} / {_ms(end)}")
    return "; ".join(parts) or "-"


def _short_placement(text: str) -> str:
    """`a,b+c@edge/t | d..f@cloud/t` -> `a..c edge (2 bundles), d..f cloud`: one run per role,
    and no '|' (a markdown cell)."""
    runs: list[list[Any]] = []  # [first, last, role, bundles]
    for group in text.split(" | "):
        bundles, _, where = group.rpartition("@")
        role = where.split("/")[0]
        parts = bundles.split(",")
        first = parts[0].replace("..", "+").split("+")[0]
        last = parts[-1].replace("..", "+").split("+")[-1]
        if runs and runs[-1][2] == role:
            runs[-1][1] = last
            runs[-1][3] += len(parts)
        else:
            runs.append([first, last, role, len(parts)])
    out = []
    for first, last, role, n in runs:
        span = first if first == last else f"{first}..{last}"
        out.append(f"{span} {role}" + (f" ({n} bundles)" if n != 1 else ""))
    return ", ".join(out)


def _explained(raw: float | None, corrected: float | None) -> str:
    if raw is None or corrected is None or raw == 0:
        return "-"
    return f"{(raw - corrected) / raw * 100:.0f}%"


def summary_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Median |prediction error| per model and link, raw / drift-corrected, and how the
    solver's choice fared; then how much of the error the machines' drift explains."""
    lines = [
        "| model | link | scenario | placements | bundle | layer-sum | compute only: bundle "
        "| compute only: layer-sum | bundle closer | solver's placement | solver pred (ms) | measured (ms) "
        "| solver err | best measured (ms) | whole model (ms) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["link"], r["scenario"]), []).append(r)
    for (model, link, scenario), rs in groups.items():
        solver = next((r for r in rs if r["config"] == "solver"), None)
        measured = [(_num(r["measured_s"]), r) for r in rs]
        best = min((m for m, _ in measured if m is not None), default=None)
        best_label = next((r["config"] for m, r in measured if m == best), "")
        sol = [solver] if solver else []
        lines.append(
            f"| {model} | {link} | {scenario} | {len(rs)} | {_pair(rs, 'err_bundle')} | {_pair(rs, 'err_layersum')} "
            f"| {_pair(rs, 'err_bundle_compute')} | {_pair(rs, 'err_layersum_compute')} | {_bundle_closer(rs)} "
            f"| {_short_placement(solver['placement']) if solver else '-'} "
            f"| {_ms(_num(solver['pred_bundle_s'])) if solver else '-'} "
            f"| {_ms(_num(solver['measured_s'])) if solver else '-'} "
            f"| {_pct(_median(sol, 'err_bundle', float), True)} / {_pct(_median(sol, 'err_bundle_drift', float), True)} "
            f"| {_ms(best)} ({best_label}) | {_whole(rs)} |"
        )
    solvers = [r for r in rows if r["config"] == "solver"]
    lines.append(
        f"| **all** | | | {len(rows)} | **{_pair(rows, 'err_bundle')}** | **{_pair(rows, 'err_layersum')}** "
        f"| **{_pair(rows, 'err_bundle_compute')}** | **{_pair(rows, 'err_layersum_compute')}** "
        f"| **{_bundle_closer(rows)}** | | | | **{_pct(_median(solvers, 'err_bundle', float), True)} / "
        f"{_pct(_median(solvers, 'err_bundle_drift', float), True)}** | | |"
    )
    lines += [
        "",
        "Errors: median |predicted - measured| / measured, raw / drift-corrected; solver err: its signed error. "
        "Whole model: per device, profiled / timed before each placement / after the last.",
        f"Drift explains {_explained(_median(rows, 'err_bundle'), _median(rows, 'err_bundle_drift'))} of the "
        f"median |bundle error| ({_pct(_median(rows, 'err_bundle'))} -> {_pct(_median(rows, 'err_bundle_drift'))}), "
        f"{_explained(_median(rows, 'err_bundle_compute'), _median(rows, 'err_bundle_compute_drift'))} of the "
        f"compute-only one ({_pct(_median(rows, 'err_bundle_compute'))} -> "
        f"{_pct(_median(rows, 'err_bundle_compute_drift'))}).",
    ]
    return "\n".join(lines)


def write_table(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    atomic_write_text(path, rows_csv(rows, VALIDATE_COLUMNS))


# ---- the run ----------------------------------------------------------------------------
def plans_for(opts: ValidateOptions) -> list[tuple[Plan, dict[str, float | None]]]:
    """Every model's placements and predictions, with each device's profiled whole model:
    all first, so that bad profiles fail before any run."""
    out = []
    for m in opts.models:
        table = load_profiles(list(opts.profiles), model=m)
        roles = (make_role(table, opts.edge_device, [opts.edge_setting]),
                 make_role(table, opts.cloud_device, [opts.cloud_setting]))
        splits = [] if opts.splits.strip() == "none" else parse_splits(opts.splits, table.n_layers, table.layer_names)
        if not opts.with_solver and not splits:
            raise UsageError("nothing to run: --no-solver and --splits none")
        plan = model_plan(table, roles, opts.links, splits, opts.with_solver, opts.max_bundle, opts.solver,
                          opts.bundle_sum)
        out.append((plan, {"edge": whole_model_s(table, opts.edge_device, opts.edge_setting),
                           "cloud": whole_model_s(table, opts.cloud_device, opts.cloud_setting)}))
    return out


def validate(opts: ValidateOptions, on_model: Callable[[str, list[dict[str, Any]]], None] | None = None
             ) -> list[dict[str, Any]]:
    """Run every model's plan and return the rows with their validation columns; the table
    at opts.out is rewritten after every model, so that a later failure keeps what was measured."""
    if opts.out.is_dir():
        raise UsageError(f"--out {opts.out} is a folder")
    plans = plans_for(opts)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dime-validate-") as tmp:
        for i, (plan, whole) in enumerate(plans):
            plan_path, out = Path(tmp) / f"plan-{i}.json", Path(tmp) / f"rows-{i}.csv"
            atomic_write_text(plan_path, plan.to_json())
            log.info("%s: running %d placement(s)", plan.model, len(plan.configs))
            run = dataclasses.replace(opts.run, plan=PlanOptions(plan=plan_path), out=out, verify=True)
            run_local(LocalOptions(ModelSpec(plan.model, cuts=opts.cuts, input_shape=opts.input_shape,
                                             inputs=opts.inputs, layers=opts.layers, capture=opts.capture), run,
                                   (("edge", opts.edge), ("cloud", opts.cloud)), "edge", timeout_s=opts.timeout_s,
                                   shaper=opts.shaper, verbose=opts.verbose))
            got: list[dict[str, Any]] = [dict(r) for r in read_rows(out)]
            for r in got:
                add_drift_columns(r, whole)
            rows.extend(got)
            write_table(opts.out, rows)
            if on_model is not None:
                on_model(plan.model, got)
    return rows


# ---- CLI ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m dime.validate",
        description="Run the solver's placement and every single split for real (two local processes, "
                    "emulated links) and compare measured latency with the bundle and layer-sum predictions, "
                    "raw and corrected for each machine's drift since it was profiled.",
    )
    p.add_argument("--profile", action="extend", nargs="+", required=True, metavar="CSV", help="profile CSV files")
    p.add_argument("--models", required=True, help="comma list of models (as profiled)")
    p.add_argument("--links", default="4g,wifi", help="comma list of presets or UP/DOWN[/RTT] (default 4g,wifi)")
    p.add_argument("--edge", required=True, metavar="DEV", help="profiled edge device")
    p.add_argument("--cloud", required=True, metavar="DEV", help="profiled cloud device")
    p.add_argument("--edge-settings", required=True, metavar="S", help="the edge's setting (one)")
    p.add_argument("--cloud-settings", required=True, metavar="S", help="the cloud's setting (one)")
    p.add_argument("--splits", default="all", help="'all', 'none' or a comma list of split points (default all)")
    p.add_argument("--no-solver", action="store_true", help="skip the solver's placement")
    p.add_argument("--solver", default="auto", help="solver backend (default auto)")
    p.add_argument("--max-bundle", type=positive_int, help="longest bundle (default: largest profiled)")
    p.add_argument("--scenario", default=SINGLE_STREAM, help=f"comma list of {', '.join(SCENARIOS)}")
    p.add_argument("--min-query-count", type=positive_int, default=16, help="queries per placement (default 16)")
    p.add_argument("--min-duration-s", type=non_negative_float, default=0.0)
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed queries per placement (default 2)")
    p.add_argument("--reference-runs", type=non_negative_int, default=10, metavar="N",
                   help="time each role's whole model N times before every placement, for the drift "
                        "correction (0: none; default 10)")
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
    p.add_argument("--timeout-s", type=positive_float, default=30.0)
    p.add_argument("--shaper", choices=SHAPER_CHOICES, default="auto",
                   help="links shaped by the kernel (netns, as root) or emulated in user space (user); "
                        "auto: netns where possible (default)")
    p.add_argument("--out", type=Path, required=True, metavar="CSV", help="result table (overwritten)")
    p.add_argument("--summary", type=Path, metavar="MD", help="also write the markdown summary here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def _one(text: str, flag: str) -> str:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if len(items) != 1:
        raise UsageError(f"{flag}: a run uses one setting per role, got {text!r}")
    return items[0]


def validate_options(args: argparse.Namespace) -> ValidateOptions:
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if not models:
        raise UsageError("--models: empty list")
    return ValidateOptions(
        profiles=tuple(args.profile), models=models, edge_device=args.edge, cloud_device=args.cloud,
        edge_setting=_one(args.edge_settings, "--edge-settings"),
        cloud_setting=_one(args.cloud_settings, "--cloud-settings"), out=args.out,
        links=tuple(parse_links(args.links)), splits=args.splits, with_solver=not args.no_solver,
        solver=args.solver, max_bundle=args.max_bundle,
        run=RunOptions(scenarios=parse_scenarios(args.scenario), min_query_count=args.min_query_count,
                       min_duration_s=args.min_duration_s, warmup=args.warmup, reference_runs=args.reference_runs,
                       driver=args.driver, images=args.images, count=args.count),
        input_shape=args.input_shape,
        cuts=tuple(c.strip() for c in args.cuts.split(",") if c.strip()) if args.cuts else None,
        inputs=args.inputs, layers=args.layers, capture=args.capture, bundle_sum=args.bundle_sum,
        edge=ProcessOptions(args.edge_threads, args.edge_cores, args.edge_torch_device),
        cloud=ProcessOptions(args.cloud_threads, args.cloud_cores, args.cloud_torch_device),
        timeout_s=args.timeout_s, shaper=args.shaper, verbose=max(0, args.verbose) if not args.quiet else -1,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    setup_logging(args.verbose - (1 if args.quiet else 0))
    opts = validate_options(args)
    rows = validate(opts, lambda model, got: log.info("%s done:\n%s", model, summary_markdown(got)))
    summary = summary_markdown(rows)
    if args.summary:
        atomic_write_text(args.summary, summary + "\n")
    print(summary)
    print(f"\nwrote {len(rows)} row(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
