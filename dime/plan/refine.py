"""Plan-aware refinement of a partly predicted profile (no torch).

Each round solves the problem, then asks which predicted bundles could change the answer:
- the predicted bundles the chosen plan uses;
- those of the best alternative within the predicted uncertainty: the plan solved again with
  every predicted bundle outside the chosen plan at its optimistic cost (mean - z sd) and
  those inside it at their pessimistic cost (mean + z sd). If that plan differs from the
  chosen one, it could beat it once measured.
It measures them (the plan's first, the largest sd first, within the budget), the profile's
remaining bundles are predicted again from the larger measured set, and the next round
solves again; until the chosen plan and its challenger use measured bundles only (or the
two agree), the budget is spent, or what is left is predicted on devices that cannot be
measured here.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

from dime.core.costs import Assignment, BundleCost, CostTable
from dime.plan.problem import PlacementProblem
from dime.plan.solution import Solution

log = logging.getLogger(__name__)

Key = tuple[str, str, int, int]  # (device, setting, start, end)
Z_DEFAULT = 2.0


@dataclass(frozen=True)
class RefineRound:
    placement: tuple[Assignment, ...]
    objective: float
    predicted_in_plan: tuple[Key, ...]
    challenger: tuple[Assignment, ...] | None  # the alternative within the uncertainty, if any
    measured: tuple[Key, ...]  # measured after this round's solve


@dataclass
class RefineResult:
    problem: PlacementProblem  # with the refined table
    solution: Solution  # the last solve
    stop: str  # why the loop ended
    rounds: list[RefineRound] = field(default_factory=list)
    elsewhere: tuple[Key, ...] = ()  # predicted bundles that matter but cannot be measured here

    @property
    def measured(self) -> int:
        return sum(len(r.measured) for r in self.rounds)


def plan_keys(problem: PlacementProblem, placement: Sequence[Assignment]) -> list[Key]:
    return [(problem.roles[a.role].device, a.setting, a.start, a.end) for a in placement]


def predicted_keys(table: CostTable, keys: Sequence[Key]) -> list[Key]:
    """The predicted ones among `keys`, largest latency sd first."""
    guessed = [k for k in dict.fromkeys(keys) if table.costs[k].predicted]
    return sorted(guessed, key=lambda k: -(table.costs[k].latency_sd_s or 0.0))


def shifted_cost(c: BundleCost, z: float) -> BundleCost:
    """The cost z sds above its mean (below, for z < 0), at least zero; energy likewise where it has an sd."""
    lat = max(0.0, c.latency_s + z * (c.latency_sd_s or 0.0))
    energy = c.energy_j
    if energy is not None and c.energy_sd_j is not None:
        energy = max(0.0, energy + z * c.energy_sd_j)
    return dataclasses.replace(c, latency_s=lat, energy_j=energy)


def challenger_table(table: CostTable, plan: set[Key], z: float = Z_DEFAULT) -> CostTable:
    """Predicted bundles at mean - z sd, except the plan's, at mean + z sd; measured ones as they are."""
    costs = {k: (shifted_cost(c, z if k in plan else -z) if c.predicted else c) for k, c in table.costs.items()}
    return dataclasses.replace(table, costs=costs)


def refine(problem: PlacementProblem, solve: Callable[[PlacementProblem], Solution],
           measure: Callable[[Sequence[Key]], CostTable], budget: int,
           can_measure: Callable[[Key], bool] = lambda k: True, z: float = Z_DEFAULT) -> RefineResult:
    """Measure the predicted bundles that could change the plan, re-solve, repeat (see the module's
    docstring). `measure(keys)` measures them and returns the table with them measured and the
    rest predicted again; `budget` bounds the bundle/setting pairs measured in all."""
    rounds: list[RefineRound] = []
    used = 0
    while True:
        sol = solve(problem)
        table = problem.table
        plan = plan_keys(problem, sol.placement)
        guessed = predicted_keys(table, plan)
        challenger: tuple[Assignment, ...] | None = None
        alternative: list[Key] = []
        if any(c.predicted for c in table.costs.values()):
            rival = solve(dataclasses.replace(problem, table=challenger_table(table, set(plan), z)))
            if tuple(rival.placement) != tuple(sol.placement):
                challenger = tuple(rival.placement)
                alternative = [k for k in predicted_keys(table, plan_keys(problem, rival.placement)) if k not in guessed]
        wanted = [k for k in guessed + alternative if can_measure(k)]
        elsewhere = tuple(k for k in guessed + alternative if not can_measure(k))
        if not wanted:
            stop = ("the plan and its challengers use measured bundles only" if not elsewhere else
                    "what is left is predicted on devices not measured here")
            return RefineResult(problem, sol, stop, rounds, elsewhere)
        if used >= budget:
            return RefineResult(problem, sol, f"the budget of {budget} bundles is spent", rounds,
                                elsewhere + tuple(wanted))
        take = wanted[: budget - used]
        log.info("refine round %d: measuring %d bundle(s) (%d in the plan, %d of its challenger)",
                 len(rounds) + 1, len(take), sum(k in guessed for k in take), sum(k not in guessed for k in take))
        rounds.append(RefineRound(tuple(sol.placement), sol.objective, tuple(guessed), challenger, tuple(take)))
        problem = dataclasses.replace(problem, table=measure(take))
        used += len(take)
