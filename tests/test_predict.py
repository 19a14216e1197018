"""Bundle-cost prediction (dime.profiling.predict, dime.predict): synthetic profiles made by known
laws (written to tmp_path; none is a measurement), the CLI's files and errors, and round trips of a
profile with predicted rows through dime.solve and dime.sweep."""

from __future__ import annotations

import csv
import json
import random
import subprocess
from pathlib import Path

import pytest
from clihelp import PY, assert_one_line_error, cli_env

from dime.cliargs import run_main
from dime.plan import build_model
from dime.plan.choose import DEFAULT_PROBES, HERE, PlanAwareChoice, probe_problems, probe_table
from dime.plan.solve import main as solve_main
from dime.profiling.predict import (
    BundleModel,
    UncertaintyChoice,
    base_bundles,
    budget_for,
    bundles_upto,
    choose_bundles,
    fit_frequency_law,
    longest_bundles,
)
from dime.profiling.predictcli import main as predict_main
from dime.profiling.predicted import measured_only, predict_profile
from dime.profiling.reader import load_profiles
from dime.profiling.schema import PROFILE_COLUMNS

HEADER = ["model", "device", "setting", "bundle", "start", "end", "in_bytes", "out_bytes", "iteration", "run",
          "latency_s", "energy_j", "setting_kind", "energy_source"]


class Law:
    """A chain whose bundle costs follow cost = layer sum + sum over inner cuts of
    (a + b * (c_j + c_j+1) + g * bytes at the cut): linear in the predictor's features."""

    def __init__(self, n: int, seed: int, a: float = -3e-4, b: float = -0.1, g: float = 2e-9, scale: float = 1.0):
        rng = random.Random(seed)
        self.n = n
        self.names = [f"l{i}" for i in range(n)]
        self.single = [scale * rng.uniform(2e-3, 5e-3) for _ in range(n)]
        self.cut_bytes = [rng.randrange(100_000, 1_000_000) for _ in range(n + 1)]
        self.a, self.b, self.g, self.scale = a * scale, b, g * scale, scale

    def cost(self, s: int, e: int) -> float:
        c = self.single
        return sum(c[s : e + 1]) + sum(self.a + self.b * (c[j] + c[j + 1]) + self.g * self.cut_bytes[j + 1]
                                       for j in range(s, e))

    def rows(self, bundles, setting: str = "threads=1", kind: str = "threads", model: str = "synth",
             device: str = "dev", energy: "Law | None" = None, watts: float | None = None) -> list[list[str]]:
        out = []
        for s, e in bundles:
            lat = self.cost(s, e)
            en, src = "", ""
            if energy is not None:
                en, src = repr(energy.cost(s, e)), "rapl"
            elif watts is not None:
                en, src = repr(watts * lat), f"assumed:{watts:g}"
            for it in range(2):  # two runs of the same value: their trimmed mean is the value
                out.append([model, device, setting, "+".join(self.names[s : e + 1]), self.names[s], self.names[e],
                            str(self.cut_bytes[s]), str(self.cut_bytes[e + 1]), str(it), "0", repr(lat), en, kind,
                            src])
        return out


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def read_dicts(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def chosen(law: Law, fraction: float, k: int | None = None) -> list[tuple[int, int]]:
    k = k or law.n
    return choose_bundles(law.single, law.cut_bytes, k, budget_for(fraction, law.n, k))


# ---- the predictor -----------------------------------------------------------------------
@pytest.mark.parametrize("n,fraction,k", [(12, 0.25, 12), (20, 0.25, 20), (15, 0.3, 6)])
def test_a_known_law_is_reproduced_exactly(tmp_path, n, fraction, k):
    law = Law(n, seed=n)
    measured = chosen(law, fraction, k)
    assert len(measured) == budget_for(fraction, n, k) <= fraction * len(bundles_upto(n, k)) + 1
    assert set((i, i) for i in range(n)) | set(longest_bundles(n, k)) <= set(measured)
    table = load_profiles(write_csv(tmp_path / "p.csv", law.rows(measured)))
    predicted = predict_profile(table, k)
    hidden = [b for b in bundles_upto(n, k) if b not in measured]
    assert sorted((s, e) for _, _, s, e in predicted.costs) == sorted(hidden)
    for (_, _, s, e), c in predicted.costs.items():
        assert c.latency_s == pytest.approx(law.cost(s, e), rel=1e-9, abs=1e-15)
        assert c.predicted and c.latency_sd_s is not None and c.latency_sd_s > 0


def test_the_pairwise_law_is_learned_from_pairs_and_longer_bundles():
    """Layer sums plus adjacent-pair interactions (the plain pairwise model's law), with every pair
    and the longest bundle from each layer measured: the longer bundles tell a start's factor from
    the pair's own term (pairs alone cannot), and only the priors' shrinkage is left."""
    rng = random.Random(3)
    n = 10
    single = [rng.uniform(1e-3, 4e-3) for _ in range(n)]
    inter = [rng.uniform(-4e-4, 4e-4) for _ in range(n - 1)]

    def cost(s, e):
        return sum(single[s : e + 1]) + sum(inter[s:e])

    measured = {(s, e): cost(s, e) for s, e in
                [(i, i) for i in range(n)] + [(i, i + 1) for i in range(n - 1)] + [(s, n - 1) for s in range(n - 2)]}
    fit = BundleModel(single, [1000] * (n + 1)).fit(measured)
    hidden = [b for b in bundles_upto(n, n) if b not in measured]
    errs = sorted(abs(fit.mean(s, e) - cost(s, e)) / cost(s, e) for s, e in hidden)
    layer_sum = sorted(abs(sum(single[s : e + 1]) - cost(s, e)) / cost(s, e) for s, e in hidden)
    assert errs[-1] < 0.005 and errs[len(errs) // 2] < layer_sum[len(layer_sum) // 2] / 10


def test_energy_by_its_own_law_and_by_an_assumed_power(tmp_path):
    law = Law(10, seed=1)
    energy = Law(10, seed=2, a=-1e-3, b=-0.05, g=5e-9, scale=3.0)
    energy.cut_bytes = law.cut_bytes  # one chain: the same bytes at every cut
    measured = chosen(law, 0.3)
    metered = load_profiles(write_csv(tmp_path / "m.csv", law.rows(measured, energy=energy)))
    for (_, _, s, e), c in predict_profile(metered, 10).costs.items():
        assert c.energy_j == pytest.approx(energy.cost(s, e), rel=1e-9)
        assert c.energy_origin == "predicted" and c.energy_source == "rapl" and c.energy_sd_j > 0
    assumed = load_profiles(write_csv(tmp_path / "a.csv", law.rows(measured, watts=4.5)))
    for (_, _, s, e), c in predict_profile(assumed, 10).costs.items():
        assert c.energy_j == pytest.approx(4.5 * c.latency_s, rel=1e-12)
        assert c.energy_source == "assumed:4.5" and c.energy_sd_j == pytest.approx(4.5 * c.latency_sd_s)


def test_the_uncertainty_follows_the_held_out_residuals():
    """Noise of 3 % on every measurement: the sd is rescaled from the prior's 1 % towards it."""
    law = Law(20, seed=5)
    rng = random.Random(9)
    measured = chosen(law, 0.3)
    noisy = {b: law.cost(*b) * (1 + rng.gauss(0, 0.03)) for b in measured}
    fit = BundleModel([noisy[(i, i)] for i in range(20)], law.cut_bytes).fit(noisy)
    quiet = BundleModel(law.single, law.cut_bytes).fit({b: law.cost(*b) for b in measured})
    assert fit.sd_scale > 2 and quiet.sd_scale < 1
    assert fit.sd(0, 5) > quiet.sd(0, 5)


def test_frequency_law_predicts_an_unmeasured_frequency(tmp_path):
    """t(f) = a + b / f per bundle (synthetic; untested on hardware): three frequencies measured
    (every bundle, or a quarter and predicted), one with a few bundles only, one with no rows at all."""
    law = Law(8, seed=4)
    freqs = [600e6, 900e6, 1200e6, 1500e6, 1800e6]

    def at(f):
        fixed = Law(8, seed=4, scale=0.2)  # the part that does not scale with the clock
        return lambda s, e: fixed.cost(s, e) + law.cost(s, e) * 1e9 / f

    rows = []
    for f in freqs[:3]:
        sub = Law(8, seed=4)
        sub.cost = at(f)  # type: ignore[method-assign]
        sub.single = [at(f)(i, i) for i in range(8)]
        rows += sub.rows(bundles_upto(8, 8), setting=f"{f:.0f}", kind="freq_hz")
    few = Law(8, seed=4)
    few.cost = at(freqs[3])  # type: ignore[method-assign]
    rows += few.rows([(0, 0), (1, 1)], setting=f"{freqs[3]:.0f}", kind="freq_hz")
    table = load_profiles(write_csv(tmp_path / "f.csv", rows))
    predicted = predict_profile(table, 8, extra_settings={"dev": [f"{freqs[4]:.0f}"]})
    for f in freqs[3:]:
        for s, e in bundles_upto(8, 8):
            key = ("dev", f"{f:.0f}", s, e)
            if key in table.costs:
                assert key not in predicted.costs  # measured rows are never replaced
                continue
            assert predicted.costs[key].latency_s == pytest.approx(at(f)(s, e), rel=1e-9)
    assert any("frequency law" in n and "untested on hardware" in n for n in predicted.notes)
    law_fit = fit_frequency_law(freqs[:3], [at(f)(0, 3) for f in freqs[:3]])
    assert law_fit.resid_sd == pytest.approx(0.0, abs=1e-15)


# ---- what --measure measures: the plan-aware choice --------------------------------------
def _cheapest_partition(n: int, cost) -> set[tuple[int, int]]:
    """The bundles of the cheapest partition of the chain (the device alone, --bundle-sum), by
    a plain shortest path over cuts (independent of dime.plan)."""
    best = [0.0] + [float("inf")] * n
    back = [0] * (n + 1)
    for e in range(1, n + 1):
        for s in range(e):
            if best[s] + cost(s, e - 1) < best[e]:
                best[e], back[e] = best[s] + cost(s, e - 1), s
    out, e = set(), n
    while e:
        out.add((back[e], e - 1))
        e = back[e]
    return out


@pytest.mark.parametrize("seed", [1, pytest.param(3, marks=pytest.mark.slow), pytest.param(5, marks=pytest.mark.slow)])
def test_the_plan_aware_choice_measures_what_optimal_plans_rest_on(seed):
    """A chain made by a known law whose cuts save or cost (bytes against the pair's time), so that
    optimal plans use multi-layer bundles that the base set lacks. With 30 % measured, the
    plan-aware choice holds every bundle of this device in the optimal plan (on the law's true
    costs) of the device alone under --bundle-sum and of every stand-in problem; the plan-blind
    choice of as many bundles misses some."""
    n = 12
    law = Law(n, seed=seed)
    budget = budget_for(0.3, n, n)
    asked: list[tuple[int, int]] = []
    yielded: set[tuple[int, int]] = set()

    def value(b):
        assert b in yielded  # a round depends on the values of earlier rounds only
        asked.append(b)
        return law.cost(*b)

    rounds = []
    for r in PlanAwareChoice()(n, n, law.cut_bytes, budget, value):
        rounds.append(r)
        yielded.update(r)
    measured = [b for r in rounds for b in r]
    assert len(measured) == len(set(measured)) == budget
    assert set(base_bundles(n, n)) == set(rounds[0]) and all(len(r) == 1 for r in rounds[1:-1])
    replay = [r for r in PlanAwareChoice()(n, n, law.cut_bytes, budget, lambda b: law.cost(*b))]
    assert replay == rounds  # deterministic: a resumed profile measures the same set

    alone = _cheapest_partition(n, law.cost)
    assert any(e > s for s, e in alone - set(base_bundles(n, n)))  # the optimum needs more than the base
    truth = {b: law.cost(*b) for b in bundles_upto(n, n)}
    table = probe_table(BundleModel(law.single, law.cut_bytes).fit(truth), truth, n, n, law.cut_bytes, DEFAULT_PROBES)
    used = set(alone)
    for problem in probe_problems(table, n, DEFAULT_PROBES):
        sol = build_model(problem).solve("auto")
        used |= {(a.start, a.end) for a in sol.placement if problem.roles[a.role].device == HERE}
    assert used <= set(measured)
    blind = {b for r in UncertaintyChoice()(n, n, law.cut_bytes, budget, lambda b: law.cost(*b)) for b in r}
    assert len(blind) == budget and not used <= blind


def test_the_plan_aware_choice_with_bundles_shorter_than_the_model():
    """K < L: the base holds the longest bundles at both ends, every round bundles of at most K
    layers, and the budget is spent exactly, each bundle once."""
    n, k = 12, 4
    law = Law(n, seed=2)
    budget = budget_for(0.4, n, k)
    got = [b for r in PlanAwareChoice()(n, k, law.cut_bytes, budget, lambda b: law.cost(*b)) for b in r]
    assert len(got) == len(set(got)) == budget
    assert set(longest_bundles(n, k)) <= set(got) and all(e - s < k for s, e in got)


# ---- dime.predict ------------------------------------------------------------------------
def _partial(tmp_path: Path, n: int = 10, fraction: float = 0.3, settings=("threads=1", "threads=2")) -> tuple[Law, Path]:
    law = Law(n, seed=7)
    rows = []
    for t in settings:
        rows += law.rows(chosen(law, fraction), setting=t)
    return law, write_csv(tmp_path / "part.csv", rows)


def _run(argv, capsys) -> tuple[int, str, str]:
    code = run_main(predict_main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_fills_every_bundle_and_keeps_the_measured_rows(tmp_path, capsys):
    law, part = _partial(tmp_path)
    (tmp_path / "part.csv.meta.json").write_text(json.dumps({"model": "synth", "device": "dev", "max_bundle": 10}))
    full = tmp_path / "full.csv"
    code, out, err = _run([str(part), "--out", str(full)], capsys)
    assert code == 0, err
    assert "measured" in out and "predicted" in out
    before, after = read_dicts(part), read_dicts(full)
    assert list(after[0]) == list(PROFILE_COLUMNS)
    measured = [r for r in after if r["latency_source"] == "measured"]
    assert len(measured) == len(before)
    for old, new in zip(before, measured):  # every value as it was, in the same order
        assert {k: new[k] for k in old} == old
    guessed = [r for r in after if r["latency_source"] == "predicted"]
    assert len(guessed) == 2 * (len(bundles_upto(10, 10)) - budget_for(0.3, 10, 10))
    for r in guessed:
        s, e = law.names.index(r["start"]), law.names.index(r["end"])
        assert float(r["latency_s"]) == pytest.approx(law.cost(s, e), rel=1e-8)
        assert float(r["latency_sd_s"]) > 0 and r["iteration"] == "0" and r["energy_j"] == ""
    table = load_profiles(full)
    assert table.max_bundle("dev", "threads=1") == 10
    meta = json.loads((tmp_path / "full.csv.meta.json").read_text())
    assert meta["device"] == "dev" and meta["prediction"]["version"] == 1
    assert meta["prediction"]["fitted_on"][0] == str(part)
    assert {s["setting"] for s in meta["prediction"]["settings"]} == {"threads=1", "threads=2"}
    # from the filled-in file: its predicted rows are predicted again, the same way
    code, _, err = _run([str(full), "--out", str(tmp_path / "again.csv"), "-q"], capsys)
    assert code == 0, err
    assert read_dicts(tmp_path / "again.csv") == after
    # a file that measured every bundle: a no-op with a note, nothing written
    everything = write_csv(tmp_path / "all.csv", law.rows(bundles_upto(10, 10)))
    code, out, err = _run([str(everything), "--out", str(tmp_path / "none.csv")], capsys)
    assert code == 0 and out.count("\n") == 1 and "nothing to predict" in out
    assert not (tmp_path / "none.csv").exists()
    # --max-bundle: only bundles of up to K layers are filled in
    code, _, err = _run([str(part), "--out", str(tmp_path / "k3.csv"), "--max-bundle", "3"], capsys)
    assert code == 0, err
    k3 = load_profiles(tmp_path / "k3.csv")
    assert k3.max_bundle("dev", "threads=2") >= 3
    assert all(e - s < 3 for (_, _, s, e), c in k3.costs.items() if c.predicted)


def _inconsistent(tmp_path: Path) -> Path:
    law = Law(6, seed=1)
    rows = law.rows(chosen(law, 0.5))
    rows[-1][3] = "l0+l2"  # a bundle that puts l2 right after l0
    rows[-1][4], rows[-1][5] = "l0", "l2"
    rows[-2][3], rows[-2][4], rows[-2][5] = rows[-1][3], "l0", "l2"
    return write_csv(tmp_path / "bad.csv", rows)


@pytest.mark.parametrize("case,needle", [
    ("singles only", "at least one must be"),
    ("a single missing", "single layers are not measured"),
    ("several models", "several models"),
    ("inconsistent layers", "inconsistent layer order"),
    ("missing file", "not found"),
    ("max bundle 0", "--max-bundle"),
    ("not a profile", "not a profile CSV"),
])
def test_bad_input_is_one_line_and_leaves_the_output_untouched(tmp_path, capsys, case, needle):
    law = Law(6, seed=1)
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    argv = [str(tmp_path / "x.csv"), "--out", str(out)]
    if case == "singles only":
        write_csv(tmp_path / "x.csv", law.rows([(i, i) for i in range(6)]))
        argv += ["--max-bundle", "6"]
    elif case == "a single missing":
        write_csv(tmp_path / "x.csv", law.rows([b for b in bundles_upto(6, 6) if b != (2, 2)][:12]))
    elif case == "several models":
        write_csv(tmp_path / "x.csv", law.rows(chosen(law, 0.5)) + law.rows(chosen(law, 0.5), model="other"))
    elif case == "inconsistent layers":
        argv[0] = str(_inconsistent(tmp_path))
    elif case == "max bundle 0":
        write_csv(tmp_path / "x.csv", law.rows(chosen(law, 0.5)))
        argv += ["--max-bundle", "0"]
    elif case == "not a profile":
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    code, _, err = _run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert out.read_text() == "precious\n" and not (tmp_path / "out.csv.meta.json").exists()


@pytest.mark.slow
def test_python_m_dime_predict_and_dime_predict(tmp_path):
    _, part = _partial(tmp_path, settings=("threads=1",))
    out = tmp_path / "full.csv"
    p = subprocess.run([PY, "-m", "dime.predict", str(part), "--out", str(out), "-q"], capture_output=True, text=True,
                       env=cli_env())
    assert p.returncode == 0, p.stderr
    assert load_profiles(out).max_bundle("dev", "threads=1") == 10
    p = subprocess.run([PY, "-m", "dime.cli", "predict", str(part)], capture_output=True, text=True, env=cli_env())
    assert_one_line_error(p)
    assert "--out" in p.stderr


# ---- profiles with predicted rows in the rest of dime ----------------------------------------
def test_the_reader_prefers_measured_rows_and_old_files_stay_valid(tmp_path):
    law, part = _partial(tmp_path, settings=("threads=1",))
    assert predict_main([str(part), "--out", str(tmp_path / "full.csv"), "-q"]) == 0
    full = load_profiles(tmp_path / "full.csv")
    old = load_profiles(part)  # no prediction columns at all
    assert all(not c.predicted and c.latency_sd_s is None for c in old.costs.values())
    # the full profile given beside every bundle measured: the measured rows win
    everything = write_csv(tmp_path / "all.csv", law.rows(bundles_upto(10, 10)))
    both = load_profiles([tmp_path / "full.csv", everything])
    assert not any(c.predicted for c in both.costs.values())
    assert sum(c.predicted for c in full.costs.values()) == len(bundles_upto(10, 10)) - len(old.costs)
    assert measured_only(full).costs.keys() == old.costs.keys()


def test_solve_reports_predicted_bundles_in_its_text_and_json(tmp_path, capsys):
    _, part = _partial(tmp_path)
    full = tmp_path / "full.csv"
    assert predict_main([str(part), "--out", str(full), "-q"]) == 0
    sol = tmp_path / "sol.json"
    code = run_main(solve_main, [str(full), "--edge", "dev", "--edge-settings", "threads=1", "--cloud", "dev",
                                 "--cloud-settings", "threads=2", "--link", "300/300/1", "--max-bundle", "3",
                                 "--json", str(sol), "-q"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(sol.read_text())
    table = load_profiles(full)
    flags = [p["latency_source"] for p in data["placement"]]
    for p in data["placement"]:
        s, e = table.layer_names.index(p["start"]), table.layer_names.index(p["end"])
        c = table.costs[(p["device"], p["setting"], s, e)]
        assert p["latency_source"] == c.latency_source and p["latency_sd_s"] == c.latency_sd_s
    assert data["predicted_bundles"] == flags.count("predicted")
    assert f"predicted: {flags.count('predicted')} of the {len(flags)} chosen bundles" in out
    assert data["solve_args"][0] == str(full)


def test_sweep_runs_on_a_profile_with_predicted_rows(tmp_path):
    from dime.sweep import cli as sweep_cli
    from dime.sweep import read_rows

    _, part = _partial(tmp_path, n=6, fraction=0.5)
    full = tmp_path / "full.csv"
    assert predict_main([str(part), "--out", str(full), "-q"]) == 0
    out = tmp_path / "sweep.csv"
    assert run_main(sweep_cli.main, [str(full), "--edge", "dev", "--edge-settings", "threads=1", "--cloud", "dev",
                                     "--cloud-settings", "threads=2", "--links", "4g", "--points", "3",
                                     "--assume-edge-power", "5", "--out", str(out), "-q", "-q"]) == 0
    assert read_rows(out)
