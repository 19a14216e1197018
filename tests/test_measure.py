"""`dime.profile --measure FRACTION` (a fraction measured, the rest predicted; resumed after an
interruption), `dime.profile --refine` end to end on a toy model with the CPU profiler, and
dime.validate on a profile with predicted rows. Timings of the toy model are real but
meaningless; the tests check which bundles get measured, never their values."""

from __future__ import annotations

import csv
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from clihelp import PY, cli_env
from nd_helpers import SKIP_CUTS, SKIPNET, SMALL, fake_profile

from dime.capture.models import load_model
from dime.capture.samples import generate
from dime.cliargs import run_main
from dime.plan.solve import main as solve_main
from dime.profile import main as profile_cli
from dime.profiling import profiler
from dime.plan.choose import PlanAwareChoice
from dime.profiling.predict import budget_for, longest_bundles
from dime.profiling.predictcli import main as predict_main
from dime.profiling.profilefile import ProfileFile
from dime.profiling.reader import load_profiles

CUTS = ["conv1", "conv2", "conv3", "pool"]
TOY = ["--model", "toy_models:skipnet", "--cuts", ",".join(CUTS)]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy") / "samples"
    generate(load_model("toy_models:skipnet", cuts=CUTS), folder, count=1, progress=False)
    return folder


def flags(samples: Path, out: Path, *extra: str, quiet: bool = True) -> list[str]:
    return [*TOY, "--device-name", "toy", "--threads", "1", "--iterations", "1", "--runs", "2", "--warmup", "0",
            "--samples", str(samples), "--out", str(out), *(["-q"] if quiet else []), *extra]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def measured_bundles(path: Path) -> Counter:
    return Counter(r["bundle"] for r in rows(path) if r["latency_source"] != "predicted")


def expected_choice(path: Path, fraction: float) -> set[str]:
    """What --measure should have measured: the plan-aware chooser's rounds replayed on the values
    the file holds (each round from the rounds before it)."""
    table = load_profiles(path)
    n = table.n_layers
    chooser = PlanAwareChoice()(n, n, table.cut_bytes, budget_for(fraction, n, n),
                                lambda b: table.costs[("toy", "threads=1", *b)].latency_s)
    return {table.bundle_name(s, e) for r in chooser for s, e in r}


def test_measure_a_fraction_resumes_the_same_choice_after_an_interruption(tmp_path, samples, monkeypatch):
    out = tmp_path / "p.csv"
    appended = {"n": 0}
    real_append = ProfileFile.append

    def append_then_stop(self, new_rows):
        if appended["n"] == 7:  # the single layers, the whole model and one chosen bundle are written
            raise KeyboardInterrupt
        appended["n"] += 1
        real_append(self, new_rows)

    monkeypatch.setattr(ProfileFile, "append", append_then_stop)
    assert run_main(profile_cli, flags(samples, out, "--measure", "0.6")) == 130
    monkeypatch.setattr(ProfileFile, "append", real_append)
    before = rows(out)
    assert len(Counter(r["bundle"] for r in before)) == 7 and not any(r["latency_source"] == "predicted" for r in before)

    assert run_main(profile_cli, flags(samples, out, "--measure", "0.6")) == 0
    after = rows(out)
    assert after[: len(before)] == before  # the measured rows are never changed
    measured = measured_bundles(out)
    assert set(measured.values()) == {2}  # iterations x runs each
    assert set(measured) == expected_choice(out, 0.6) and len(measured) == budget_for(0.6, 5, 5) == 9
    guessed = [r for r in after if r["latency_source"] == "predicted"]
    assert len(guessed) == 15 - 9 and all(float(r["latency_sd_s"]) > 0 for r in guessed)
    assert after[len(after) - len(guessed):] == guessed  # measured rows, then the predicted ones
    table = load_profiles(out)
    assert table.max_bundle("toy", "threads=1") == 5
    assert {table.bundle_name(s, e) for s, e in longest_bundles(5, 5)} <= set(measured)
    meta = json.loads((tmp_path / "p.csv.meta.json").read_text())
    assert meta["measure"] == 0.6 and meta["prediction"]["max_bundle"] == 5
    assert meta["measure_choice"]["choice"].startswith("plan-aware")

    # a third run has nothing to measure and predicts the same rows again
    assert run_main(profile_cli, flags(samples, out, "--measure", "0.6")) == 0
    assert rows(out) == after
    # --overwrite starts afresh; without --measure the rest is measured too, and nothing is predicted
    assert run_main(profile_cli, flags(samples, out)) == 0
    assert set(measured_bundles(out).values()) == {2} and len(measured_bundles(out)) == 15
    assert not any(r["latency_source"] == "predicted" for r in rows(out))
    assert run_main(profile_cli, flags(samples, out, "--measure", "0.4", "--overwrite")) == 0
    assert len(measured_bundles(out)) == budget_for(0.4, 5, 5) == 6


def test_the_profiler_alone_refuses_measure(tmp_path, samples, capsys):
    """--measure needs the planner, which only dime.profile (above it) may import."""
    out = tmp_path / "p.csv"
    assert run_main(profiler.main, flags(samples, out, "--measure", "0.5")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "python -m dime.profile" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("extra,needle", [
    (["--measure", "0"], "fraction in (0, 1]"),
    (["--measure", "1.5"], "fraction in (0, 1]"),
    (["--measure", "x"], "not a number"),
    (["--measure", "0.5", "--bundles", "conv1..conv2"], "drop --bundles"),
    (["--bundles", "conv1@threads=9"], "no setting 'threads=9'"),
])
def test_measure_and_bundles_errors_are_one_line(tmp_path, samples, capsys, extra, needle):
    out = tmp_path / "p.csv"
    assert run_main(profile_cli, flags(samples, out, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists() or not rows(out)


def test_refine_measures_what_the_plan_rests_on_and_solves_again(tmp_path, samples, capsys):
    out = tmp_path / "p.csv"
    assert run_main(profile_cli, flags(samples, out, "--measure", "0.4")) == 0  # singles + the whole model
    assert len(measured_bundles(out)) == 6
    sol = tmp_path / "sol.json"
    # bundles of at most 2 layers: every pair is predicted, and the merge rule makes the plan use a
    # pair (two single layers in a row on one device and setting would have to be their pair); how
    # many depends on the measured timings
    solve = [str(out), "--edge", "toy", "--cloud", "toy", "--link", "4g", "--max-bundle", "2", "--json", str(sol), "-q"]
    assert run_main(solve_main, solve) == 0
    first = json.loads(sol.read_text())
    assert first["predicted_bundles"] >= 1
    capsys.readouterr()

    assert run_main(profile_cli, [*flags(samples, out, quiet=False), "--refine", str(sol), "--refine-budget", "30"]) == 0
    text = capsys.readouterr().out
    data = json.loads(sol.read_text())
    assert "refine:" in text and data["refine"]["rounds"]
    assert data["refine"]["stop"] == "the plan and its challengers use measured bundles only"
    assert all(p["latency_source"] == "measured" for p in data["placement"]) and data["predicted_bundles"] == 0
    measured = measured_bundles(out)
    assert {p["bundle"] for p in data["placement"]} <= set(measured)
    assert len(measured) == 6 + data["refine"]["measured"]
    assert data["refine"]["rounds"][0]["predicted_in_plan"]
    # the refined solution is what solving the refined profile gives (the same optimum; a near tie
    # may be broken either way by the solver's tolerances)
    again = tmp_path / "again.json"
    assert run_main(solve_main, [*solve[:-3], "--json", str(again), "-q"]) == 0
    assert json.loads(again.read_text())["latency_s"] == pytest.approx(data["latency_s"], rel=1e-6)


def test_refine_stops_at_its_budget_and_checks_its_inputs(tmp_path, samples, capsys):
    out = tmp_path / "p.csv"
    assert run_main(profile_cli, flags(samples, out, "--measure", "0.4")) == 0
    sol = tmp_path / "sol.json"
    assert run_main(solve_main, [str(out), "--edge", "toy", "--cloud", "toy", "--link", "4g", "--max-bundle", "2",
                                 "--json", str(sol), "-q"]) == 0
    assert run_main(profile_cli, [*flags(samples, out), "--refine", str(sol), "--refine-budget", "1"]) == 0
    data = json.loads(sol.read_text())
    assert data["refine"]["measured"] == 1 and "budget of 1" in data["refine"]["stop"]
    assert len(measured_bundles(out)) == 7
    capsys.readouterr()
    for argv, needle in [
        ([*flags(samples, tmp_path / "other.csv"), "--refine", str(sol)], "not one of the profiles"),
        ([*flags(samples, out), "--refine", str(tmp_path / "none.json")], "no such file"),
        ([*flags(samples, out, "--device-name", "elsewhere"), "--refine", str(sol)], "not a device"),
        ([*flags(samples, out, "--overwrite"), "--refine", str(sol)], "drop --overwrite"),
    ]:
        assert run_main(profile_cli, argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


@pytest.mark.slow
def test_validate_reports_placements_on_predicted_bundles_apart(tmp_path):
    full = tmp_path / "all.csv"
    fake_profile(full)
    kept = [r for r in rows(full) if r["start"] == r["end"] or (r["start"], r["end"]) == ("conv1", "tail")]
    part = tmp_path / "part.csv"
    with open(part, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(kept[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(kept)
    pred = tmp_path / "pred.csv"
    assert predict_main([str(part), "--out", str(pred), "--max-bundle", "4", "-q"]) == 0
    out = tmp_path / "v.csv"
    proc = subprocess.run([PY, "-m", "dime.validate", "--profile", str(pred), "--models", SKIPNET, "--cuts",
                           ",".join(SKIP_CUTS), "--links", "1000/1000", "--edge", "cpu", "--edge-settings", "threads=1",
                           "--cloud", "cpu", "--cloud-settings", "threads=1", "--input-shape", SMALL,
                           "--min-query-count", "2", "--warmup", "0", "--count", "1", "--reference-runs", "1",
                           "--splits", "conv1,tail", "--no-solver", "--out", str(out), "-q"],
                          capture_output=True, text=True, env=cli_env(), timeout=180)
    assert proc.returncode == 0, proc.stderr
    got = rows(out)
    by = {r["config"]: int(r["predicted_bundles"]) for r in got}
    assert by["split@conv1"] == 1  # conv2..tail in the cloud: predicted
    assert by["edge-only"] == 0  # the whole model: measured
    assert "Placements resting on predicted bundles (dime.predict):" in proc.stdout
