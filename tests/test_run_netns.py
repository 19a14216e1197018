"""`python -m dime.run local --shaper netns`: runs over kernel-shaped links (a network namespace
per device), their results, and their clean-up on every exit (issue 12).

Needs root and network namespaces; skips with the reason otherwise. Every launcher a test
starts is registered with the `launched` fixture, which checks afterwards that none of its
namespaces (``dime-<launcher pid>-*``) and none of its device processes (their command line
holds the test's own temporary folder, the launcher's TMPDIR) are left, and removes them,
failing the test, when some are. Other runs on the machine are not looked at.
"""

from __future__ import annotations

import csv
import functools
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from clihelp import PY, assert_one_line_error, cli_env
from nd_helpers import solution, system_file

from dime.capture.models import load_model
from dime.run.control.local import DEVICE_OPTIONS_FLAG
from dime.run.links import netns
from dime.run.results import parse_map

REASON = netns.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"kernel link shaping unavailable: {REASON}")

SKIPNET = "toy_models:skipnet"
SKIP_CUTS = ["conv1", "conv2", "pool"]
SMALL = "1,3,16,16"
QUICK = ["--warmup", "2", "--min-query-count", "4", "--reference-runs", "0", "--count", "2"]


# ---- helpers ---------------------------------------------------------------------------
class Launches:
    """The launchers a test started, and what they may leave behind."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], verbose: bool = False) -> subprocess.Popen:
        env = {**cli_env(), "TMPDIR": str(self.tmp)}  # the launcher's temporary folder: in every device's cmdline
        proc = subprocess.Popen([PY, "-m", "dime.run", "local", "--model", SKIPNET, "--cuts", ",".join(SKIP_CUTS),
                                 "--input-shape", SMALL, "--shaper", "netns", "-v" if verbose else "-q", *args],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        proc = self.start(args)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def namespaces(self) -> list[str]:
        return [n for n in netns.list_namespaces() if any(n.startswith(f"dime-{p.pid}-") for p in self.procs)]

    def devices(self) -> list[int]:
        """Device processes of these launchers still running."""
        return device_pids(str(self.tmp))


def device_pids(marker: str) -> list[int]:
    """Running processes whose command line holds `marker` and the launcher's device flag."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if DEVICE_OPTIONS_FLAG in args and marker in args:
            pids.append(int(proc.name))
    return sorted(pids)


@pytest.fixture
def launched(tmp_path):
    runs = Launches(tmp_path)
    yield runs
    for proc in runs.procs:  # a test that failed half-way: its launcher too
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left_ns, left_procs = runs.namespaces(), runs.devices()
    if left_procs:
        netns.end_processes(left_procs, grace_s=1.0)
    for name in left_ns:
        netns.end_processes(netns.namespace_pids(name), grace_s=1.0)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    for proc in runs.procs:  # state files are named by the run's prefix
        for state in netns.STATE_DIR.glob(f"dime-{proc.pid}-*.json"):
            state.unlink(missing_ok=True)
    for proc in runs.procs:
        proc.communicate()  # the devices shared the launcher's stdout: they are gone now
    assert (left_ns, left_procs) == ([], []), "left behind (now removed)"


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def outputs_match(outputs: Path) -> list[str]:
    """The labels of the saved outputs, each checked against the full model."""
    m = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))
    saved = torch.load(outputs, weights_only=True)
    for label, outs in saved["outputs"].items():
        assert outs, label
        for i, got in enumerate(outs):
            with torch.inference_mode():
                want = m.forward_full(saved["inputs"][i % len(saved["inputs"])])
            torch.testing.assert_close(got[0], want, rtol=1e-4, atol=1e-4, msg=lambda s, label=label: f"{label}: {s}")
    return sorted(saved["outputs"])


def line_system(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """Devices a, b, c (, d) in a line (200/200 Mbps, rtt 1 ms), source a; a solution with the
    first two layers on a and the rest on the last device: the ones between relay."""
    return system_file(tmp_path, n), solution(tmp_path, [(0, 1, "a"), (2, 3, "abcd"[n - 1])])


# ---- runs ------------------------------------------------------------------------------
@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
def test_two_devices_every_split_reproduces_the_full_model(launched, tmp_path):
    out, outputs = tmp_path / "run.csv", tmp_path / "out.pt"
    proc = launched.run(["--split", "all", "--link", "20/40/4", *QUICK, "--probe-s", "0.05", "--verify",
                         "--outputs", str(outputs), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    rs = rows(out)
    assert [r["config"] for r in rs] == ["cloud-only", "split@conv1", "split@conv2", "split@pool", "edge-only"]
    # the rates by the kernel; this kernel has no netem, so the 4 ms rtt is added in user space
    want = "netns" if _has_netem() else "netns+user-delay"
    assert {r["shaper"] for r in rs} == {want}
    assert set(parse_map(rs[0]["achieved_mbps"])) == {"edge->cloud", "cloud->edge"}
    assert len(outputs_match(outputs)) == 5
    assert launched.namespaces() == []


@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
@pytest.mark.parametrize("n", [3, 4])
def test_devices_in_a_line_with_queries_in_flight(n, launched, tmp_path):
    system, sol = line_system(tmp_path, n)
    out, outputs = tmp_path / "run.csv", tmp_path / "out.pt"
    proc = launched.run(["--system", str(system), "--solution", str(sol), "--scenario", "single-stream,offline",
                         "--in-flight", "2", *QUICK, "--min-query-count", "6", "--probe-s", "0.05", "--verify",
                         "--outputs", str(outputs), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    rs = rows(out)
    assert [(r["scenario"], r["in_flight"]) for r in rs] == [("single-stream", "1"), ("offline", "2")]
    want = "netns" if _has_netem() else "netns+user-delay"
    assert all(r["shaper"] == want and r["devices"] == ",".join("abcd"[:n]) for r in rs)
    assert int(rs[0]["hops"]) == 2 * (n - 1)
    assert len(parse_map(rs[0]["achieved_mbps"])) == 2 * (n - 1)  # every link, both ways
    for r in rs:
        assert float(r["throughput_fps"]) > 0 and float(r["pred_throughput_fps"]) > 0
    busy = parse_map(rs[0]["busy_s"])
    assert all(float(busy[d]) == 0 for d in "abcd"[1:n - 1])  # the relays ran nothing
    assert len(outputs_match(outputs)) == 1


@pytest.mark.serial  # a rate measured while other tests load both cores falls short
def test_the_probe_achieves_the_configured_rates_both_ways(launched, tmp_path):
    """20 Mbps up, 40 down: dime.run's own probe (gloo over the veth pair) within 5%."""
    out = tmp_path / "run.csv"
    proc = launched.run(["--split", "cloud-only", "--link", "20/40", "--probe-s", "0.5", "--warmup", "0",
                         "--min-query-count", "1", "--reference-runs", "0", "--driver", "plain", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    (r,) = rows(out)
    achieved = {k: float(v) for k, v in parse_map(r["achieved_mbps"]).items()}
    assert achieved["edge->cloud"] == pytest.approx(20, rel=0.05), achieved
    assert achieved["cloud->edge"] == pytest.approx(40, rel=0.05), achieved


@pytest.mark.slow  # a long end-to-end run: make test-all
def test_several_links_run_once_each_into_one_csv(launched, tmp_path):
    """Two devices over 4g and wifi: a topology per link, one after the other; all rows in one CSV
    and the outputs of both in one file."""
    out, outputs = tmp_path / "run.csv", tmp_path / "out.pt"
    proc = launched.run(["--split", "conv2", "--link", "4g,wifi", *QUICK, "--probe-s", "0.05", "--verify",
                         "--outputs", str(outputs), "--out", str(out)], timeout=180)
    assert proc.returncode == 0, proc.stderr
    rs = rows(out)
    assert [(r["config"], r["link"]) for r in rs] == [("split@conv2", "4g"), ("split@conv2", "wifi")]
    assert {r["shaper"] for r in rs} == {"netns"}  # presets have no rtt: nothing to add
    # each run probed its own link
    assert float(parse_map(rs[0]["achieved_mbps"])["edge->cloud"]) < 10 < float(
        parse_map(rs[1]["achieved_mbps"])["edge->cloud"])
    assert outputs_match(outputs) == ["split@conv2@4g", "split@conv2@wifi"]


@pytest.mark.slow
def test_a_schedule_changes_the_kernel_shaped_link_in_place(launched, tmp_path):
    """cloud-only at 1000 Mbps, then 0.5 Mbps from 1 s to 3 s (`tc qdisc change` by the launcher):
    a query of the slow phase waits for its 3072 input bytes at 0.5 Mbps, the others do not."""
    out = tmp_path / "run.csv"
    proc = launched.run(["--split", "cloud-only", "--link", "1000/1000", "--link-schedule",
                         "edge-cloud=1:0.5/0.5,3:1000/1000", "--min-duration-s", "4", "--min-query-count", "4",
                         "--warmup", "1", "--reference-runs", "0", "--probe-s", "0", "--driver", "plain", "--verify",
                         "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    (r,) = rows(out)
    assert r["schedule"] == "edge-cloud=1:0.5/0.5,3:1000/1000" and r["shaper"] == "netns"
    assert float(r["min_s"]) < 3072 * 8 / 0.5e6 < float(r["max_s"])


# ---- failures and clean-up -------------------------------------------------------------
def _start_slow_run(launched: Launches) -> subprocess.Popen:
    """A run that lasts (200 queries over a 0.5 Mbps link); returns once it measures."""
    proc = launched.start(["--split", "conv1", "--link", "0.5/0.5", "--probe-s", "0", "--warmup", "0",
                           "--reference-runs", "0", "--min-query-count", "200", "--driver", "plain"], verbose=True)
    deadline = time.monotonic() + 60
    assert proc.stderr is not None
    for line in proc.stderr:
        if "[1/1]" in line:
            break
        assert time.monotonic() < deadline, "the run did not start"
    else:
        pytest.fail(f"the launcher ended with {proc.wait()} before measuring")
    time.sleep(0.5)
    assert len(launched.namespaces()) == 2 and len(launched.devices()) == 2
    return proc


@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signalled_launcher_ends_its_devices_and_namespaces(sig, code, launched):
    proc = _start_slow_run(launched)
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    took = time.monotonic() - t0
    assert proc.returncode == code, err
    assert took < 6, took
    assert launched.devices() == [] and launched.namespaces() == []


@pytest.mark.serial  # alone: any dime.run started beside it would clean up the killed run first
def test_a_killed_launcher_is_cleaned_up_by_the_next(launched):
    """SIGKILL: the launcher cannot clean up; its namespaces and devices live on until the next
    topology (netns.cleanup_stale) ends the processes inside them and removes them."""
    proc = _start_slow_run(launched)
    proc.kill()
    proc.wait()
    time.sleep(0.3)
    left = launched.namespaces()
    assert len(left) == 2 and len(launched.devices()) == 2
    inside = sorted(p for n in left for p in netns.namespace_pids(n))
    assert inside == launched.devices()
    removed = netns.cleanup_stale()
    assert set(left) <= set(removed)
    assert launched.namespaces() == [] and launched.devices() == []


@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
def test_a_device_that_cannot_start_is_named(launched):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --torch-device cuda would start")
    proc = launched.run(["--split", "conv1", "--link", "4g", "--torch-device", "cloud=cuda", *QUICK])
    assert_one_line_error(proc)
    assert "error: cloud: --torch-device cuda" in proc.stderr, proc.stderr
    assert launched.namespaces() == [] and launched.devices() == []


@functools.cache
def _has_netem() -> bool:
    """Whether this kernel delays in netem (then the shaper column reads `netns`)."""
    name = f"dime-check-netem-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        return subprocess.run(["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                              capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
