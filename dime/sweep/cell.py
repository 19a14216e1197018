"""One cell: the energy-budget and latency-budget sweeps of a (model, link), and its baselines."""

from __future__ import annotations

import logging
import time

import numpy as np

from dime.core.costs import EDGE
from dime.errors import InfeasibleError, SolverError
from dime.plan import PlacementModel, PlacementProblem, build_model
from dime.sweep.baselines import baselines
from dime.sweep.energy import edge_energy_source
from dime.sweep.rows import (
    CELL_FAILED,
    ENERGY_SWEEP,
    LATENCY_SWEEP,
    SweepRow,
    mark_pareto,
)
from dime.sweep.spec import CellResult, CellSolver, CellSpec, failed_row, solution_row

log = logging.getLogger(__name__)

_TINY_BUDGET = 1e-12  # budgets must be > 0; a zero-energy optimum is swept from here


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
    solve = CellSolver(spec)
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
                row = solution_row(spec, kind, solve(m))
            except (InfeasibleError, SolverError) as e:
                row = failed_row(spec, kind, e)
            row.point = i
            row.budget = b  # J for an energy budget, s for a latency budget
            if kind == ENERGY_SWEEP:
                row.max_energy_j = b
            else:
                row.max_latency_s = b
            rows.append(row)
    mark_pareto(rows)
    rows.extend(baselines(spec, solve))
    return CellResult(rows=rows, wall_s=time.perf_counter() - t0, solves=solve.count)


def _anchor(solve: CellSolver, model: PlacementModel, objective: str, *, fallback: float, **budget: float | None) -> float:
    try:
        ev = solve(model.with_budgets(objective=objective, **budget)).evaluation
    except InfeasibleError:
        # Only possible at the solver's tolerance; the unconstrained optimum is as good an end.
        return fallback
    return ev.energy_j if objective == "energy" else ev.latency_s


def run_cell(spec: CellSpec) -> CellResult:
    """sweep_cell, with any failure recorded as one row instead of raised."""
    t0 = time.perf_counter()
    try:
        return sweep_cell(spec)
    except Exception as e:  # a failed cell must not stop the grid
        log.debug("cell %s failed", spec.label, exc_info=True)
        row = failed_row(spec, CELL_FAILED, e)
        row.status = "error"
        return CellResult(rows=[row], wall_s=time.perf_counter() - t0, failed=True)
