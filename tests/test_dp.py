"""The label-setting DP (dime.plan.dp) against brute force, the ILP, and the command line."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import random
import re
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from instances import make_problem, random_system_problem, random_table, write_profile_csv
from test_ilp import KnownAnswers, _budgets, check_against_brute_force, fractions, rel_close, specs, unusable
from test_solve_cli import ROOT, one_line_error, run

from dime.core.costs import Role
from dime.core.links import Link
from dime.errors import InfeasibleError, UsageError
from dime.plan import PlacementProblem, build_model, dp_unsupported, solve_front
from dime.plan.bruteforce import evaluated, optimum
from dime.plan.dp import DpSolver, _pareto

_spec = importlib.util.spec_from_file_location("bench_solve", ROOT / "benchmarks" / "bench_solve.py")
bench_solve = sys.modules.setdefault("bench_solve", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(bench_solve)


# -- instances ----------------------------------------------------------------------------------


def system_problem(seed: int, settings_per_device: int = 2, max_layers: int = 5) -> PlacementProblem:
    """A random 3- or 4-device system (random network, energy flags, private layers, pins), sometimes
    with a relay, the merge rule on or off. No memory limits: the DP cannot hold them."""
    rng = random.Random(seed)
    n_devices, n = rng.choice([3, 4]), rng.randint(1, max_layers)
    p = random_system_problem(seed, n_devices, n, rng.randint(1, n), settings=settings_per_device, memory=False)
    if rng.random() < 0.5:
        relay = rng.randrange(1, n_devices)
        roles = list(p.roles)
        roles[relay] = Role("", (), roles[relay].name, roles[relay].energy, None, compute=False)
        p = dataclasses.replace(p, roles=tuple(roles), pin=tuple((l, r) for l, r in p.pin if r != relay))
    return dataclasses.replace(p, bundle_sum=rng.random() < 0.3)


def brute_front(points) -> list[tuple[float, float]]:
    """(latency, energy) of the placements no other weakly dominates (one per tie)."""
    out, least = [], math.inf
    for lat, en in sorted((ev.latency_s, ev.energy_j) for _, ev in points):
        if en < least:
            out.append((lat, en))
            least = en
    return out


def close_pair(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-15) for x, y in zip(a, b))


def budget(values: list[float], f: float | None) -> float | None:
    """Between the least and the largest value (f in 0..1), below the least (f < 0: infeasible)."""
    if f is None:
        return None
    lo, hi = min(values), max(values)
    b = lo + f * (hi - lo) if f >= 0 else lo * (1 + f)
    return b if b > 0 else None


# -- brute force ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(24))
def test_matches_brute_force_on_systems(seed):
    problem = system_problem(seed)
    points = evaluated(problem)
    lats, ens = [ev.latency_s for _, ev in points], [ev.energy_j for _, ev in points]
    model = build_model(problem)
    rng = random.Random(seed)
    for objective in ("latency", "energy"):
        for lat_f, en_f in [(None, None), (0.0, None), (None, 0.0), (-0.2, None), (None, -0.2),
                            (rng.uniform(0, 1), rng.uniform(0, 1)), (rng.uniform(0, 0.3), rng.uniform(0, 0.3))]:
            lat, en = budget(lats, lat_f), budget(ens, en_f)
            ref = optimum(dataclasses.replace(problem, objective=objective, max_latency_s=lat, max_energy_j=en),
                          points)
            m = model.with_budgets(objective=objective, max_latency_s=lat, max_energy_j=en)
            if ref is None:
                with pytest.raises(InfeasibleError) as e:
                    m.solve("dp")
                said = float(str(e.value).split(" is ")[-1].split()[0])
                if "least feasible latency" in str(e.value):
                    assert rel_close(said, min(lats), 1e-5)
                elif "least feasible energy" in str(e.value):
                    assert rel_close(said, min(ens), 1e-5)
                else:
                    within = [ev.latency_s for _, ev in points if ev.energy_j <= en * (1 + 1e-9)]
                    assert rel_close(said, min(within), 1e-5), str(e.value)
                continue
            sol = m.solve("dp")
            assert rel_close(sol.objective, ref[0], 1e-9), (objective, lat, en, sol.objective, ref[0])
            assert sol.evaluation == problem.evaluate(list(sol.placement))
            assert sol.solver == "dp" and sol.status == "optimal"


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), lat_f=fractions, en_f=fractions)
def test_matches_brute_force_on_two_devices(spec, lat_f, en_f):
    """The ILP's own hypothesis instances (edge/cloud, one device in both roles), without one
    setting per device."""
    problem = _budgets(make_problem(dataclasses.replace(spec, one_setting=False)), lat_f, en_f)
    check_against_brute_force(problem, "dp")


@pytest.mark.parametrize("seed", range(16))
def test_front_equals_brute_force(seed):
    problem = system_problem(1000 + seed, settings_per_device=rng_settings(seed))
    points = evaluated(problem)
    expected = brute_front(points)
    front = solve_front(problem)
    got = [(p.evaluation.latency_s, p.evaluation.energy_j) for p in front.points]
    assert len(got) == len(expected) and all(close_pair(a, b) for a, b in zip(got, expected)), (got, expected)
    check_front(problem, front)


def rng_settings(seed: int) -> int:
    return 3 if seed % 4 == 0 else 2


def check_front(problem: PlacementProblem, front) -> None:
    """Every point is its placement's evaluation, sorted by latency, and none dominates another."""
    assert front.points
    for p in front.points:
        assert p.evaluation == problem.evaluate(list(p.placement))
        assert p.solver == "dp"
    lats = [p.evaluation.latency_s for p in front.points]
    ens = [p.evaluation.energy_j for p in front.points]
    assert all(a < b for a, b in zip(lats, lats[1:]))
    assert all(a > b for a, b in zip(ens, ens[1:]))  # so no point weakly dominates another


def test_front_reads_budgeted_optima():
    problem = system_problem(7, max_layers=5)
    points = evaluated(problem)
    front = solve_front(problem)
    lats = sorted(ev.latency_s for _, ev in points)
    ens = sorted(ev.energy_j for _, ev in points)
    for q in (0.0, 0.1, 0.5, 1.0):
        lat = lats[int(q * (len(lats) - 1))]
        en = ens[int(q * (len(ens) - 1))]
        ref = optimum(dataclasses.replace(problem, objective="energy", max_latency_s=lat), points)
        assert rel_close(front.min_energy(lat).objective, ref[0])
        if en > 0:  # a budget is positive
            ref = optimum(dataclasses.replace(problem, objective="latency", max_energy_j=en), points)
            assert rel_close(front.min_latency(en).objective, ref[0])
    assert front.min_energy(lats[0] * 0.5) is None
    if ens[0] > 0:
        assert front.min_latency(ens[0] * 0.5) is None
    assert front.min_latency().evaluation.latency_s == lats[0]


def test_front_within_budgets_and_infeasible():
    problem = system_problem(11)
    whole = solve_front(problem)
    if len(whole.points) < 3:
        pytest.skip("front too short")
    mid = whole.points[len(whole.points) // 2].evaluation
    part = solve_front(dataclasses.replace(problem, max_latency_s=mid.latency_s, max_energy_j=mid.energy_j))
    assert [p.evaluation for p in part.points] == [mid]
    part = solve_front(dataclasses.replace(problem, max_latency_s=mid.latency_s))
    assert [p.evaluation for p in part.points] == [p.evaluation for p in whole.points
                                                   if p.evaluation.latency_s <= mid.latency_s]
    with pytest.raises(InfeasibleError, match="least feasible latency"):
        solve_front(dataclasses.replace(problem, max_latency_s=whole.points[0].evaluation.latency_s * 0.5))


# -- the scaling grid: DP == ILP ---------------------------------------------------------------------

SMALL = [g for g in bench_solve.SCALING if g[1] == 15]
BIG = [g for g in bench_solve.SCALING if g[1] != 15]


def _dp_equals_ilp(grid: tuple[int, int, int, int]) -> None:
    if unusable("cbc"):
        pytest.skip(unusable("cbc"))
    problem = bench_solve.scaling_problem(*grid, seed=0)
    model = build_model(problem)
    least = model.solve("dp").objective
    assert rel_close(least, model.solve("cbc").objective, 1e-9)
    budgeted = model.with_budgets(objective="energy", max_latency_s=1.2 * least)
    assert rel_close(budgeted.solve("dp").objective, budgeted.solve("cbc").objective, 1e-9)


@pytest.mark.parametrize("grid", SMALL, ids=[f"dev{d}_n{n}_k{k}_s{s}" for d, n, k, s in SMALL])
def test_dp_equals_ilp_on_the_scaling_grid(grid):
    _dp_equals_ilp(grid)


@pytest.mark.slow
@pytest.mark.parametrize("grid", BIG, ids=[f"dev{d}_n{n}_k{k}_s{s}" for d, n, k, s in BIG])
def test_dp_equals_ilp_on_the_big_scaling_grid(grid):
    _dp_equals_ilp(grid)


# -- known answers, the API, what the DP cannot hold ---------------------------------------------------


class TestKnownDp(KnownAnswers):
    backend = "dp"

    @pytest.fixture(autouse=True)
    def _usable(self):
        pass

    def test_one_setting_per_device(self):
        with pytest.raises(UsageError, match=r"^the dp solver cannot hold one setting per device; use --solver"):
            self.solve(self.settings_problem(max_latency_s=0.55, one_setting_per_device=True))


def _table_problem(**kw) -> PlacementProblem:
    table = random_table(random.Random(3), 6, {"pi": ["a", "b"], "gpu": ["c"]}, ["pi"])
    table.param_bytes.update({(s, e): 1000 for s in range(6) for e in range(s, 6)})
    return PlacementProblem(table, (Role("pi", ("a", "b")), Role("gpu", ("c",))), Link("l", 20, 50, 300, 100, 100),
                            4, **kw)


def test_dp_does_not_build_the_ilp_and_auto_says_why():
    model = build_model(_table_problem())
    sol = model.solve("auto")
    assert sol.solver == "dp" and sol.note.startswith("auto: exact label-setting DP")
    assert model._lazy.ilp is None  # the ILP was never built
    assert model.solve("dp").note == ""
    cbc = model.solve("cbc")
    assert model._lazy.ilp is not None and rel_close(cbc.objective, sol.objective)
    # a sweep: copies share the DP; the second budgeted solve keeps the whole front for the rest
    m1 = model.with_budgets(objective="energy", max_latency_s=sol.objective * 1.5)
    m1.solve("dp")
    m2 = model.with_budgets(objective="energy", max_latency_s=sol.objective * 2)
    m2.solve("dp")
    assert model._lazy.dp._front is not None


def test_solve_in_one_go():
    # dime.plan.solve is this function until the CLI module dime.plan.solve is imported
    from dime.plan.problem import solve

    problem = _table_problem(objective="energy", max_latency_s=1.0)
    assert rel_close(solve(problem, "dp").objective, solve(problem, "cbc").objective)


@pytest.mark.parametrize("change,reason", [
    ({"objective": "throughput"}, "the throughput objective"),
    ({"one_setting_per_device": True}, "one setting per device"),
    ({"memory": 10**9}, "memory limits (memory_bytes on cloud)"),
])
def test_what_the_dp_cannot_hold(change, reason):
    kw = dict(change)
    memory = kw.pop("memory", None)
    problem = _table_problem(**kw)
    if memory:
        problem = dataclasses.replace(problem, roles=(problem.roles[0],
                                                      dataclasses.replace(problem.roles[1], memory_bytes=memory)))
    assert dp_unsupported(problem).startswith(reason)
    assert dp_unsupported(_table_problem()) is None
    model = build_model(problem)
    with pytest.raises(UsageError, match="^the dp solver cannot hold " + re.escape(reason)):
        model.solve("dp")
    sol = model.solve("auto")
    assert sol.solver != "dp" and sol.note.startswith(f"dp: not applicable: {reason}")


def test_energy_missing():
    table = random_table(random.Random(2), 4, {"pi": ["a"], "gpu": ["b"]}, energy_devices=[])
    problem = PlacementProblem(table, (Role("pi", ("a",)), Role("gpu", ("b",))), Link("l", 5, 5), 3)
    model = build_model(problem)
    assert not model.has_energy and model._lazy.ilp is None
    front = solve_front(problem)
    assert len(front.points) == 1 and math.isnan(front.points[0].evaluation.energy_j)
    assert "no energy to trade (the edge profile has no energy for pi (a)" in front.points[0].note
    assert rel_close(front.points[0].objective, model.solve("cbc").objective)
    with pytest.raises(UsageError) as dp_err:
        model.with_budgets(objective="energy").solve("dp")
    with pytest.raises(UsageError) as ilp_err:
        model.with_budgets(objective="energy").solve("cbc")
    assert str(dp_err.value) == str(ilp_err.value)
    with pytest.raises(UsageError, match="needs energy"):
        front.min_energy()


def test_pareto_filter_keeps_exactly_the_non_dominated():
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        g, lat, en = rng.integers(0, 3, n), rng.integers(0, 5, n).astype(float), rng.integers(0, 5, n).astype(float)
        kept = {(g[i], lat[i], en[i]) for i in _pareto(g, lat, en)}
        assert len(kept) == len(_pareto(g, lat, en))  # one per tie
        expected = {(g[i], lat[i], en[i]) for i in range(n)
                    if not any(g[j] == g[i] and lat[j] <= lat[i] and en[j] <= en[i] and (lat[j], en[j]) != (lat[i], en[i])
                               for j in range(n))}
        assert kept == expected


def test_budgeted_front_is_the_whole_front_cut():
    """A front with budgets searches only their part, and equals the whole front's part."""
    problem = system_problem(5)
    whole = DpSolver(problem).front()
    for point in whole.points:
        ev = point.evaluation
        for budgets in ({"max_latency_s": ev.latency_s}, {"max_energy_j": ev.energy_j}):
            if budgets.get("max_energy_j") == 0.0:
                continue
            part = DpSolver(problem).front(**budgets)
            assert [p.evaluation for p in part.points] == [
                p.evaluation for p in whole.points
                if p.evaluation.latency_s <= budgets.get("max_latency_s", math.inf)
                and p.evaluation.energy_j <= budgets.get("max_energy_j", math.inf)]


# -- the command line --------------------------------------------------------------------------------

from test_system import EDGE_CLOUD, THREE, profile, write  # noqa: E402,F401  (profile: the fixture)


def test_cli_front_prints_and_writes_json(tmp_path, profile):  # noqa: F811
    path = write(tmp_path, EDGE_CLOUD.replace('objective = "energy"\nmax_latency_s = 1.0\n', ""))
    out = tmp_path / "front.json"
    p = run("--system", path, "--front", "--json", out)
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    assert data["front"] == "latency-energy" and data["solver"] == "dp" and data["energy_roles"] == ["edge"]
    points = data["points"]
    assert points and [d["latency_s"] for d in points] == sorted(d["latency_s"] for d in points)
    assert all(a["energy_j"] > b["energy_j"] for a, b in zip(points, points[1:]))
    # each point has a solution's shape: the keys `dime.solve --json` writes
    single = tmp_path / "one.json"
    assert run("--system", path, "--json", single).returncode == 0
    assert set(points[0]) == set(json.loads(single.read_text()))
    # and the least-latency point is solve's own min-latency answer
    assert rel_close(points[0]["latency_s"], json.loads(single.read_text())["latency_s"])
    assert f"front: {len(points)} point" in p.stdout and "latency-energy front" in p.stdout
    assert p.stdout.count("@edge/") + p.stdout.count("@cloud/") >= len(points)


def test_cli_front_without_energy_says_so(tmp_path):
    table = random_table(random.Random(4), 4, {"pi": ["x"], "a100": ["d"]}, [])
    prof = write_profile_csv(tmp_path / "p.csv", table)
    out = tmp_path / "f.json"
    p = run(prof, "--edge", "pi", "--cloud", "a100", "--link", "wifi", "--front", "--json", out)
    assert p.returncode == 0, p.stderr
    notes = [line for line in p.stdout.splitlines() if line.startswith("note: no energy to trade")]
    assert len(notes) == 1 and "front: 1 point" in p.stdout
    assert len(json.loads(out.read_text())["points"]) == 1


def test_cli_two_device_flags_solver_dp(tmp_path, profile):  # noqa: F811
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    base = (profile, "--edge", "jetson", "--cloud", "a100", "--link", "4g", "--objective", "energy",
            "--max-latency", "1")
    assert run(*base, "--solver", "dp", "--json", a).returncode == 0
    assert run(*base, "--solver", "cbc", "--json", b).returncode == 0
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert da["solver"] == "dp" and rel_close(da["objective"], db["objective"])


@pytest.mark.parametrize("extra,reason", [
    (("--objective", "throughput"), "the throughput objective"),
    (("--one-setting-per-device",), "one setting per device"),
])
def test_cli_solver_dp_refuses_what_it_cannot_hold(tmp_path, profile, extra, reason):  # noqa: F811
    path = write(tmp_path, THREE.format(mem=10**9, objective="latency", private=0).replace(
        "memory_bytes = 1000000000\n", ""))
    msg = one_line_error(run("--system", path, "--solver", "dp", *extra), 2)
    assert f"error: the dp solver cannot hold {reason}" in msg


def test_cli_solver_dp_refuses_memory_limits(tmp_path, profile):  # noqa: F811
    path = write(tmp_path, THREE.format(mem=10**9, objective="latency", private=0))
    msg = one_line_error(run("--system", path, "--solver", "dp"), 2)
    assert msg == "error: the dp solver cannot hold memory limits (memory_bytes on cam); use --solver cbc|highs|gurobi"
    msg = one_line_error(run("--system", path, "--front"), 2)
    assert "front needs the dp solver, which cannot hold memory limits (memory_bytes on cam)" in msg
    p = run("--system", path)  # auto falls back to an ILP backend and says why
    assert p.returncode == 0 and "dp: not applicable: memory limits (memory_bytes on cam)" in p.stdout


def test_cli_front_infeasible_budget_exits_1(tmp_path, profile):  # noqa: F811
    path = write(tmp_path, EDGE_CLOUD.replace("max_latency_s = 1.0", "max_latency_s = 1e-9"))
    msg = one_line_error(run("--system", path, "--front"), 1)
    assert "no placement meets --max-latency 1e-09 s; the least feasible latency is" in msg
    assert "drop --solver cbc" in one_line_error(run("--system", path, "--front", "--solver", "cbc"), 2)
