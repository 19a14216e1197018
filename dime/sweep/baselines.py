"""Baselines of a sweep cell: each device alone, the best single split (Neurosurgeon), layer-wise
(JointDNN), DIME with the source fixed at its fastest or slowest setting.

Two devices (edge = the source, cloud) are the case DIME compares with; with a system file the
same baselines run on every device: all on one device (the input and output moved over routes),
the best single split from the source to each other device. Layer-sum baselines are
re-evaluated with bundle profiles (merge_bundles) to show how far off the layer-sum estimate
is. A baseline that breaks the system's own constraints (private layers, pins, memory, one
setting per device) is recorded as infeasible rather than drawn.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from dime.core.costs import Assignment, CostTable, Role, evaluate
from dime.errors import InfeasibleError, SolverError
from dime.plan import PlacementProblem, build_model
from dime.sweep.rows import BASELINE, EVALUATED, SweepRow
from dime.sweep.spec import (
    CellSolver,
    CellSpec,
    base_row,
    failed_row,
    fill_row,
    solution_row,
)

# Baseline names of two devices, in the order they are written. With a system file the
# device names replace edge and cloud: all-<device>, dime-<source>-fastest.
ALL_EDGE = "all-edge"  # every layer on the edge, one row per edge setting
ALL_CLOUD = "all-cloud"  # every layer in the cloud, one row per cloud setting
NEUROSURGEON = "neurosurgeon"  # best single split by the layer-sum latency (one row per other device)
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


def all_on(device: str) -> str:
    """The baseline that runs every layer on `device` (all-edge, all-cloud for two)."""
    return f"all-{device}"


def dime_fixed(source: str, which: str) -> str:
    """DIME with the source at its `which` ("fastest" or "slowest") setting."""
    return f"dime-{source}-{which}"


def is_layer_sum(name: str) -> bool:
    """Whether a baseline decides layer by layer (see LAYER_SUM_BASELINES)."""
    return name in LAYER_SUM_BASELINES or name.startswith("all-")


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


def breaks(problem: PlacementProblem, placement: Sequence[Assignment]) -> str | None:
    """Why a placement breaks the problem's constraints (budgets aside), or None."""
    table, roles = problem.table, problem.roles
    for a in placement:
        if not problem.allowed(a.start, a.end, a.role):
            return (f"{table.bundle_name(a.start, a.end)} may not run on {roles[a.role].name} "
                    "(private layers or pins)")
    if problem.one_setting_per_device:
        for r, role in enumerate(roles):
            if len({a.setting for a in placement if a.role == r}) > 1:
                return f"{role.name} runs at two settings (one setting per device)"
    if not problem.memory_fits(placement):
        return "does not fit the devices' memory"
    return None


def baselines(spec: CellSpec, solve: CellSolver | None = None) -> list[SweepRow]:
    """The baseline rows of a cell (see BASELINES)."""
    solve = solve or CellSolver(spec)
    problem = spec.problem
    table, roles, net, k = problem.table, problem.roles, problem.network, problem.k
    src = problem.source
    n = table.n_layers
    others = [r for r, role in enumerate(roles) if role.compute and r != src]
    rows: list[SweepRow] = []

    def real(placement: Sequence[Assignment]) -> list[Assignment]:
        return merge_bundles(table, roles, placement, k)

    def estimated(name: str, placement: list[Assignment]) -> SweepRow:
        merged = real(placement)
        why = breaks(problem, merged)
        if why is not None:
            return failed_row(spec, BASELINE + name, InfeasibleError(f"breaks the system's constraints: {why}"))
        est = evaluate(table, roles, net, placement)
        row = fill_row(base_row(spec, BASELINE + name), spec, placement, est, evaluate(table, roles, net, merged))
        row.status = EVALUATED
        return row

    def guarded(name: str, make: Callable[[], SweepRow]) -> None:
        try:
            rows.append(make())
        except (InfeasibleError, SolverError) as e:
            rows.append(failed_row(spec, BASELINE + name, e))

    for r in (src, *others):
        for t in roles[r].settings:
            rows.append(estimated(all_on(roles[r].name), per_layer(n, [(r, t)] * n)))

    # Neurosurgeon: layers 0..cut-1 on the source, the rest on one other device, one setting
    # each, chosen by the per-layer latency sum that method works with; one row per device.
    for d in others:
        best: tuple[float, list[Assignment]] | None = None
        for cut in range(n + 1):
            for ts in roles[src].settings:
                for td in roles[d].settings:
                    p = per_layer(n, [(src, ts)] * cut + [(d, td)] * (n - cut))
                    if breaks(problem, real(p)) is not None:
                        continue
                    lat = evaluate(table, roles, net, p).latency_s
                    if best is None or lat < best[0]:
                        best = (lat, p)
        if best is None:
            rows.append(failed_row(spec, BASELINE + NEUROSURGEON, InfeasibleError(
                f"no single split to {roles[d].name} meets the system's constraints")))
        else:
            rows.append(estimated(NEUROSURGEON, best[1]))

    layerwise = build_model(dataclasses.replace(problem, max_bundle=1))
    for name, objective in ((LAYERWISE, "latency"), (LAYERWISE_ENERGY, "energy")):
        def run(name: str = name, objective: str = objective) -> SweepRow:
            sol = solve(layerwise.with_budgets(objective=objective))
            bundle_ev = evaluate(table, roles, net, real(sol.placement))
            return solution_row(spec, BASELINE + name, sol, bundle_ev)

        guarded(name, run)

    source = roles[src]
    speed = {t: sum(table.cost(source.device, t, i, i).latency_s for i in range(n)) for t in source.settings}
    ordered = sorted(source.settings, key=lambda t: speed[t])
    for which, t in (("fastest", ordered[0]), ("slowest", ordered[-1])):
        name = dime_fixed(source.name, which)

        def run_fixed(t: str = t) -> SweepRow:
            fixed = tuple(dataclasses.replace(role, settings=(t,)) if r == src else role
                          for r, role in enumerate(roles))
            return solution_row(spec, BASELINE + name, solve(build_model(dataclasses.replace(problem, roles=fixed))))

        guarded(name, run_fixed)
    return rows
