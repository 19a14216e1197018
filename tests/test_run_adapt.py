"""Plans that follow the network (issue 19): link schedules, rate estimates from a run's own
transfers, re-planning and live switches."""

from __future__ import annotations

import queue
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from clihelp import PY, assert_one_line_error, cli_env
from nd_helpers import csv_rows, fake_profile, skipnet, solution
from test_run_netns import device_pids, launched  # noqa: F401  (launched: the fixture that checks that nothing is left)

from dime.core.links import DOWN, UP, Link
from dime.core.network import NetLink, Network
from dime.errors import UsageError
from dime.run.control.session import SwitchCost
from dime.run.data.reports import pack_report, unpack_report
from dime.run.links.estimate import RateEstimator, Transfer
from dime.run.links.linkemu import LinkShaper
from dime.run.links.netns import unavailable_reason
from dime.run.links.schedule import (
    Clock,
    LinkView,
    RateChange,
    change_times,
    network_at,
    parse_link_schedule,
    resolve_schedule,
)

NETNS_REASON = unavailable_reason()
SKIPNET = "toy_models:skipnet"
SKIP_CUTS = ["conv1", "conv2", "pool"]
SMALL = "1,3,16,16"
TOY = ["--model", SKIPNET, "--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL]


def _local(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "dime.run", "local", *TOY, "-q", *args], capture_output=True, text=True,
                          env=cli_env(), timeout=timeout)


# ---- schedules -------------------------------------------------------------------------
def test_a_schedule_parses_rates_and_keeps_the_rtt_it_does_not_give():
    s = parse_link_schedule("edge-cloud=0:100/100/1,5:5/5,10:wifi")
    assert s.link == "edge-cloud"
    assert [c.at_s for c in s.changes] == [0, 5, 10]
    assert (s.changes[0].uplink_mbps, s.changes[0].rtt_ms) == (100, 1)
    assert (s.changes[1].uplink_mbps, s.changes[1].downlink_mbps, s.changes[1].rtt_ms) == (5, 5, None)
    assert s.changes[2].uplink_mbps == 18.88  # a preset
    assert parse_link_schedule(s.text()) == s


@pytest.mark.parametrize("text", ["edge-cloud", "edge-cloud=", "=1:5/5", "edge-cloud=1:5", "edge-cloud=x:5/5",
                                  "edge-cloud=-1:5/5", "edge-cloud=1:5/5,1.5:6/6", "edge-cloud=2:5/5,1:6/6",
                                  "edge-cloud=1:5g", "edge-cloud=1:0/5"])
def test_a_malformed_schedule_is_refused(text):
    with pytest.raises(UsageError):
        parse_link_schedule(text)


def test_a_schedule_names_links_by_their_ends():
    net = Network(3, (NetLink(0, 1, Link("l0", 10, 20, rtt_ms=2)), NetLink(1, 2, Link("l1", 30, 40))), 0)
    names = ("a", "b", "c")
    sched = resolve_schedule([parse_link_schedule("b-c=1:3/4"), parse_link_schedule("a-b=2:5/6/7")], names, net)
    assert sched == ((0, (RateChange(2, 5, 6, 7),)), (1, (RateChange(1, 3, 4, None),)))
    assert change_times(sched) == [1, 2]
    with pytest.raises(UsageError, match="no link 'a-c'"):
        resolve_schedule([parse_link_schedule("a-c=1:3/4")], names, net)
    with pytest.raises(UsageError, match="scheduled twice"):
        resolve_schedule([parse_link_schedule("a-b=1:3/4"), parse_link_schedule("a-b=3:3/4")], names, net)
    # the network at a time: before the start and before a link's first change it is as configured
    assert network_at(net, sched, None) == net
    at = network_at(net, sched, 1.5)
    assert at.links[0].link == net.links[0].link and at.links[1].link.rate_mbps(UP) == 3
    at = network_at(net, sched, 2.0)
    assert (at.links[0].link.uplink_mbps, at.links[0].link.rtt_ms, at.links[1].link.rtt_ms) == (5, 7, 0)


def test_a_link_view_follows_the_schedule_from_the_clock_start():
    net = Network.two_roles(Link("l", 100, 50, rtt_ms=4))
    clock = Clock()
    view = LinkView(net, ((0, (RateChange(1, 5, 6), RateChange(3, 7, 8, 2))),), clock)
    assert view.rate_mbps(0, UP) == 100  # not started: as configured
    t0 = clock.start()
    assert clock.elapsed_s(t0 + 0.5) == pytest.approx(0.5)
    clock.start(t0 - 1.5)  # as if it started 1.5 s ago
    assert (view.rate_mbps(0, UP), view.rate_mbps(0, DOWN), view.rtt_ms(0)) == (5, 6, 4)
    clock.start(t0 - 3.5)
    assert (view.rate_mbps(0, UP), view.rtt_ms(0)) == (7, 2)


def test_the_pacer_takes_the_rate_of_the_moment_its_transfer_begins():
    now = [0.0]
    rate = [8.0]

    def sleep(s: float) -> None:
        now[0] += s

    shaper = LinkShaper(lambda: rate[0], clock=lambda: now[0], sleep=sleep)
    assert shaper.send(1_000_000, lambda: None, lambda: None).target_s == pytest.approx(1.0)
    rate[0] = 2.0
    assert shaper.send(1_000_000, lambda: None, lambda: None).target_s == pytest.approx(4.0)
    assert shaper.rate_mbps == 2.0


@pytest.mark.parametrize("extra, needle", [
    (["--split", "0", "--link-schedule", "edge-cloud=1:5"], "--link-schedule edge-cloud: '1:5': unknown link"),
    (["--split", "0", "--link-schedule", "edge-cloud=1/5"], "is not T:RATE"),
    (["--split", "0", "--link-schedule", "edge-router=1:5/5"], "no link 'edge-router'"),
    (["--split", "0", "--link-schedule", "edge-cloud=1:5/5,1.5:6/6"], "at most once per 1 s"),
    (["--split", "0", "--link-schedule", "edge-cloud=1:5/5", "--scenario", "single-stream,offline"], "one --scenario"),
    (["--split", "all", "--link-schedule", "edge-cloud=1:5/5"], "one placement over one network"),
    (["--split", "0", "--link", "4g,wifi", "--link-schedule", "edge-cloud=1:5/5"], "one placement over one network"),
])
def test_bad_schedules_are_one_line_errors(extra, needle):
    proc = _local(["--link", "100/100", "--shaper", "user", *extra], timeout=60)
    assert_one_line_error(proc)
    assert needle in proc.stderr, proc.stderr


@pytest.mark.parametrize("extra, needle", [
    (["--adapt"], "give its profiles"),
    (["--adapt", "schedule"], "--adapt schedule re-plans at the steps of --link-schedule"),
    (["--replans-out", "r.csv"], "--replans-out needs --adapt"),
    (["--adapt", "--scenario", "single-stream,server"], "--adapt runs through one measurement"),
    (["--adapt", "--objective", "energy"], "invalid choice"),
])
def test_bad_adapt_options_are_one_line_errors(extra, needle, tmp_path):
    proc = _local(["--split", "0", "--link", "100/100", "--shaper", "user", *extra], timeout=60)
    assert_one_line_error(proc)
    assert needle in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_user_shaped_schedule_slows_the_queries_of_its_slow_phase(tmp_path):
    """cloud-only over 1000 Mbps, 0.5 Mbps from 1 s to 3 s: the input (3072 B) then takes 49 ms on
    the wire each way up; the row holds the schedule."""
    out = tmp_path / "run.csv"
    proc = _local(["--split", "-1", "--link", "1000/1000/1", "--link-schedule", "edge-cloud=1:0.5/0.5,3:1000/1000",
                   "--shaper", "user", "--min-duration-s", "4", "--min-query-count", "4", "--warmup", "1",
                   "--reference-runs", "0", "--probe-s", "0", "--driver", "plain", "--verify", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    (row,) = csv_rows(out)
    assert row["schedule"] == "edge-cloud=1:0.5/0.5,3:1000/1000"
    assert float(row["max_s"]) > 3072 * 8 / 0.5e6  # a query of the slow phase paced at 0.5 Mbps
    assert float(row["min_s"]) < 3072 * 8 / 0.5e6  # and the fast ones were not


# ---- rate estimates --------------------------------------------------------------------
def _t(mbps: float, nbytes: int = 125_000, link: int = 0, direction: str = UP) -> Transfer:
    return Transfer(link, direction, nbytes, nbytes * 8 / (mbps * 1e6))


def test_the_estimate_is_the_median_of_the_window_and_ignores_one_outlier():
    est = RateEstimator(window=5, min_samples=3)
    assert est.add(_t(10)) is None and est.add(_t(10)) is None  # too few samples yet
    assert est.add(_t(1000)) == pytest.approx(10)  # one outlier among three: the median holds
    assert est.add(_t(10)) == pytest.approx(10) and est.add(_t(0.1)) == pytest.approx(10)
    assert est.samples((0, UP)) == 5 and est.estimate((0, DOWN)) is None
    # a real step: three new samples of five carry the median across it
    assert est.add(_t(2)) == pytest.approx(10)
    assert est.add(_t(2)) == pytest.approx(2)
    assert est.estimates() == {(0, UP): pytest.approx(2)}
    assert est.add(Transfer(0, UP, 1000, 0.0)) == pytest.approx(2)  # no wire time: no sample


def test_an_idle_direction_can_be_forgotten():
    est = RateEstimator(window=3, min_samples=1)
    est.add(_t(5), now=100.0)
    assert est.idle_s((0, UP), now=102.5) == pytest.approx(2.5) and est.idle_s((1, UP)) is None
    est.forget((0, UP))
    assert est.estimate((0, UP)) is None and est.idle_s((0, UP)) is None
    with pytest.raises(ValueError):
        RateEstimator(window=2, min_samples=3)


def test_transfer_reports_round_trip():
    recs = [Transfer(0, UP, 3072, 0.049), Transfer(2, DOWN, 40, 1e-6)]
    got = unpack_report(pack_report(recs))
    assert [(r.link, r.direction, r.payload_bytes) for r in got] == [(0, UP, 3072), (2, DOWN, 40)]
    assert [r.wire_s for r in got] == pytest.approx([0.049, 1e-6])
    assert unpack_report(pack_report([])) is None  # the last report of a pipeline


# ---- re-planning decisions (no processes) ----------------------------------------------
class FakeSession:
    """What the adapter asks of a session: the current config, the plan, switches."""

    def __init__(self, plan, config) -> None:
        self.run = SimpleNamespace(plan=plan)
        self.config = config
        self.switched = []

    def switch(self, config):
        self.switched.append(config)
        self.config = config
        return SwitchCost(0.001, 0.002, 7)

    def fail(self, error):
        raise error


@pytest.fixture(scope="module")
def two_speeds(tmp_path_factory):
    """Two devices: the edge 10 ms per layer, the cloud 1 ms; a plan starting cloud-only over
    1000 Mbps; the problem the source re-solves."""
    from dime.run.options import PlanOptions
    from dime.run.placements import ModelShape, adapt_problem, build_plan

    prof = tmp_path_factory.mktemp("speeds") / "skipnet.csv"
    fake_profile(prof, ("slow", "fast"), {"slow": 10, "fast": 1})
    opts = PlanOptions(split="cloud-only", profiles=(str(prof),), edge_device="slow", cloud_device="fast",
                       links=(Link("fast", 1000, 1000, rtt_ms=1),))
    m = skipnet()
    plan = build_plan(opts, ModelShape(m.name, tuple(m.layer_names), tuple(m.cut_bytes)))
    return plan, adapt_problem(opts, "latency", SKIPNET)


def _best(problem, up_mbps: float, down_mbps: float = 1000.0):
    """What the solver places for these rates (merged as the run merges it)."""
    import dataclasses

    from dime.plan.problem import solve
    from dime.run.plan import merged_config

    net = problem.network
    link = dataclasses.replace(net.links[0].link, uplink_mbps=up_mbps, downlink_mbps=down_mbps)
    net = dataclasses.replace(net, links=(dataclasses.replace(net.links[0], link=link),))
    sol = solve(dataclasses.replace(problem, link=net))
    return merged_config("x", sol.placement, net, problem.table, problem.roles, problem.max_bundle).placement


def _adapter(two_speeds, **opts):
    from dime.run.control.adapt import Adapter, Replanner
    from dime.run.options import AdaptOptions

    plan, problem = two_speeds
    session = FakeSession(plan, plan.configs[0])
    adapter = Adapter(session, Replanner(problem), AdaptOptions(**{"mode": "measured", **opts}),
                      plan.configs[0].network, plan.schedule, Clock(), plan.device_names, queue.Queue())
    return adapter, session, problem


def _feed(adapter, mbps: float, n: int = 3, direction: str = UP) -> None:
    for _ in range(n):
        adapter.transfers.put(_t(mbps, 3072, direction=direction))
    adapter._measured()


def test_a_slower_link_is_re_planned_for_and_a_faster_one_back(two_speeds):
    adapter, session, problem = _adapter(two_speeds)
    start = session.config.placement
    assert start == _best(problem, 1000)  # cloud-only is the best plan at 1000 Mbps
    _feed(adapter, 1000)
    assert session.switched == [] and adapter.replans == []  # as planned for: nothing to do
    _feed(adapter, 0.5)
    assert [c.placement for c in session.switched] == [_best(problem, 0.5)] != [start]
    assert adapter.replans[-1].switched and adapter.replans[-1].first_query == 7
    _feed(adapter, 1000)
    assert session.switched[-1].placement == start
    # a re-plan's config runs its placement over the links as configured, routes and predictions as solved for
    assert session.switched[0].network == two_speeds[0].configs[0].network


def test_the_margin_keeps_a_plan_that_is_not_better_enough(two_speeds):
    adapter, session, problem = _adapter(two_speeds, margin=0.9)
    _feed(adapter, 0.5)
    (replan,) = adapter.replans
    assert not replan.switched and session.switched == []
    assert replan.new != replan.old and replan.pred_new_s < replan.pred_old_s  # better, by less than 90%


def test_a_move_under_the_threshold_is_no_reason_to_re_solve(two_speeds):
    adapter, session, _ = _adapter(two_speeds, threshold=0.5)
    _feed(adapter, 700)  # 30% below the 1000 planned for
    assert adapter.replans == []


def test_an_idle_slow_direction_is_tried_again_at_its_configured_rate(two_speeds):
    adapter, session, problem = _adapter(two_speeds, explore_s=0.01)
    start = session.config.placement
    _feed(adapter, 0.5)
    slow_plan = session.config.placement
    assert slow_plan != start
    time.sleep(0.05)  # the uplink carries nothing for a while...
    adapter._measured()
    assert session.config.placement == start  # ...so the plan that uses it is tried again


def test_the_oracle_switches_to_each_phases_best_plan(two_speeds):
    import dataclasses

    from dime.run.control.adapt import Adapter, Replanner
    from dime.run.options import AdaptOptions

    plan, problem = two_speeds
    schedule = ((0, (RateChange(1, 0.5, 1000), RateChange(2, 1000, 1000))),)
    session = FakeSession(plan, plan.configs[0])
    clock = Clock()
    adapter = Adapter(session, Replanner(problem), AdaptOptions(mode="schedule"), plan.configs[0].network, schedule,
                      clock, plan.device_names, queue.Queue())
    adapter._scheduled()
    assert adapter.replans == []  # the clock has not started
    t0 = clock.start()
    adapter._scheduled()
    assert [r.switched for r in adapter.replans] == [False]  # phase 0: the plan is already its best
    clock.start(t0 - 1.2)
    adapter._scheduled()
    adapter._scheduled()  # once per phase
    assert [c.placement for c in session.switched] == [_best(problem, 0.5)]
    clock.start(t0 - 2.2)
    adapter._scheduled()
    assert [c.placement for c in session.switched][-1] == plan.configs[0].placement
    assert [r.trigger for r in adapter.replans] == ["schedule"] * 3
    assert dataclasses.asdict(adapter.replans[1])["at_s"] == pytest.approx(1.2, abs=0.1)


# ---- runs that re-plan -----------------------------------------------------------------
ADAPT_QUICK = ["--scenario", "single-stream", "--warmup", "1", "--reference-runs", "0", "--probe-s", "0",
               "--driver", "plain", "--min-query-count", "4", "--verify"]


def _speeds_system(tmp_path, relay: bool, model=None) -> Path:
    """a (10 ms per layer, the source) - [b, a relay -] c (1 ms per layer), links of 1000 Mbps; the
    cut sizes of `model` (default: skipnet at 16x16)."""
    fake_profile(tmp_path / "skipnet.csv", ("slow", "fast"), {"slow": 10, "fast": 1}, model)
    text = f'model = "{SKIPNET}"\nsource = "a"\n'
    devices = [("a", "slow"), ("b", None), ("c", "fast")] if relay else [("a", "slow"), ("c", "fast")]
    for name, dev in devices:
        text += f'\n[[device]]\nname = "{name}"\n' + (
            f'profiles = ["skipnet.csv"]\nprofile_device = "{dev}"\n' if dev else "compute = false\n")
    names = [name for name, _ in devices]
    for x, y in zip(names, names[1:]):
        text += f'\n[[link]]\nends = ["{x}", "{y}"]\nup_mbps = 1000\ndown_mbps = 1000\nrtt_ms = 1\n'
    path = tmp_path / "sys.toml"
    path.write_text(text)
    return path


def _system_best(system: Path, link: int, up_mbps: float) -> str:
    """The placement text the solver gives the system with link `link` at `up_mbps` up."""
    import dataclasses

    from dime.plan.problem import solve
    from dime.plan.system import build_problem, load_system
    from dime.run.plan import merged_config

    problem = build_problem(load_system(system))
    net = problem.network
    nl = net.links[link]
    links = list(net.links)
    links[link] = dataclasses.replace(nl, link=dataclasses.replace(nl.link, uplink_mbps=up_mbps))
    net = dataclasses.replace(net, links=tuple(links))
    placement = merged_config("x", solve(dataclasses.replace(problem, link=net)).placement, net, problem.table,
                              problem.roles, problem.max_bundle).placement
    from dime.core.placement import format_placement

    return format_placement(problem.table.layer_names, placement, [r.name for r in problem.roles])


def _runs(rows: list[dict[str, str]]) -> list[str]:
    """The placements the queries ran under, in order, each run of them once."""
    out: list[str] = []
    for r in rows:
        if not out or out[-1] != r["placement"]:
            out.append(r["placement"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("relay", [False, True], ids=["2-devices", "3-devices"])
def test_a_user_shaped_schedule_is_followed_by_the_plan(relay, tmp_path):
    """The first link drops from 1000 to 0.5 Mbps at 2 s and recovers at 5 s: the source sees it in
    its transfers, re-plans and switches, there and back; every output is checked against the
    full model, no query is lost and each ran under one placement."""
    system = _speeds_system(tmp_path, relay)
    first = "a-b" if relay else "a-c"
    fast, slow = _system_best(system, 0, 1000), _system_best(system, 0, 0.5)
    assert fast != slow
    sol = tmp_path / "sol.json"
    subprocess.run([PY, "-m", "dime.solve", "--system", str(system), "--json", str(sol), "-q"], env=cli_env(),
                   check=True, capture_output=True)
    out, queries, replans = tmp_path / "run.csv", tmp_path / "q.csv", tmp_path / "r.csv"
    proc = _local(["--system", str(system), "--solution", str(sol), "--shaper", "user", "--adapt",
                   "--link-schedule", f"{first}=2:0.5/0.5,5:1000/1000", "--min-duration-s", "7", *ADAPT_QUICK,
                   "--out", str(out), "--queries-out", str(queries), "--replans-out", str(replans)])
    assert proc.returncode == 0, proc.stderr
    (row,) = csv_rows(out)
    qs = csv_rows(queries)
    assert len(qs) == int(row["count"]) and all(q["ok"] == "True" for q in qs)  # none lost, every output right
    assert sorted(int(q["query"]) for q in qs) == list(range(int(qs[0]["query"]), int(qs[0]["query"]) + len(qs)))
    runs = _runs(qs)
    assert runs[0] == fast and slow in runs and runs[-1] == fast, runs
    moved = next(q for q in qs if q["placement"] == slow)
    assert float(moved["started_s"]) > 2.0  # the source learnt of the drop from the transfers after it
    rs = csv_rows(replans)
    switched = [r for r in rs if r["switched"] == "True"]
    assert [r["new"] for r in switched] == runs[1:]
    # the estimate followed the step: the pacer's hold at 0.5 Mbps is what the source solved for
    assert f"a->{first[2]}=0.5;" in switched[0]["rates"], switched[0]
    assert int(row["switches"]) == len(switched) and row["adapt"] == "measured"
    assert float(row["switch_s"]) > 0 and all(float(r["drain_s"]) <= float(r["switch_s"]) for r in switched)


@pytest.mark.slow
def test_a_schedule_that_keeps_the_best_plan_switches_nothing(tmp_path):
    """1000 -> 500 -> 1000 Mbps: the estimate moves by half, the source re-solves, and stays."""
    system = _speeds_system(tmp_path, relay=False)
    assert _system_best(system, 0, 500) == _system_best(system, 0, 1000)
    sol = tmp_path / "sol.json"
    subprocess.run([PY, "-m", "dime.solve", "--system", str(system), "--json", str(sol), "-q"], env=cli_env(),
                   check=True, capture_output=True)
    out, queries, replans = tmp_path / "run.csv", tmp_path / "q.csv", tmp_path / "r.csv"
    proc = _local(["--system", str(system), "--solution", str(sol), "--shaper", "user", "--adapt",
                   "--link-schedule", "a-c=1:500/500,3:1000/1000", "--min-duration-s", "4", *ADAPT_QUICK,
                   "--out", str(out), "--queries-out", str(queries), "--replans-out", str(replans)])
    assert proc.returncode == 0, proc.stderr
    (row,) = csv_rows(out)
    rs = csv_rows(replans)
    assert rs and all(r["switched"] == "False" and r["old"] == r["new"] for r in rs)  # it looked, and stayed
    assert row["switches"] == "0" and {q["plan"] for q in csv_rows(queries)} == {"0"}


def _kill_the_cloud_once_switching(proc: subprocess.Popen, marker: str) -> tuple[list[str], str]:
    """Read the run's log until the source decides to switch, SIGKILL device c (its command line
    holds `marker`), and wait for the end: the log lines read, and the rest of stderr."""
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "switching" in line:
            break
    (cloud,) = [p for p in device_pids(marker) if b"/c.json" in Path(f"/proc/{p}/cmdline").read_bytes()]
    subprocess.run(["kill", "-9", str(cloud)], check=True)
    _, err = proc.communicate(timeout=60)
    return lines, err


@pytest.mark.slow
def test_a_device_killed_during_a_switch_ends_the_run_with_one_line(tmp_path):
    """At 0.05 Mbps a cloud-only query holds the link for half a second, so the source drains for
    that long once it decides to switch: the cloud is killed then. One line names it; no device
    process and no temporary folder is left."""
    system = _speeds_system(tmp_path, relay=False)
    sol = tmp_path / "sol.json"
    subprocess.run([PY, "-m", "dime.solve", "--system", str(system), "--json", str(sol), "-q"], env=cli_env(),
                   check=True, capture_output=True)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**cli_env(), "TMPDIR": str(tmp)}  # the launcher's folder, in every device's command line
    proc = subprocess.Popen([PY, "-m", "dime.run", "local", *TOY, "-v", "--system", str(system), "--solution",
                             str(sol), "--shaper", "user", "--adapt", "--link-schedule", "a-c=1:0.05/0.05",
                             "--min-duration-s", "60", *ADAPT_QUICK], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines, err = _kill_the_cloud_once_switching(proc, f"{tmp}/")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert_one_line_error(subprocess.CompletedProcess([], proc.returncode, "", "".join(lines) + err))
    assert "error: c: exited by signal 9 (SIGKILL)" in err, err
    assert device_pids(f"{tmp}/") == [] and list(tmp.iterdir()) == []


@pytest.mark.slow
def test_without_adapt_a_run_writes_the_rows_it_wrote_before(tmp_path):
    """No --adapt, no schedule: one row per scenario, the columns of before and the new ones empty."""
    from dime.run.results import RESULT_COLUMNS

    system = _speeds_system(tmp_path, relay=True)
    sol = tmp_path / "sol.json"
    sol.write_text(solution(tmp_path, [(0, 3, "a")]).read_text())  # source-only: b and c are not needed
    out = tmp_path / "run.csv"
    proc = _local(["--system", str(system), "--solution", str(sol), "--shaper", "user", "--scenario",
                   "single-stream,offline", "--warmup", "1", "--reference-runs", "0", "--probe-s", "0",
                   "--driver", "plain", "--min-query-count", "3", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        assert f.readline().strip().split(",") == list(RESULT_COLUMNS)
    rs = csv_rows(out)
    assert [r["scenario"] for r in rs] == ["single-stream", "offline"]
    assert all(r[c] == "" for r in rs for c in ("schedule", "adapt", "replans", "switches", "switch_s"))
    assert all(r["devices"] == "a" and float(r["mean_s"]) > 0 for r in rs)


@pytest.mark.slow
@pytest.mark.skipif(NETNS_REASON is not None, reason=f"kernel link shaping unavailable: {NETNS_REASON}")
def test_a_kernel_shaped_schedule_is_followed_by_the_plan(launched, tmp_path):
    """The same over kernel-shaped links (the launcher changes the tbf in place; the receivers time
    the transfers): 64x64 inputs (48 KiB, enough to time), 1000 -> 2 -> 1000 Mbps. In the slow
    phase the plan sends 32 bytes up, too few to time: the uplink is tried again every
    --adapt-explore-s, and after the recovery the plan comes back."""
    from dime.capture.models import load_model

    model = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 64, 64))
    system = _speeds_system(tmp_path, relay=False, model=model)
    fast, slow = _system_best(system, 0, 1000), _system_best(system, 0, 2)
    assert fast != slow
    sol = tmp_path / "sol.json"
    subprocess.run([PY, "-m", "dime.solve", "--system", str(system), "--json", str(sol), "-q"], env=cli_env(),
                   check=True, capture_output=True)
    out, queries = tmp_path / "run.csv", tmp_path / "q.csv"
    proc = launched.run(["--input-shape", "1,3,64,64", "--system", str(system), "--solution", str(sol), "--adapt",
                         "--link-schedule", "a-c=2:2/2,6:1000/1000", "--min-duration-s", "10", *ADAPT_QUICK,
                         "--out", str(out), "--queries-out", str(queries)])
    assert proc.returncode == 0, proc.stderr
    (row,) = csv_rows(out)
    assert row["shaper"].startswith("netns") and row["adapt"] == "measured"
    qs = csv_rows(queries)
    assert len(qs) == int(row["count"]) and all(q["ok"] == "True" for q in qs)
    runs = _runs(qs)
    assert runs[0] == fast and slow in runs and runs[-1] == fast, runs


@pytest.mark.slow
@pytest.mark.skipif(NETNS_REASON is not None, reason=f"kernel link shaping unavailable: {NETNS_REASON}")
def test_a_device_killed_during_a_kernel_shaped_switch_leaves_no_namespace(launched, tmp_path):
    """The same over kernel-shaped links (64x64 inputs, 0.5 Mbps: 0.8 s per query): one line, and
    the `launched` fixture finds no namespace and no device process left."""
    from dime.capture.models import load_model

    model = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 64, 64))
    system = _speeds_system(tmp_path, relay=False, model=model)
    sol = tmp_path / "sol.json"
    subprocess.run([PY, "-m", "dime.solve", "--system", str(system), "--json", str(sol), "-q"], env=cli_env(),
                   check=True, capture_output=True)
    proc = launched.start(["--input-shape", "1,3,64,64", "--system", str(system), "--solution", str(sol), "--adapt",
                           "--link-schedule", "a-c=1:0.5/0.5", "--min-duration-s", "60", *ADAPT_QUICK], verbose=True)
    lines, err = _kill_the_cloud_once_switching(proc, f"{tmp_path}/")
    assert_one_line_error(subprocess.CompletedProcess([], proc.returncode, "", "".join(lines) + err))
    assert "error: c: exited by signal 9 (SIGKILL)" in err, err
