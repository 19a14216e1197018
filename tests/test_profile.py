from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from collections import Counter

import pytest
import torch
from clihelp import PY, assert_one_line_error, cli_env, run_cli

from dime.capture.models import load_model
from dime.capture.samples import generate
from dime.errors import UsageError
from dime.profiling.profiler import OperatingPoint, ProfileConfig, profile
from dime.profiling.reader import load_profiles
from dime.profiling.schema import PROFILE_COLUMNS

TOY = ["--model", "toy_models:skipnet", "--cuts", "conv1,conv2,conv3,pool"]


@pytest.fixture
def toy_samples(tmp_path):
    m = load_model("toy_models:skipnet", cuts=["conv1", "conv2", "conv3", "pool"])
    generate(m, tmp_path / "samples", count=2, progress=False)
    return m, tmp_path / "samples"


def run_profile(args):
    return run_cli("dime.profile", *args)  # in this process; the resume test below starts and kills a real one


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_profiles_every_bundle_at_every_setting(tmp_path, toy_samples):
    m, samples = toy_samples
    out = tmp_path / "p.csv"
    p = run_profile([*TOY, "--device-name", "toy-cpu", "--max-bundle", "3", "--iterations", "3", "--runs", "2",
                     "--threads", "1,2", "--samples", str(samples), "--out", str(out), "-q"])
    assert p.returncode == 0, p.stderr
    rows = read_rows(out)
    assert list(rows[0].keys()) == list(PROFILE_COLUMNS)
    n = len(m.layer_names)  # 5
    expected_bundles = {(s, e) for s in range(n) for e in range(s, min(n, s + 3))}
    per = Counter((r["setting"], r["bundle"]) for r in rows)
    assert len(per) == 2 * len(expected_bundles)
    assert set(per.values()) == {6}
    for r in rows:
        s, e = m.index(r["start"]), m.index(r["end"])
        assert (s, e) in expected_bundles
        assert r["bundle"] == m.bundle_name(s, e)
        assert int(r["in_bytes"]) == m.cut_bytes[s] and int(r["out_bytes"]) == m.cut_bytes[e + 1]
        assert float(r["latency_s"]) > 0 and r["energy_j"] == ""
        assert r["setting_kind"] == "threads" and r["device"] == "toy-cpu"
        assert int(r["param_bytes"]) == sum(LAYER_PARAM_BYTES[s : e + 1])
    assert (tmp_path / "p.csv.meta.json").is_file()
    assert load_profiles([out]).param_bytes == {(s, e): sum(LAYER_PARAM_BYTES[s : e + 1]) for s, e in expected_bundles}


# float32 weights + biases of skipnet's conv1, conv2, conv3, pool, fc
LAYER_PARAM_BYTES = [(3 * 8 * 9 + 8) * 4, (8 * 8 * 9 + 8) * 4, (8 * 8 * 9 + 8) * 4, 0, (8 * 10 + 10) * 4]


def test_assume_power_fills_energy(tmp_path, toy_samples):
    _, samples = toy_samples
    out = tmp_path / "p.csv"
    p = run_profile([*TOY, "--device-name", "d", "--max-bundle", "1", "--iterations", "2", "--runs", "1",
                     "--threads", "1,2", "--assume-power", "2.5,4", "--samples", str(samples), "--out", str(out), "-q"])
    assert p.returncode == 0, p.stderr
    for r in read_rows(out):
        w = 2.5 if r["setting"] == "threads=1" else 4.0
        assert float(r["energy_j"]) == pytest.approx(w * float(r["latency_s"]), rel=1e-6)
        assert r["energy_source"] == f"assumed:{w:g}"


def test_resume_after_kill_loses_at_most_the_bundle_in_flight(tmp_path, shared_model):
    # alexnet is slow enough on a CPU to be killed mid-run
    m = shared_model("alexnet")
    samples = tmp_path / "samples"
    generate(m, samples, count=1, progress=False)
    out = tmp_path / "p.csv"
    args = ["--model", "alexnet", "--device-name", "cpu", "--max-bundle", "8", "--iterations", "2", "--runs", "1",
            "--warmup", "0", "--threads", "1", "--samples", str(samples), "--out", str(out), "-q"]
    proc = subprocess.Popen([PY, "-m", "dime.profile", *args], env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if out.exists() and len(out.read_text().splitlines()) > 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_rows = len(read_rows(out))
    assert 0 < killed_rows < 36 * 2, "the run was not interrupted"
    # simulate a torn write at the kill
    with open(out, "a") as f:
        f.write("alexnet,cpu,threads=1,conv1+con")
    p = run_profile(args)
    assert p.returncode == 0, p.stderr
    rows = read_rows(out)
    per = Counter((r["setting"], r["bundle"]) for r in rows)
    assert len(per) == 36 and set(per.values()) == {2}
    assert "1 broken line" in p.stderr
    # a third run has nothing to do and leaves the file as it is
    before = out.read_bytes()
    p = run_profile(args)
    assert p.returncode == 0 and out.read_bytes() == before


def test_profile_errors(tmp_path, toy_samples):
    _, samples = toy_samples
    p = run_profile([*TOY, "--device-name", "d", "--samples", str(tmp_path / "none"), "--out", str(tmp_path / "o.csv")])
    assert_one_line_error(p)
    assert "dime.samples" in p.stderr
    p = run_profile(["--model", "alexnet", "--device-name", "d", "--samples", str(samples), "--out", str(tmp_path / "o.csv")])
    assert_one_line_error(p)
    assert "regenerate" in p.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    p = run_profile([*TOY, "--device-name", "d", "--samples", str(samples), "--out", str(bad)])
    assert_one_line_error(p)
    assert bad.read_text() == "a,b\n1,2\n"
    p = run_profile([*TOY, "--device-name", "d", "--threads", "0", "--samples", str(samples), "--out", str(tmp_path / "o.csv")])
    assert_one_line_error(p)
    p = run_profile([*TOY, "--device-name", "d", "--torch-device", "cuda:7", "--samples", str(samples),
                     "--out", str(tmp_path / "o2.csv")])
    assert_one_line_error(p)


def _counting_bundles(m, calls):
    """Wrap m.bundle so that every module starting at layer 0 counts its calls."""
    real = m.bundle

    class Recorded(torch.nn.Module):
        def __init__(self, gm, key):
            super().__init__()
            self.gm, self.key = gm, key

        def forward(self, *args):
            calls[self.key] += 1
            return self.gm(*args)

    def bundle(first, last):
        gm = real(first, last)
        s, e = m.index(first), m.index(last)
        return Recorded(gm, (s, e)) if s == 0 else gm

    m.bundle = bundle


@pytest.mark.parametrize("context", ["isolated", "chain"])
def test_chain_context_runs_the_earlier_layers_untimed_before_each_run(tmp_path, toy_samples, context, monkeypatch):
    from dime.profiling import profiler

    m, samples = toy_samples
    calls: Counter = Counter()
    _counting_bundles(m, calls)
    windows = []  # calls of modules starting at layer 0 inside each timed window, in timing order
    real_time_s = profiler.Timer.time_s

    def time_s(self, fn, repeats=1):
        before = sum(calls.values())
        elapsed = real_time_s(self, fn, repeats)
        windows.append(sum(calls.values()) - before)
        return elapsed

    monkeypatch.setattr(profiler.Timer, "time_s", time_s)
    out = tmp_path / "p.csv"
    config = ProfileConfig(device_name="toy", max_bundle=2, iterations=2, runs=2, warmup=1, context=context)
    profile(m, samples, out, config, [OperatingPoint("default", "default", lambda: None)], progress=False)
    n, per_bundle = len(m.layer_names), 1 + 2 * 2
    bundles = [(s, e) for s in range(n) for e in range(s, min(n, s + 2))]
    want: Counter = Counter({b: per_bundle for b in bundles if b[0] == 0})  # their own warm-up and timed runs
    if context == "chain":
        for s, _ in bundles:
            if s > 0:
                want[(0, s - 1)] += per_bundle  # once before each of the bundle's runs
    assert calls == want
    rows = read_rows(out)
    assert len(rows) == len(bundles) * 4
    # the prefix is never timed: a timed window holds a layer-0 module only when the bundle starts there
    assert windows == [int(s == 0) for s, _ in bundles for _ in range(per_bundle)]
    assert json.loads((tmp_path / "p.csv.meta.json").read_text())["context"] == context


def test_chain_context_is_not_mixed_on_resume_and_needs_no_meter(tmp_path, toy_samples):
    m, samples = toy_samples
    out = tmp_path / "p.csv"
    base = [*TOY, "--device-name", "d", "--max-bundle", "1", "--iterations", "1", "--runs", "1",
            "--samples", str(samples), "--out", str(out), "-q"]
    assert run_profile([*base, "--context", "chain"]).returncode == 0
    before = out.read_bytes()
    p = run_profile(base)
    assert_one_line_error(p)
    assert "--context chain" in p.stderr and out.read_bytes() == before
    config = ProfileConfig(device_name="d", context="chain")
    with pytest.raises(UsageError, match="power meter"):
        profile(m, samples, tmp_path / "q.csv", config, [OperatingPoint("default", "default", lambda: None)],
                meter=object(), progress=False)
    assert not (tmp_path / "q.csv").exists()
