"""Constraint sweeps, baselines and Pareto fronts: `python -m dime.sweep`.

For every (model, link) *cell* the placement ILP is built once and re-solved under a
series of budgets (PlacementModel.with_budgets):

* ``energy-budget``: minimise latency with edge energy <= b, for `points` values of b
  evenly spaced from the least feasible energy to the energy of the latency optimum;
* ``latency-budget``: minimise edge energy with latency <= b, from the least latency to
  the latency of the energy optimum.

Both endpoints are taken lexicographically (the least energy among the fastest
placements and the least latency among the most frugal ones), so that the two sweeps
span exactly the Pareto front. Baselines are written to the same CSV with
``sweep=baseline:<name>``. Every number in a row is `dime.core.costs.evaluate` of the row's
placement; baselines that reason with per-layer costs (the layer-sum estimate) also get
`bundle_latency_s`/`bundle_energy_j`: the same decisions re-evaluated with the bundle
profiles, to show how far off the layer-sum estimate is.

Example:
    python -m dime.sweep profiles/alexnet-xeon-2core.csv --edge xeon-2core \\
        --cloud xeon-2core --cloud-settings threads=2 --assume-edge-power 10,16 \\
        --links 3g,4g,wifi --points 20 --out results/alexnet.csv --plot results/alexnet.png
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import dataclasses
import hashlib
import io
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dime.cliargs import (
    OneLineParser,
    fraction,
    positive_float,
    positive_int,
    run_main,
    setup_logging,
)
from dime.core.costs import (
    CLOUD,
    EDGE,
    ROLE_NAMES,
    Assignment,
    CostTable,
    Evaluation,
    Role,
    evaluate,
)
from dime.core.links import Link, get_link
from dime.core.placement import format_placement
from dime.errors import DimeError, InfeasibleError, SolverError, UsageError
from dime.fileio import atomic_write_text
from dime.plan import (
    BACKEND_NAMES,
    PlacementModel,
    PlacementProblem,
    Solution,
    build_model,
)
from dime.profiling.reader import (
    common_max_bundle,
    load_profiles,
    make_role,
    require_bundles,
)

log = logging.getLogger(__name__)

ENERGY_SWEEP = "energy-budget"
LATENCY_SWEEP = "latency-budget"
BASELINE = "baseline:"
CELL_FAILED = "cell"  # the `sweep` of the one row that records a failed cell
EXIT_CELLS_FAILED = 3  # the grid finished, but some cells failed (see their `error`)

# Baseline names, in the order they are written.
ALL_EDGE = "all-edge"  # every layer on the edge, one row per edge setting
ALL_CLOUD = "all-cloud"  # every layer in the cloud, one row per cloud setting
NEUROSURGEON = "neurosurgeon"  # best single split by the layer-sum latency
LAYERWISE = "layerwise"  # the ILP with max bundle 1, min latency (JointDNN-style)
LAYERWISE_ENERGY = "layerwise-energy"  # the same, min energy
DIME_EDGE_FASTEST = "dime-edge-fastest"  # DIME (min latency), edge fixed at its fastest setting
DIME_EDGE_SLOWEST = "dime-edge-slowest"  # ... at its slowest setting
BASELINES: tuple[str, ...] = (
    ALL_EDGE, ALL_CLOUD, NEUROSURGEON, LAYERWISE, LAYERWISE_ENERGY, DIME_EDGE_FASTEST, DIME_EDGE_SLOWEST,
)
# Baselines that decide layer by layer: their latency_s.. columns are the layer-sum
# estimate and bundle_* the same decisions with merged bundles. For every other row the
# placement already is in bundles and bundle_* repeats latency_s and energy_j.
LAYER_SUM_BASELINES: frozenset[str] = frozenset({ALL_EDGE, ALL_CLOUD, NEUROSURGEON, LAYERWISE, LAYERWISE_ENERGY})

EVALUATED = "evaluated"  # status of a baseline found without a solver
_TINY_BUDGET = 1e-12  # budgets must be > 0; a zero-energy optimum is swept from here


@dataclass
class SweepRow:
    """One point of a sweep, one baseline, or a failed cell. Units are in the names."""

    model: str
    edge: str  # edge device
    cloud: str  # cloud device
    edge_settings: str  # the edge role's settings, comma-joined
    cloud_settings: str
    link: str
    max_bundle: int  # K
    sweep: str  # energy-budget | latency-budget | baseline:<name> | cell (failed)
    point: int | None = None  # index of the budget within its sweep
    budget: float | None = None  # this sweep's budget: J for energy-budget, s for latency-budget
    max_energy_j: float | None = None  # the budget of an energy-budget point
    max_latency_s: float | None = None  # the budget of a latency-budget point
    status: str = ""  # optimal | time_limit | evaluated | infeasible | error
    latency_s: float | None = None
    compute_latency_s: float | None = None
    comm_latency_s: float | None = None
    energy_j: float | None = None  # edge energy: compute + radio
    compute_energy_j: float | None = None
    comm_energy_j: float | None = None
    bundle_latency_s: float | None = None  # the placement re-evaluated with bundle profiles
    bundle_energy_j: float | None = None
    energy_source: str = ""  # assumed:<W>..., or the meter(s) of the edge profile
    edge_layers: int | None = None  # layers placed on the edge
    cloud_layers: int | None = None
    settings: str = ""  # settings the placement uses, per role
    placement: str = ""  # see format_placement
    solver: str = ""
    solve_time_s: float | None = None
    pareto: bool = False  # non-dominated within its sweep (latency, energy)
    error: str = ""

    def __post_init__(self) -> None:
        if self.budget is None:
            self.budget = self.max_energy_j if self.sweep == "energy-budget" else self.max_latency_s


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SweepRow))
_INT_COLUMNS = {"max_bundle", "point", "edge_layers", "cloud_layers"}
_FLOAT_COLUMNS = {
    "budget", "max_energy_j", "max_latency_s", "latency_s", "compute_latency_s", "comm_latency_s", "energy_j",
    "compute_energy_j", "comm_energy_j", "bundle_latency_s", "bundle_energy_j", "solve_time_s",
}


@dataclass(frozen=True)
class CellSpec:
    """One (model, link) cell of a grid: everything a worker process needs."""

    table: CostTable
    roles: tuple[Role, Role]
    link: Link
    max_bundle: int
    points: int = 20
    solver: str = "auto"
    time_limit_s: float | None = None
    energy_source: str = ""  # label written to every row

    @property
    def label(self) -> str:
        return f"{self.table.model}/{self.link.name}"

    def key(self) -> str:
        """A digest of everything that decides the cell's rows (for --resume)."""
        h = hashlib.sha256()
        t = self.table
        h.update(repr((t.model, t.layer_names, t.cut_bytes, sorted(t.costs.items()))).encode())
        h.update(repr((self.roles, self.link, self.max_bundle, self.points, self.solver,
                       self.time_limit_s, self.energy_source)).encode())
        return h.hexdigest()[:16]


@dataclass
class CellResult:
    """The rows of one cell and what producing them cost."""

    rows: list[SweepRow]
    wall_s: float  # time spent on the cell, in its worker
    solves: int = 0  # ILP solves, the anchors of the sweeps included
    failed: bool = False
    reused: bool = False  # read back from a previous run's partial file


# -- assumed edge energy -----------------------------------------------------------------


def assume_edge_power(table: CostTable, edge: Role, watts: Sequence[float]) -> tuple[CostTable, str]:
    """A copy of `table` whose edge bundles cost W x latency joules, labelled as assumed.

    `watts` holds one value for every edge setting or one per setting in `edge.settings`
    order. Profiles that already carry edge energy are refused rather than overwritten.
    Returns the new table and the label for the rows' energy_source.
    """
    if len(watts) not in (1, len(edge.settings)):
        raise UsageError(
            f"--assume-edge-power: give one power or one per edge setting ({len(edge.settings)}: "
            f"{', '.join(edge.settings)}), got {len(watts)}"
        )
    for w in watts:
        if not (math.isfinite(w) and w > 0):
            raise UsageError(f"--assume-edge-power: powers must be positive numbers of watts, got {w:g}")
    power = {s: float(watts[0] if len(watts) == 1 else watts[i]) for i, s in enumerate(edge.settings)}
    costs = dict(table.costs)
    for (device, setting, s, e), c in table.costs.items():
        if device != edge.device or setting not in power:
            continue
        if c.energy_j is not None:
            raise UsageError(
                f"{_where(table)}: the profiles already have edge energy "
                f"({c.energy_source or 'measured'}) for {device} ({setting}); drop --assume-edge-power"
            )
        w = power[setting]
        costs[(device, setting, s, e)] = dataclasses.replace(
            c, energy_j=w * c.latency_s, energy_source=f"assumed:{w:g}"
        )
    if len(set(power.values())) == 1:
        label = f"assumed:{watts[0]:g}"
    else:
        label = "assumed:" + ",".join(f"{w:g}@{s}" for s, w in power.items())
    return dataclasses.replace(table, costs=costs), label


def edge_energy_source(table: CostTable, edge: Role, max_bundle: int) -> str:
    """The label of the edge energy; raises UsageError when some edge bundle lacks it."""
    sources: dict[str, None] = {}
    n = table.n_layers
    for setting in edge.settings:
        for s in range(n):
            for e in range(s, min(n, s + max_bundle)):
                c = table.costs.get((edge.device, setting, s, e))
                if c is None:
                    continue  # require_bundles reports missing bundles
                if c.energy_j is None:
                    raise UsageError(
                        f"{_where(table)}: no edge energy for {edge.device} ({setting}), e.g. bundle "
                        f"{table.bundle_name(s, e)}; energy sweeps need it: profile the edge with an "
                        "energy meter (or dime.profile --assume-power W), or pass --assume-edge-power W"
                    )
                sources[c.energy_source or "measured"] = None
    assumed = [x for x in sources if x.startswith("assumed")]
    if assumed:
        return "assumed:" + ",".join(x.split(":", 1)[1] for x in assumed) if len(assumed) > 1 else assumed[0]
    return ",".join(sources)


def _where(table: CostTable) -> str:
    src = list(table.sources)
    if not src:
        return f"model {table.model}"
    return ", ".join(src) if len(src) <= 2 else f"{src[0]} and {len(src) - 1} more files"


# -- placements as text ------------------------------------------------------------------


def _settings_text(placement: Sequence[Assignment]) -> str:
    used: list[dict[str, None]] = [{}, {}]
    for a in placement:
        used[a.role][a.setting] = None
    return "; ".join(f"{ROLE_NAMES[r]}:{','.join(used[r])}" for r in (EDGE, CLOUD) if used[r])


# -- layer-sum placements and their bundle re-evaluation ---------------------------------


def per_layer(n_layers: int, choice: Sequence[tuple[int, str]]) -> list[Assignment]:
    """Every layer its own bundle: choice[i] = (role, setting) of layer i."""
    if len(choice) != n_layers:
        raise ValueError(f"{len(choice)} choices for {n_layers} layers")
    return [Assignment(i, i, r, t) for i, (r, t) in enumerate(choice)]


def merge_bundles(
    table: CostTable, roles: Sequence[Role], placement: Sequence[Assignment], max_bundle: int
) -> list[Assignment]:
    """The same per-layer decisions, with consecutive same-role, same-setting layers merged.

    Each run is cut greedily into the longest profiled bundles of at most `max_bundle`
    layers (the bundles the ILP may choose), which is how that run would really execute.
    """
    layers: list[tuple[int, str]] = []
    for a in placement:
        layers.extend((a.role, a.setting) for _ in range(a.start, a.end + 1))
    out: list[Assignment] = []
    i, n = 0, len(layers)
    while i < n:
        role, setting = layers[i]
        run_end = i
        while run_end + 1 < n and layers[run_end + 1] == (role, setting):
            run_end += 1
        device = roles[role].device
        while i <= run_end:
            j = min(run_end, i + max_bundle - 1)
            while j > i and (device, setting, i, j) not in table.costs:
                j -= 1
            out.append(Assignment(i, j, role, setting))
            i = j + 1
    return out


# -- rows --------------------------------------------------------------------------------


def _base_row(spec: CellSpec, sweep: str) -> SweepRow:
    edge, cloud = spec.roles
    return SweepRow(
        model=spec.table.model,
        edge=edge.device,
        cloud=cloud.device,
        edge_settings=",".join(edge.settings),
        cloud_settings=",".join(cloud.settings),
        link=spec.link.name,
        max_bundle=spec.max_bundle,
        sweep=sweep,
        energy_source=spec.energy_source,
    )


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _fill(
    row: SweepRow,
    table: CostTable,
    placement: Sequence[Assignment],
    ev: Evaluation,
    bundle_ev: Evaluation | None = None,
) -> SweepRow:
    bundle_ev = bundle_ev or ev
    row.latency_s = _num(ev.latency_s)
    row.compute_latency_s = _num(ev.compute_latency_s)
    row.comm_latency_s = _num(ev.comm_latency_s)
    row.energy_j = _num(ev.energy_j)
    row.compute_energy_j = _num(ev.compute_energy_j)
    row.comm_energy_j = _num(ev.comm_energy_j)
    row.bundle_latency_s = _num(bundle_ev.latency_s)
    row.bundle_energy_j = _num(bundle_ev.energy_j)
    row.edge_layers = sum(a.end - a.start + 1 for a in placement if a.role == EDGE)
    row.cloud_layers = table.n_layers - row.edge_layers
    row.settings = _settings_text(placement)
    row.placement = format_placement(table.layer_names, placement)
    return row


def _solution_row(spec: CellSpec, sweep: str, sol: Solution, bundle_ev: Evaluation | None = None) -> SweepRow:
    row = _fill(_base_row(spec, sweep), spec.table, sol.placement, sol.evaluation, bundle_ev)
    row.status = sol.status
    row.solver = sol.solver
    row.solve_time_s = sol.solve_time_s
    if sol.note:
        row.error = sol.note if sol.status != "optimal" else ""
    return row


def _failed_row(spec: CellSpec, sweep: str, err: BaseException) -> SweepRow:
    row = _base_row(spec, sweep)
    row.status = "infeasible" if isinstance(err, InfeasibleError) else "error"
    row.error = _error_text(err)
    return row


def _error_text(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, DimeError):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# -- one cell ----------------------------------------------------------------------------


class _Solver:
    """Solves with the cell's backend and counts the solves."""

    def __init__(self, spec: CellSpec) -> None:
        self.spec = spec
        self.count = 0

    def __call__(self, model: PlacementModel) -> Solution:
        self.count += 1
        return model.solve(self.spec.solver, self.spec.time_limit_s)


def _budget(b: float) -> float:
    return b if b > 0 else _TINY_BUDGET


def budgets(low: float, high: float, points: int) -> list[float]:
    """`points` budgets evenly spaced from `low` to `high` (both included)."""
    if points == 1:
        return [float(low)]
    return [float(x) for x in np.linspace(low, max(low, high), points)]


def sweep_cell(spec: CellSpec) -> CellResult:
    """The two budget sweeps and the baselines of one (model, link)."""
    t0 = time.perf_counter()
    table, roles, link = spec.table, spec.roles, spec.link
    solve = _Solver(spec)
    model = build_model(PlacementProblem(table=table, roles=roles, link=link, max_bundle=spec.max_bundle))
    if not model.has_energy:
        edge_energy_source(table, roles[EDGE], spec.max_bundle)  # raises, naming the bundle

    fastest = solve(model.with_budgets(objective="latency", max_latency_s=None, max_energy_j=None))
    frugal = solve(model.with_budgets(objective="energy", max_latency_s=None, max_energy_j=None))
    l_min, e_min = fastest.evaluation.latency_s, frugal.evaluation.energy_j
    # Lexicographic ends: several placements can share the least latency (or energy);
    # the front ends at the one of them that is best in the other quantity.
    e_high = _anchor(solve, model, "energy", max_latency_s=_budget(l_min), max_energy_j=None,
                     fallback=fastest.evaluation.energy_j)
    l_high = _anchor(solve, model, "latency", max_latency_s=None, max_energy_j=_budget(e_min),
                     fallback=frugal.evaluation.latency_s)

    rows: list[SweepRow] = []
    for kind, objective, low, high in (
        (ENERGY_SWEEP, "latency", e_min, e_high),
        (LATENCY_SWEEP, "energy", l_min, l_high),
    ):
        for i, b in enumerate(budgets(low, high, spec.points)):
            b = _budget(b)
            if kind == ENERGY_SWEEP:
                m = model.with_budgets(objective=objective, max_latency_s=None, max_energy_j=b)
            else:
                m = model.with_budgets(objective=objective, max_latency_s=b, max_energy_j=None)
            try:
                row = _solution_row(spec, kind, solve(m))
            except (InfeasibleError, SolverError) as e:
                row = _failed_row(spec, kind, e)
            row.point = i
            if kind == ENERGY_SWEEP:
                row.max_energy_j = b
            else:
                row.max_latency_s = b
            rows.append(row)
    mark_pareto(rows)
    rows.extend(baselines(spec, solve))
    return CellResult(rows=rows, wall_s=time.perf_counter() - t0, solves=solve.count)


def _anchor(solve: _Solver, model: PlacementModel, objective: str, *, fallback: float, **budget: float | None) -> float:
    try:
        ev = solve(model.with_budgets(objective=objective, **budget)).evaluation
    except InfeasibleError:
        # Only possible at the solver's tolerance; the unconstrained optimum is as good an end.
        return fallback
    return ev.energy_j if objective == "energy" else ev.latency_s


def baselines(spec: CellSpec, solve: _Solver | None = None) -> list[SweepRow]:
    """The baseline rows of a cell (see BASELINES)."""
    solve = solve or _Solver(spec)
    table, roles, link, k = spec.table, spec.roles, spec.link, spec.max_bundle
    edge, cloud = roles
    n = table.n_layers
    rows: list[SweepRow] = []

    def estimated(name: str, placement: list[Assignment]) -> SweepRow:
        est = evaluate(table, roles, link, placement)
        real = evaluate(table, roles, link, merge_bundles(table, roles, placement, k))
        row = _fill(_base_row(spec, BASELINE + name), table, placement, est, real)
        row.status = EVALUATED
        return row

    def guarded(name: str, make: Any) -> None:
        try:
            rows.append(make())
        except (InfeasibleError, SolverError) as e:
            rows.append(_failed_row(spec, BASELINE + name, e))

    for t in edge.settings:
        rows.append(estimated(ALL_EDGE, per_layer(n, [(EDGE, t)] * n)))
    for t in cloud.settings:
        rows.append(estimated(ALL_CLOUD, per_layer(n, [(CLOUD, t)] * n)))

    # Neurosurgeon: layers 0..cut-1 on the edge, the rest in the cloud, one setting each,
    # chosen by the per-layer latency sum that method works with.
    best: tuple[float, list[Assignment]] | None = None
    for cut in range(n + 1):
        for te in edge.settings:
            for tc in cloud.settings:
                p = per_layer(n, [(EDGE, te)] * cut + [(CLOUD, tc)] * (n - cut))
                lat = evaluate(table, roles, link, p).latency_s
                if best is None or lat < best[0]:
                    best = (lat, p)
    assert best is not None
    rows.append(estimated(NEUROSURGEON, best[1]))

    layerwise = build_model(PlacementProblem(table=table, roles=roles, link=link, max_bundle=1))
    for name, objective in ((LAYERWISE, "latency"), (LAYERWISE_ENERGY, "energy")):
        def run(name: str = name, objective: str = objective) -> SweepRow:
            sol = solve(layerwise.with_budgets(objective=objective))
            real = evaluate(table, roles, link, merge_bundles(table, roles, sol.placement, k))
            return _solution_row(spec, BASELINE + name, sol, real)

        guarded(name, run)

    speed = {t: sum(table.cost(edge.device, t, i, i).latency_s for i in range(n)) for t in edge.settings}
    ordered = sorted(edge.settings, key=lambda t: speed[t])
    for name, t in ((DIME_EDGE_FASTEST, ordered[0]), (DIME_EDGE_SLOWEST, ordered[-1])):
        def run_fixed(t: str = t, name: str = name) -> SweepRow:
            fixed = (Role(edge.device, (t,)), cloud)
            m = build_model(PlacementProblem(table=table, roles=fixed, link=link, max_bundle=k))
            return _solution_row(spec, BASELINE + name, solve(m))

        guarded(name, run_fixed)
    return rows


def mark_pareto(rows: Sequence[SweepRow]) -> None:
    """Flag each sweep's non-dominated points (less latency or less energy than any other)."""
    groups: dict[tuple[str, str, str], list[SweepRow]] = {}
    for r in rows:
        r.pareto = False
        if r.sweep in (ENERGY_SWEEP, LATENCY_SWEEP) and r.latency_s is not None and r.energy_j is not None:
            groups.setdefault((r.model, r.link, r.sweep), []).append(r)
    for group in groups.values():
        for r in group:
            r.pareto = not any(
                o.latency_s <= r.latency_s and o.energy_j <= r.energy_j  # type: ignore[operator]
                and (o.latency_s < r.latency_s or o.energy_j < r.energy_j)  # type: ignore[operator]
                for o in group
            )


# -- grids -------------------------------------------------------------------------------


def run_cell(spec: CellSpec) -> CellResult:
    """sweep_cell, with any failure recorded as one row instead of raised."""
    t0 = time.perf_counter()
    try:
        return sweep_cell(spec)
    except Exception as e:  # a failed cell must not stop the grid
        log.debug("cell %s failed", spec.label, exc_info=True)
        row = _failed_row(spec, CELL_FAILED, e)
        row.status = "error"
        return CellResult(rows=[row], wall_s=time.perf_counter() - t0, failed=True)


def run_grid(
    cells: Sequence[CellSpec],
    jobs: int = 1,
    partial_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[CellResult]:
    """Run every cell (in `jobs` processes) and return their results in the cells' order.

    With `partial_dir`, each finished cell is written there at once (atomically), so an
    interrupted grid keeps its finished cells; with `resume`, cells found there under the
    same key are read back instead of run again.
    """
    from tqdm import tqdm

    results: list[CellResult | None] = [None] * len(cells)
    pdir = Path(partial_dir) if partial_dir is not None else None
    todo: list[int] = []
    for i, spec in enumerate(cells):
        cached = _cell_path(pdir, spec) if pdir is not None else None
        if resume and cached is not None and cached.exists():
            rows = read_rows(cached)
            results[i] = CellResult(rows=rows, wall_s=0.0, reused=True,
                                    failed=any(r.sweep == CELL_FAILED for r in rows))
            log.info("reused %s from %s", spec.label, cached)
        else:
            todo.append(i)

    def done(i: int, res: CellResult) -> None:
        results[i] = res
        if pdir is not None and not res.failed:
            atomic_write_text(_cell_path(pdir, cells[i]), rows_to_csv(res.rows))
        if res.failed:
            log.warning("cell %s failed: %s", cells[i].label, res.rows[0].error)
        bar.update(1)

    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="sweep", unit="cell",
               disable=None if progress else True, file=sys.stderr)
    try:
        if jobs <= 1 or len(todo) <= 1:
            for i in todo:
                bar.set_postfix_str(cells[i].label)
                done(i, run_cell(cells[i]))
        else:
            pool = cf.ProcessPoolExecutor(max_workers=min(jobs, len(todo)))
            try:
                futures = {pool.submit(run_cell, cells[i]): i for i in todo}
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    try:
                        res = fut.result()
                    except Exception as e:  # the worker process itself died
                        row = _failed_row(cells[i], CELL_FAILED, e)
                        row.status = "error"
                        res = CellResult(rows=[row], wall_s=0.0, failed=True)
                    done(i, res)
            except BaseException:
                # Interrupted: do not wait for the cells not yet started.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _cell_path(pdir: Path | None, spec: CellSpec) -> Path:
    assert pdir is not None
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in spec.label)
    return pdir / f"{safe}-{spec.key()}.csv"


# -- CSV ---------------------------------------------------------------------------------


def rows_to_csv(rows: Iterable[SweepRow]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        d = dataclasses.asdict(r)
        w.writerow({k: "" if v is None else repr(v) if isinstance(v, float) else v for k, v in d.items()})
    return buf.getvalue()


def read_rows(path: str | os.PathLike) -> list[SweepRow]:
    """Rows of a sweep CSV (floats read back exactly)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UsageError(f"{path}: not a sweep CSV, missing columns: {', '.join(missing)}")
        out = []
        for rec in reader:
            kw: dict[str, Any] = {}
            for c in COLUMNS:
                v = rec[c]
                if c in _INT_COLUMNS:
                    kw[c] = int(v) if v != "" else None
                elif c in _FLOAT_COLUMNS:
                    kw[c] = float(v) if v != "" else None
                elif c == "pareto":
                    kw[c] = v == "True"
                else:
                    kw[c] = v
            out.append(SweepRow(**kw))
    return out


def rows_frame(rows: Sequence[SweepRow]) -> Any:
    """The rows as a pandas DataFrame, columns in CSV order."""
    import pandas as pd

    return pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=list(COLUMNS))


# -- plots -------------------------------------------------------------------------------

# name -> (marker, colour, size, label); larger markers are drawn below smaller ones so
# that baselines landing on the same point stay visible.
_BASELINE_STYLE: dict[str, tuple[str, str, float, str]] = {
    ALL_EDGE: ("^", "tab:green", 40, "all on edge"),
    ALL_CLOUD: ("s", "tab:red", 40, "all in cloud"),
    NEUROSURGEON: ("D", "tab:purple", 80, "best single split (Neurosurgeon)"),
    LAYERWISE: ("v", "tab:brown", 60, "layer-wise, min latency (JointDNN)"),
    LAYERWISE_ENERGY: ("<", "tab:pink", 60, "layer-wise, min energy (JointDNN)"),
    DIME_EDGE_FASTEST: ("P", "tab:olive", 55, "DIME, edge at fastest setting"),
    DIME_EDGE_SLOWEST: ("X", "tab:cyan", 55, "DIME, edge at slowest setting"),
}


def energy_note(sources: Iterable[str]) -> str:
    """How the edge energy was obtained, for plot titles."""
    srcs = sorted({s for s in sources if s})
    assumed = [s.split(":", 1)[1] for s in srcs if s.startswith("assumed:")]
    if assumed:
        watts = "; ".join(", ".join(f"{w.replace('@', ' W at ')}" if "@" in w else f"{w} W" for w in a.split(","))
                          for a in assumed)
        return f"edge energy ASSUMED = W × latency ({watts}), not measured"
    return f"edge energy measured ({', '.join(srcs)})" if srcs else ""


def plot_rows(rows: Sequence[SweepRow], path: str | os.PathLike, dpi: int = 100) -> None:
    """Latency vs edge energy, one panel per (model, link): the DIME front and the baselines.

    Baselines are drawn where they really land (bundle profiles); a hollow marker joined
    by a dotted line shows the layer-sum estimate when it differs by more than 1%.
    """
    new_figure = _figure_class()
    ok = [r for r in rows if r.latency_s is not None and r.energy_j is not None]
    models = list(dict.fromkeys(r.model for r in rows))
    links = list(dict.fromkeys(r.link for r in rows))
    if not models or not links:
        raise UsageError("nothing to plot: no rows")
    fig = new_figure(figsize=(4.6 * len(links), 3.4 * len(models) + 1.3), layout="constrained")
    axes = fig.subplots(len(models), len(links), squeeze=False)
    handles: dict[str, Any] = {}
    # One unit per figure: ms/mJ when every DIME point is below 1 s/1 J.
    front = [r for r in ok if r.sweep in (ENERGY_SWEEP, LATENCY_SWEEP)] or ok
    t_unit, sx = ("ms", 1e3) if front and max(r.latency_s for r in front) < 1 else ("s", 1.0)
    e_unit, sy = ("mJ", 1e3) if front and max(r.energy_j for r in front) < 1 else ("J", 1.0)
    for mi, model in enumerate(models):
        for li, link in enumerate(links):
            ax = axes[mi][li]
            cell = [r for r in ok if r.model == model and r.link == link]
            failed = [r for r in rows if r.model == model and r.link == link and r.sweep == CELL_FAILED]
            ks = sorted({r.max_bundle for r in rows if r.model == model and r.link == link})
            ax.set_title(f"{model}, link {link}, max bundle {'/'.join(map(str, ks))}", fontsize=10)
            ax.set_xlabel(f"latency [{t_unit}]")
            ax.set_ylabel(f"edge energy [{e_unit}]")
            ax.grid(True, alpha=0.3)
            if failed or not cell:
                ax.text(0.5, 0.5, "failed: " + (failed[0].error[:60] if failed else "no points"),
                        ha="center", va="center", transform=ax.transAxes, fontsize=8, wrap=True)
                continue
            _plot_cell(ax, cell, handles, sx, sy)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncol=min(4, len(handles)), fontsize=8, frameon=False)
    roles = dict.fromkeys(f"edge {r.edge} ({r.edge_settings}), cloud {r.cloud} ({r.cloud_settings})" for r in rows)
    title = f"DIME Pareto fronts — {', '.join(models)}: {'; '.join(roles)}"
    note = energy_note(r.energy_source for r in rows)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _figure_class() -> Any:
    """matplotlib's Figure on the Agg canvas, without pyplot: no global backend is switched
    (a notebook keeps its own) and no figure is left open."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("plots need matplotlib (pip install matplotlib)") from None

    def make(**kw: Any) -> Any:
        fig = Figure(**kw)
        FigureCanvasAgg(fig)
        return fig

    return make


def check_plot_path(path: str | os.PathLike) -> None:
    """Raise UsageError before any work when `path` is not a figure matplotlib can write."""
    fig = _figure_class()()
    suffix = Path(path).suffix.lower().lstrip(".")
    kinds = fig.canvas.get_supported_filetypes()
    if suffix not in kinds:
        raise UsageError(f"--plot {path}: unknown figure type {suffix!r}; use one of {', '.join(sorted(kinds))}")


def _plot_cell(ax: Any, cell: Sequence[SweepRow], handles: dict[str, Any], sx: float, sy: float) -> None:
    """One panel; sx, sy scale seconds and joules to the axes' units."""
    front = sorted(
        {(r.latency_s, r.energy_j) for r in cell if r.pareto and r.sweep in (ENERGY_SWEEP, LATENCY_SWEEP)}
    )
    sweeps = [r for r in cell if r.sweep in (ENERGY_SWEEP, LATENCY_SWEEP)]
    if front:
        xs, ys = zip(*front)
        (h,) = ax.step([x * sx for x in xs], [y * sy for y in ys], where="post", color="tab:blue", lw=1.5, zorder=2)
        handles.setdefault("DIME Pareto front", h)
    for kind, marker, size, label in (
        (ENERGY_SWEEP, "o", 28, "DIME, min latency at energy budget"),
        (LATENCY_SWEEP, "x", 24, "DIME, min energy at latency budget"),
    ):
        pts = [r for r in sweeps if r.sweep == kind]
        if pts:
            h = ax.scatter([r.latency_s * sx for r in pts], [r.energy_j * sy for r in pts], marker=marker, s=size,
                           color="tab:blue", facecolors="none" if marker == "o" else None, zorder=3)
            handles.setdefault(label, h)
    base = [r for r in cell if r.sweep.startswith(BASELINE)]
    # Keep the front readable: baselines far outside it are listed instead of drawn.
    lat_hi = max(r.latency_s for r in sweeps) if sweeps else None
    en_hi = max(r.energy_j for r in sweeps) if sweeps else None
    off: list[str] = []
    for r in base:
        name = r.sweep[len(BASELINE):]
        marker, colour, size, label = _BASELINE_STYLE.get(name, ("*", "black", 50, name))
        x = r.bundle_latency_s if r.bundle_latency_s is not None else r.latency_s
        y = r.bundle_energy_j if r.bundle_energy_j is not None else r.energy_j
        tag = label + (f" ({r.settings.split(':', 1)[1]})" if name in (ALL_EDGE, ALL_CLOUD) else "")
        if lat_hi is not None and en_hi is not None and (x > 3 * lat_hi or y > 3 * en_hi):
            off.append(f"{tag}: {x:.3g} s, {y:.3g} J")
            continue
        h = ax.scatter([x * sx], [y * sy], marker=marker, s=size, color=colour, edgecolors="black",
                       linewidths=0.4, zorder=5 + 50 / size)
        handles.setdefault(label, h)
        if r.bundle_latency_s is not None and (
            abs(r.latency_s - x) > 0.01 * x or abs(r.energy_j - y) > 0.01 * max(y, 1e-12)
        ):
            ax.plot([r.latency_s * sx, x * sx], [r.energy_j * sy, y * sy], ls=":", color=colour, lw=1, zorder=3)
            h2 = ax.scatter([r.latency_s * sx], [r.energy_j * sy], marker=marker, s=size, facecolors="none",
                            edgecolors=colour, zorder=4)
            handles.setdefault("hollow: layer-sum estimate of a baseline", h2)
    if off:
        ax.text(0.98, 0.98, "off the plot:\n" + "\n".join(off), transform=ax.transAxes, ha="right", va="top",
                fontsize=6.5, bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))


# -- CLI ---------------------------------------------------------------------------------


def _split(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise UsageError(f"empty {what} list {text!r}")
    return items


def _watts(text: str) -> list[float]:
    out = []
    for item in _split(text, "--assume-edge-power") or []:
        try:
            out.append(float(item))
        except ValueError:
            raise UsageError(f"--assume-edge-power: not a number of watts: {item!r}") from None
    return out


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog or "python -m dime.sweep",
        description="Sweep latency and energy budgets over links and models; write the points, "
        "the baselines and their Pareto fronts to a CSV (and a figure).",
        epilog=f"Exit status: 0 done; 2 bad input; {EXIT_CELLS_FAILED} the grid finished but some "
        "(model, link) cells failed (their error is in the CSV).",
    )
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help="profile CSV files")
    p.add_argument("--profile", dest="profile_opts", action="extend", nargs="+", default=[],
                   metavar="PROFILE", help="profile CSV files (same as the positional ones)")
    p.add_argument("--models", "--model", dest="models", metavar="LIST",
                   help="comma list of models to sweep (default: every model in the files)")
    p.add_argument("--edge", metavar="DEV", help="edge device (holds the input, gets the output back)")
    p.add_argument("--cloud", metavar="DEV", help="cloud device")
    p.add_argument("--edge-settings", metavar="LIST", help="comma list of edge settings (default: all)")
    p.add_argument("--cloud-settings", metavar="LIST", help="comma list of cloud settings (default: all)")
    p.add_argument("--links", default="3g,4g,wifi", metavar="LIST",
                   help="comma list of link presets (default 3g,4g,wifi)")
    p.add_argument("--max-bundle", type=positive_int, metavar="K",
                   help="longest bundle in layers (default: the largest K profiled for every chosen setting)")
    p.add_argument("--points", type=positive_int, default=20, metavar="N",
                   help="budgets per sweep (default 20)")
    p.add_argument("--assume-edge-power", metavar="W",
                   help="no edge energy in the profiles: assume W x latency joules, one W or one per edge "
                   "setting; every output says the energy is assumed")
    p.add_argument("--trim", type=fraction, default=0.1, metavar="F",
                   help="fraction of runs dropped at each end before averaging (default 0.1)")
    p.add_argument("--solver", choices=BACKEND_NAMES, default="auto",
                   help="auto (gurobi if licensed and the model fits, else cbc), gurobi, cbc or highs")
    p.add_argument("--time-limit", type=positive_float, metavar="S", help="solver time limit per solve, seconds")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="(model, link) cells run in N processes (default 1)")
    p.add_argument("--out", metavar="CSV", help="the CSV to write (required)")
    p.add_argument("--plot", metavar="PNG", help="also draw the fronts (needs matplotlib)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the cells an interrupted run of the same sweep left next to --out")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less output")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more output")
    return p


def _models_in(path: str) -> list[str] | None:
    """The models named in a profile CSV, read cheaply; None when it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "model" not in (reader.fieldnames or []):
                return None
            return list(dict.fromkeys((rec.get("model") or "").strip() for rec in reader))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def build_cells(args: argparse.Namespace, paths: Sequence[str]) -> list[CellSpec]:
    """Read and check every model's profiles; one CellSpec per (model, link). Raises on bad input."""
    links = [get_link(name) for name in _split(args.links, "--links") or []]
    if len({l.name for l in links}) != len(links):
        raise UsageError(f"--links names a link twice: {args.links}")
    by_file = {p: _models_in(p) for p in paths}
    for p, models in by_file.items():
        if models is None:
            load_profiles([p])  # raises the profile reader's own message
    available = list(dict.fromkeys(m for ms in by_file.values() for m in (ms or []) if m))
    wanted = _split(args.models, "--models") if args.models else available
    for m in wanted:
        if m not in available:
            raise UsageError(f"no profiles of model {m!r}; models in the files: {', '.join(available)}")
    watts = _watts(args.assume_edge_power) if args.assume_edge_power else None

    cells: list[CellSpec] = []
    for model in wanted:
        files = [p for p, ms in by_file.items() if ms and model in ms]
        table = load_profiles(files, model=model, trim=args.trim)
        for flag, value in (("--edge", args.edge), ("--cloud", args.cloud)):
            if value is None:
                raise UsageError(f"{flag} DEV is required; devices in the profiles: {', '.join(table.settings)}")
        edge = make_role(table, args.edge, _split(args.edge_settings, "--edge-settings"))
        cloud = make_role(table, args.cloud, _split(args.cloud_settings, "--cloud-settings"))
        roles = (edge, cloud)
        if args.max_bundle is None:
            k = common_max_bundle(table, roles)
        else:
            k = min(args.max_bundle, table.n_layers)
            require_bundles(table, roles, k)
        source = ""
        if watts is not None:
            table, source = assume_edge_power(table, edge, watts)
        source = source or edge_energy_source(table, edge, k)
        edge_energy_source(table, edge, k)  # every edge bundle must have energy
        for link in links:
            cells.append(CellSpec(table=table, roles=roles, link=link, max_bundle=k, points=args.points,
                                  solver=args.solver, time_limit_s=args.time_limit, energy_source=source))
    return cells


def _summary(res: CellResult) -> str:
    rows = res.rows
    if res.failed:
        return f"{rows[0].model:<14} {rows[0].link:<5} FAILED: {rows[0].error}"
    front = [r for r in rows if r.pareto]
    if not front:
        return f"{rows[0].model:<14} {rows[0].link:<5} no feasible sweep point (see the error column)"
    lat = [r.latency_s for r in front]
    en = [r.energy_j for r in front]
    uniq = len({(r.latency_s, r.energy_j) for r in front})
    return (f"{rows[0].model:<14} {rows[0].link:<5} latency {min(lat):.4g}..{max(lat):.4g} s, "
            f"energy {min(en):.4g}..{max(en):.4g} J, {uniq} front points, "
            f"{res.solves} solves in {res.wall_s:.2f} s{' (reused)' if res.reused else ''}")


@dataclass
class SweepOutcome:
    """What `run_sweep` did, with where the time went (seconds)."""

    cells: list[CellSpec]
    results: list[CellResult]
    rows: list[SweepRow]
    out: Path
    plot: Path | None
    load_s: float  # reading and checking the profiles
    grid_s: float  # running the cells
    write_s: float  # the CSV and the figure

    @property
    def failed(self) -> int:
        return sum(res.failed for res in self.results)


def run_sweep(args: argparse.Namespace) -> SweepOutcome:
    """Everything `python -m dime.sweep` does but printing: check, run, write the CSV and the plot."""
    t0 = time.perf_counter()
    paths = list(args.profiles) + list(args.profile_opts)
    if not paths:
        raise UsageError("give one or more profile files")
    if not args.out:
        raise UsageError("--out CSV is required")
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give a CSV file name")
    if args.plot:
        check_plot_path(args.plot)  # fail now, not after the whole grid
    cells = build_cells(args, paths)

    t1 = time.perf_counter()
    partial = out.parent / f".{out.name}.partial"
    try:
        results = run_grid(cells, jobs=args.jobs, partial_dir=partial, resume=args.resume,
                           progress=args.quiet == 0)
    except KeyboardInterrupt:
        if partial.is_dir() and any(partial.iterdir()):
            print(f"interrupted: finished cells kept in {partial}; rerun with --resume to reuse them",
                  file=sys.stderr)
        raise
    t2 = time.perf_counter()
    rows = [r for res in results for r in res.rows]
    atomic_write_text(out, rows_to_csv(rows))
    for spec in cells:  # the final CSV holds them now
        p = _cell_path(partial, spec)
        if p.exists():
            p.unlink()
    try:
        partial.rmdir()
    except OSError:
        pass
    if args.plot:
        plot_rows(rows, args.plot)
    return SweepOutcome(cells=cells, results=results, rows=rows, out=out,
                        plot=Path(args.plot) if args.plot else None,
                        load_s=t1 - t0, grid_s=t2 - t1, write_s=time.perf_counter() - t2)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    if args.verbose < 2:
        logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache notes are noise here
    res = run_sweep(args)
    if args.quiet == 0:
        for cell in res.results:
            print(_summary(cell))
    failed = res.failed
    print(f"wrote {res.out}: {len(res.rows)} rows, {len(res.results)} cells"
          f"{f', {failed} failed' if failed else ''} in {res.load_s + res.grid_s + res.write_s:.1f} s")
    if res.plot:
        print(f"wrote {res.plot}")
    if failed:
        log.warning("%d of %d cells failed; see the error column of %s", failed, len(res.results), res.out)
        return EXIT_CELLS_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
