"""The placement ILP against brute force and known answers, for every backend."""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from instances import Spec, make_problem, random_table

from dime.core.costs import (
    CLOUD,
    EDGE,
    Assignment,
    BundleCost,
    CostTable,
    Role,
    evaluate,
)
from dime.core.links import Link
from dime.errors import InfeasibleError, SolverError, UsageError
from dime.plan import PlacementProblem, build_model, get_backend
from dime.plan.backends import AutoChoice, BackendUnavailableError, run_backend
from dime.plan.bruteforce import brute_force, compositions, placements
from dime.plan.linear import INF, ModelBuilder

BACKENDS = ("cbc", "highs", "gurobi")


@functools.lru_cache(maxsize=None)
def unusable(name: str) -> str | None:
    """Why `name` cannot solve a small model here, or None when it can."""
    backend = get_backend(name)
    if not backend.is_installed():
        return f"{name} not installed"
    b = ModelBuilder("probe")
    x = b.add_var("x")
    b.add_row("r", {x: 1.0}, 1.0, INF)
    try:
        backend.solve(b.build(np.array([1.0])))
    except BackendUnavailableError as e:
        return str(e)
    return None


def need(name: str) -> None:
    reason = unusable(name)
    if reason:
        pytest.skip(reason)


def rel_close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def same_evaluation(a, b) -> bool:
    """Field by field, NaN equal to NaN (energy is NaN when not measured)."""
    return all(
        x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(dataclasses.astuple(a), dataclasses.astuple(b))
    )


# -- brute force itself -------------------------------------------------------------------------


def test_compositions_count():
    # compositions of n into parts <= K: 2^(n-1) when K = n; Fibonacci when K = 2
    assert len(list(compositions(6, 6))) == 32
    assert len(list(compositions(6, 2))) == 13
    assert list(compositions(1, 3)) == [[(0, 0)]]


# -- hypothesis: ILP == brute force -------------------------------------------------------------


@st.composite
def specs(draw) -> Spec:
    n = draw(st.integers(1, 6))
    energy = draw(st.booleans()) or draw(st.booleans())
    return Spec(
        seed=draw(st.integers(0, 2**32 - 1)),
        n_layers=n,
        max_bundle=draw(st.integers(1, n)),
        edge_settings=draw(st.integers(1, 2)),
        cloud_settings=draw(st.integers(1, 2)),
        same_device=draw(st.booleans()),
        edge_energy=energy,
        latency_scale_s=draw(st.sampled_from([1e-5, 1e-3, 1e-1])),
        objective=draw(st.sampled_from(["latency", "energy"])),
        private_layers=draw(st.integers(0, n)),
        one_setting=draw(st.booleans()),
    )


# A budget is a point between the least and the largest value over all placements; below 0
# it is infeasible, and exactly 0 puts it on the least value (a tie the solvers must accept).
fractions = st.none() | st.sampled_from([-0.3, 0.0, 1.0]) | st.floats(-0.3, 1.0)


def _budgets(problem: PlacementProblem, lat_f: float | None, en_f: float | None) -> PlacementProblem:
    evs = [evaluate(problem.table, problem.roles, problem.link, p) for p in placements(problem)]

    def pick(values, f):
        if f is None:
            return None
        lo, hi = min(values), max(values)
        b = lo + f * (hi - lo) if f >= 0 else lo * (1 + f)
        return b if b > 0 else None

    lat = pick([e.latency_s for e in evs], lat_f)
    has_energy = not any(math.isnan(e.energy_j) for e in evs)
    en = pick([e.energy_j for e in evs], en_f) if has_energy else None
    return dataclasses.replace(problem, max_latency_s=lat, max_energy_j=en)


def _expected_least(problem: PlacementProblem, message: str) -> tuple[float, float]:
    """(the number in an infeasibility message, what brute force says it should be)."""
    m = re.search(r"is ([0-9.e+-]+) [sJ]$", message)
    assert m, message
    said = float(m.group(1))
    if message.startswith("no placement meets both"):
        ref = brute_force(dataclasses.replace(problem, objective="latency", max_latency_s=None))
    elif "least feasible latency" in message:
        ref = brute_force(dataclasses.replace(problem, objective="latency", max_latency_s=None, max_energy_j=None))
    else:
        ref = brute_force(dataclasses.replace(problem, objective="energy", max_latency_s=None, max_energy_j=None))
    assert ref is not None
    return said, ref[0]


def check_against_brute_force(problem: PlacementProblem, backend: str) -> None:
    expected = brute_force(problem)
    model = build_model(problem)
    if expected is None:
        with pytest.raises(InfeasibleError) as e:
            model.solve(backend)
        said, ref = _expected_least(problem, str(e.value))
        assert rel_close(said, ref, 1e-5), (str(e.value), ref)
        return
    sol = model.solve(backend)
    assert sol.status == "optimal"
    assert rel_close(sol.objective, expected[0]), (sol.objective, expected[0], sol.placement, expected[1])
    # the reported numbers are those of the placement itself
    ev = evaluate(problem.table, problem.roles, problem.link, list(sol.placement))
    assert same_evaluation(ev, sol.evaluation)
    assert sol.objective == (ev.latency_s if problem.objective == "latency" else ev.energy_j)
    # and the placement obeys every constraint
    assert all(a.end - a.start + 1 <= problem.max_bundle for a in sol.placement)
    assert all(a.role == EDGE for a in sol.placement if a.start < problem.private_layers)
    if problem.one_setting_per_device:
        for r in (EDGE, CLOUD):
            assert len({a.setting for a in sol.placement if a.role == r}) <= 1
    for a in sol.placement:
        assert a.setting in problem.roles[a.role].settings
    if problem.max_latency_s is not None:
        assert ev.latency_s <= problem.max_latency_s * (1 + 1e-9) + 1e-12
    if problem.max_energy_j is not None:
        assert ev.energy_j <= problem.max_energy_j * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
# derandomize: CI sees the same 40 instances every run; run with more examples by hand to explore.
@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), lat_f=fractions, en_f=fractions)
def test_matches_brute_force(backend, spec, lat_f, en_f):
    need(backend)
    problem = _budgets(make_problem(spec), lat_f, en_f)
    check_against_brute_force(problem, backend)


def test_backends_agree_on_random_instances():
    usable = [b for b in BACKENDS if not unusable(b)]
    if len(usable) < 2:
        pytest.skip("fewer than two usable backends")
    rng = random.Random(11)
    for i in range(12):
        n = rng.randint(4, 9)
        spec = Spec(rng.getrandbits(32), n, rng.randint(1, n), rng.randint(1, 3), rng.randint(1, 2),
                    rng.random() < 0.3, True, rng.choice([1e-5, 1e-2]), rng.choice(["latency", "energy"]),
                    rng.randint(0, 2), rng.random() < 0.3)
        model = build_model(make_problem(spec))
        least = model.with_budgets(objective="latency").solve(usable[0]).objective
        budgeted = model.with_budgets(max_latency_s=least * 1.3)
        for m in (model, budgeted):
            values = {b: m.solve(b).objective for b in usable}
            ref = values[usable[0]]
            assert all(rel_close(v, ref, 1e-9) for v in values.values()), (i, values)


# -- known answers, one suite per backend -------------------------------------------------------

MB = 1_000_000
# 8 Mbps both ways: a megabyte takes one second; sending costs 8 W, receiving nothing.
SLOW8 = Link("test8", 8.0, 8.0, alpha_up_mw_per_mbps=1000.0, alpha_down_mw_per_mbps=0.0, beta_mw=0.0)


def chain_table(layer_costs: dict[tuple[str, str], list[tuple[float, float | None]]], cut_bytes, fused=None):
    """Bundles cost the sum of their layers unless `fused` says otherwise."""
    n = len(cut_bytes) - 1
    costs = {}
    settings: dict[str, tuple[str, ...]] = {}
    for (device, setting), per_layer in layer_costs.items():
        settings[device] = settings.get(device, ()) + (setting,)
        for s in range(n):
            for e in range(s, n):
                lat = sum(p[0] for p in per_layer[s : e + 1])
                ens = [p[1] for p in per_layer[s : e + 1]]
                en = None if any(x is None for x in ens) else sum(ens)
                costs[(device, setting, s, e)] = BundleCost(lat, en, "meter" if en is not None else "", 3)
    for key, value in (fused or {}).items():
        costs[key] = value
    return CostTable("known", tuple("abcdefgh"[:n]), tuple(cut_bytes), settings, costs)


class KnownAnswers:
    """Problems with hand-computed optima; subclasses pick the backend."""

    backend = "auto"

    @pytest.fixture(autouse=True)
    def _usable(self):
        if self.backend != "auto":
            need(self.backend)

    def solve(self, problem: PlacementProblem, **budgets):
        model = build_model(problem)
        if budgets:
            model = model.with_budgets(**budgets)
        return model.solve(self.backend)

    # edge a=0.1 b=1 c=1 s, cloud 0.01 s per layer; input 1 MB (1 s up), inner cuts 1 kB (1 ms)
    def split_problem(self, **kw) -> PlacementProblem:
        table = chain_table(
            {("edge", "e"): [(0.1, 0.5), (1.0, 5.0), (1.0, 5.0)], ("cloud", "c"): [(0.01, None)] * 3},
            [MB, 1000, 1000, 1000],
        )
        return PlacementProblem(table, (Role("edge", ("e",)), Role("cloud", ("c",))), SLOW8, 3, **kw)

    def test_split(self):
        sol = self.solve(self.split_problem())
        assert sol.placement[0] == Assignment(0, 0, EDGE, "e")
        assert all(a.role == CLOUD for a in sol.placement[1:])
        assert sol.objective == pytest.approx(0.1 + 0.001 + 0.02 + 0.001, rel=1e-12)
        assert sol.evaluation.comm_latency_s == pytest.approx(0.002)
        assert sol.evaluation.compute_energy_j == pytest.approx(0.5)
        assert sol.evaluation.comm_energy_j == pytest.approx(8 * 0.001)  # upload only

    def test_private_layers(self):
        sol = self.solve(self.split_problem(private_layers=2))
        assert [a.role for a in sol.placement] == [EDGE] * (len(sol.placement) - 1) + [CLOUD]
        assert sol.objective == pytest.approx(1.1 + 0.001 + 0.01 + 0.001, rel=1e-12)
        sol = self.solve(self.split_problem(private_layers=3))
        assert sol.objective == pytest.approx(2.1, rel=1e-12)

    def test_energy_objective_offloads_when_radio_is_cheap(self):
        # the edge spends 10.5 J computing; uploading 1 kB after layer a costs 8 mJ
        sol = self.solve(self.split_problem(objective="energy"))
        assert sol.objective == pytest.approx(0.5 + 0.008, rel=1e-12)

    def test_fusion_needs_max_bundle(self):
        fused = {("edge", "e", 0, 2): BundleCost(0.5, 1.0, "meter", 3)}
        table = chain_table({("edge", "e"): [(0.1, 1.0), (1.0, 1.0), (1.0, 1.0)], ("cloud", "c"): [(0.01, None)] * 3},
                            [MB, MB, MB, MB], fused)
        slow = Link("slow", 0.008, 0.008)  # a megabyte takes 1000 s
        roles = (Role("edge", ("e",)), Role("cloud", ("c",)))
        assert self.solve(PlacementProblem(table, roles, slow, 3)).objective == pytest.approx(0.5)
        assert self.solve(PlacementProblem(table, roles, slow, 2)).objective == pytest.approx(2.1)
        assert self.solve(PlacementProblem(table, roles, slow, 1)).objective == pytest.approx(2.1)

    # edge settings: fast 0.1 s / 1 J per layer, slow 0.3 s / 0.2 J; the cloud is 8 J away
    def settings_problem(self, **kw) -> PlacementProblem:
        table = chain_table(
            {("edge", "fast"): [(0.1, 1.0)] * 3, ("edge", "slow"): [(0.3, 0.2)] * 3,
             ("cloud", "c"): [(0.001, None)] * 3},
            [MB, MB, MB, MB],
        )
        return PlacementProblem(table, (Role("edge", ("fast", "slow")), Role("cloud", ("c",))), SLOW8, 3,
                                objective="energy", **kw)

    def test_energy_with_latency_budget_mixes_settings(self):
        sol = self.solve(self.settings_problem())
        assert sol.objective == pytest.approx(0.6) and sol.evaluation.latency_s == pytest.approx(0.9)
        sol = self.solve(self.settings_problem(max_latency_s=0.55))
        assert sol.objective == pytest.approx(2.2) and sol.evaluation.latency_s == pytest.approx(0.5)
        assert sorted(a.setting for a in sol.placement for _ in range(a.end - a.start + 1)) == ["fast", "fast", "slow"]

    def test_one_setting_per_device(self):
        sol = self.solve(self.settings_problem(max_latency_s=0.55, one_setting_per_device=True))
        assert sol.objective == pytest.approx(3.0)
        assert {a.setting for a in sol.placement} == {"fast"}

    def test_infeasible_latency_names_least(self):
        with pytest.raises(InfeasibleError, match=r"no placement meets --max-latency 0.2 s; the least feasible latency is 0.3 s"):
            self.solve(self.settings_problem(max_latency_s=0.2))

    def test_infeasible_energy_names_least(self):
        with pytest.raises(InfeasibleError, match=r"--max-energy 0.1 J; the least feasible energy is 0.6 J"):
            self.solve(self.settings_problem(max_energy_j=0.1))

    def test_infeasible_jointly(self):
        with pytest.raises(InfeasibleError) as e:
            self.solve(self.settings_problem(max_latency_s=0.35, max_energy_j=1.0))
        assert str(e.value) == ("no placement meets both --max-latency 0.35 s and --max-energy 1 J; "
                                "the least latency within --max-energy 1 J is 0.9 s")
        assert e.value.exit_code == 1

    def test_infeasible_respects_private_layers(self):
        with pytest.raises(InfeasibleError, match=r"least feasible latency is 1.112 s"):
            self.solve(self.split_problem(private_layers=2, max_latency_s=0.5))

    def test_tiny_costs(self):
        # 10 microsecond layers, 1-byte cuts on a 1 Gbps link: everything goes to the cloud
        table = chain_table({("edge", "e"): [(3e-5, 3e-4)] * 4, ("cloud", "c"): [(1e-5, None)] * 4}, [1] * 5)
        link = Link("fast", 1000.0, 1000.0)
        sol = self.solve(PlacementProblem(table, (Role("edge", ("e",)), Role("cloud", ("c",))), link, 4))
        assert sol.objective == pytest.approx(4e-5 + 2 * 8e-9, rel=1e-9)
        assert {a.role for a in sol.placement} == {CLOUD}
        # minimising energy within a budget a little above the cloud-only latency: the radio is free
        sol = self.solve(PlacementProblem(table, (Role("edge", ("e",)), Role("cloud", ("c",))), link, 4,
                                          objective="energy", max_latency_s=4.1e-5))
        assert sol.objective == pytest.approx(0.0, abs=1e-15)

    def test_same_device_both_roles(self):
        table = chain_table({("cpu", "1t"): [(1.0, 1.0)] * 2, ("cpu", "8t"): [(0.2, 3.0)] * 2}, [10, 10, 10])
        roles = (Role("cpu", ("1t",)), Role("cpu", ("8t",)))
        sol = self.solve(PlacementProblem(table, roles, Link("loop", 1e6, 1e6), 2))
        assert sol.objective == pytest.approx(0.4 + 2 * 80 / 1e12, rel=1e-9)
        assert [a.role for a in sol.placement] == [CLOUD] * len(sol.placement)

    def test_json_dict(self):
        problem = self.split_problem()
        sol = self.solve(problem)
        d = sol.to_json_dict(problem.table, problem.roles)
        required = {"status", "objective", "latency_s", "compute_latency_s", "comm_latency_s", "energy_j",
                    "compute_energy_j", "comm_energy_j", "solver", "solve_time_s", "placement"}
        assert required <= set(d)
        assert d["placement"][0] == {"bundle": "a", "start": "a", "end": "a", "device": "edge", "setting": "e",
                                     "role": "edge", "latency_s": 0.1, "energy_j": 0.5,
                                     "latency_source": "measured", "latency_sd_s": None}
        assert d["placement"][-1]["end"] == "c" and d["placement"][-1]["device"] == "cloud"
        assert d["latency_s"] == sol.evaluation.latency_s
        assert d["solver"] in BACKENDS + ("dp",)


class TestKnownCbc(KnownAnswers):
    backend = "cbc"


class TestKnownHighs(KnownAnswers):
    backend = "highs"


class TestKnownGurobi(KnownAnswers):
    backend = "gurobi"


class TestKnownAuto(KnownAnswers):
    backend = "auto"


# -- model reuse, energy, export ----------------------------------------------------------------


def _vit_like(n=6, k=6, edge_settings=3):
    rng = random.Random(5)
    table = random_table(rng, n, {"jetson": [f"f{i}" for i in range(edge_settings)], "a100": ["d"]}, ["jetson"])
    return PlacementProblem(table, (Role("jetson", table.settings["jetson"]), Role("a100", ("d",))),
                            Link("wifi-ish", 20.0, 50.0, 283.17, 137.01, 132.86), k)


def test_with_budgets_shares_matrix_and_sweeps():
    model = build_model(_vit_like())
    base = model.linear_model()
    least = model.solve("highs").objective
    prev = math.inf
    for factor in (1.0, 1.2, 1.5, 3.0, 10.0):
        m = model.with_budgets(objective="energy", max_latency_s=least * factor)
        lm = m.linear_model()
        assert lm.row_value is base.row_value and lm.row_index is base.row_index
        sol = m.solve("highs")
        assert sol.evaluation.latency_s <= least * factor * (1 + 1e-9)
        assert sol.objective <= prev + 1e-12  # more time never costs more energy
        prev = sol.objective
    assert model.max_latency_s is None and model.objective == "latency"  # unchanged


def test_budget_validation():
    model = build_model(_vit_like())
    with pytest.raises(UsageError, match="max latency must be a positive number"):
        model.with_budgets(max_latency_s=-1.0)
    with pytest.raises(UsageError, match="objective must be one of"):
        model.with_budgets(objective="speed")
    with pytest.raises(UsageError, match="private layers"):
        dataclasses.replace(_vit_like(), private_layers=99)


def test_energy_missing_is_a_usage_error():
    table = random_table(random.Random(2), 3, {"pi": ["a"], "gpu": ["b"]}, energy_devices=[])
    problem = PlacementProblem(table, (Role("pi", ("a",)), Role("gpu", ("b",))), Link("slow", 1e-3, 1e-3), 3)
    model = build_model(problem)
    assert not model.has_energy
    sol = model.solve("highs")  # latency needs no energy
    assert math.isnan(sol.evaluation.energy_j)
    assert sol.to_json_dict(table, problem.roles)["energy_j"] is None
    for m in (model.with_budgets(objective="energy"), model.with_budgets(max_energy_j=1.0)):
        with pytest.raises(UsageError, match=r"the edge profile has no energy for pi \(a\).*--assume-power"):
            m.solve("highs")


def test_energy_missing_on_cloud_only_is_fine():
    table = random_table(random.Random(2), 3, {"pi": ["a"], "gpu": ["b"]}, energy_devices=["pi"])
    problem = PlacementProblem(table, (Role("pi", ("a",)), Role("gpu", ("b",))), Link("l", 10, 10), 3,
                               objective="energy")
    assert build_model(problem).solve("highs").objective >= 0


def test_model_size():
    # 15 layers, K 15, 10 + 1 settings: 120 bundles x 11; moves: 4 per inner cut (2 y, 2 z),
    # 2 at cut 0 and at cut 15 (from/to the edge only); the period T.
    problem = _vit_like(15, 15, 10)
    model = build_model(problem)
    assert model.num_x == 120 * 11
    assert model.num_vars == 120 * 11 + 4 * 14 + 2 + 2 + 1
    dime_model = build_model(dataclasses.replace(problem, bundle_sum=True))
    assert dime_model.num_vars == model.num_vars
    assert dime_model.num_constraints() < 2000  # fits Gurobi's size-limited license
    # the merge rule: at most K-1 rows per inner cut and (role, setting)
    assert model.num_constraints() - dime_model.num_constraints() <= 14 * 11 * 14


@pytest.mark.parametrize("suffix", [".lp", ".mps"])
def test_write_lp(tmp_path, suffix):
    model = build_model(_vit_like()).with_budgets(max_latency_s=1.0)
    path = tmp_path / "sub" / f"model{suffix}"
    model.write_lp(path)
    text = path.read_text()
    assert "x_0_0_edge_0" in text
    assert ("max_latency" in text) if suffix == ".lp" else ("ROWS" in text)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_backend_statuses_on_infeasible_model():
    b = ModelBuilder("infeasible")
    x = b.add_var("x")
    b.add_row("r", {x: 1.0}, 2.0, INF)
    lm = b.build(np.array([1.0]))
    for name in BACKENDS:
        if unusable(name):
            continue
        assert get_backend(name).solve(lm).status == "infeasible"


def test_unknown_backend():
    with pytest.raises(UsageError, match="unknown solver 'cplex'; choose from auto, dp, gurobi, cbc, highs"):
        build_model(_vit_like()).solve("cplex")


def test_is_installed_does_not_import():
    code = ("import sys; from dime.plan import get_backend; "
            "assert all(get_backend(n).is_installed() in (True, False) for n in ('gurobi', 'cbc', 'highs')); "
            "assert not {'gurobipy', 'highspy', 'pulp'} & set(sys.modules), 'solver imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gurobi_size_limit_and_auto_fallback():
    need("gurobi")
    # the merge rule's rows make > 2000 constraints; one setting per device, so that auto cannot use the DP
    problem = dataclasses.replace(_vit_like(15, 15, 10), one_setting_per_device=True)
    model = build_model(problem)
    try:
        model.solve("gurobi")
    except BackendUnavailableError as e:
        assert "model too large for size-limited license (error 10010)" in str(e)
    else:
        pytest.skip("gurobi has an unrestricted license here")
    sol = model.solve("auto")
    assert sol.solver == "cbc"
    assert sol.note == ("dp: not applicable: one setting per device; "
                        "gurobi: model too large for size-limited license (error 10010); used cbc")
    # the fallback is remembered for re-solves of the same model
    assert model._auto.skipped == {"gurobi": "model too large for size-limited license (error 10010)"}
    assert model.with_budgets(max_latency_s=sol.objective * 2).solve("auto").solver == "cbc"


def test_auto_skips_missing_backend(monkeypatch):
    from dime.plan.backends.gurobi import GurobiBackend

    monkeypatch.setattr(GurobiBackend, "is_installed", lambda self: False)
    b = ModelBuilder("tiny")
    x = b.add_var("x")
    b.add_row("r", {x: 1.0}, 1.0, INF)
    raw, used, note = run_backend("auto", b.build(np.array([2.0])), None, AutoChoice())
    assert used == "cbc" and note == "gurobi: not installed; used cbc"
    assert raw.status == "optimal" and raw.objective == pytest.approx(2.0)


def test_gurobi_error_is_solver_error():
    assert issubclass(BackendUnavailableError, SolverError)


# ---- the shipped, measured profiles ------------------------------------------------------------
SHIPPED = ("profiles/alexnet-xeon-2core.csv", "profiles/resnet18-xeon-2core.csv",
           "profiles/chain/alexnet-xeon-2core.csv")


@pytest.mark.parametrize("path", SHIPPED)
@pytest.mark.parametrize("link", ["4g", "wifi", "fast"])
def test_shipped_profiles_solve_to_the_brute_force_optimum(path, link):
    """Replay the recorded profiles: the ILP's placement equals exhaustive search's optimum."""
    from clihelp import ROOT

    from dime.profiling.reader import load_profiles, make_role

    if not (ROOT / path).exists():
        pytest.skip(f"{path} is not in this checkout")
    from dime.core.links import get_link

    link = Link("fast", 300.0, 300.0, rtt_ms=1.0) if link == "fast" else get_link(link)
    table = load_profiles([ROOT / path])
    (device,) = table.settings
    roles = (make_role(table, device, ["threads=1"]), make_role(table, device, ["threads=2"]))
    problem = PlacementProblem(table, roles, link, max_bundle=table.n_layers)
    check_against_brute_force(problem, "cbc" if not unusable("cbc") else "auto")
