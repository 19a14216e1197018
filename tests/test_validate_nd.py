"""`python -m dime.validate --system`: the placements of an N-device system (solver per objective,
source-only, each device alone, single splits; relays only forward), the run once per in-flight
count, drift columns and the per-placement summary (issue 12)."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from clihelp import PY, assert_one_line_error, cli_env
from nd_helpers import SKIP_CUTS, SMALL, csv_rows, system_file

from dime.core.costs import Assignment
from dime.plan.system import build_problem, load_system
from dime.run.placements import alternative_placements
from dime.run.plan import DeviceInfo
from dime.run.report import placement_markdown
from dime.run.results import parse_map
from dime.run.validate import in_flight_runs, system_plan

A, B, C = 0, 1, 2
T = "threads=1"


def _problem(path: Path):
    system = load_system(path)
    return system, build_problem(system)


def _plan(path: Path, splits, objectives=("latency", "throughput")):
    system, problem = _problem(path)
    devices = [DeviceInfo(d.name, d.profile_device) for d in system.devices]
    return system_plan(problem, devices, splits, objectives, network_label="sys")


def test_placements_of_a_line_with_a_relay(tmp_path):
    """a - b - c, b a relay: source-only, c-only and the splits to c, nothing ever on b, and every
    transfer between a and c routed through b."""
    _, problem = _problem(system_file(tmp_path, 3, relays="b"))
    alts = alternative_placements(problem, [-1, 0, 1, 2, 3])  # -1 and 3 are c-only and source-only already
    assert [label for label, _ in alts] == ["source-only", "c-only", "split@conv1->c", "split@conv2->c",
                                            "split@pool->c"]
    got = dict(alts)
    assert got["source-only"] == (Assignment(0, 3, A, T),)
    assert got["c-only"] == (Assignment(0, 3, C, T),)
    assert got["split@conv2->c"] == (Assignment(0, 1, A, T), Assignment(2, 3, C, T))

    plan = _plan(system_file(tmp_path, 3, relays="b"), [1])
    labels = [c.label for c in plan.configs]
    assert labels[:2] == ["solver:latency", "solver:throughput"]  # they differ here: all on a vs pipelined
    assert labels[2:] == ["source-only", "c-only", "split@conv2->c"]
    assert all(a.role != B for c in plan.configs for a in c.placement)
    for c in plan.configs:
        for _, src, dst, hops in c.routes:
            assert {src, dst} == {A, C} and [h[2:] for h in hops] in ([(0, 1), (1, 2)], [(2, 1), (1, 0)])
    split = plan.configs[labels.index("split@conv2->c")]
    assert split.bundle is not None and split.bundle.compute_s == pytest.approx((0.0018, 0.0, 0.0018))
    assert plan.configs[0].solver_latency_s == pytest.approx(0.0036)


def test_objectives_that_agree_run_once_and_energy_needs_profiled_energy(tmp_path, caplog):
    """Under a 4 ms budget everything stays on the source for latency and throughput alike (any
    transfer costs two 0.5 ms hops each way): one config `solver:latency+throughput`. c-only
    breaks the budget and still runs (an alternative). The made-up profile has no energy: the
    energy objective is skipped."""
    path = system_file(tmp_path, 3, relays="b")
    path.write_text(path.read_text() + "\n[constraints]\nmax_latency_s = 0.004\n")
    with caplog.at_level(logging.INFO, logger="dime.validate"):
        plan = _plan(path, [], ("latency", "throughput", "energy"))
    assert [c.label for c in plan.configs] == ["solver:latency+throughput", "source-only", "c-only"]
    assert plan.configs[0].placement == (Assignment(0, 3, A, T),)
    assert plan.configs[2].pred_bundle_s > 0.004
    assert "solver:energy skipped" in caplog.text


def test_the_model_defaults_to_the_profiles_only_one(tmp_path):
    """A system file without `model` and no --models: the profiles' model; every config's drift
    reference is each computing device's whole model as profiled."""
    from dime.run.validate import ValidateOptions, plans_for

    (mp,) = plans_for(ValidateOptions(out=tmp_path / "v.csv", system=system_file(tmp_path, 2, model=False),
                                      splits="none", objectives=("latency",)))
    assert mp.plan.model == "toy_models:skipnet" and mp.plan.device_names == ("a", "b")
    assert [c.label for c in mp.plan.configs] == ["solver:latency", "source-only", "b-only"]
    assert len(mp.whole_profiled) == 3 and all(
        w == {"a": pytest.approx(0.0036), "b": pytest.approx(0.0036)} for w in mp.whole_profiled.values())


def test_placements_the_system_forbids_are_left_out(tmp_path):
    """Private layers keep conv1 and conv2 on the source: c-only and the split after conv1 go."""
    path = system_file(tmp_path, 3)
    path.write_text(path.read_text() + "\n[constraints]\nprivate_layers = 2\n")
    _, problem = _problem(path)
    labels = [label for label, _ in alternative_placements(problem, [0, 1, 2])]
    assert labels == ["source-only", "split@conv2->b", "split@conv2->c", "split@pool->b", "split@pool->c"]


def test_in_flight_runs_measure_single_stream_once():
    assert in_flight_runs(("single-stream", "offline"), (4, 1)) == [(1, ("single-stream", "offline")),
                                                                     (4, ("offline",))]
    assert in_flight_runs(("single-stream",), (1, 2)) == [(1, ("single-stream",))]


def test_placement_summary_speed_ups():
    def row(config, scenario, n, pred_fps, fps, err=None):
        return {"model": "m", "link": "sys", "config": config, "placement": "a@a/t | b@c/t", "scenario": scenario,
                "in_flight": str(n), "pred_throughput_fps": str(pred_fps), "throughput_fps": str(fps),
                "pred_bundle_s": "0.01", "mean_s": "0.011", "p50_s": "0.0105", "p90_s": "0.012", "p95_s": "0.013",
                "err_bundle": "" if err is None else str(err), "err_bundle_drift": ""}

    rows = [row("x", "single-stream", 1, 100, 90, -0.1), row("x", "offline", 1, 100, 90), row("x", "offline", 4, 200, 180),
            row("y", "single-stream", 1, 100, 80, 0.2), row("y", "offline", 1, 100, 80), row("y", "offline", 4, 300, 96)]
    table = placement_markdown(rows)
    x = next(li for li in table.splitlines() if li.startswith("| m | sys | x |"))
    cells = [c.strip() for c in x.strip("|").split("|")]
    assert cells[3:] == ["a a, b c", "10.0", "11.0 / 10.5 / 12.0 / 13.0", "-10.0% / -", "100.0 / 90.0 (+11.1%)",
                         "200.0 / 180.0 (+11.1%)", "2.00 / 2.00"]
    # |latency errors| 10%, 20%; |throughput errors| 11.1, 11.1, 25, 212.5% -> 18.1%
    assert "median |latency error| 15.0%, median |throughput error| 18.1%" in table
    assert "2 placement(s) predicted to run >= 1.5x faster with 4 in flight than with 1, 1 of them did." in table


def _validate(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "dime.validate", "--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL, *args],
                          capture_output=True, text=True, env=cli_env(), timeout=timeout, check=False)


@pytest.mark.slow  # a long end-to-end run (test_run.py runs the two-device validate): make test-all
def test_validate_a_system_end_to_end(tmp_path):
    """Three processes (b relays), every placement once per in-flight count; single-stream once."""
    system = system_file(tmp_path, 3, relays="b")
    out, summary = tmp_path / "v.csv", tmp_path / "v.md"
    proc = _validate(["--system", str(system), "--shaper", "user", "--in-flight", "1,2", "--min-query-count", "4",
                      "--warmup", "1", "--count", "1", "--reference-runs", "2", "--splits", "conv2", "--probe-s", "0",
                      "--out", str(out), "--summary", str(summary), "-q"])
    assert proc.returncode == 0, proc.stderr
    rs = csv_rows(out)
    configs = list(dict.fromkeys(r["config"] for r in rs))
    assert configs[-3:] == ["source-only", "c-only", "split@conv2->c"] and configs[0].startswith("solver:latency")
    keys = [(r["config"], r["scenario"], r["in_flight"]) for r in rs]
    assert sorted(keys) == sorted((c, s, n) for c in configs
                                  for s, n in (("single-stream", "1"), ("offline", "1"), ("offline", "2")))
    for r in rs:
        assert r["devices"] in ("a", "a,b,c") and float(parse_map(r["busy_s"]).get("b", 0)) == 0  # b only relays
        assert parse_map(r["whole_profiled_s"]) == {"a": "0.0036", "c": "0.0036"}
        drift = parse_map(r["drift"])
        assert set(drift) == {"a", "c"} and all(float(v) > 0 for v in drift.values())
        assert r["pred_bundle_drift_s"] != "" and r["pred_throughput_fps"] != ""
    text = summary.read_text()
    assert text.strip() in proc.stdout
    assert "| scenario | in flight |" in text and "| **all** |" in text
    assert "| frames/s x1: pred / meas (err) | frames/s x2: pred / meas (err) | speed-up x2/x1: meas / pred |" in text
    assert "median |throughput error|" in text


@pytest.mark.parametrize("extra, needle", [
    (["--profile", "p.csv"], "--system and --profile do not go together"),
    (["--threads", "z=2"], "no device 'z'"),
    (["--in-flight", "0"], "--in-flight"),
    (["--objectives", "latency,speed"], "'speed' is not one of"),
])
def test_bad_system_options_are_one_line(tmp_path, extra, needle):
    system = system_file(tmp_path, 3, relays="b")
    proc = _validate(["--system", str(system), "--out", str(tmp_path / "v.csv"), *extra], timeout=60)
    assert_one_line_error(proc)
    assert needle in proc.stderr
    assert not (tmp_path / "v.csv").exists()


def test_two_device_flags_are_still_required_without_a_system(tmp_path):
    proc = _validate(["--models", "toy_models:skipnet", "--out", str(tmp_path / "v.csv")], timeout=60)
    assert_one_line_error(proc)
    assert "--profile" in proc.stderr and "--system" in proc.stderr
