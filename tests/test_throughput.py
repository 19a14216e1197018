"""The min-period (throughput) solve: run costs, the run model, the pipeline start, the cutoff
and warm starts, all against brute force."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import random

import numpy as np
import pytest
from instances import random_system_problem
from test_ilp import BACKENDS, need, rel_close, unusable
from test_network import check, relay_problem

from dime.core.costs import Assignment, merge_violation
from dime.errors import UsageError
from dime.plan import PlacementProblem, build_model
from dime.plan.bruteforce import compositions, evaluated, optimum
from dime.plan.linear import INF, ModelBuilder
from dime.plan.runs import pipelines, run_costs


def _costs(problem: PlacementProblem, merge_rule: bool):
    return {r: run_costs(problem.table, r, role, problem.k, lambda s, e, r=r: problem.allowed(s, e, r), merge_rule)
            for r, role in enumerate(problem.roles) if role.compute}


def _least_run(problem: PlacementProblem, r: int, a: int, e: int, merge_rule: bool) -> float:
    """Brute force: the least compute of layers a..e as bundles on role r."""
    role, best = problem.roles[r], math.inf
    for comp in compositions(e - a + 1, problem.k):
        comp = [(s + a, t + a) for s, t in comp]
        if not all(problem.allowed(s, t, r) for s, t in comp):
            continue
        for pick in itertools.product(role.settings, repeat=len(comp)):
            placement = [Assignment(s, t, r, x) for (s, t), x in zip(comp, pick)]
            if merge_rule and merge_violation(placement, problem.k) is not None:
                continue
            best = min(best, sum(problem.table.cost(role.device, a_.setting, a_.start, a_.end).latency_s
                                 for a_ in placement))
    return best


@pytest.mark.parametrize("merge_rule", [True, False])
def test_run_costs_are_the_least_bundlings(merge_rule):
    """C_r[a,e] equals exhaustive search over the bundlings of a..e, and its bundles add up to it
    (private layers and pins included: random_system_problem has both)."""
    for seed in range(8):
        rng = random.Random(seed)
        problem = random_system_problem(seed, 3, 6, rng.randint(1, 6), settings=2, memory=False)
        for r, c in _costs(problem, merge_rule).items():
            for a in range(problem.table.n_layers):
                for e in range(a, problem.table.n_layers):
                    want, got = _least_run(problem, r, a, e, merge_rule), c.latency_s[a, e]
                    assert (math.isinf(want) and math.isinf(got)) or math.isclose(want, got, rel_tol=1e-12)
                    if math.isfinite(got):
                        bundles = c.bundles(a, e)
                        assert (bundles[0].start, bundles[-1].end) == (a, e)
                        assert all(b.end - b.start < problem.k and b.role == r for b in bundles)
                        assert sum(problem.table.cost(problem.roles[r].device, b.setting, b.start, b.end).latency_s
                                   for b in bundles) == got
                        assert not merge_rule or merge_violation(bundles, problem.k) is None


def _throughput_cases() -> list[tuple[PlacementProblem, int]]:
    """(problem, seed): random systems without memory limits (the run model), with relays,
    the merge rule on and off, private layers and pins; 100-15,000 placements each."""
    out = []
    for seed, (n_devices, n_layers, k) in enumerate([(3, 5, 3), (3, 5, 5), (4, 4, 3), (4, 5, 2), (4, 4, 4)]):
        for bundle_sum in (False, True):
            p = random_system_problem(300 + seed, n_devices, n_layers, k, memory=False)
            out.append((dataclasses.replace(p, bundle_sum=bundle_sum, objective="throughput"), seed))
            relayed = relay_problem(300 + seed, n_devices, n_layers, k, bundle_sum)
            roles = tuple(dataclasses.replace(r, memory_bytes=None) for r in relayed.roles)
            out.append((dataclasses.replace(relayed, roles=roles, objective="throughput"), seed))
    return out


CASES = _throughput_cases()
FAST = range(0, len(CASES), 5)  # the cases outside the slow tests (brute force takes 0.1-2 s a case)


@functools.lru_cache(maxsize=None)
def _evaluated(case: int):
    """Brute force's placements of CASES[case], computed once for all tests."""
    return evaluated(CASES[case][0])


@pytest.mark.parametrize("case", [c if c in FAST else pytest.param(c, marks=pytest.mark.slow)
                                  for c in range(len(CASES))])
def test_min_period_equals_brute_force_over_runs(case):
    """The run model (no memory limit, no energy budget) with and without a latency budget."""
    problem, seed = CASES[case]
    model = build_model(problem)
    assert model._runs_apply()
    cands = _evaluated(case)
    lats = sorted(ev.latency_s for _, ev in cands)
    budget = lats[0] + random.Random(seed).uniform(0.0, 0.6) * (lats[-1] - lats[0])
    for lat in (None, budget, lats[0] * 0.9):
        check(dataclasses.replace(problem, max_latency_s=lat), cands, backend="cbc" if not unusable("cbc")
              else "highs", model=model)


@pytest.mark.slow
def test_min_period_equals_brute_force_over_bundles():
    """Memory limits, one setting per role or an energy budget keep the bundle model, with the
    pipeline's cutoff."""
    for seed in range(6):
        p = dataclasses.replace(random_system_problem(400 + seed, 3 + seed % 2, 5, 3), objective="throughput")
        variants = [p, dataclasses.replace(p, one_setting_per_device=True)]
        cands = evaluated(p)
        energies = sorted(ev.energy_j for _, ev in cands if not math.isnan(ev.energy_j))
        if energies:
            variants.append(dataclasses.replace(p, max_energy_j=energies[len(energies) // 3]))
        for q in variants:
            model = build_model(q)
            if any(r.memory_bytes for r in q.roles) or q.one_setting_per_device or q.max_energy_j:
                assert not model._runs_apply()
            check(q, cands if q is not variants[1] else evaluated(q), model=model)




@pytest.mark.parametrize("backend", BACKENDS)
def test_poor_warm_starts_do_not_change_the_optimum(backend):
    """Started from the worst feasible placement, or from the best, every backend returns brute
    force's optimum, over runs and over bundles."""
    need(backend)
    for case in range(0, len(CASES), 10):
        problem, seed = CASES[case]
        one = dataclasses.replace(problem, one_setting_per_device=True)
        for q, cands in ((problem, _evaluated(case)), (one, evaluated(one))):
            worst = max(cands, key=lambda pe: pe[1].period_s)[0]
            best = min(cands, key=lambda pe: pe[1].period_s)
            model = build_model(q)
            for start in (worst, best[0]):
                sol = model.solve(backend, start=start)
                assert sol.status == "optimal"
                assert rel_close(sol.objective, best[1].period_s, 1e-6), (backend, seed, sol.objective, best[1])
    # and for the other objectives (no cutoff there, the start only)
    problem = random_system_problem(11, 3, 5, 3)
    cands = evaluated(problem)
    for objective in ("latency", "energy"):
        q = dataclasses.replace(problem, objective=objective)
        expected = optimum(q, cands)
        worst = max(cands, key=lambda pe: pe[1].latency_s)[0]
        assert rel_close(build_model(q).solve(backend, start=worst).objective, expected[0], 1e-6)


def test_infeasible_start_is_a_usage_error():
    problem = CASES[0][0]
    model = build_model(problem)
    n = problem.table.n_layers
    setting = problem.roles[0].settings[0]
    with pytest.raises(UsageError, match="the start placement .*covers 1 of 5 layers"):
        model.solve("highs", start=[Assignment(0, 0, 0, setting)])
    with pytest.raises(UsageError, match="longer than 3 layers"):
        model.solve("highs", start=[Assignment(0, n - 1, 0, setting)])
    lat = min(ev.latency_s for _, ev in _evaluated(0))
    worst = max(_evaluated(0), key=lambda pe: pe[1].latency_s)[0]
    with pytest.raises(UsageError, match="over the latency budget"):
        model.with_budgets(max_latency_s=lat * 1.0001).solve("highs", start=worst)


def test_pipelines_are_feasible_and_the_start_is_their_best():
    """Every pipeline candidate is a chain with at most one stage per role (the source: first
    and last), and the start is the feasible one with the least period."""
    for problem, _ in CASES:
        model = build_model(problem)
        costs = model._costs()
        cands = pipelines(problem.table, problem.network, [bool(r.energy) for r in problem.roles], costs)
        assert cands
        periods = []
        for runs in cands:
            placement = [b for a, e, r in runs for b in costs[r].bundles(a, e)]
            assert model.infeasibility(placement) is None
            stages = [r for a, e, r in runs]
            inner = stages[1:-1] if stages[0] == stages[-1] == problem.source and len(stages) > 1 else stages
            assert len(set(inner)) == len(inner) or stages == [problem.source]
            periods.append(problem.evaluate(placement).period_s)
        start = model._pipeline_start()
        assert problem.evaluate(start).period_s == min(periods)


def test_cutoff_keeps_the_start_and_the_optimum():
    """The run model without the runs and moves above the start's period still holds the start
    (its point is feasible) and the optimum."""
    from dime.plan.moves import SCALE
    from dime.plan.runs import RunModel

    for case in FAST:
        problem = CASES[case][0]
        model = build_model(problem)
        start = model._pipeline_start()
        cutoff = problem.evaluate(start).period_s * SCALE * (1 + 1e-9)
        full = RunModel(problem.table, problem.roles, problem.network, model._costs())
        cut = RunModel(problem.table, problem.roles, problem.network, model._costs(), cutoff=cutoff)
        assert cut.model.num_vars <= full.model.num_vars
        x = cut.values_of(start, problem.table.n_layers, problem.source)
        assert x is not None
        lm = cut.model
        for i in range(lm.num_rows):
            a, b = lm.row_start[i], lm.row_start[i + 1]
            activity = float(lm.row_value[a:b] @ x[lm.row_index[a:b]])
            assert lm.row_lower[i] - 1e-9 <= activity <= lm.row_upper[i] + 1e-9, lm.row_names[i]
        best = optimum(problem, _evaluated(case))
        assert cut.values_of(best[1], problem.table.n_layers, problem.source) is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_take_initial_values_and_priorities(backend):
    """A small knapsack: a poor initial point and branching priorities leave the optimum alone."""
    need(backend)
    rng = random.Random(3)
    b = ModelBuilder("knap")
    xs = [b.add_var(f"x{i}") for i in range(12)]
    weights = [rng.randint(3, 20) for _ in xs]
    values = [rng.randint(1, 30) for _ in xs]
    b.add_row("cap", dict(zip(xs, map(float, weights))), -INF, 40.0)
    lm = b.build(-np.array(values, dtype=float), priority=np.arange(12))
    from dime.plan import get_backend

    plain = get_backend(backend).solve(dataclasses.replace(lm, var_priority=None))
    started = get_backend(backend).solve(lm, None, np.zeros(12))
    assert plain.status == started.status == "optimal"
    assert plain.objective == pytest.approx(started.objective)
    best = min(-sum(v for v, w, on in zip(values, weights, pick) if on)
               for pick in itertools.product((0, 1), repeat=12)
               if sum(w for w, on in zip(weights, pick) if on) <= 40)
    assert started.objective == pytest.approx(best)
