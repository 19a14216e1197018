"""One cell: the energy-budget and latency-budget sweeps of a (model, link setting), and its baselines.

The points of a cell come from one function, `sweep_points`, which asks a *point source*
for the best placement under each budget. `point_source` decides where they come from: the
whole latency-energy front, found once by the DP where it applies (`FrontPoints`), else the
cell's ILP, built once and re-solved per budget (`IlpPoints`); both give the same rows.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import numpy as np

from dime.errors import InfeasibleError, SolverError
from dime.plan import PlacementModel, Solution, build_model, dp_unsupported, solve_front
from dime.plan.problem import ENERGY, LATENCY
from dime.sweep.baselines import baselines
from dime.plan.energy import energy_source
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


class PointSource(Protocol):
    """The best placement for an objective under at most one budget (the sweep asks no more).

    Raises InfeasibleError when no placement meets the budget, SolverError when a solver fails.
    """

    def best(self, objective: str, max_latency_s: float | None = None,
             max_energy_j: float | None = None) -> Solution: ...


class IlpPoints:
    """Each point one solve of the cell's model (its ILP built once, or the DP; with wake-up, the
    search from their plan): only the objective and budgets change."""

    def __init__(self, model: PlacementModel, solve: CellSolver) -> None:
        self.model, self.solve = model, solve

    def best(self, objective: str, max_latency_s: float | None = None,
             max_energy_j: float | None = None) -> Solution:
        return self.solve(self.model.with_budgets(objective=objective, max_latency_s=max_latency_s,
                                                  max_energy_j=max_energy_j))


class FrontPoints:
    """Each point read off a whole latency-energy Pareto front, solved once.

    `front` is any object with ``min_latency(max_energy_j=None)`` and
    ``min_energy(max_latency_s=None)`` returning a Solution or None (dime.plan's Front).
    """

    def __init__(self, front: Any) -> None:
        self.front = front

    def best(self, objective: str, max_latency_s: float | None = None,
             max_energy_j: float | None = None) -> Solution:
        if objective == LATENCY and max_latency_s is None:
            sol = self.front.min_latency(max_energy_j=max_energy_j)
            budget = f"--max-energy {max_energy_j:g} J" if max_energy_j is not None else ""
        elif objective == ENERGY and max_energy_j is None:
            sol = self.front.min_energy(max_latency_s=max_latency_s)
            budget = f"--max-latency {max_latency_s:g} s" if max_latency_s is not None else ""
        else:
            raise ValueError(f"a front answers min {objective} under the other quantity's budget only")
        if sol is None:
            raise InfeasibleError(f"no placement meets {budget}" if budget else "no placement meets the constraints")
        return sol


def point_source(spec: CellSpec, solve: CellSolver) -> PointSource:
    """Where the points of a cell come from: the DP's whole front (one solve) where the DP
    applies and the cell's solver allows it (auto, dp), else the model re-solved per budget (also
    where wake-up counts: the front is the DP's, without it)."""
    problem = spec.problem
    if spec.solver in ("auto", "dp") and dp_unsupported(problem) is None and not problem.counts_wakeup:
        solve.count += 1
        return FrontPoints(solve_front(problem))
    return IlpPoints(build_model(problem), solve)


def sweep_points(spec: CellSpec, solve: CellSolver) -> list[SweepRow]:
    """The energy-budget and latency-budget sweeps of one cell, Pareto flags set."""
    points = point_source(spec, solve)
    fastest = points.best(LATENCY)
    frugal = points.best(ENERGY)
    l_min, e_min = fastest.evaluation.latency_s, frugal.evaluation.energy_j
    # Lexicographic ends: several placements can share the least latency (or energy);
    # the front ends at the one of them that is best in the other quantity.
    e_high = _anchor(points, ENERGY, fallback=fastest.evaluation.energy_j, max_latency_s=_budget(l_min))
    l_high = _anchor(points, LATENCY, fallback=frugal.evaluation.latency_s, max_energy_j=_budget(e_min))

    rows: list[SweepRow] = []
    for kind, objective, low, high in (
        (ENERGY_SWEEP, LATENCY, e_min, e_high),
        (LATENCY_SWEEP, ENERGY, l_min, l_high),
    ):
        for i, b in enumerate(budgets(low, high, spec.points)):
            b = _budget(b)
            budget = {"max_energy_j": b} if kind == ENERGY_SWEEP else {"max_latency_s": b}
            try:
                row = solution_row(spec, kind, points.best(objective, **budget))
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
    return rows


def sweep_cell(spec: CellSpec) -> CellResult:
    """The two budget sweeps and the baselines of one (model, link setting)."""
    t0 = time.perf_counter()
    solve = CellSolver(spec)
    energy_source(spec.table, spec.resolved_roles(), spec.max_bundle)  # raises, naming a bundle without energy
    rows = sweep_points(spec, solve)
    rows.extend(baselines(spec, solve))
    return CellResult(rows=rows, wall_s=time.perf_counter() - t0, solves=solve.count)


def _anchor(points: PointSource, objective: str, *, fallback: float, **budget: float) -> float:
    try:
        ev = points.best(objective, **budget).evaluation
    except InfeasibleError:
        # Only possible at the solver's tolerance; the unconstrained optimum is as good an end.
        return fallback
    return ev.energy_j if objective == ENERGY else ev.latency_s


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
