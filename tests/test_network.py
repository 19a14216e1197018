"""N devices: routes, memory, throughput and the merge rule; the ILP against brute force."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from instances import random_system_problem, random_table
from test_ilp import BACKENDS, rel_close, same_evaluation, unusable

from dime.core.costs import (
    Assignment,
    BundleCost,
    CostTable,
    Role,
    memory_use,
    merge_violation,
)
from dime.core.links import DOWN, UP, Link
from dime.core.network import NetLink, Network
from dime.errors import InfeasibleError, UsageError
from dime.plan import PlacementProblem, build_model
from dime.plan.bruteforce import brute_force, evaluated, optimum
from dime.plan.report import transfer_details


def check(problem: PlacementProblem, candidates, backend: str = "highs", model=None):
    """The ILP's optimum equals brute force's, and its numbers are its placement's; returns
    the ILP's solution (None when infeasible)."""
    expected = optimum(problem, candidates)
    m = (model or build_model(problem)).with_budgets(
        objective=problem.objective, max_latency_s=problem.max_latency_s, max_energy_j=problem.max_energy_j)
    if expected is None:
        with pytest.raises(InfeasibleError):
            m.solve(backend)
        return None
    sol = m.solve(backend)
    assert sol.status == "optimal"
    assert rel_close(sol.objective, expected[0], 1e-6), (problem.objective, sol.objective, expected[0],
                                                        sol.placement, expected[1])
    assert same_evaluation(problem.evaluate(sol.placement), sol.evaluation)
    assert problem.memory_fits(sol.placement)
    if not problem.bundle_sum:
        assert merge_violation(sol.placement, problem.k) is None
    if problem.max_latency_s is not None:
        assert sol.evaluation.latency_s <= problem.max_latency_s * (1 + 1e-9)
    return sol


# (devices, layers, K, bundle_sum, seeds): brute force enumerates 1e3-1e4 placements each
CASES = [(3, 6, 3, False, 3), (3, 5, 5, False, 3), (4, 5, 3, False, 3), (4, 6, 2, False, 2),
         (3, 5, 3, True, 2), (4, 5, 2, True, 2)]


@pytest.mark.parametrize("n_devices,n_layers,k,bundle_sum,seeds", CASES)
def test_matches_brute_force(n_devices, n_layers, k, bundle_sum, seeds):
    """Latency, energy within a latency budget and throughput, over seeded random systems."""
    for seed in range(seeds):
        problem = dataclasses.replace(random_system_problem(seed, n_devices, n_layers, k), bundle_sum=bundle_sum)
        cands = evaluated(problem)
        model = build_model(problem)
        lats = sorted(ev.latency_s for _, ev in cands)
        rng = random.Random(seed)
        budget = lats[0] + rng.uniform(0.0, 0.5) * (lats[-1] - lats[0])
        for objective, lat in (("latency", None), ("throughput", None), ("energy", budget),
                               ("throughput", budget), ("energy", lats[0] * 0.9)):
            check(dataclasses.replace(problem, objective=objective, max_latency_s=lat), cands, model=model)


def test_backends_agree():
    usable = [b for b in BACKENDS if not unusable(b)]
    if len(usable) < 2:
        pytest.skip("fewer than two usable backends")
    for seed in range(2):
        for n_devices in (3, 4):
            problem = random_system_problem(100 + seed, n_devices, 5, 3)
            cands = evaluated(problem)
            for objective in ("latency", "energy", "throughput"):
                q = dataclasses.replace(problem, objective=objective)
                for b in usable:
                    check(q, cands, backend=b)


def test_merge_rule_counts_and_bundle_sum():
    """Without the merge rule brute force sees strictly more placements, all of them partitions."""
    problem = random_system_problem(7, 3, 5, 5, memory=False)
    merged = evaluated(problem)
    free = evaluated(dataclasses.replace(problem, bundle_sum=True))
    assert len(free) > len(merged)
    assert all(merge_violation(p, problem.k) is None for p, _ in merged)
    assert any(merge_violation(p, problem.k) is not None for p, _ in free)
    # K = 1: no union is profiled, the rule never bites
    one = dataclasses.replace(problem, max_bundle=1)
    assert len(evaluated(one)) == len(evaluated(dataclasses.replace(one, bundle_sum=True)))


# -- routes -------------------------------------------------------------------------------------

MB = 1_000_000


def line_table(n: int, cut_bytes, devices=("a", "b", "c"), lat=1e-3) -> CostTable:
    costs = {}
    for d in devices:
        for s in range(n):
            for e in range(s, n):
                costs[(d, "x", s, e)] = BundleCost(lat * (e - s + 1) * (0.1 if d != "a" else 1.0), 0.0)
    return CostTable("line", tuple(f"l{i}" for i in range(n)), tuple(cut_bytes), {d: ("x",) for d in devices},
                     costs)


def test_route_through_intermediate_costs_sum_of_hops():
    fast = Link("ab", 80.0, 80.0, rtt_ms=2.0)
    fast2 = Link("bc", 40.0, 160.0, rtt_ms=4.0)
    net = Network(3, (NetLink(0, 1, fast), NetLink(1, 2, fast2)), 0)
    r = net.route(0, 2, MB, [True, False, False])
    assert r.nodes == (0, 1, 2)
    assert r.latency_s == pytest.approx(fast.transfer_latency_s(MB, UP) + fast2.transfer_latency_s(MB, UP))
    back = net.route(2, 0, MB, [True, False, False])
    assert back.nodes == (2, 1, 0)
    assert back.latency_s == pytest.approx(fast2.transfer_latency_s(MB, DOWN) + fast.transfer_latency_s(MB, DOWN))


def test_each_cut_takes_its_own_route():
    """A direct link with a small rtt but a low rate wins for small tensors, loses for large ones."""
    direct = Link("direct", 2.0, 2.0, rtt_ms=1.0)  # 1 MB: 4 s; 100 B: 0.5 ms + 0.4 ms
    relay1 = Link("relay1", 1000.0, 1000.0, rtt_ms=40.0)  # 1 MB: 8 ms + 20 ms per hop
    relay2 = Link("relay2", 1000.0, 1000.0, rtt_ms=40.0)
    net = Network(3, (NetLink(0, 2, direct), NetLink(0, 1, relay1), NetLink(1, 2, relay2)), 0)
    e = [True, False, False]
    assert net.route(0, 2, MB, e).nodes == (0, 1, 2)
    assert net.route(0, 2, 100, e).nodes == (0, 2)
    # a is slow; b cannot compute (it only relays); c is fast: send the 1 MB input up, the 100 B output back
    table = line_table(2, [MB, 5_000, 100], lat=1.0)  # a: 1 s a layer, c: 0.1 s
    slow_b = {k: (BundleCost(10.0, 0.0) if k[0] == "b" else c) for k, c in table.costs.items()}
    table = dataclasses.replace(table, costs=slow_b)
    roles = tuple(Role(d, ("x",), name=d) for d in ("a", "b", "c"))
    problem = PlacementProblem(table, roles, net, 2)
    sol = build_model(problem).solve("highs")
    assert [a.role for a in sol.placement] == [2]
    moves = transfer_details(problem, sol.placement)
    assert [(t["cut"], t["route"]) for t in moves] == [(0, ["a", "b", "c"]), (2, ["c", "a"])]
    assert moves[0]["latency_s"] == pytest.approx(
        relay1.transfer_latency_s(MB, UP) + relay2.transfer_latency_s(MB, UP))
    assert sol.evaluation.comm_latency_s == pytest.approx(sum(t["latency_s"] for t in moves))
    assert sol.objective == pytest.approx(brute_force(problem)[0])


def test_radio_energy_is_the_counted_end_s():
    radio = Link("r", 10.0, 20.0, alpha_up_mw_per_mbps=100.0, alpha_down_mw_per_mbps=50.0, beta_mw=10.0)
    net = Network(2, (NetLink(1, 0, radio),), 0)  # ends[0] is device 1, not the source
    assert net.route(0, 1, MB, [True, False]).energy_j == 0.0  # device 1's radio; its energy does not count
    got = net.route(0, 1, MB, [False, True]).energy_j  # 0 -> 1 is `down` for this link: 1 receives
    assert got == pytest.approx(radio.transfer_energy_j(MB, DOWN))


# -- memory -------------------------------------------------------------------------------------


def test_small_memory_never_gets_a_bundle_that_does_not_fit():
    rng = random.Random(3)
    table = random_table(rng, 6, {"cam": ["a", "b"], "jet": ["a", "b"], "srv": ["a"]}, ["cam", "jet"])
    params = [4 * MB, 1 * MB, 3 * MB, 200_000, 6 * MB, 50_000]
    table.param_bytes.update({(s, e): sum(params[s : e + 1]) for s in range(6) for e in range(s, 6)})
    net = Network(3, (NetLink(0, 1, Link("w", 50, 50, rtt_ms=1)), NetLink(1, 2, Link("f", 200, 200, rtt_ms=5))), 0)
    cap = 5 * MB + 2 * max(table.cut_bytes)
    for slow in (10.0, 0.1):  # make the small devices attractive, then not
        costs = {k: (dataclasses.replace(c, latency_s=c.latency_s * slow) if k[0] == "srv" else c)
                 for k, c in table.costs.items()}
        t = dataclasses.replace(table, costs=costs)
        roles = (Role("cam", ("a", "b"), memory_bytes=cap), Role("jet", ("a", "b"), memory_bytes=cap),
                 Role("srv", ("a",)))
        problem = PlacementProblem(t, roles, net, 3)
        cands = evaluated(problem)
        assert all(memory_use(t, p, r) <= cap for p, _ in cands for r in (0, 1))
        for objective in ("latency", "energy", "throughput"):
            check(dataclasses.replace(problem, objective=objective), cands)


def test_memory_infeasible_names_the_device():
    table = random_table(random.Random(4), 3, {"cam": ["a"], "srv": ["a"]}, ["cam"])
    table.param_bytes.update({(s, e): 10 * MB * (e - s + 1) for s in range(3) for e in range(s, 3)})
    roles = (Role("cam", ("a",), name="camera", memory_bytes=MB), Role("srv", ("a",), name="cloud"))
    problem = PlacementProblem(table, roles, Network(2, (NetLink(0, 1, Link("w", 10, 10)),)), 3, private_layers=1)
    with pytest.raises(InfeasibleError, match=r"memory of camera \(1000000 bytes\)"):
        build_model(problem).solve("highs")


def test_memory_limit_needs_param_bytes():
    table = random_table(random.Random(4), 3, {"cam": ["a"], "srv": ["a"]}, ["cam"])
    with pytest.raises(UsageError, match="param_bytes"):
        PlacementProblem(table, (Role("cam", ("a",), memory_bytes=MB), Role("srv", ("a",))), Link("w", 1, 1), 3)


def test_two_roles_are_a_network_of_one_link():
    """Link and Network.two_roles give the same model and the same answers."""
    rng = random.Random(9)
    table = random_table(rng, 6, {"e": ["a", "b"], "c": ["x"]}, ["e"])
    link = Link("l", 5.0, 20.0, 400.0, 60.0, 900.0, rtt_ms=8.0)
    roles = (Role("e", ("a", "b")), Role("c", ("x",)))
    by_link = PlacementProblem(table, roles, link, 4, objective="energy")
    by_net = dataclasses.replace(by_link, link=Network.two_roles(link))
    a, b = build_model(by_link), build_model(by_net)
    assert a.num_vars == b.num_vars and a.num_constraints() == b.num_constraints()
    sa, sb = a.solve("highs"), b.solve("highs")
    assert sa.placement == sb.placement and same_evaluation(sa.evaluation, sb.evaluation)
    assert math.isfinite(sa.evaluation.period_s) and sa.evaluation.bottleneck


def test_pin_and_private_layers_hold():
    problem = random_system_problem(5, 3, 5, 3, memory=False)
    problem = dataclasses.replace(problem, pin=((4, 2), (2, 1)), private_layers=1)
    cands = evaluated(problem)
    assert cands
    for p, _ in cands:
        on = {i: a.role for a in p for i in range(a.start, a.end + 1)}
        assert on[4] == 2 and on[2] == 1 and on[0] == problem.source
    for objective in ("latency", "throughput"):
        check(dataclasses.replace(problem, objective=objective), cands)
    with pytest.raises(UsageError, match="private layer"):
        dataclasses.replace(problem, pin=((0, 1),))


def test_merge_violation():
    a = [Assignment(0, 1, 0, "x"), Assignment(2, 2, 0, "x"), Assignment(3, 3, 1, "x")]
    assert merge_violation(a, 3) == 2
    assert merge_violation(a, 2) is None
    assert merge_violation([Assignment(0, 1, 0, "x"), Assignment(2, 2, 0, "y")], 3) is None


# -- relays (devices that forward transfers and compute nothing) ---------------------------------


RELAY = 1  # the role made a relay


def relay_problem(seed: int, n_devices: int, n_layers: int, k: int, bundle_sum: bool) -> PlacementProblem:
    """random_system_problem with device 1 a relay that the others reach through.

    3 devices: the chain source -- relay -- cloud, no other link. 4 devices: the relay is a
    hub (0-1, 1-2, 1-3) plus, when the random network had more links, 0-3 and 2-3. The
    relay keeps its random energy flag: when set, its radio energy on the links it is
    ends[0] of counts. Links are the random network's (rates, rtts, radios).
    """
    p = random_system_problem(seed, n_devices, n_layers, k)
    roles = list(p.roles)
    roles[RELAY] = Role("", (), name="relay", energy=roles[RELAY].energy, compute=False)
    pairs = [(0, 1), (1, 2)] if n_devices == 3 else [(0, 1), (1, 2), (1, 3), (0, 3), (2, 3)]
    links = [nl.link for nl in p.network.links]
    net = Network(n_devices, tuple(NetLink(a, b, lk) for (a, b), lk in zip(pairs, links)), 0)
    assert len(net.links) >= n_devices - 1
    pin = tuple((layer, r) for layer, r in p.pin if r != RELAY)
    return dataclasses.replace(p, roles=tuple(roles), link=net, pin=pin, bundle_sum=bundle_sum)


RELAY_CASES = [(3, 6, 3), (3, 5, 5), (4, 5, 3), (4, 6, 2)]


@pytest.mark.parametrize("bundle_sum", [False, True])
@pytest.mark.parametrize("n_devices,n_layers,k", RELAY_CASES)
def test_relay_matches_brute_force(n_devices, n_layers, k, bundle_sum):
    """Latency, energy within a latency budget and throughput with a relay: the ILP equals
    brute force, nothing runs on the relay, and source <-> cloud transfers of the chain take
    two hops through it."""
    hops_seen = 0
    for seed in range(3):
        problem = relay_problem(200 + seed, n_devices, n_layers, k, bundle_sum)
        cands = evaluated(problem)
        assert cands and all(a.role != RELAY for p, _ in cands for a in p)
        model = build_model(problem)
        assert all(r != RELAY for _, _, r, _ in model._x)
        lats = sorted(ev.latency_s for _, ev in cands)
        budget = lats[0] + random.Random(seed).uniform(0.1, 0.5) * (lats[-1] - lats[0])
        for objective, lat in (("latency", None), ("throughput", None), ("energy", budget),
                               ("throughput", budget), ("energy", lats[0] * 0.9)):
            q = dataclasses.replace(problem, objective=objective, max_latency_s=lat)
            sol = check(q, cands, model=model)
            if sol is None:
                continue
            assert all(a.role != RELAY for a in sol.placement)
            for t in transfer_details(q, sol.placement):
                assert "relay" not in (t["from"], t["to"])
                if n_devices == 3:
                    assert t["route"] in (["n0", "relay", "n2"], ["n2", "relay", "n0"]), t
                hops_seen += "relay" in t["route"]
    assert hops_seen, "no placement moved data through the relay"


def test_relay_forwards_and_its_links_bound_the_period():
    """All on a fast cloud behind a relay: 2 hops each way, latency the sum of the hops, no
    compute on the relay, and the relay -> cloud link is the throughput bottleneck."""
    wifi = Link("wifi", 400.0, 400.0, rtt_ms=1.0)
    slow = Link("wan", 8.0, 8.0, rtt_ms=20.0)  # 1 MB: 1 s on the wire
    net = Network(3, (NetLink(0, 1, wifi), NetLink(1, 2, slow)), 0)
    table = line_table(2, [MB, 5_000, 100], lat=2.0)  # a: 2 s a layer, c: 0.2 s
    roles = (Role("a", ("x",), name="cam"), Role("", (), name="router", compute=False), Role("c", ("x",), name="cloud"))
    for objective in ("latency", "throughput"):
        problem = PlacementProblem(table, roles, net, 2, objective=objective)
        sol = build_model(problem).solve("highs")
        assert [(a.role, a.start, a.end) for a in sol.placement] == [(2, 0, 1)]
        moves = transfer_details(problem, sol.placement)
        assert [t["route"] for t in moves] == [["cam", "router", "cloud"], ["cloud", "router", "cam"]]
        assert moves[0]["latency_s"] == pytest.approx(wifi.transfer_latency_s(MB, UP) + slow.transfer_latency_s(MB, UP))
        ev = sol.evaluation
        assert ev.comm_latency_s == pytest.approx(sum(t["latency_s"] for t in moves))
        assert ev.bottleneck == "router->cloud"
        assert ev.period_s == pytest.approx(slow.transfer_time_s(MB, UP))
        assert sol.objective == pytest.approx(brute_force(problem)[0])


def test_relay_energy_counts_its_radio():
    """A relay whose energy counts is charged the radio energy of the links it is ends[0] of."""
    radio = Link("r", 10.0, 20.0, alpha_up_mw_per_mbps=100.0, alpha_down_mw_per_mbps=50.0, beta_mw=10.0)
    net = Network(3, (NetLink(0, 1, Link("w", 100.0, 100.0)), NetLink(1, 2, radio)), 0)
    table = line_table(1, [MB, 100])
    roles = (Role("a", ("x",), name="cam", energy=False), Role("", (), name="router", energy=True, compute=False),
             Role("c", ("x",), name="cloud"))
    problem = PlacementProblem(table, roles, net, 1)
    ev = problem.evaluate([Assignment(0, 0, 2, "x")])
    assert ev.compute_energy_j == 0.0
    assert ev.comm_energy_j == pytest.approx(radio.transfer_energy_j(MB, UP) + radio.transfer_energy_j(100, DOWN))


def test_relay_roles_are_checked():
    table = line_table(2, [MB, 5_000, 100])
    net = Network(3, (NetLink(0, 1, Link("w", 10, 10)), NetLink(1, 2, Link("f", 10, 10))), 0)
    cam, cloud = Role("a", ("x",), name="cam"), Role("c", ("x",), name="cloud")
    relay = Role("", (), name="router", compute=False)
    ok = PlacementProblem(table, (cam, relay, cloud), net, 2)
    assert not ok.allowed(0, 0, 1) and ok.allowed(0, 0, 2)
    with pytest.raises(UsageError, match="source router must compute"):
        PlacementProblem(table, (relay, cam, cloud), net, 2)
    with pytest.raises(UsageError, match="router is a relay .* has settings x"):
        PlacementProblem(table, (cam, dataclasses.replace(relay, settings=("x",)), cloud), net, 2)
    with pytest.raises(UsageError, match="router is a relay .* memory limit"):
        PlacementProblem(table, (cam, dataclasses.replace(relay, memory_bytes=MB), cloud), net, 2)
    with pytest.raises(UsageError, match="relay role 1 .* needs a name"):
        PlacementProblem(table, (cam, dataclasses.replace(relay, name=""), cloud), net, 2)
    with pytest.raises(UsageError, match="pin: l1 is pinned to router, a relay"):
        dataclasses.replace(ok, pin=((1, 1),))
    with pytest.raises(ValueError, match="router is a relay"):
        ok.evaluate([Assignment(0, 1, 1, "x")])
