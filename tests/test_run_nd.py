"""N devices for real: programs run as pipelines, relays, several queries in flight, kernel-shaped
links, devices that die or never join (issue 12)."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from clihelp import PY, assert_one_line_error, cli_env
from nd_helpers import csv_rows as _rows
from nd_helpers import solution as _solution
from nd_helpers import system_file

from dime.capture.models import load_model
from dime.core.costs import Assignment
from dime.core.links import Link
from dime.core.network import NetLink, Network
from dime.run.data.chain import Chain
from dime.run.data.pipeline import Pipeline
from dime.run.data.program import build_program
from dime.run.results import parse_map

SKIPNET = "toy_models:skipnet"
SKIP_CUTS = ["conv1", "conv2", "pool"]
SMALL = "1,3,16,16"
FAST = Link("fast", 1000, 1000)


class FakeGroup:
    """Point-to-point messages between threads of one process, as gloo carries them between
    processes: FIFO per (from, to, tag), the receiver's buffer filled by copy."""

    boxes: dict[tuple[int, int, int], queue.Queue]

    def __init__(self, rank: int, boxes: dict, world: int) -> None:
        self.rank, self.boxes, self.names = rank, boxes, tuple(f"d{i}" for i in range(world))
        self.wait_s = 30.0

    def _box(self, src: int, dst: int, tag: int) -> queue.Queue:
        return self.boxes.setdefault((src, dst, tag), queue.Queue())

    def send(self, rank: int, t: torch.Tensor, tag: int) -> None:
        self._box(self.rank, rank, tag).put(t.clone())

    def recv(self, rank: int, t: torch.Tensor, tag: int) -> None:
        t.copy_(self._box(rank, self.rank, tag).get(timeout=self.wait_s))


def _run_in_threads(model, placement, network, in_flight: int, n_queries: int, pace: bool = False):
    """Every device's pipeline in this process; the source's outputs in query order."""
    program = build_program(placement, network, model.cut_bytes)
    boxes: dict = {}
    ranks = list(range(network.n_devices))
    pipes = {d: Pipeline(program, d, model, {}, FakeGroup(d, boxes, network.n_devices), ranks, network,
                         in_flight, pace, pace, name=f"d{d}") for d in sorted(program.devices())}
    torch.manual_seed(0)
    samples = [(torch.randn(1, 3, 16, 16),) for _ in range(5)]
    chain = Chain(pipes[network.source], samples, in_flight)
    for p in pipes.values():
        p.start()
    got: dict[int, list[torch.Tensor]] = {}
    lock = threading.Lock()
    done = threading.Semaphore(0)
    order = []

    def on_done(i):
        def cb(err):
            assert err is None
            with lock:
                order.append(i)
            done.release()
        return cb

    # pipelined queries: outputs captured per query by the chain's own outputs list
    outs: list[list] = [[] for _ in range(n_queries)]
    for i in range(n_queries):
        chain.issue(i % len(samples), on_done(i), outs[i])
    for _ in range(n_queries):
        assert done.acquire(timeout=30)
    chain.close()
    stats = {d: p.join(10) for d, p in pipes.items()}
    for i in range(n_queries):
        got[i] = outs[i][0]
    return samples, got, order, stats, program


@pytest.mark.parametrize("in_flight", [1, 4])
def test_pipelines_with_relays_reproduce_the_full_model_query_by_query(in_flight):
    """4 devices in a line (0 - 1 - 2 - 3), source 0: layers on 0, 2 and 3, device 1 only relays,
    and the output comes back over three hops; with 4 queries in flight they keep their order."""
    m = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))
    net = Network(4, tuple(NetLink(i, i + 1, FAST) for i in range(3)), 0)
    placement = (Assignment(0, 0, 0, "t"), Assignment(1, 1, 2, "t"), Assignment(2, 3, 3, "t"))
    samples, got, order, stats, program = _run_in_threads(m, placement, net, in_flight, 12)
    assert [(s.src, s.dst) for s in program.streams] == [(0, 1), (1, 2), (2, 3), (3, 2), (2, 1), (1, 0)]
    assert order == list(range(12))
    for i, outs in got.items():
        with torch.inference_mode():
            want = m.forward_full(samples[i % len(samples)][0])
        torch.testing.assert_close(outs[0], want, rtol=1e-5, atol=1e-6)
    assert stats[1].busy_s == 0.0 and stats[1].queries == 12  # the relay ran nothing
    assert all(stats[d].busy_s > 0 for d in (0, 2, 3))


@pytest.mark.serial
def test_queries_overlap_when_several_are_in_flight():
    """Two devices each busy 20 ms per query (a sleeping module): one in flight takes ~40 ms per
    query, two in flight overlap them (~20 ms per query)."""
    m = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))
    net = Network.two_roles(FAST)
    placement = (Assignment(0, 1, 0, "t"), Assignment(2, 3, 1, "t"))
    slow = _SlowModel(m, 0.02)
    times = {}
    for n in (1, 2):
        t0 = time.perf_counter()
        _run_in_threads(slow, placement, net, n, 20)
        times[n] = time.perf_counter() - t0
    assert times[2] < 0.75 * times[1], times


class _SlowModel:
    """A SplitModel whose every bundle also sleeps (a device busy for a known time)."""

    def __init__(self, model, sleep_s: float) -> None:
        self._m, self._s = model, sleep_s

    def __getattr__(self, name):
        return getattr(self._m, name)

    def bundle(self, start: int, end: int):
        mod = self._m.bundle(start, end)
        s = self._s

        def run(*xs):
            time.sleep(s)
            return mod(*xs)
        return run


def test_user_pacing_holds_a_link_direction_for_its_wire_time():
    """Two queries in flight over a 1 Mbps link: their uploads do not overlap on the wire."""
    m = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))
    slow_link = Link("1mbps", 1.0, 1000.0)
    net = Network.two_roles(slow_link)
    placement = (Assignment(0, 3, 1, "t"),)  # cloud-only: 3072 B up (24.6 ms), 40 B down
    t0 = time.perf_counter()
    _run_in_threads(m, placement, net, 4, 8, pace=True)
    took = time.perf_counter() - t0
    assert took > 8 * 3072 * 8 / 1e6  # the uploads one after the other on the wire


# ---- processes ------------------------------------------------------------------------
def _system(tmp_path: Path, n: int) -> Path:
    """Devices a, b, c (, d) in a line, each the same made-up CPU."""
    return system_file(tmp_path, n)


def _local(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "dime.run", "local", "--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL,
                           "-q", *args], capture_output=True, text=True, env=cli_env(), timeout=timeout)


def _outputs_match(outputs: Path) -> int:
    m = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))
    saved = torch.load(outputs, weights_only=True)
    n = 0
    for label, outs in saved["outputs"].items():
        for i, got in enumerate(outs):
            with torch.inference_mode():
                want = m.forward_full(saved["inputs"][i % len(saved["inputs"])])
            torch.testing.assert_close(got[0], want, rtol=1e-4, atol=1e-4, msg=lambda s: f"{label}: {s}")
            n += 1
    return n


@pytest.mark.serial
@pytest.mark.parametrize("n", [3, pytest.param(4, marks=pytest.mark.slow)])
def test_devices_in_a_line_reproduce_the_full_model(n, tmp_path):
    """One process per device over loopback; the middle devices relay; offline with 3 in flight."""
    system = _system(tmp_path, n)
    last = "abcd"[n - 1]
    sol = _solution(tmp_path, [(0, 1, "a"), (2, 3, last)])
    out, outputs = tmp_path / "run.csv", tmp_path / "out.pt"
    proc = _local(["--system", str(system), "--solution", str(sol), "--shaper", "user", "--scenario",
                   "single-stream,offline", "--in-flight", "3", "--min-query-count", "6", "--warmup", "2",
                   "--count", "2", "--probe-s", "0.05", "--verify", "--outputs", str(outputs), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    rs = _rows(out)
    assert [r["scenario"] for r in rs] == ["single-stream", "offline"]
    assert all(r["devices"] == ",".join("abcd"[:n]) and r["shaper"] == "user" for r in rs)
    assert [r["in_flight"] for r in rs] == ["1", "3"]
    assert int(rs[0]["hops"]) == 2 * (n - 1) and int(rs[0]["transfers"]) == 2
    # the link probes: every link, both ways, near its 200 Mbps
    achieved = parse_map(rs[0]["achieved_mbps"])
    assert len(achieved) == 2 * (n - 1)
    assert all(float(v) == pytest.approx(200, rel=0.15) for v in achieved.values()), achieved
    busy = parse_map(rs[0]["busy_s"])
    assert set(busy) == set("abcd"[:n]) and all(float(busy[d]) == 0 for d in "abcd"[1:n - 1])
    assert float(rs[1]["throughput_fps"]) > 0 and rs[1]["pred_throughput_fps"] != ""
    assert _outputs_match(outputs) == 2


@pytest.mark.slow  # a long end-to-end run (four interpreters, one after the other): make test-all
def test_each_device_started_by_hand_joins_and_an_unneeded_one_leaves(tmp_path):
    """The multi-machine form: `dime.run --system --device NAME --peer HOST:PORT` per device (here
    all on loopback); d has no part in the placement and is told so; the run's rows come out."""
    system = _system(tmp_path, 4)
    sol = _solution(tmp_path, [(0, 1, "a"), (2, 3, "c")])
    out = tmp_path / "run.csv"
    common = ["--system", str(system), "--peer", f"127.0.0.1:{_free_port()}", "--cuts", ",".join(SKIP_CUTS),
              "--input-shape", SMALL, "--timeout-s", "60"]
    procs = {}
    for d in "dabc":  # d first: it waits for the source, which turns it away as soon as it listens
        procs[d] = subprocess.Popen([PY, "-m", "dime.run", "--device", d, *common,
                                     *(["--solution", str(sol), "--probe-s", "0", "--min-query-count", "3", "--warmup",
                                        "1", "--count", "1", "--driver", "plain", "--out", str(out), "-q",
                                        "--min-duration-s", "3"]  # long enough for d to be turned away
                                       if d == "a" else [])],
                                    env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if d == "d":
            time.sleep(1.0)
    try:
        results = {d: p.communicate(timeout=120) for d, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
    assert {d: p.returncode for d, p in procs.items()} == {"a": 0, "b": 0, "c": 0, "d": 0}, results
    assert "the plan does not need this device" in results["d"][1]
    (row,) = _rows(out)
    assert row["devices"] == "a,b,c" and row["hops"] == "4" and float(row["mean_s"]) > 0


@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
def test_a_device_that_never_joins_is_named_and_everyone_leaves(tmp_path):
    system = _system(tmp_path, 3)
    sol = _solution(tmp_path, [(0, 1, "a"), (2, 3, "c")])
    port = _free_port()
    common = ["--system", str(system), "--peer", f"127.0.0.1:{port}", "--cuts", ",".join(SKIP_CUTS), "--input-shape",
              SMALL, "--timeout-s", "4"]
    t0 = time.monotonic()
    src = subprocess.Popen([PY, "-m", "dime.run", "--device", "a", *common, "--solution", str(sol)],
                           env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen([PY, "-m", "dime.run", "--device", "b", *common], env=cli_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out_a, err_a = src.communicate(timeout=90)
        out_b, err_b = b.communicate(timeout=90)
    finally:
        for p in (src, b):
            p.kill()
            p.wait()
    assert_one_line_error(subprocess.CompletedProcess(src.args, src.returncode, out_a, err_a))
    assert "device 'c' did not join" in err_a and "within 4 s" in err_a
    assert_one_line_error(subprocess.CompletedProcess(b.args, b.returncode, out_b, err_b))
    assert "the source gave up: 'c' did not join" in err_b
    assert time.monotonic() - t0 < 4 + 40


def _kill_mid_run(system: Path, victim: str, tmp_path: Path) -> tuple[str, float, int]:
    """A local run of `system` (layers on a and c, b between them), a slow first link keeping
    queries in the chain; SIGKILL `victim` once they flow: (stderr, seconds to the end, exit code)."""
    text = system.read_text().replace("up_mbps = 200\ndown_mbps = 200", "up_mbps = 0.05\ndown_mbps = 0.05", 1)
    system.write_text(text)
    sol = _solution(tmp_path, [(0, 1, "a"), (2, 3, "c")])
    proc = subprocess.Popen([PY, "-m", "dime.run", "local", "--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL,
                             "--system", str(system), "--solution", str(sol), "--shaper", "user", "--probe-s", "0",
                             "--warmup", "0", "--reference-runs", "0", "--min-query-count", "50", "--driver",
                             "plain", "-v"], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "[1/1]" in line:
                break
        time.sleep(1.0)
        pid = _child_pid(proc.pid, f"/{victim}.json")
        subprocess.run(["kill", "-9", str(pid)], check=True)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    return "".join(lines) + err, took, proc.returncode


@pytest.mark.slow
def test_a_relay_that_dies_mid_run_is_named_and_everyone_leaves(tmp_path):
    """Kill the relay while queries cross it (a slow link keeps them there): the launcher ends every
    device and reports the lost one."""
    err, took, code = _kill_mid_run(_system(tmp_path, 3), "b", tmp_path)
    assert_one_line_error(subprocess.CompletedProcess([], code, "", err))
    assert "error: b: exited by signal 9 (SIGKILL)" in err, err
    assert took < 15


@pytest.mark.slow
def test_a_device_killed_two_hops_from_the_source_is_the_one_named(tmp_path):
    """src a - relay b (compute = false) - dst c: SIGKILL to c. b and a each lose their neighbour
    and say so; the launcher names the device that died by a signal, not the healthy relay."""
    err, took, code = _kill_mid_run(system_file(tmp_path, 3, relays="b"), "c", tmp_path)
    assert_one_line_error(subprocess.CompletedProcess([], code, "", err))
    assert "error: c: exited by signal 9 (SIGKILL)" in err, err
    assert took < 15


def _child_pid(parent: int, marker: str) -> int:
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and marker in args:
            return int(proc.name)
    raise AssertionError(f"no child of {parent} with {marker}")


def _free_port() -> int:
    from dime.run.control.local import free_port

    return free_port()


def test_plan_of_a_system_predicts_routes_and_relays(tmp_path):
    from dime.run.options import PlanOptions
    from dime.run.placements import ModelShape, build_plan

    system = _system(tmp_path, 3)
    sol = _solution(tmp_path, [(0, 1, "a"), (2, 3, "c")])
    m = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))
    plan = build_plan(PlanOptions(solutions=(sol,), system=system),
                      ModelShape(m.name, tuple(m.layer_names), tuple(m.cut_bytes)))
    (cfg,) = plan.configs
    assert plan.device_names == ("a", "b", "c") and plan.participants() == [0, 1, 2]
    assert [(c, s, d, [h[2:] for h in hops]) for c, s, d, hops in cfg.routes] == [
        (2, 0, 2, [(0, 1), (1, 2)]), (4, 2, 0, [(2, 1), (1, 0)])]
    # 2 x 0.9 ms on a and on c; each transfer two hops of 8B/200 Mbps + 0.5 ms
    comm = sum(2 * (m.cut_bytes[c] * 8 / 200e6 + 0.0005) for c in (2, 4))
    assert cfg.pred_bundle_s == pytest.approx(0.0036 + comm)
    assert cfg.bundle.compute_s == pytest.approx((0.0018, 0.0, 0.0018))
    assert cfg.network_label == "sys"


def _shape():
    from dime.run.placements import ModelShape

    m = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))
    return ModelShape(m.name, tuple(m.layer_names), tuple(m.cut_bytes))


def test_a_system_whose_profiles_hold_several_models_plans_the_run_model(tmp_path):
    from dime.run.options import PlanOptions
    from dime.run.placements import build_plan

    system = _system(tmp_path, 3)
    prof = tmp_path / "skipnet.csv"
    lines = prof.read_text().splitlines()
    prof.write_text("\n".join(lines + [line.replace(SKIPNET, "toy_models:other", 1) for line in lines[1:]]) + "\n")
    system.write_text(system.read_text().replace(f'model = "{SKIPNET}"\n', ""))  # the file names no model
    sol = _solution(tmp_path, [(0, 1, "a"), (2, 3, "c")])
    (cfg,) = build_plan(PlanOptions(solutions=(sol,), system=system), _shape()).configs
    assert cfg.pred_bundle_s is not None and cfg.bundle.compute_s[0] == pytest.approx(0.0018)


def test_a_solution_that_computes_on_a_relay_is_refused(tmp_path):
    from dime.errors import UsageError
    from dime.run.options import PlanOptions
    from dime.run.placements import build_plan

    system = system_file(tmp_path, 3, relays="b")
    sol = _solution(tmp_path, [(0, 1, "a"), (2, 2, "b"), (3, 3, "c")])
    with pytest.raises(UsageError, match="only forwards"):
        build_plan(PlanOptions(solutions=(sol,), system=system), _shape())


def test_two_device_flags_with_a_system_file_are_one_line_errors(tmp_path):
    system = _system(tmp_path, 3)
    sol = _solution(tmp_path, [(0, 1, "a"), (2, 3, "c")])
    for extra in (["--link", "4g"], ["--profile", str(tmp_path / "skipnet.csv")], ["--split", "0"]):
        proc = _local(["--system", str(system), "--solution", str(sol), *extra], timeout=60)
        assert_one_line_error(proc)
        assert "is for two devices" in proc.stderr, proc.stderr


def test_local_with_a_plan_file_starts_the_plans_devices(tmp_path):
    from dime.run.cli import build_local_parser, local_options
    from dime.run.options import PlanOptions
    from dime.run.placements import build_plan

    system = _system(tmp_path, 3)
    sol = _solution(tmp_path, [(0, 1, "a"), (2, 3, "c")])
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(build_plan(PlanOptions(solutions=(sol,), system=system), _shape()).to_json())
    opts = local_options(build_local_parser().parse_args(["--model", SKIPNET, "--plan", str(plan_path)]))
    assert [name for name, _ in opts.devices] == ["a", "b", "c"] and opts.source == "a"
