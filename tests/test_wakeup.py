"""Wake-up after idling: the cost model's term, the profile rows that measure it, the planner's search."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
from collections import Counter

import pytest
from clihelp import assert_one_line_error, run_cli
from instances import Spec, make_problem, write_profile_csv
from test_dp import budget, system_problem
from test_ilp import rel_close, unusable

from dime.capture.models import load_model
from dime.capture.samples import generate
from dime.core.costs import Assignment, BundleCost, CostTable, Role, WakeUp, evaluate
from dime.core.links import Link
from dime.errors import InfeasibleError, ProfileError
from dime.plan import PlacementProblem, build_model
from dime.plan.bruteforce import evaluated, optimum
from dime.plan.wakeup import search
from dime.profiling.reader import load_profiles
from dime.profiling.schema import PROFILE_COLUMNS

# 4 layers, two devices; every bundle costs the sum of its layers (ms), energy at 2 W on "a".
LAYER_S = (0.010, 0.020, 0.005, 0.015)


def _table(wakeup: dict | None = None) -> CostTable:
    costs = {}
    for dev in ("a", "b"):
        for s in range(4):
            for e in range(s, 4):
                lat = sum(LAYER_S[s : e + 1]) * (1.0 if dev == "a" else 0.5)
                costs[(dev, "t1", s, e)] = BundleCost(lat, 2.0 * lat if dev == "a" else None, "synthetic", 5)
    return CostTable("toy", ("l0", "l1", "l2", "l3"), (30000, 2000, 3000, 4000, 10), {"a": ("t1",), "b": ("t1",)},
                     costs, wakeup=wakeup or {})


ROLES = (Role("a", ("t1",)), Role("b", ("t1",)))
LINK = Link("l", 8.0, 8.0)  # 1 MB/s: 1000 bytes take 1 ms
CURVE = WakeUp((0.0, 0.01, 0.1), (0.0, 0.002, 0.006))


def test_curve_is_piecewise_linear_and_flat_beyond():
    assert CURVE.extra(0.0) == 0.0
    assert CURVE.extra(0.005) == pytest.approx(0.001)
    assert CURVE.extra(0.055) == pytest.approx(0.004)
    assert CURVE.extra(5.0) == pytest.approx(0.006)
    with pytest.raises(ValueError):
        WakeUp((0.0, 0.1), (0.0, -0.001))
    with pytest.raises(ValueError):
        WakeUp((0.01, 0.1), (0.0, 0.001))


def test_whole_model_on_one_device_never_idles():
    placement = [Assignment(0, 3, 0, "t1")]
    plain = evaluate(_table(), ROLES, LINK, placement)
    woken = evaluate(_table({("a", "t1"): CURVE}), ROLES, LINK, placement)
    assert woken == plain
    assert woken.wakeup_s == 0.0


def test_split_by_hand():
    """a: l0 (10 ms), b: l1..l3 (20 ms), the output back. Moves: cut 1 (2000 B, 2 ms), cut 4 (10 B).

    Base latency 32.01 ms. Each device idles for the rest of the query: a for L - 10 ms - w_a,
    b for L - 20 ms - w_b, where L = 32.01 ms + w_a + w_b; so a idles 22.01 ms + w_b and b
    12.01 ms + w_a. On 0.01..0.1 s, CURVE is w(x) = 0.002 + k (x - 0.01), k = 0.004 / 0.09:
    w_a = 0.002 + k (0.01201 + w_b), w_b = 0.002 + k (0.00201 + w_a), solved below.
    """
    table = _table({("a", "t1"): CURVE, ("b", "t1"): CURVE})
    placement = [Assignment(0, 0, 0, "t1"), Assignment(1, 3, 1, "t1")]
    plain = evaluate(_table(), ROLES, LINK, placement)
    assert plain.latency_s == pytest.approx(0.03201)
    ev = evaluate(table, ROLES, LINK, placement)
    k = 0.004 / 0.09
    ca, cb = 0.002 + k * 0.01201, 0.002 + k * 0.00201
    w_a = (ca + k * cb) / (1 - k * k)
    w_b = cb + k * w_a
    latency = 0.03201 + w_a + w_b
    assert ev.latency_s == pytest.approx(latency, rel=1e-9)
    assert ev.wakeup_s == pytest.approx(latency - 0.03201, rel=1e-9)
    assert ev.compute_latency_s == pytest.approx(plain.compute_latency_s + ev.wakeup_s)
    assert ev.device_compute_s[1] == pytest.approx(0.020 + w_b, rel=1e-9)
    # a's wake-up at a's mean power (2 W); b counts no energy (not the source)
    assert ev.energy_j == pytest.approx(plain.energy_j + 2.0 * w_a, rel=1e-9)
    assert ev.period_s == plain.period_s  # a saturated pipeline's bottleneck never idles


def test_each_bundle_of_a_segment_pays_its_own():
    """Past the curve's last idle time every bundle pays its own extra as timed (the curve is
    flat there, at its value at ref_idle_s): a's l0 3 ms; b's l1 1 ms and l2..l3 4 ms, one
    segment of two bundles; a bundle timed without its own pays the curve's 2 ms."""
    curve = WakeUp((0.0, 0.001), (0.0, 0.002), ref_idle_s=0.001)
    table = _table({("a", "t1"): curve, ("b", "t1"): curve})
    own = {("a", "t1", 0, 0): 0.003, ("b", "t1", 1, 1): 0.001, ("b", "t1", 2, 3): 0.004}
    table.costs.update({k: dataclasses.replace(table.costs[k], wakeup_s=v) for k, v in own.items()})
    placement = [Assignment(0, 0, 0, "t1"), Assignment(1, 1, 1, "t1"), Assignment(2, 3, 1, "t1")]
    plain = evaluate(_table(), ROLES, LINK, placement)
    ev = evaluate(table, ROLES, LINK, placement)
    assert ev.wakeup_s == pytest.approx(0.008)
    assert ev.latency_s == pytest.approx(plain.latency_s + 0.008)
    assert ev.device_compute_s == pytest.approx((plain.device_compute_s[0] + 0.003, plain.device_compute_s[1] + 0.005))
    assert ev.energy_j == pytest.approx(plain.energy_j + 2.0 * 0.003)
    table.costs[("b", "t1", 2, 3)] = dataclasses.replace(table.costs[("b", "t1", 2, 3)], wakeup_s=None)
    assert evaluate(table, ROLES, LINK, placement).wakeup_s == pytest.approx(0.006)


def test_coming_back_pays_for_the_idle_in_between():
    """a: l0, b: l1, a: l2..l3. a's second segment idled from 10 ms to 10 + 2 + 10 + 3 = 25 ms
    (15 ms, the transfers and b's compute); its first idled since its second one ended, the rest of
    the previous query: nothing (the output comes back to a with no move)."""
    table = _table({("a", "t1"): CURVE})
    placement = [Assignment(0, 0, 0, "t1"), Assignment(1, 1, 1, "t1"), Assignment(2, 3, 0, "t1")]
    ev = evaluate(table, ROLES, LINK, placement)
    assert ev.wakeup_s == pytest.approx(CURVE.extra(0.015), rel=1e-9)
    assert math.isclose(ev.latency_s, evaluate(_table(), ROLES, LINK, placement).latency_s + ev.wakeup_s)


# -- the profile rows ----------------------------------------------------------------------------

TOY = ["--model", "toy_models:skipnet", "--cuts", "conv1,conv2,conv3,pool"]


def _wake_rows(table: CostTable, device: str, bundle: tuple[int, int], idle_latency: dict[float, list[float]]):
    s, e = bundle
    rows = []
    for idle, values in idle_latency.items():
        for r, v in enumerate(values):
            rows.append({"model": table.model, "device": device, "setting": "t1", "bundle": table.bundle_name(s, e),
                         "start": table.layer_names[s], "end": table.layer_names[e], "in_bytes": table.cut_bytes[s],
                         "out_bytes": table.cut_bytes[e + 1], "iteration": 0, "run": r, "latency_s": repr(v),
                         "energy_j": "", "idle_s": f"{idle:g}"})
    return rows


def _append(path, rows):
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(PROFILE_COLUMNS), extrasaction="ignore").writerows(rows)


def test_reader_makes_the_curve_from_medians(tmp_path):
    """Two probes: extra = median after the idle - median of the references; the median over the
    probes; then >= 0 and non-decreasing (0.02 s measured less than 0.01 s: raised to it)."""
    table = _table()
    path = write_profile_csv(tmp_path / "p.csv", table)
    _append(path, _wake_rows(table, "a", (0, 1), {0.0: [0.030, 0.031, 0.029, 0.030], 0.01: [0.032, 0.033, 0.090],
                                                  0.02: [0.031, 0.0315, 0.031], 0.1: [0.040, 0.041, 0.039]}))
    _append(path, _wake_rows(table, "a", (2, 3), {0.0: [0.020, 0.020], 0.01: [0.025, 0.025, 0.026],
                                                  0.02: [0.022, 0.022, 0.022], 0.1: [0.026, 0.026, 0.026]}))
    read = load_profiles(path)
    plain = load_profiles(write_profile_csv(tmp_path / "q.csv", table))
    assert {k: dataclasses.replace(c, wakeup_s=None) for k, c in read.costs.items()} == plain.costs  # costs untouched
    curve = read.wakeup[("a", "t1")]
    assert set(read.wakeup) == {("a", "t1")}
    assert curve.idle_s == (0.0, 0.01, 0.02, 0.1)
    # 0.01: probes +0.003, +0.005 -> 0.004; 0.02: +0.0010, +0.002 -> 0.0015, raised to 0.004; 0.1: +0.010, +0.006 -> 0.008
    assert curve.extra_s == pytest.approx((0.0, 0.004, 0.004, 0.008))
    # both bundles were timed at every idle: the reference idle is the longest, their own extras there
    assert curve.ref_idle_s == 0.1
    assert read.costs[("a", "t1", 0, 1)].wakeup_s == pytest.approx(0.010)
    assert read.costs[("a", "t1", 2, 3)].wakeup_s == pytest.approx(0.006)
    assert read.costs[("a", "t1", 0, 0)].wakeup_s is None
    # a bundle's own extra scales by the curve: half the curve's value at 0.01 s
    assert curve.bundle_extra(0.01, 0.010) == pytest.approx(0.010 * 0.004 / 0.008)
    assert curve.bundle_extra(0.01, None) == pytest.approx(0.004)


def test_bundles_without_idle_0_references_use_their_own_runs(tmp_path):
    """The bundles' own pass (dime.profile --wakeup) has no idle-0 rows: its reference is the
    bundle's back-to-back runs (their median)."""
    table = _table()
    path = write_profile_csv(tmp_path / "p.csv", table)
    for s, e in [(0, 0), (1, 3)]:
        base = table.costs[("a", "t1", s, e)].latency_s
        _append(path, _wake_rows(table, "a", (s, e), {0.1: [base + 0.002 * (s + 1)] * 3}))
    read = load_profiles(path)
    assert read.costs[("a", "t1", 0, 0)].wakeup_s == pytest.approx(0.002)
    assert read.costs[("a", "t1", 1, 3)].wakeup_s == pytest.approx(0.004)
    curve = read.wakeup[("a", "t1")]
    assert (curve.idle_s, curve.ref_idle_s) == ((0.0, 0.1), 0.1)
    assert curve.extra_s == pytest.approx((0.0, 0.003))


@pytest.mark.parametrize("cell, why", [("-1", "idle_s"), ("soon", "idle_s")])
def test_reader_refuses_bad_idle_cells(tmp_path, cell, why):
    table = _table()
    path = write_profile_csv(tmp_path / "p.csv", table)
    rows = _wake_rows(table, "a", (0, 1), {0.0: [0.03], 0.01: [0.04]})
    rows[1]["idle_s"] = cell
    _append(path, rows)
    with pytest.raises(ProfileError, match=f"line .*: {why} '{cell}' is not a number of seconds"):
        load_profiles(path)


def test_reader_refuses_wakeup_rows_without_references(tmp_path):
    table = _table()
    path = write_profile_csv(tmp_path / "p.csv", table, skip=[("a", "t1", 0, 1)])
    _append(path, _wake_rows(table, "a", (0, 1), {0.01: [0.04]}))
    with pytest.raises(ProfileError, match="without reference rows"):
        load_profiles(path)


@pytest.fixture
def toy_samples(tmp_path):
    m = load_model("toy_models:skipnet", cuts=["conv1", "conv2", "conv3", "pool"])
    generate(m, tmp_path / "samples", count=2, progress=False)
    return m, tmp_path / "samples"


def _profile(samples, out, *extra):
    return run_cli("dime.profile", *TOY, "--device-name", "toy-cpu", "--max-bundle", "2", "--iterations", "2",
                   "--runs", "2", "--threads", "1", "--samples", str(samples), "--out", str(out), "-q", *extra)


def test_profiler_times_probes_after_each_idle_and_resumes(tmp_path, toy_samples):
    m, samples = toy_samples
    out = tmp_path / "p.csv"
    wake = ["--wakeup", "0.002,0.001", "--wakeup-runs", "3"]
    assert _profile(samples, out, *wake).returncode == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    probes = Counter((r["bundle"], r["idle_s"]) for r in rows if r["idle_s"] not in ("", "0.1"))
    # probes at layers 0, 5 // 3 = 1 and 2 * 5 // 3 = 3: the longest (2-layer) bundle starting there
    names = {m.bundle_name(s, s + 1) for s in (0, 1, 3)}
    assert probes == {(b, i): n for b in names for i, n in (("0.001", 3), ("0.002", 3), ("0", 6))}
    # every bundle: its runs, then max(2, 3 // 2) calls after 0.1 s
    own = Counter(r["bundle"] for r in rows if r["idle_s"] == "0.1")
    assert own == {m.bundle_name(s, e): 2 for s in range(5) for e in range(s, min(5, s + 2))}
    plain = tmp_path / "plain.csv"
    assert _profile(samples, plain).returncode == 0
    table = load_profiles(out)
    assert set(table.costs) == set(load_profiles(plain).costs)
    assert table.wakeup[("toy-cpu", "threads=1")].idle_s == (0.0, 0.001, 0.002, 0.1)
    assert table.wakeup[("toy-cpu", "threads=1")].ref_idle_s == 0.1
    assert all(c.wakeup_s is not None and c.wakeup_s >= 0 for c in table.costs.values())
    assert json.loads((tmp_path / "p.csv.meta.json").read_text())["wakeup"] == {"idle_s": [0.001, 0.002], "runs": 3}

    # a torn last line (a kill in the last probe's write): that probe's pass is redone, whole
    text = out.read_text()
    out.write_text(text[: text.rstrip("\n").rfind("\n") + 1] + "alexnet,tor")
    assert _profile(samples, out, *wake).returncode == 0
    with open(out, newline="") as f:
        again = list(csv.DictReader(f))
    assert Counter((r["bundle"], r["idle_s"]) for r in again if r["idle_s"] not in ("", "0.1")) == probes
    assert Counter((r["bundle"], r["idle_s"]) for r in again) == Counter((r["bundle"], r["idle_s"]) for r in rows)
    # nothing left to do: the file is unchanged
    before = out.read_text()
    assert _profile(samples, out, *wake).returncode == 0
    assert out.read_text() == before
    # other idle times: refused in one line, the file untouched
    p = _profile(samples, out, "--wakeup", "0.05")
    assert_one_line_error(p)
    assert "was profiled with --wakeup/--wakeup-runs" in p.stderr
    assert out.read_text() == before


# -- the planner: exact against brute force --------------------------------------------------------


def _with_curves(problem, seed: int):
    """Random wake-up curves (up to several bundles' worth of time) on some (device, setting) pairs."""
    rng = random.Random(seed)
    table = problem.table
    wake = {}
    for device, settings in table.settings.items():
        for t in settings:
            if rng.random() < 0.8:
                xs = sorted(rng.sample([0.001, 0.003, 0.01, 0.03, 0.1, 0.3], 3))
                ys = sorted(rng.uniform(0, 0.03) for _ in xs)
                wake[(device, t)] = WakeUp((0.0, *xs), (0.0, *ys), rng.choice([None, xs[1]]))
    costs = {k: dataclasses.replace(c, wakeup_s=rng.uniform(0, 0.04)) if rng.random() < 0.7 else c
             for k, c in table.costs.items()}
    return dataclasses.replace(problem, table=dataclasses.replace(table, wakeup=wake, costs=costs))


def _check(problem, backend: str, points, lat_f, en_f) -> bool:
    """The solve against brute force over `points`; True when wake-up changed the plan."""
    lats, ens = [ev.latency_s for _, ev in points], [ev.energy_j for _, ev in points]
    lat, en = budget(lats, lat_f), (budget(ens, en_f) if not any(map(math.isnan, ens)) else None)
    p = dataclasses.replace(problem, max_latency_s=lat, max_energy_j=en)
    if p.objective == "energy" and any(map(math.isnan, ens)):
        return False
    ref = optimum(p, points)
    m = build_model(p)
    if ref is None:
        with pytest.raises(InfeasibleError):
            m.solve(backend)
        return False
    sol = m.solve(backend)
    assert rel_close(sol.objective, ref[0], 1e-9), (p.objective, lat, en, sol.objective, ref[0], sol.placement, ref[1])
    assert sol.evaluation == p.evaluate(list(sol.placement))
    assert sol.status == "optimal"
    assert ("wake-up after idling counted" in sol.note) == p.counts_wakeup
    plain = build_model(dataclasses.replace(p, table=dataclasses.replace(p.table, wakeup={})))
    try:
        return plain.solve(backend).placement != sol.placement
    except InfeasibleError:
        return False


def test_search_matches_brute_force_on_systems():
    """3-4 devices, relays, pins, the merge rule on or off (the DP's instances), with wake-up."""
    changed = 0
    for seed in range(30):
        problem = _with_curves(system_problem(seed), seed)
        points = evaluated(problem)
        rng = random.Random(seed)
        for objective in ("latency", "energy"):
            for lat_f, en_f in [(None, None), (0.1, None), (None, 0.1), (-0.2, None),
                                (rng.uniform(0, 1), rng.uniform(0, 1))]:
                changed += _check(dataclasses.replace(problem, objective=objective), "dp", points, lat_f, en_f)
    assert changed >= 10  # wake-up moved the optimum often enough for the test to mean something


@pytest.mark.parametrize("backend", ["highs", "cbc"])
def test_search_from_an_ilp_plan_matches_brute_force(backend):
    if unusable(backend):
        pytest.skip(unusable(backend))
    changed = 0
    for seed in range(12):
        rng = random.Random(seed)
        n = rng.randint(2, 5)
        spec = Spec(seed, n, rng.randint(1, n), 2, 2, rng.random() < 0.3, True, 1e-2, "latency", 0, False)
        problem = _with_curves(make_problem(spec), seed)
        points = evaluated(problem)
        for objective, lat_f, en_f in [("latency", None, None), ("energy", 0.3, None), ("latency", None, 0.2)]:
            changed += _check(dataclasses.replace(problem, objective=objective), backend, points, lat_f, en_f)
    assert changed >= 3


def test_a_split_that_wins_without_wake_up_loses_with_it():
    """b computes twice as fast as a, but the input takes 30 ms to reach it: l0 on a, l1..l3 on b
    wins (32.01 ms against 50 ms for the whole model on a) until each device pays 20 ms after
    idling; then the whole model on a (nothing idles) wins."""
    roles = (Role("a", ("t1",)), Role("b", ("t1",)))
    flat = WakeUp((0.0, 0.001), (0.0, 0.020))
    plain = PlacementProblem(_table(), roles, LINK, 4)
    assert build_model(plain).solve("dp").placement == (Assignment(0, 0, 0, "t1"), Assignment(1, 3, 1, "t1"))
    woken = PlacementProblem(_table({("a", "t1"): flat, ("b", "t1"): flat}), roles, LINK, 4)
    sol = build_model(woken).solve("dp")
    assert sol.placement == (Assignment(0, 3, 0, "t1"),)
    assert sol.evaluation.latency_s == pytest.approx(0.050)
    # a budget only the split met without wake-up: infeasible now, naming the least latency with it
    with pytest.raises(InfeasibleError, match="least feasible latency is 0.05 s"):
        build_model(dataclasses.replace(woken, max_latency_s=0.040)).solve("dp")


def test_what_the_search_cannot_hold_keeps_the_backends_plan_and_says_so():
    problem = dataclasses.replace(_with_curves(system_problem(3), 3), one_setting_per_device=True)
    if unusable("highs"):
        pytest.skip(unusable("highs"))
    sol = build_model(problem).solve("highs")
    assert "the plan is optimal without it" in sol.note
    assert sol.evaluation == problem.evaluate(list(sol.placement))


def test_node_limit_says_best_found():
    problem = _with_curves(system_problem(5, max_layers=5), 5)
    res = search(problem, "latency", node_limit=3)
    assert not res.proven and res.nodes == 4


@pytest.mark.parametrize("value", ["0", "-1", "soon", "0.1", "1"])
def test_bad_idle_times_are_one_line_errors_before_the_model_is_built(tmp_path, value):
    out = tmp_path / "p.csv"
    p = run_cli("dime.profile", *TOY, "--samples", str(tmp_path / "none"), "--out", str(out), "--wakeup", value)
    assert_one_line_error(p)
    assert "--wakeup" in p.stderr and not out.exists()


def test_solve_says_what_wake_up_adds(tmp_path):
    """A profile with wake-up rows (3 ms after 0.1 s for every bundle timed): dime.solve's plan is
    l0 on a, l1..l3 on b, as without wake-up (idles of 12 and 22 ms cost under 1 ms each), and its
    report and JSON carry the wake-up the cost model gives that placement."""
    table = _table()
    path = write_profile_csv(tmp_path / "p.csv", table)
    for dev in ("a", "b"):
        for s, e in [(0, 0), (1, 3), (0, 3)]:
            base = table.costs[(dev, "t1", s, e)].latency_s
            _append(path, _wake_rows(table, dev, (s, e), {0.1: [base + 0.003] * 3}))
    out = tmp_path / "sol.json"
    p = run_cli("dime.solve", "--profile", str(path), "--edge", "a", "--cloud", "b", "--link", "8/8/0",
                "--json", str(out))
    assert p.returncode == 0, p.stderr
    assert "wake-up after idling counted" in p.stdout and "of which wake-up after idling" in p.stdout
    data = json.loads(out.read_text())
    assert [(e["bundle"], e["role"]) for e in data["placement"]] == [("l0", "edge"), ("l1+l2+l3", "cloud")]
    placement = [Assignment(0, 0, 0, "t1"), Assignment(1, 3, 1, "t1")]
    ev = evaluate(load_profiles(path), ROLES, Link("8/8/0", 8.0, 8.0), placement)
    assert 0 < ev.wakeup_s < 0.002
    assert data["wakeup_s"] == pytest.approx(ev.wakeup_s) and data["latency_s"] == pytest.approx(ev.latency_s)
