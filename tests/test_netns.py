"""Kernel-shaped links (dime.run.links.netns): routes over a chain, shaped rate, clean-up on every exit.

Needs root and network namespaces; the tests that create namespaces skip with the reason
otherwise. Every test checks that `ip netns list` and the state files are as it found them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dime.errors import UsageError
from dime.run.links import netns

REASON = netns.unavailable_reason()
needs_netns = pytest.mark.skipif(REASON is not None, reason=f"kernel link shaping unavailable: {REASON}")
# alone: these compare the machine's namespace list, which any dime.run beside them changes
pytestmark = pytest.mark.serial
ROOT = Path(__file__).resolve().parents[1]
CHAIN = ["a", "b", "c"]


def chain_links(rtt_ms: float = 0.0) -> list[netns.NetLink]:
    return [netns.NetLink(("a", "b"), 16, 40, rtt_ms), netns.NetLink(("b", "c"), 30, 30, rtt_ms)]


def state_files() -> list[str]:
    return sorted(p.name for p in netns.STATE_DIR.glob("*.json")) if netns.STATE_DIR.is_dir() else []


@pytest.fixture(autouse=True)
def leaves_no_namespaces():
    if REASON is not None:
        yield
        return
    before = (netns.list_namespaces(), state_files())
    yield
    assert (netns.list_namespaces(), state_files()) == before


def ours(topo: netns.Topology) -> list[str]:
    return [n for n in netns.list_namespaces() if n.startswith(topo.prefix + "-")]


@needs_netns
def test_chain_routes_through_b_and_shapes_the_rate():
    with netns.Topology(CHAIN, chain_links()) as topo:
        assert sorted(ours(topo)) == sorted(topo.namespace(d) for d in CHAIN)
        assert topo.path("a", "c") == ["a", "b", "c"]
        # a has no link to c: its route goes to b's end of link l0.
        route = subprocess.run(["ip", "-n", topo.namespace("a"), "route", "get", topo.address("c")],
                               capture_output=True, text=True, check=True).stdout
        assert "dev l0" in route and f"src {topo.address('a')}" in route
        res = netns.probe_rate(topo, "a", "c", 300_000)
        assert res.payload_bytes == 300_000
        # The bytes crossed b: its egress towards c sent at least them.
        stats = subprocess.run(["tc", "-s", "-n", topo.namespace("b"), "qdisc", "show", "dev", "l1"],
                               capture_output=True, text=True, check=True).stdout
        assert int(stats.split("Sent ")[1].split()[0]) >= 300_000
        # a -> b is shaped at 16 Mbps (b -> a at 40): unshaped veth would run at Gbps.
        rate = netns.probe_rate(topo, "a", "b", 1_500_000)
        assert rate.configured_mbps == 16
        # 3%, not 5%: tbf set to the payload rate (headers not counted) gives -4.4%.
        assert abs(rate.error) < 0.03, rate


@needs_netns
def test_user_delay_is_reported_per_route():
    with netns.Topology(CHAIN, chain_links(rtt_ms=10), delay="user") as topo:
        assert topo.delay_mode == "user" and topo.shaper == "netns+user-delay"
        assert topo.user_delay_s("a", "c") == pytest.approx(0.010)  # two hops of rtt/2
        assert topo.user_delay_s("a", "b") == pytest.approx(0.005)
    with netns.Topology(CHAIN, chain_links(rtt_ms=0)) as topo:
        assert topo.delay_mode == "none" and topo.shaper == "netns"
        assert topo.user_delay_s("a", "c") == 0.0


@needs_netns
def test_a_link_changes_its_rate_in_place():
    """`tc qdisc change` (a --link-schedule step): a -> b from 16 to 6 Mbps and back, b -> c as it was."""
    with netns.Topology(CHAIN, chain_links()) as topo:
        new = topo.change_link(0, 6, 40)
        assert (new.up_mbps, new.down_mbps) == (6, 40) and topo.links[0] == new
        rate = netns.probe_rate(topo, "a", "b", 600_000)
        assert rate.configured_mbps == 6 and abs(rate.error) < 0.03, rate
        assert topo.tbf("b", "c") == netns.tbf_params(30)
        topo.change_link(0, 16, 40)  # and back up: the queue and tokens of the slow spell do not hold it back
        rate = netns.probe_rate(topo, "a", "b", 1_500_000)
        assert rate.configured_mbps == 16 and abs(rate.error) < 0.03, rate


@needs_netns
def test_cleanup_after_an_exception():
    with pytest.raises(RuntimeError, match="boom"):
        with netns.Topology(CHAIN, chain_links()) as topo:
            assert len(ours(topo)) == 3 and topo.state_path.exists()
            raise RuntimeError("boom")
    assert ours(topo) == [] and not topo.state_path.exists()


@needs_netns
def test_a_live_run_is_not_stale():
    with netns.Topology(CHAIN, chain_links()) as topo:
        assert netns.cleanup_stale() == []
        assert len(ours(topo)) == 3


HOLDER = textwrap.dedent("""
    import json, sys, time
    from dime.cliargs import run_main
    from dime.run.links import netns

    def main(argv):
        links = [netns.NetLink(("a", "b"), 16, 40), netns.NetLink(("b", "c"), 30, 30)]
        with netns.Topology(["a", "b", "c"], links) as topo:
            print(json.dumps({"prefix": topo.prefix, "state": str(topo.state_path)}), flush=True)
            time.sleep(60)
        return 0

    if sys.argv[1:] == ["run_main"]:
        sys.exit(run_main(main))
    try:
        main(None)
    except KeyboardInterrupt:
        sys.exit(130)
""")


def start_holder(*args: str) -> tuple[subprocess.Popen, str, Path]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *args], stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    assert line, f"holder exited with {proc.wait()}"
    info = json.loads(line)
    return proc, info["prefix"], Path(info["state"])


def prefixed(prefix: str) -> list[str]:
    return [n for n in netns.list_namespaces() if n.startswith(prefix + "-")]


@needs_netns
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("args", [(), ("run_main",)], ids=["plain", "run_main"])
def test_cleanup_when_the_holder_is_signalled(sig, code, args):
    proc, prefix, state = start_holder(*args)
    try:
        assert len(prefixed(prefix)) == 3 and state.exists()
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            netns.cleanup_stale()  # a failed test leaves no namespaces either
    assert prefixed(prefix) == [] and not state.exists()


@needs_netns
def test_the_next_start_removes_what_a_killed_run_left():
    proc, prefix, state = start_holder()
    proc.kill()
    proc.wait()
    assert len(prefixed(prefix)) == 3 and state.exists()
    with netns.Topology(["x", "y"], [netns.NetLink(("x", "y"), 10, 10)]):
        assert prefixed(prefix) == [] and not state.exists()


@needs_netns
def test_processes_left_inside_are_ended_with_the_namespaces():
    """A killed run's processes in its namespaces (a device under `ip netns exec`) are ended by
    the next clean-up: a deleted namespace would otherwise keep them alive, unreachable."""
    proc, prefix, state = start_holder()
    names = prefixed(prefix)
    ns = names[0]
    # ignores SIGTERM: ended by SIGKILL after the grace
    inside = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                               "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                               "print(1, flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert inside.stdout.readline().strip() == b"1"
        assert netns.namespace_pids(ns) == [inside.pid]
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        assert set(names) <= set(netns.cleanup_stale())
        assert inside.wait(timeout=5) == -signal.SIGKILL
        assert time.monotonic() - t0 < netns.KILL_GRACE_S + 2
        assert prefixed(prefix) == [] and not state.exists()
    finally:
        for p in (inside, proc):
            if p.poll() is None:
                p.kill()
                p.wait()
        netns.cleanup_stale()  # a failed test leaves no namespaces either


@needs_netns
def test_bad_topologies_are_usage_errors():
    with pytest.raises(UsageError, match="unknown device"):
        netns.Topology(["a", "b"], [netns.NetLink(("a", "z"), 1, 1)])
    with pytest.raises(UsageError, match="two links"):
        netns.Topology(["a", "b"], [netns.NetLink(("a", "b"), 1, 1), netns.NetLink(("b", "a"), 2, 2)])
    with pytest.raises(UsageError, match="cannot be reached"):
        netns.Topology(["a", "b", "c"], [netns.NetLink(("a", "b"), 1, 1)]).path("a", "c")
    with pytest.raises(UsageError, match="positive"):
        netns.NetLink(("a", "b"), 0, 1)


def test_unavailable_when_not_root(monkeypatch, caplog):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert netns.unavailable_reason() == "network namespaces need root"
    with caplog.at_level(logging.WARNING, logger="dime.run.links.netns"):
        assert netns.available() is False
    assert "need root" in caplog.text and "--shaper user" in caplog.text


def test_tbf_carries_the_payload_rate_of_full_segments():
    p = netns.tbf_params(100.0)
    # 1448 payload bytes per 1514-byte frame: tc's rate is the payload rate scaled up by that.
    assert p.rate_bit == round(100e6 * 1514 / 1448)
    assert p.burst_bytes >= 2 * 1514 and p.limit_bytes >= p.burst_bytes
    # slow links: two frames (a few ms at 4g), the least that keeps the rate on a loaded machine
    assert netns.tbf_params(5.85).burst_bytes == 2 * 1514
    assert netns.tbf_params(1000).burst_bytes == round(netns.tbf_params(1000).rate_bit / 8 * netns.BURST_S)
