"""Split inference across two processes (dime.run), link emulation, measurement, validation.

N devices, relays and pipelining: tests/test_run_nd.py."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
from clihelp import PY, assert_one_line_error, cli_env
from nd_helpers import fake_profile

from dime.capture.models import load_model
from dime.cliargs import join_negative_values
from dime.core.costs import CLOUD, EDGE, Assignment, segments
from dime.core.links import DOWN, UP, get_link, parse_links
from dime.errors import UsageError
from dime.run.control.local import free_port
from dime.run.data.wire import CutLayout
from dime.run.links.linkemu import LinkShaper, achieved_mbps
from dime.run.measure import MeasureSettings, measure, stats_from_latencies
from dime.run.placements import parse_solution, parse_splits, split_placement
from dime.run.results import parse_map

SKIPNET = "toy_models:skipnet"
# Cut after the pool too: that cut carries two tensors (the skip connection), which the automatic
# layers would leave out, and sending several live tensors at a cut is what these tests check.
SKIP_CUTS = ["conv1", "conv2", "pool"]
SMALL = "1,3,16,16"


def run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", *args], capture_output=True, text=True, env=cli_env(), timeout=timeout)


def local(model: str, extra: list[str], tmp_path: Path, timeout: float = 120) -> tuple[subprocess.CompletedProcess, Path, Path]:
    out, outputs = tmp_path / "run.csv", tmp_path / "outputs.pt"
    proc = run_cli(["dime.run", "local", "--model", model, "--out", str(out), "--outputs", str(outputs),
                    "--verify", "-q", *extra], timeout)
    return proc, out, outputs


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_outputs_match_full_model(outputs: Path, model: str, input_shape=None, cuts=None) -> int:
    m = load_model(model, cuts=cuts, input_shape=input_shape)
    saved = torch.load(outputs, weights_only=True)
    n = 0
    for label, outs in saved["outputs"].items():
        assert outs, label
        for i, got in enumerate(outs):
            x = saved["inputs"][i % len(saved["inputs"])]
            with torch.inference_mode():
                want = m.forward_full(x)
            torch.testing.assert_close(got[0], want, rtol=1e-4, atol=1e-4, msg=lambda s: f"{label}: {s}")
            n += 1
    return n


# ---- pure helpers -----------------------------------------------------------------
def test_split_placements_cover_the_chain():
    assert split_placement(4, -1, "a", "b") == (Assignment(0, 3, CLOUD, "b"),)
    assert split_placement(4, 3, "a", "b") == (Assignment(0, 3, EDGE, "a"),)
    assert split_placement(5, 1, "a", "b", max_bundle=2) == (
        Assignment(0, 1, EDGE, "a"), Assignment(2, 3, CLOUD, "b"), Assignment(4, 4, CLOUD, "b"))
    segs = segments(split_placement(5, 1, "a", "b", max_bundle=2))
    assert [(r, s, e) for r, s, e, _ in segs] == [(EDGE, 0, 1), (CLOUD, 2, 4)]
    assert parse_splits("all", 3, ["x", "y", "z"]) == [-1, 0, 1, 2]
    assert parse_splits("y,-1", 3, ["x", "y", "z"]) == [1, -1]
    assert parse_splits("edge-only,cloud-only", 3, ["x", "y", "z"]) == [2, -1]
    assert join_negative_values(["--split", "-1,3", "--split", "2"]) == ["--split=-1,3", "--split", "2"]
    with pytest.raises(UsageError):
        parse_splits("7", 3, ["x", "y", "z"])


def test_solution_parsing_needs_roles_or_edge_device():
    names = ["a", "b", "c"]
    data = {"placement": [{"start": "a", "end": "b", "device": "jetson", "setting": "s", "role": "edge"},
                          {"start": "c", "end": "c", "device": "gpu", "setting": "t", "role": "cloud"}]}
    assert parse_solution(data, names, "x") == (Assignment(0, 1, EDGE, "s"), Assignment(2, 2, CLOUD, "t"))
    for e in data["placement"]:
        del e["role"]
    with pytest.raises(UsageError, match="no role"):
        parse_solution(data, names, "x")
    assert parse_solution(data, names, "x", edge_device="jetson")[1].role == CLOUD
    data["placement"][1]["start"] = "b"
    with pytest.raises(UsageError, match="chain"):
        parse_solution(data, names, "x", edge_device="jetson")


def test_cut_layout_round_trip_keeps_dtypes_and_shapes():
    specs = [((1, 3, 5, 5), torch.float32), ((2, 7), torch.int64), ((3,), torch.float16)]
    layout = CutLayout.of(specs)
    assert layout.payload_bytes == 75 * 4 + 14 * 8 + 3 * 2
    assert layout.buffer_bytes % 64 == 0 and all(o % 64 == 0 for o in layout.offsets)
    ts = [torch.randn(1, 3, 5, 5), torch.arange(14).view(2, 7), torch.randn(3).half()]
    buf = layout.new_buffer()
    layout.pack(buf, 10, 42, ts)
    kind, q, got = layout.unpack(buf.clone())
    assert (kind, q) == (10, 42)
    for a, b in zip(got, ts):
        assert a.dtype == b.dtype and torch.equal(a, b)
    with pytest.raises(Exception, match="traced model"):
        layout.pack(buf, 10, 0, [torch.zeros(2, 2), ts[1], ts[2]])


def test_shaper_sleeps_the_remainder_of_the_link_time():
    link = get_link("4g")
    now = [0.0]
    slept = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    def body() -> None:
        now[0] += 0.01  # the real send took 10 ms

    shaper = LinkShaper.of(link, UP, clock=lambda: now[0], sleep=sleep)
    rec = shaper.send(100_000, body, lambda: None)
    target = 100_000 * 8 / 5.85e6  # the wire time: the rtt is the receiver's delay
    assert rec.target_s == pytest.approx(target)
    assert slept == [pytest.approx(target - 0.01)]
    assert rec.total_s == pytest.approx(target) and not rec.overrun
    # a real network slower than the link: no sleep, counted as an overrun
    down = LinkShaper.of(link, DOWN, clock=lambda: now[0], sleep=sleep)
    rec = down.send(1_000, lambda: sleep(0.5), lambda: None)
    assert rec.overrun and down.stats.overruns == 1 and shaper.stats.overruns == 0
    assert achieved_mbps(1_000_000, 1.0 + 0.01, rtt_ms=20) == pytest.approx(8.0)


def test_link_specs():
    assert [lk.name for lk in parse_links("4g,wifi")] == ["4g", "wifi"]
    (custom,) = parse_links("100/200/4")
    assert (custom.uplink_mbps, custom.downlink_mbps, custom.rtt_ms) == (100, 200, 4)
    with pytest.raises(UsageError):
        parse_links("5g")


def test_plain_driver_statistics():
    calls = []
    stats = measure(lambda i: calls.append(i), 3, MeasureSettings(min_query_count=7), driver="plain")
    assert stats.count == 7 and calls == [0, 1, 2, 0, 1, 2, 0] and stats.driver == "plain"
    s = stats_from_latencies([float(i) for i in range(1, 101)], "single-stream", "plain", 1.0)
    assert (s.p50_s, s.p90_s, s.p99_s, s.mean_s) == (50.0, 90.0, 99.0, 50.5)


@pytest.mark.parametrize("scenario", ["single-stream", "server", "offline"])
def test_loadgen_driver_runs_each_scenario(scenario):
    pytest.importorskip("mlperf_loadgen")
    seen = []
    s = MeasureSettings(scenario=scenario, min_query_count=8, expected_latency_s=0.001, target_qps=500)
    stats = measure(lambda i: (seen.append(i), time.sleep(0.001)), 4, s, driver="loadgen")
    assert stats.driver.startswith("loadgen") and stats.count == len(seen) >= 8
    assert 0.0009 < stats.min_s <= stats.p50_s <= stats.p90_s <= stats.p99_s <= stats.max_s
    assert stats.throughput_qps > 0


def test_runtime_runs_each_planned_bundle_as_one_module():
    """A merged segment is one module; a segment of several bundles runs them in order, as planned."""
    from dime.core.network import Network
    from dime.run.data.chain import Chain
    from dime.run.data.pipeline import Pipeline
    from dime.run.data.program import build_program
    from dime.run.plan import mergeable_runs

    m = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        want = m.forward_full(x)
    net = Network.two_roles(get_link("4g"))
    for placement in [(Assignment(0, 3, EDGE, "t"),), (Assignment(0, 2, EDGE, "t"), Assignment(3, 3, EDGE, "t"))]:
        cache: dict = {}
        program = build_program(placement, net, m.cut_bytes)
        pipe = Pipeline(program, EDGE, m, cache, None, [0, 1], net, 1, True, True)  # edge-only: no peer needed
        assert [len(mods) for mods in pipe._modules.values()] == [len(placement)]
        assert sorted(cache) == [(a.start, a.end) for a in placement]
        chain = Chain(pipe, [(x,)], 1)
        pipe.start()
        torch.testing.assert_close(chain.infer(0)[0], want)
        chain.close()
        assert pipe.join(5).queries == 1
    two = (Assignment(0, 2, EDGE, "t"), Assignment(3, 3, EDGE, "t"))
    assert mergeable_runs(two, lambda a: a.end - a.start + 1 <= 4) == [0]  # K = 4: the union is profiled
    assert mergeable_runs(two, lambda a: a.end - a.start + 1 <= 3) == []  # K = 3: longer than K, stays apart
    assert mergeable_runs((Assignment(0, 2, EDGE, "t"), Assignment(3, 3, EDGE, "u")), lambda a: True) == []


def test_merge_runs_merges_same_setting_neighbours_while_the_union_is_profiled():
    from dime.run.plan import merge_runs, mergeable_runs

    def k(n):
        return lambda a: a.end - a.start + 1 <= n

    three = (Assignment(0, 1, EDGE, "t"), Assignment(2, 3, EDGE, "t"), Assignment(4, 5, EDGE, "t"),
             Assignment(6, 6, CLOUD, "t"))
    # K = 4: the first two become one 4-layer segment; adding the third would make 6 > K, so it runs after it
    got = merge_runs(three, k(4))
    assert got == (Assignment(0, 3, EDGE, "t"), Assignment(4, 5, EDGE, "t"), Assignment(6, 6, CLOUD, "t"))
    assert mergeable_runs(got, k(4)) == []  # what runs obeys the merge rule
    assert merge_runs(three, k(7))[0] == Assignment(0, 5, EDGE, "t")
    assert merge_runs(three, k(3)) == three  # every union longer than K: run in order, as planned
    # another setting, or another role in between, keeps bundles apart
    mixed = (Assignment(0, 1, EDGE, "t"), Assignment(2, 3, EDGE, "u"), Assignment(4, 4, CLOUD, "u"),
             Assignment(5, 5, EDGE, "u"))
    assert merge_runs(mixed, k(9)) == mixed


# ---- two processes ----------------------------------------------------------------
def _skipnet_solution(tmp_path: Path) -> tuple[Path, list[str], list[int]]:
    m = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))
    names = m.layer_names
    sol = {"status": "optimal", "latency_s": 0.001, "solver": "cbc", "placement": [
        {"bundle": "+".join(names[:2]), "start": names[0], "end": names[1], "device": "cpu",
         "setting": "threads=1", "role": "edge", "latency_s": 0.0004},
        {"bundle": "+".join(names[2:]), "start": names[2], "end": names[-1], "device": "cpu",
         "setting": "threads=1", "role": "cloud", "latency_s": 0.0002},
    ]}
    path = tmp_path / "sol.json"
    path.write_text(json.dumps(sol))
    return path, names, m.cut_bytes


def test_two_processes_reproduce_the_full_model(tmp_path):
    """Every single split and a solver's placement, in all three scenarios, one process pair."""
    sol, names, cut_bytes = _skipnet_solution(tmp_path)
    proc, out, outputs = local(SKIPNET, ["--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL, "--split", "all", "--solution", str(sol),
                                         "--link", "1000/1000", "--scenario", "single-stream,server,offline",
                                         "--target-qps", "200", "--min-query-count", "4", "--warmup", "2",
                                         "--count", "2", "--probe-s", "0"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rs = rows(out)
    configs = ["solver", "cloud-only", "split@conv1", "split@conv2", "split@pool", "edge-only"]
    assert [r["config"] for r in rs] == [c for c in configs for _ in range(3)]
    assert [r["scenario"] for r in rs[:3]] == ["single-stream", "server", "offline"]
    assert all(int(r["count"]) >= 4 and float(r["mean_s"]) > 0 and float(r["throughput_fps"]) > 0 for r in rs)
    assert float(rs[1]["target_qps"]) == 200
    assert [int(r["transfers"]) for r in rs[::3]] == [2, 2, 2, 2, 2, 0]
    # the solver's row: no profile, so bundle costs from the file + communication over the run's link
    solver = rs[0]
    assert float(solver["solver_latency_s"]) == 0.001
    comm = (cut_bytes[2] + cut_bytes[-1]) * 8 / 1e9
    assert float(solver["pred_bundle_s"]) == pytest.approx(0.0006 + comm, rel=1e-4)
    assert solver["err_bundle"] != "" and solver["pred_layersum_s"] == ""
    assert assert_outputs_match_full_model(outputs, SKIPNET, (1, 3, 16, 16), SKIP_CUTS) == 12
    # each device describes itself: the cloud's line comes over the wire
    assert {(r["threads"], r["torch_devices"]) for r in rs if r["config"] != "edge-only"} \
        == {("edge=1;cloud=1", "edge=cpu;cloud=cpu")}
    assert {(r["threads"], r["devices"]) for r in rs if r["config"] == "edge-only"} == {("edge=1", "edge")}
    assert all(len(set(parse_map(r["hosts"]).values())) == 1 for r in rs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cloud_role_on_cuda_reproduces_the_full_model(tmp_path):
    sol, _, _ = _skipnet_solution(tmp_path)
    proc, out, outputs = local(SKIPNET, ["--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL, "--split", "all", "--solution", str(sol),
                                         "--cloud-torch-device", "cuda", "--link", "1000/1000",
                                         "--min-query-count", "4", "--warmup", "2", "--count", "2", "--probe-s", "0",
                                         "--driver", "plain"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rs = rows(out)
    assert len(rs) == 6
    assert all(parse_map(r["torch_devices"]).get("cloud", "-") == torch.cuda.get_device_name(0)
               for r in rs if r["config"] != "edge-only")
    assert all(parse_map(r["torch_devices"])["edge"] == "cpu" for r in rs)
    assert assert_outputs_match_full_model(outputs, SKIPNET, (1, 3, 16, 16), SKIP_CUTS) == 12


@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cloud_on_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    t0 = time.monotonic()
    proc, _, _ = local(SKIPNET, ["--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL, "--split", "0", "--cloud-torch-device", "cuda",
                                 "--timeout-s", "20"], tmp_path)
    assert_one_line_error(proc)
    assert "cloud: --torch-device cuda: no CUDA device is available here" in proc.stderr
    assert time.monotonic() - t0 < 20


@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
@pytest.mark.serial
def test_emulated_link_takes_the_presets_time(tmp_path):
    """The probe's achieved rates are the presets'; a query over a slow link takes its time."""
    proc, out, _ = local(SKIPNET, ["--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL, "--split", "-1", "--link", "4g,wifi,1/1/20", "--shaper", "user",
                                   "--probe-s", "0.15", "--min-query-count", "4", "--warmup", "1", "--count", "1",
                                   "--driver", "plain"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    by_link = {r["link"]: r for r in rows(out)}
    for name in ("4g", "wifi"):
        preset = get_link(name)
        achieved = parse_map(by_link[name]["achieved_mbps"])
        assert float(achieved["edge->cloud"]) == pytest.approx(preset.uplink_mbps, rel=0.10)
        assert float(achieved["cloud->edge"]) == pytest.approx(preset.downlink_mbps, rel=0.10)
    # cloud-only at 16x16: 3072 B up and 40 B down at 1 Mbps, + 2 x rtt/2 of 10 ms
    r = by_link["1up-1down-20ms"]
    wire = (3072 + 40) * 8 / 1e6 + 0.020
    assert wire < float(r["min_s"]) < wire + 0.03
    assert float(parse_map(r["achieved_mbps"])["edge->cloud"]) == pytest.approx(1.0, rel=0.10)


def _middle_split(model: str, tmp_path: Path, k: int) -> None:
    proc, out, outputs = local(model, ["--split", str(k), "--link", "1000/1000", "--probe-s", "0",
                                       "--min-query-count", "2", "--warmup", "1", "--count", "1",
                                       "--driver", "plain"], tmp_path, 300)
    assert proc.returncode == 0, proc.stderr
    (r,) = rows(out)
    assert int(r["transfers"]) == 2
    assert assert_outputs_match_full_model(outputs, model) == 1


@pytest.mark.slow
@pytest.mark.parametrize("model,k", [("alexnet", 3), ("resnet18", 4), ("mobilenet_v2", 9)])
def test_real_models_split_in_the_middle(model, k, tmp_path):
    _middle_split(model, tmp_path, k)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DIME_TEST_ALL_MODELS"),
                    reason="10 s each; set DIME_TEST_ALL_MODELS=1 to run")
@pytest.mark.parametrize("model,k", [("vgg11", 5), ("vit_b_16", 6)])
def test_big_models_split_in_the_middle(model, k, tmp_path):
    _middle_split(model, tmp_path, k)


# ---- failures ---------------------------------------------------------------------
@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
def test_missing_peer_is_a_one_line_error_within_the_timeout():
    t0 = time.monotonic()
    procs = {
        role: subprocess.Popen([PY, "-m", "dime.run", "--role", role, "--peer", f"127.0.0.1:{free_port()}",
                                "--model", SKIPNET, "--cuts", ",".join(SKIP_CUTS), "--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL, "--split", "0", "--timeout-s", "2"],
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for role in ("edge", "cloud")
    }
    for role, p in procs.items():
        out, err = p.communicate(timeout=60)
        assert_one_line_error(subprocess.CompletedProcess(p.args, p.returncode, out, err))
        needle = "device 'cloud' did not join" if role == "edge" else "no source joined"
        assert needle in err and "within 2 s" in err
    assert time.monotonic() - t0 < 2 + 30  # two interpreters and models starting on a busy 2-core machine


@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
def test_dead_peer_is_noticed_at_once():
    port = free_port()
    common = ["--peer", f"127.0.0.1:{port}", "--model", SKIPNET, "--cuts", ",".join(SKIP_CUTS), "--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL, "--timeout-s", "30"]
    cloud = subprocess.Popen([PY, "-m", "dime.run", "--role", "cloud", *common], env=cli_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # a 40-byte answer over 0.0001 Mbps takes 3.2 s: the edge waits in recv when the cloud dies
    edge = subprocess.Popen([PY, "-m", "dime.run", "--role", "edge", *common, "--split", "-1",
                             "--link", "1000/0.0001", "--probe-s", "0", "--warmup", "0", "--min-query-count", "50",
                             "--driver", "plain"], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = []
        for line in edge.stderr:  # wait until the edge runs queries
            lines.append(line)
            if "[1/1]" in line:
                break
        time.sleep(0.5)
        cloud.kill()
        t0 = time.monotonic()
        _, err = edge.communicate(timeout=60)
        assert time.monotonic() - t0 < 5
    finally:
        cloud.kill()
        cloud.wait()
        edge.kill()
        edge.wait()
    err = "".join(lines) + err
    assert_one_line_error(subprocess.CompletedProcess(edge.args, edge.returncode, "", err))
    assert "lost device 'cloud'" in err


@pytest.mark.parametrize("extra,needle", [
    (["--solution", "/nonexistent/sol.json"], "not found"),
    (["--split", "0", "--link", "5g"], "unknown link"),
    (["--split", "0", "--scenario", "burst"], "unknown scenario"),
    ([], "give a placement"),
])
def test_bad_input_fails_before_any_process_starts(extra, needle):
    t0 = time.monotonic()
    proc = run_cli(["dime.run", "local", "--model", SKIPNET, "--cuts", ",".join(SKIP_CUTS), "--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL, *extra])
    assert_one_line_error(proc)
    assert needle in proc.stderr
    assert time.monotonic() - t0 < 10


# ---- validate ---------------------------------------------------------------------
@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
def test_validate_runs_solver_and_every_split(tmp_path):
    prof = tmp_path / "skipnet.csv"
    fake_profile(prof)
    out = tmp_path / "validate.csv"
    proc = run_cli(["dime.validate", "--profile", str(prof), "--models", SKIPNET, "--cuts", ",".join(SKIP_CUTS), "--links", "1000/1000",
                    "--edge", "cpu", "--edge-settings", "threads=1", "--cloud", "cpu", "--cloud-settings",
                    "threads=1", "--input-shape", SMALL, "--min-query-count", "3", "--warmup", "1", "--count", "1",
                    "--out", str(out), "-q"], timeout=180)
    assert proc.returncode == 0, proc.stderr
    rs = rows(out)
    assert [r["config"] for r in rs] == ["solver", "cloud-only", "split@conv1", "split@conv2", "split@pool",
                                         "edge-only"]
    edge_only = rs[-1]
    assert float(edge_only["pred_bundle_s"]) == pytest.approx(0.0036)  # one 4-layer bundle: 4 ms x 0.9
    assert float(edge_only["pred_layersum_s"]) == pytest.approx(0.004)
    assert all(r["err_bundle"] and r["err_layersum"] for r in rs)
    assert "| compute only: bundle |" in proc.stdout and "| **all** |" in proc.stdout
    assert "Drift explains" in proc.stdout
    # the whole model: 4 ms x 0.9 in the made-up profile, timed for real before every placement and at the end
    assert {r["whole_profiled_s"] for r in rs} == {"edge=0.0036;cloud=0.0036"}
    for r in rs:
        before, drift = parse_map(r["whole_before_s"]), parse_map(r["drift"])
        assert float(before["edge"]) > 0 and float(before["cloud"]) > 0
        assert float(drift["edge"]) == pytest.approx(float(before["edge"]) / 0.0036, rel=1e-4)
    # edge-only: all compute on the edge, so the corrected prediction is the raw one times the edge's drift
    edge_drift = float(parse_map(edge_only["drift"])["edge"])
    assert float(edge_only["pred_bundle_drift_s"]) == pytest.approx(0.0036 * edge_drift, rel=1e-3)
    assert len({r["whole_end_s"] for r in rs}) == 1
    assert "| edge 3.6 / " in proc.stdout


def test_validate_rejects_two_settings_per_role(tmp_path):
    prof = tmp_path / "skipnet.csv"
    fake_profile(prof)
    proc = run_cli(["dime.validate", "--profile", str(prof), "--models", SKIPNET, "--cuts", ",".join(SKIP_CUTS), "--edge", "cpu",
                    "--edge-settings", "threads=1,threads=2", "--cloud", "cpu", "--cloud-settings", "threads=1",
                    "--out", str(tmp_path / "v.csv")])
    assert_one_line_error(proc)


def test_plan_predicts_solutions_and_splits_from_a_profile(tmp_path):
    from dime.run.cli import build_parser, run_options
    from dime.run.control.source import model_shape
    from dime.run.placements import build_plan

    prof = tmp_path / "skipnet.csv"
    fake_profile(prof)
    sol, names, cut_bytes = _skipnet_solution(tmp_path)
    args = build_parser().parse_args(join_negative_values([
        "--role", "edge", "--peer", "127.0.0.1:1", "--model", SKIPNET, "--cuts", ",".join(SKIP_CUTS), "--solution", str(sol), "--split", "-1,3",
        "--profile", str(prof), "--link", "8/16/10"]))
    plan = build_plan(run_options(args).plan, model_shape(load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))))
    solver, cloud_only, edge_only = plan.configs
    assert [d.profile_device for d in plan.devices] == ["cpu", "cpu"]
    # solver: a 2-layer edge bundle (2 x 0.9 ms), a 2-layer cloud bundle, up cut 2 and down cut 4
    comm = cut_bytes[2] * 8 / 8e6 + cut_bytes[4] * 8 / 16e6 + 2 * 0.005
    assert solver.pred_bundle_s == pytest.approx(0.0036 + comm)
    assert solver.pred_layersum_s == pytest.approx(0.004 + comm)
    assert cloud_only.pred_bundle_s == pytest.approx(0.0036 + cut_bytes[0] * 8 / 8e6 + cut_bytes[4] * 8 / 16e6 + 0.01)
    assert edge_only.pred_bundle_s == pytest.approx(0.0036) and edge_only.pred_layersum_s == pytest.approx(0.004)


def test_plan_runs_a_mergeable_solution_as_one_bundle_and_predicts_the_union(tmp_path):
    """A DIME-semantics solution (two single-layer edge bundles at one setting, union profiled) runs
    as the profiled 2-layer bundle, predicted by that bundle's own cost; the solution's placement is kept."""
    from dime.run.cli import build_parser, run_options
    from dime.run.control.source import model_shape
    from dime.run.placements import build_plan
    from dime.run.plan import Plan

    prof = tmp_path / "skipnet.csv"
    fake_profile(prof)
    m = load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))
    names = m.layer_names
    entries = [(0, 0, "edge"), (1, 1, "edge"), (2, 3, "cloud")]
    sol = tmp_path / "sol.json"
    sol.write_text(json.dumps({"status": "optimal", "latency_s": 0.01, "placement": [
        {"start": names[s], "end": names[e], "device": "cpu", "setting": "threads=1", "role": r}
        for s, e, r in entries]}))
    args = build_parser().parse_args(["--role", "edge", "--peer", "127.0.0.1:1", "--model", SKIPNET, "--cuts", ",".join(SKIP_CUTS),
                                      "--solution", str(sol), "--profile", str(prof), "--link", "8/16/10"])
    (cfg,) = build_plan(run_options(args).plan, model_shape(m)).configs
    assert cfg.placement == (Assignment(0, 1, EDGE, "threads=1"), Assignment(2, 3, CLOUD, "threads=1"))
    assert cfg.planned == tuple(Assignment(s, e, EDGE if r == "edge" else CLOUD, "threads=1") for s, e, r in entries)
    comm = m.cut_bytes[2] * 8 / 8e6 + m.cut_bytes[4] * 8 / 16e6 + 2 * 0.005
    assert cfg.pred_bundle_s == pytest.approx(0.0018 + 0.0018 + comm)  # the union's 2 x 0.9 ms, not 1 + 1 ms
    assert cfg.bundle.compute_s[EDGE] == pytest.approx(0.0018) and cfg.solver_latency_s == 0.01
    # the plan file carries both
    plan = Plan("m", tuple(names), tuple(m.cut_bytes), (cfg,))
    assert Plan.from_json(plan.to_json()).configs[0] == cfg


def _summary_row(config, meas, pred_b, pred_l, edge_part=None, cloud_part=None, edge_now=0.012, cloud_now=None):
    """A measured row as dime.run writes it: 1 s of communication (1 MB at 8 Mbps)."""
    from dime.run.results import map_cell

    return {"model": "m", "link": "4g", "scenario": "single-stream", "config": config,
            "placement": "a@edge/t | b@cloud/t", "measured_s": str(meas), "pred_bundle_s": str(pred_b),
            "pred_layersum_s": str(pred_l), "err_bundle": str((pred_b - meas) / meas),
            "err_layersum": str((pred_l - meas) / meas), "pred_comm_s": "1.0",
            "pred_bundle_compute_s": map_cell({"edge": edge_part, "cloud": cloud_part}),
            "whole_before_s": map_cell({"edge": edge_now, "cloud": cloud_now}),
            "whole_end_s": "edge=0.0131"}


def test_drift_correction_scales_each_devices_compute_part():
    from dime.run.report import add_drift_columns

    # 1 s of communication; 0.06 s predicted on the edge, 0.04 s in the cloud
    r = _summary_row("solver", 1.2, 1.10, 1.10, edge_part=0.06, cloud_part=0.04, edge_now=0.015, cloud_now=0.02)
    add_drift_columns(r, {"edge": 0.010, "cloud": 0.040})  # the edge runs 1.5x slower than profiled, the cloud 2x faster
    drift = parse_map(r["drift"])
    assert float(drift["edge"]) == pytest.approx(1.5) and float(drift["cloud"]) == pytest.approx(0.5)
    corrected = 1.0 + 0.06 * 1.5 + 0.04 * 0.5
    assert r["pred_bundle_drift_s"] == pytest.approx(corrected)
    assert r["err_bundle_drift"] == pytest.approx((corrected - 1.2) / 1.2)
    assert r["err_bundle_compute"] == pytest.approx((1.10 - 1.2) / 0.2)
    assert r["err_bundle_compute_drift"] == pytest.approx((corrected - 1.2) / 0.2)
    # no parts for the layer sum, and a device without a profiled reference: left as predicted
    assert r["pred_layersum_drift_s"] == pytest.approx(1.10)
    r2 = _summary_row("x", 1.2, 1.10, 1.10, edge_part=0.06, cloud_part=0.04, edge_now=0.015)
    add_drift_columns(r2, {"edge": 0.010, "cloud": None})
    assert "cloud" not in parse_map(r2["drift"]) and r2["pred_bundle_drift_s"] == pytest.approx(1.0 + 0.09 + 0.04)


def test_validate_csv_has_the_drift_columns(tmp_path):
    from dime.run.report import VALIDATE_COLUMNS, add_drift_columns, write_table

    r = _summary_row("solver", 1.2, 1.10, 1.10, edge_part=0.06, cloud_part=0.04, edge_now=0.015, cloud_now=0.02)
    add_drift_columns(r, {"edge": 0.010, "cloud": 0.040})
    write_table(tmp_path / "v.csv", [r, r])
    got = rows(tmp_path / "v.csv")
    assert list(got[0]) == list(VALIDATE_COLUMNS)
    for col in ("drift", "whole_profiled_s", "err_bundle_drift", "err_bundle_compute", "err_bundle_compute_drift",
                "err_layersum_drift", "err_layersum_compute", "err_layersum_compute_drift", "whole_before_s"):
        assert col in VALIDATE_COLUMNS and got[0][col] != "", col
    assert parse_map(got[0]["drift"]) == {"edge": "1.5", "cloud": "0.5"}
    assert float(got[1]["err_bundle_drift"]) == pytest.approx((1.11 - 1.2) / 1.2, rel=1e-4)


def test_validation_summary_medians_and_bundle_closer_count():
    from dime.run.report import add_drift_columns, summary_markdown

    rows_ = [_summary_row("solver", 1.10, 1.09, 1.08, 0.09, 0.0), _summary_row("split@a", 1.20, 1.22, 1.10, 0.22, 0.0),
             _summary_row("split@b", 1.50, 1.45, 1.60, 0.45, 0.0)]
    for r in rows_:
        add_drift_columns(r, {"edge": 0.010})  # the edge timed 12 ms now: 1.2x its profile
    table = summary_markdown(rows_)
    line = next(li for li in table.splitlines() if li.startswith("| m |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # |errors| bundle: 0.91%, 1.67%, 3.33% -> median 1.7%; corrected (edge part x 1.2: 1.108, 1.264, 1.54 s):
    # 0.73%, 5.33%, 2.67% -> 2.7%; layer-sum: 1.82%, 8.33%, 6.67% -> 6.7% (no parts: not corrected)
    assert cells[3:7] == ["1", "3", "1.7% / 2.7%", "6.7% / 6.7%"]  # in flight: 1 (rows without the column)
    # compute only (1 s of communication): bundle 10%, 10%, 10% -> corrected 8%, 32%, 8% -> 8.0%
    assert cells[7:10] == ["10.0% / 8.0%", "20.0% / 20.0%", "3/3"]
    assert cells[10] == "a edge, b cloud"
    assert cells[11:14] == ["1090.0", "1100.0", "-0.9% / +0.7%"]
    assert cells[14] == "1100.0 (solver)" and cells[15] == "edge 10.0 / 12.0 / 13.1"
    assert "**3/3**" in table and "Drift explains -60% of the median |bundle error| (1.7% -> 2.7%)" in table
