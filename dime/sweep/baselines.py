"""Baselines of a sweep cell: all-edge, all-cloud, Neurosurgeon, layer-wise (JointDNN), DIME at fixed edge settings.

Layer-sum baselines are re-evaluated with bundle profiles (merge_bundles) to show how far off
the layer-sum estimate is.
"""

from __future__ import annotations

from typing import Any, Sequence

from dime.core.costs import CLOUD, EDGE, Assignment, CostTable, Role, evaluate
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


def baselines(spec: CellSpec, solve: CellSolver | None = None) -> list[SweepRow]:
    """The baseline rows of a cell (see BASELINES)."""
    solve = solve or CellSolver(spec)
    table, roles, link, k = spec.table, spec.roles, spec.link, spec.max_bundle
    edge, cloud = roles
    n = table.n_layers
    rows: list[SweepRow] = []

    def estimated(name: str, placement: list[Assignment]) -> SweepRow:
        est = evaluate(table, roles, link, placement)
        real = evaluate(table, roles, link, merge_bundles(table, roles, placement, k))
        row = fill_row(base_row(spec, BASELINE + name), table, placement, est, real)
        row.status = EVALUATED
        return row

    def guarded(name: str, make: Any) -> None:
        try:
            rows.append(make())
        except (InfeasibleError, SolverError) as e:
            rows.append(failed_row(spec, BASELINE + name, e))

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
            return solution_row(spec, BASELINE + name, sol, real)

        guarded(name, run)

    speed = {t: sum(table.cost(edge.device, t, i, i).latency_s for i in range(n)) for t in edge.settings}
    ordered = sorted(edge.settings, key=lambda t: speed[t])
    for name, t in ((DIME_EDGE_FASTEST, ordered[0]), (DIME_EDGE_SLOWEST, ordered[-1])):
        def run_fixed(t: str = t, name: str = name) -> SweepRow:
            fixed = (Role(edge.device, (t,)), cloud)
            m = build_model(PlacementProblem(table=table, roles=fixed, link=link, max_bundle=k))
            return solution_row(spec, BASELINE + name, solve(m))

        guarded(name, run_fixed)
    return rows
