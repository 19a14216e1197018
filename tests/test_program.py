"""What each device does for a query (dime.run.data.program) and the plan that carries it (no torch)."""

from __future__ import annotations

import random

import pytest

from dime.core.costs import Assignment, moves
from dime.core.links import DOWN, UP, Link
from dime.core.network import NetLink, Network
from dime.run.data.program import build_program
from dime.run.plan import DeviceInfo, Plan, Prediction, RunConfig, pred_throughput_fps, routes_of

FAST = Link("fast", 1000, 1000)
SLOW = Link("slow", 1, 1)
CUTS = (3000, 2000, 1000, 500, 40)  # 4 layers


def chain(n: int) -> Network:
    """Devices 0 - 1 - ... - n-1 in a line, source 0."""
    return Network(n, tuple(NetLink(i, i + 1, FAST) for i in range(n - 1)), 0)


def check_consistent(program, placement, network) -> None:
    """Every stream has one sender and one receiver task; the bundles run in chain order; relays run nothing."""
    senders = [t.out for t in program.tasks if t.out is not None]
    receivers = [t.inp for t in program.tasks if t.inp is not None]
    assert sorted(senders) == sorted(receivers) == [s.sid for s in program.streams]
    for s in program.streams:
        (sender,) = [t for t in program.tasks if t.out == s.sid]
        (receiver,) = [t for t in program.tasks if t.inp == s.sid]
        assert (sender.device, receiver.device) == (s.src, s.dst)
        assert sender.out_cut == receiver.in_cut == s.cut
        nl = network.links[s.link]
        assert (nl.a, nl.b) == ((s.src, s.dst) if s.direction == UP else (s.dst, s.src))
    assert [b for t in program.tasks for b in t.bundles] == list(placement)
    assert program.tasks[0].inp is None and program.tasks[-1].out is None
    assert program.tasks[0].device == program.tasks[-1].device == network.source
    # the chain: each task starts where the last one ended
    for a, b in zip(program.tasks, program.tasks[1:]):
        assert a.out == b.inp and a.out_cut == b.in_cut


def test_two_devices_split_in_the_middle():
    placement = (Assignment(0, 1, 0, "t"), Assignment(2, 3, 1, "t"))
    p = build_program(placement, Network.two_roles(FAST), CUTS)
    assert [(s.cut, s.src, s.dst, s.direction) for s in p.streams] == [(2, 0, 1, UP), (4, 1, 0, DOWN)]
    assert [(t.device, t.inp, t.out, len(t.bundles)) for t in p.tasks] == [(0, None, 0, 1), (1, 0, 1, 1),
                                                                          (0, 1, None, 0)]
    assert p.devices() == {0, 1}
    check_consistent(p, placement, Network.two_roles(FAST))


def test_all_on_the_source_is_one_task_and_no_stream():
    placement = (Assignment(0, 3, 0, "t"),)
    p = build_program(placement, chain(3), CUTS)
    assert p.streams == () and len(p.tasks) == 1 and p.devices() == {0}


def test_a_device_in_between_relays_both_ways():
    net = chain(3)
    placement = (Assignment(0, 1, 0, "t"), Assignment(2, 3, 2, "t"))
    p = build_program(placement, net, CUTS)
    assert [(s.cut, s.src, s.dst) for s in p.streams] == [(2, 0, 1), (2, 1, 2), (4, 2, 1), (4, 1, 0)]
    relays = [t for t in p.tasks if t.device == 1]
    assert len(relays) == 2 and all(t.relay for t in relays)
    assert p.devices() == {0, 1, 2}
    check_consistent(p, placement, net)


def test_transfers_take_the_least_latency_route():
    # 0 - 1 - 2 fast, and a slow direct link 0 - 2: the cut goes through 1
    net = Network(3, (NetLink(0, 1, FAST), NetLink(1, 2, FAST), NetLink(0, 2, SLOW)), 0)
    placement = (Assignment(0, 3, 2, "t"),)
    p = build_program(placement, net, CUTS)
    assert [(s.src, s.dst) for s in p.streams] == [(0, 1), (1, 2), (2, 1), (1, 0)]
    # an explicit route overrides: the slow direct link both ways
    routes = {(0, 0, 2): [(2, UP, 0, 2)], (4, 2, 0): [(2, DOWN, 2, 0)]}
    p2 = build_program(placement, net, CUTS, routes)
    assert [(s.src, s.dst, s.link) for s in p2.streams] == [(0, 2, 2), (2, 0, 2)]
    check_consistent(p2, placement, net)


def test_random_placements_on_random_networks_are_consistent():
    rng = random.Random(7)
    for _ in range(200):
        n_dev = rng.randint(2, 5)
        links = [NetLink(i, rng.randrange(i), rng.choice([FAST, SLOW])) for i in range(1, n_dev)]
        links += [NetLink(a, b, FAST) for a in range(n_dev) for b in range(a) if rng.random() < 0.3]
        net = Network(n_dev, tuple(links), rng.randrange(n_dev))
        n_layers = rng.randint(1, 6)
        cuts = tuple(rng.randint(1, 10_000) for _ in range(n_layers + 1))
        placement, s = [], 0
        while s < n_layers:
            e = rng.randint(s, n_layers - 1)
            placement.append(Assignment(s, e, rng.randrange(n_dev), "t"))
            s = e + 1
        p = build_program(placement, net, cuts)
        check_consistent(p, tuple(placement), net)
        # as many streams as the routes of the cost model have hops
        hops = sum(len(net.route(a, b, cuts[c], [False] * n_dev).hops) for c, a, b in moves(placement, n_layers, net.source))
        assert len(p.streams) == hops


def test_plan_round_trips_and_names_its_ranks():
    net = chain(3)
    placement = (Assignment(0, 1, 0, "threads=1"), Assignment(2, 3, 2, "threads=1"))
    pred = Prediction(0.02, (0.005, 0.0, 0.007), 0.008, 0.007, "c")
    cfg = RunConfig("solver", placement, net, "sys", routes_of(placement, net, CUTS), pred, None, 0.02, 140.0)
    edge_only = RunConfig("a-only", (Assignment(0, 3, 0, "threads=1"),), net, "sys")
    plan = Plan("m", ("l0", "l1", "l2", "l3"), CUTS, (cfg, edge_only),
                (DeviceInfo("a", "cpu"), DeviceInfo("b"), DeviceInfo("c", "cpu")), 0, "netns")
    back = Plan.from_json(plan.to_json())
    assert back == plan
    assert plan.participants() == [0, 1, 2] and plan.rank_names() == ("a", "b", "c")
    assert plan.probe_links() == [(0, 1, FAST), (1, 2, FAST)]
    assert plan.placement_text(placement) == "l0+l1@a/threads=1 | l2+l3@c/threads=1"
    only_a = Plan("m", ("l0", "l1", "l2", "l3"), CUTS, (edge_only,), plan.devices, 0)
    assert only_a.participants() == [0] and only_a.rank_names() == ("a",)


def test_predicted_throughput_is_bounded_by_queries_in_flight_and_the_period():
    pred = Prediction(0.020, (0.008, 0.006), 0.006, 0.008, "edge")
    assert pred_throughput_fps(pred, 1) == pytest.approx(50.0)  # one query at a time: 1 / latency
    assert pred_throughput_fps(pred, 2) == pytest.approx(100.0)
    assert pred_throughput_fps(pred, 4) == pytest.approx(125.0)  # the edge's 8 ms per frame bounds it
    assert pred_throughput_fps(None, 4) is None
