"""Check the cost model against real split runs: `python -m dime.validate`.

For each model and link: the solver's placement plus every single split point (layers
0..k on the edge, the rest in the cloud, k = -1..n-1) are run for real with
`python -m dime.run local` (two processes, emulated link) and measured. Each row gets
two predictions from the profiles:

    bundle     the placement's bundle costs + communication (what the solver optimises)
    layer-sum  every bundle's cost replaced by the sum of its single-layer costs, + the
               same communication

and their relative errors against the measured mean latency. The CSV holds every row;
a markdown summary (median |error| per model and link) is printed.

    python -m dime.validate --profile profiles/*-xeon-2core.csv --links 4g,wifi \\
        --models alexnet,resnet18,mobilenet_v2 --edge xeon-2core --edge-settings threads=1 \\
        --cloud xeon-2core --cloud-settings threads=1 --out results/validate.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from dime.cliargs import run_main, setup_logging
from dime.core.costs import Assignment, CostTable, Role
from dime.core.links import LINK_PRESETS, Link, parse_links
from dime.core.placement import format_placement
from dime.errors import SolverError, UsageError
from dime.fileio import atomic_write_text
from dime.profiling.reader import (
    common_max_bundle,
    load_profiles,
    make_role,
    require_bundles,
)
from dime.run.cli import (
    _cores,
    _non_negative,
    _Parser,
    _positive,
    _shape,
    join_negative_values,
    run_local,
)
from dime.run.measure import DRIVERS, SCENARIOS, SINGLE_STREAM
from dime.run.plan import (
    RESULT_COLUMNS,
    Plan,
    RunConfig,
    parse_solution,
    parse_splits,
    predict,
    split_label,
    split_placement,
)

log = logging.getLogger("dime.validate")


def solve_placement(
    table: CostTable,
    roles: tuple[Role, Role],
    link: Link,
    max_bundle: int,
    backend: str = "auto",
    profile_paths: Sequence[str] = (),
) -> tuple[tuple[Assignment, ...], float, str]:
    """The latency-optimal placement: (placement, predicted latency, solver used).

    Uses dime.plan's Python API; without it, `python -m dime.solve --json` in a subprocess.
    """
    try:
        from dime.plan import PlacementProblem, build_model
    except ImportError:
        return _solve_cli(table, roles, link, max_bundle, backend, profile_paths)
    problem = PlacementProblem(table=table, roles=roles, link=link, max_bundle=max_bundle)
    sol = build_model(problem).solve(backend)
    return tuple(sol.placement), sol.evaluation.latency_s, sol.solver


def _solve_cli(
    table: CostTable, roles: tuple[Role, Role], link: Link, max_bundle: int, backend: str, paths: Sequence[str]
) -> tuple[tuple[Assignment, ...], float, str]:
    if not paths:
        raise SolverError("dime.plan has no Python API and no profile files were given for `python -m dime.solve`")
    with tempfile.TemporaryDirectory(prefix="dime-validate-") as tmp:
        out = Path(tmp) / "solution.json"
        cmd = [sys.executable, "-m", "dime.solve", *paths, "--model", table.model,
               "--edge", roles[0].device, "--edge-settings", ",".join(roles[0].settings),
               "--cloud", roles[1].device, "--cloud-settings", ",".join(roles[1].settings),
               "--max-bundle", str(max_bundle), "--solver", backend, "--json", str(out), "-q"]
        preset = LINK_PRESETS.get(link.name)
        if preset is not None and preset == link:
            cmd += ["--link", link.name]
        else:
            cmd += ["--uplink-mbps", f"{link.uplink_mbps!r}", "--downlink-mbps", f"{link.downlink_mbps!r}",
                    "--rtt-ms", f"{link.rtt_ms!r}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [l for l in proc.stderr.splitlines() if l.strip()]
            raise SolverError(f"python -m dime.solve failed: {lines[-1] if lines else proc.returncode}")
        data = json.loads(out.read_text())
    placement = parse_solution(data, table.layer_names, "dime.solve's solution")
    return placement, float(data["latency_s"]), str(data.get("solver", "dime.solve"))


def model_plan(
    table: CostTable,
    roles: tuple[Role, Role],
    links: Sequence[Link],
    splits: Sequence[int],
    with_solver: bool,
    max_bundle: int | None,
    backend: str,
    profile_paths: Sequence[str],
) -> Plan:
    """Every placement to run for one model: the solver's and each single split, per link."""
    n = table.n_layers
    if max_bundle is None:
        k = common_max_bundle(table, roles)
    else:
        k = min(max_bundle, n)
        require_bundles(table, roles, k)
    edge_set, cloud_set = roles[0].settings[0], roles[1].settings[0]
    configs = []
    for link in links:
        cands: list[tuple[str, tuple[Assignment, ...], float | None]] = []
        if with_solver:
            placement, lat, used = solve_placement(table, roles, link, k, backend, profile_paths)
            log.info("%s over %s: %s chose %s (%.4g s)", table.model, link.name, used,
                     format_placement(table.layer_names, placement), lat)
            cands.append(("solver", placement, lat))
        for s in splits:
            cands.append((split_label(table.layer_names, s), split_placement(n, s, edge_set, cloud_set, k), None))
        for label, placement, lat in cands:
            bundle, layers = predict(table, roles, link, placement)
            configs.append(RunConfig(label, placement, link, bundle, layers, lat))
    return Plan(table.model, tuple(table.layer_names), tuple(table.cut_bytes), tuple(configs),
                roles[0].device, roles[1].device)


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _median_abs(rows: Sequence[dict[str, str]], col: str) -> float | None:
    vals = [abs(x) for x in (_num(r.get(col)) for r in rows) if x is not None]
    return statistics.median(vals) if vals else None


def compute_err(row: dict[str, str], col: str) -> float | None:
    """Relative error of the compute part alone: the link model's communication time
    (which the emulation reproduces almost exactly) taken off both sides."""
    pred, meas = _num(row.get(col)), _num(row.get("measured_s"))
    up, down = _num(row.get("uplink_mbps")), _num(row.get("downlink_mbps"))
    if pred is None or meas is None or not up or not down:
        return None
    comm = (float(row.get("up_bytes") or 0) * 8 / (up * 1e6) + float(row.get("down_bytes") or 0) * 8 / (down * 1e6)
            + float(row.get("transfers") or 0) * (_num(row.get("rtt_ms")) or 0.0) / 2000.0)
    if meas - comm <= 0:
        return None
    return (pred - meas) / (meas - comm)


def _bundle_closer(rows: Sequence[dict[str, str]]) -> str:
    """In how many rows the bundle prediction is closer to the measurement than the layer sum."""
    pairs = [(_num(r.get("err_bundle")), _num(r.get("err_layersum"))) for r in rows]
    pairs = [(b, s) for b, s in pairs if b is not None and s is not None]
    if not pairs:
        return "-"
    return f"{sum(abs(b) < abs(s) for b, s in pairs)}/{len(pairs)}"


def _whole(rows: Sequence[dict[str, str]]) -> str:
    """The edge's whole model as profiled and as timed before and after the run's placements:
    how far the machine drifted since it was profiled."""
    r = rows[0]
    vals = [_num(r.get(c)) for c in ("edge_whole_profiled_s", "edge_whole_start_s", "edge_whole_end_s")]
    return " / ".join(_ms(v) for v in vals)


def _median_abs_compute(rows: Sequence[dict[str, str]], col: str) -> float | None:
    vals = [abs(x) for x in (compute_err(r, col) for r in rows) if x is not None]
    return statistics.median(vals) if vals else None


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v * 100:+.1f}%" if signed else f"{v * 100:.1f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def _short_placement(text: str) -> str:
    """conv1@edge(t)|conv2..fc3@edge(t) -> conv1..fc3 edge (2 bundles): one run per side,
    and no '|' (a markdown cell)."""
    runs: list[list[str]] = []  # [first, last, role, bundles]
    for part in text.split("|"):
        span, _, rest = part.partition("@")
        role = rest.split("(")[0]
        first, _, last = span.partition("..")
        if runs and runs[-1][2] == role:
            runs[-1][1] = last or first
            runs[-1][3] = str(int(runs[-1][3]) + 1)
        else:
            runs.append([first, last or first, role, "1"])
    out = []
    for first, last, role, n in runs:
        span = first if first == last else f"{first}..{last}"
        out.append(f"{span} {role}" + (f" ({n} bundles)" if n != "1" else ""))
    return ", ".join(out)


def summary_markdown(rows: Sequence[dict[str, str]]) -> str:
    """Median |prediction error| per model and link, and how the solver's choice fared."""
    lines = [
        "| model | link | scenario | placements | median abs err, bundle | median abs err, layer-sum "
        "| compute only: bundle | compute only: layer-sum | bundle closer "
        "| solver's placement | solver pred (ms) | measured (ms) | best measured (ms) "
        "| edge whole model (ms): profiled / before / after |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["link"], r["scenario"]), []).append(r)
    for (model, link, scenario), rs in groups.items():
        solver = next((r for r in rs if r["config"] == "solver"), None)
        measured = [(_num(r["measured_s"]), r) for r in rs]
        best = min((m for m, _ in measured if m is not None), default=None)
        best_label = next((r["config"] for m, r in measured if m == best), "")
        lines.append(
            f"| {model} | {link} | {scenario} | {len(rs)} | {_pct(_median_abs(rs, 'err_bundle'))} "
            f"| {_pct(_median_abs(rs, 'err_layersum'))} "
            f"| {_pct(_median_abs_compute(rs, 'pred_bundle_s'))} | {_pct(_median_abs_compute(rs, 'pred_layersum_s'))} "
            f"| {_bundle_closer(rs)} "
            f"| {_short_placement(solver['placement']) if solver else '-'} | {_ms(_num(solver['pred_bundle_s'])) if solver else '-'} "
            f"| {_ms(_num(solver['measured_s'])) if solver else '-'} | {_ms(best)} ({best_label}) "
            f"| {_whole(rs)} |"
        )
    lines.append(
        f"| **all** | | | {len(rows)} | **{_pct(_median_abs(rows, 'err_bundle'))}** "
        f"| **{_pct(_median_abs(rows, 'err_layersum'))}** "
        f"| **{_pct(_median_abs_compute(rows, 'pred_bundle_s'))}** "
        f"| **{_pct(_median_abs_compute(rows, 'pred_layersum_s'))}** | **{_bundle_closer(rows)}** | | | | | |"
    )
    return "\n".join(lines)


def write_table(path: Path, rows: Sequence[dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m dime.validate",
        description="Run the solver's placement and every single split for real (two local processes, "
                    "emulated links) and compare measured latency with the bundle and layer-sum predictions.",
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
    p.add_argument("--max-bundle", type=_positive(int), help="longest bundle (default: largest profiled)")
    p.add_argument("--scenario", default=SINGLE_STREAM, help=f"comma list of {', '.join(SCENARIOS)}")
    p.add_argument("--min-query-count", type=_positive(int), default=16, help="queries per placement (default 16)")
    p.add_argument("--min-duration-s", type=_non_negative(float), default=0.0)
    p.add_argument("--warmup", type=_non_negative(int), default=2, help="untimed queries per placement (default 2)")
    p.add_argument("--driver", choices=DRIVERS, default="auto")
    p.add_argument("--images", type=Path, help="folder of images (default: generated images)")
    p.add_argument("--count", type=_positive(int), default=8, help="number of sample inputs (default 8)")
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W", help="input shape (as profiled)")
    p.add_argument("--edge-threads", type=_positive(int), default=1)
    p.add_argument("--cloud-threads", type=_positive(int), default=1)
    p.add_argument("--edge-cores", type=_cores, metavar="LIST")
    p.add_argument("--cloud-cores", type=_cores, metavar="LIST")
    p.add_argument("--edge-torch-device", default="cpu", metavar="DEV", help="the edge's torch device (default cpu)")
    p.add_argument("--cloud-torch-device", default="cpu", metavar="DEV",
                   help="the cloud's torch device: cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--timeout-s", type=_positive(float), default=30.0)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    setup_logging(args.verbose - (1 if args.quiet else 0))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise UsageError("--models: empty list")
    links = parse_links(args.links)
    edge_set, cloud_set = _one(args.edge_settings, "--edge-settings"), _one(args.cloud_settings, "--cloud-settings")
    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder")
    # every model's placements and predictions first: bad profiles fail before any run
    plans = []
    whole: dict[str, float | None] = {}  # model -> profiled whole-model cost at the edge's setting
    for m in models:
        table = load_profiles(args.profile, model=m)
        roles = (make_role(table, args.edge, [edge_set]), make_role(table, args.cloud, [cloud_set]))
        n = table.n_layers
        key = (args.edge, edge_set, 0, n - 1)
        whole[m] = table.costs[key].latency_s if key in table.costs else None
        splits = [] if args.splits.strip() == "none" else parse_splits(args.splits, n, table.layer_names)
        if args.no_solver and not splits:
            raise UsageError("nothing to run: --no-solver and --splits none")
        plans.append(model_plan(table, roles, links, splits, not args.no_solver, args.max_bundle, args.solver,
                                args.profile))
    rows: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="dime-validate-") as tmp:
        for i, plan in enumerate(plans):
            plan_path = Path(tmp) / f"plan-{i}.json"
            out = Path(tmp) / f"rows-{i}.csv"
            atomic_write_text(plan_path, plan.to_json())
            log.info("%s: running %d placement(s)", plan.model, len(plan.configs))
            edge_argv = ["--plan", str(plan_path), "--out", str(out), "--scenario", args.scenario,
                         "--min-query-count", str(args.min_query_count), "--min-duration-s", f"{args.min_duration_s:g}",
                         "--warmup", str(args.warmup), "--driver", args.driver, "--count", str(args.count),
                         "--verify"]
            if args.quiet:
                edge_argv.append("-q")  # else the edge prints each row as it is measured
            if args.images:
                edge_argv += ["--images", str(args.images)]
            model_argv = ["--model", plan.model]
            if args.input_shape:
                model_argv += ["--input-shape", ",".join(map(str, args.input_shape))]
            run_local(edge_argv, model_argv, args.edge_threads, args.cloud_threads, args.edge_cores,
                      args.cloud_cores, args.timeout_s, verbose=max(0, args.verbose),
                      edge_torch_device=args.edge_torch_device, cloud_torch_device=args.cloud_torch_device)
            got = read_rows(out)
            for r in got:
                r["edge_whole_profiled_s"] = "" if whole.get(plan.model) is None else f"{whole[plan.model]:.6g}"
            rows.extend(got)
            # after every model, so that a later failure keeps what was measured
            write_table(args.out, rows)
            log.info("%s done:\n%s", plan.model, summary_markdown(got))
    summary = summary_markdown(rows)
    if args.summary:
        atomic_write_text(args.summary, summary + "\n")
    print(summary)
    print(f"\nwrote {len(rows)} row(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
