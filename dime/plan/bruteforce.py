"""Exhaustive search over placements: an independent check of the ILP on small models.

Every composition of the n layers into bundles of at most K layers, times a role and a
setting per bundle, is evaluated with dime.core.costs.evaluate; private layers, pins, one
setting per role, the merge rule (unless bundle_sum) and memory limits filter them. Relays
(roles without compute) get no bundle: they have no settings and `allowed` excludes them.
Exponential: n <= ~8 only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator

from dime.core.costs import Assignment, Evaluation, merge_violation
from dime.errors import UsageError
from dime.plan.problem import (
    ENERGY,
    PlacementProblem,
    budget_with_slack,
    objective_value,
)

MAX_LAYERS = 10


def compositions(n: int, k: int) -> Iterator[list[tuple[int, int]]]:
    """Every split of layers 0..n-1 into consecutive bundles of 1..k layers."""
    if n == 0:
        yield []
        return
    for length in range(1, min(k, n) + 1):
        for rest in compositions(n - length, k):
            yield [(0, length - 1)] + [(s + length, e + length) for s, e in rest]


def placements(problem: PlacementProblem) -> Iterator[list[Assignment]]:
    """Every placement the problem allows, budgets aside."""
    n = problem.table.n_layers
    if n > MAX_LAYERS:
        raise UsageError(f"brute force is for at most {MAX_LAYERS} layers, got {n}")
    roles = problem.roles
    for comp in compositions(n, problem.k):
        choices = [
            [(r, t) for r, role in enumerate(roles) if problem.allowed(s, e, r) for t in role.settings]
            for s, e in comp
        ]
        for pick in itertools.product(*choices):
            if problem.one_setting_per_device:
                if any(len({t for r, t in pick if r == role}) > 1 for role in range(len(roles))):
                    continue
            placement = [Assignment(s, e, r, t) for (s, e), (r, t) in zip(comp, pick)]
            if not problem.bundle_sum and merge_violation(placement, problem.k) is not None:
                continue
            if not problem.memory_fits(placement):
                continue
            yield placement


def _within(value: float, budget: float | None) -> bool:
    return budget is None or value <= budget_with_slack(budget)


def evaluated(problem: PlacementProblem) -> list[tuple[list[Assignment], Evaluation]]:
    """Every allowed placement with its evaluation (budgets and objective aside)."""
    return [(p, problem.evaluate(p)) for p in placements(problem)]


def optimum(
    problem: PlacementProblem, candidates: Iterable[tuple[list[Assignment], Evaluation]]
) -> tuple[float, list[Assignment], Evaluation] | None:
    """The best of `candidates` under the problem's objective and budgets, or None."""
    best: tuple[float, list[Assignment], Evaluation] | None = None
    for placement, ev in candidates:
        if not _within(ev.latency_s, problem.max_latency_s):
            continue
        if problem.max_energy_j is not None and not _within(ev.energy_j, problem.max_energy_j):
            continue
        value = objective_value(problem.objective, ev)
        if problem.objective == ENERGY and math.isnan(value):
            raise UsageError("an energy-counted device's profile has no energy")
        if best is None or value < best[0]:
            best = (value, placement, ev)
    return best


def brute_force(problem: PlacementProblem) -> tuple[float, list[Assignment], Evaluation] | None:
    """The optimum (objective value, placement, evaluation), or None when the budgets admit none."""
    return optimum(problem, ((p, problem.evaluate(p)) for p in placements(problem)))
