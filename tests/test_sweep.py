"""Budget sweeps, baselines and Pareto fronts (dime.sweep) on synthetic profiles.

Every profile here is synthetic (random costs from tests/instances.py, host "synthetic"),
written to tmp_path; none is a measurement.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import random
import subprocess
from pathlib import Path

import pytest
from clihelp import PY, ROOT, assert_one_line_error, cli_env
from instances import random_table, write_profile_csv

from dime import sweep
from dime.cliargs import run_main
from dime.core.costs import CLOUD, EDGE, Assignment, Role, evaluate
from dime.core.links import LINK_PRESETS
from dime.core.placement import parse_placement
from dime.errors import UsageError
from dime.plan import PlacementProblem
from dime.plan.bruteforce import brute_force
from dime.profiling.reader import load_profiles
from dime.sweep import (
    BASELINE,
    CELL_FAILED,
    ENERGY_SWEEP,
    EXIT_CELLS_FAILED,
    LATENCY_SWEEP,
    CellSpec,
    SweepRow,
    assume_edge_power,
    merge_bundles,
    read_rows,
    run_grid,
    sweep_cell,
)
from dime.sweep import cell as sweep_cell_module
from dime.sweep import cli as sweep_cli

REL = 1e-9
DEVICES = {"edgedev": ["e0", "e1"], "clouddev": ["c0"]}
ROLES = (Role("edgedev", ("e0", "e1")), Role("clouddev", ("c0",)))


def synthetic_table(seed: int, n: int = 5, energy: bool = True, model: str = "synthetic"):
    return random_table(random.Random(seed), n, DEVICES, ["edgedev"] if energy else [], 1e-2, model=model)


def close(a: float | None, b: float | None, rel: float = REL) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def cli(tmp_path: Path, *args: str, profiles: list[Path] | None = None) -> tuple[int, list[SweepRow], Path]:
    """Run `python -m dime.sweep` in-process; returns (exit code, rows, csv path)."""
    out = tmp_path / "out" / "sweep.csv"
    argv = [*(str(p) for p in profiles or []), "--edge", "edgedev", "--cloud", "clouddev",
            "--out", str(out), "-q", *args]
    code = run_main(sweep_cli.main, argv)
    return code, (read_rows(out) if out.exists() else []), out


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A CLI sweep over two synthetic models and the three links, with the profiles it read."""
    d = tmp_path_factory.mktemp("grid")
    paths = [write_profile_csv(d / f"synthetic{s}.csv", synthetic_table(s, n, model=f"synthetic{s}"))
             for s, n in ((3, 5), (8, 6))]
    code, rows, _ = cli(d, "--points", "7", "--plot", str(d / "out" / "sweep.png"), profiles=paths)
    assert code == 0
    tables = {f"synthetic{s}": load_profiles(p) for s, p in zip((3, 8), paths)}
    return rows, tables, d


def cells_of(rows):
    out: dict[tuple[str, str], list[SweepRow]] = {}
    for r in rows:
        out.setdefault((r.model, r.link), []).append(r)
    return out


# -- the grid as written by the CLI -----------------------------------------------------------


def test_grid_shape(grid):
    rows, tables, d = grid
    cells = cells_of(rows)
    assert set(cells) == {(m, l) for m in tables for l in ("3g", "4g", "wifi")}
    for (model, link), cell in cells.items():
        for kind in (ENERGY_SWEEP, LATENCY_SWEEP):
            pts = [r for r in cell if r.sweep == kind]
            assert [r.point for r in pts] == list(range(7))
            assert all(r.status == "optimal" and not r.error for r in pts), pts
        names = {r.sweep for r in cell if r.sweep.startswith(BASELINE)}
        assert names == {BASELINE + b for b in sweep.BASELINES}
        assert sum(r.sweep == BASELINE + sweep.ALL_EDGE for r in cell) == 2  # one per edge setting
        assert all(r.energy_source == "synthetic" for r in cell)
        assert all(r.max_bundle == tables[model].n_layers for r in cell)
    png = d / "out" / "sweep.png"
    assert png.exists() and png.stat().st_size > 10_000
    assert not (d / "out" / ".sweep.csv.partial").exists()  # cleaned up once the CSV is written


def test_every_row_is_its_placement_reevaluated(grid):
    rows, tables, _ = grid
    for r in rows:
        table = tables[r.model]
        placement = parse_placement(table.layer_names, r.placement)
        ev = evaluate(table, ROLES, LINK_PRESETS[r.link], placement)
        for field in ("latency_s", "compute_latency_s", "comm_latency_s", "energy_j", "compute_energy_j",
                      "comm_energy_j"):
            assert close(getattr(r, field), getattr(ev, field)), (r, field, ev)
        if r.sweep.removeprefix(BASELINE) in sweep.LAYER_SUM_BASELINES:
            assert all(a.start == a.end for a in placement)
            real = evaluate(table, ROLES, LINK_PRESETS[r.link], merge_bundles(table, ROLES, placement, r.max_bundle))
        else:
            real = ev
        assert close(r.bundle_latency_s, real.latency_s) and close(r.bundle_energy_j, real.energy_j), r
        assert r.edge_layers == sum(a.end - a.start + 1 for a in placement if a.role == EDGE)
        assert r.edge_layers + r.cloud_layers == table.n_layers
        assert all(a.end - a.start + 1 <= r.max_bundle for a in placement)


def test_monotone_and_within_budget(grid):
    rows, _, _ = grid
    for cell in cells_of(rows).values():
        en = sorted((r for r in cell if r.sweep == ENERGY_SWEEP), key=lambda r: r.point)
        assert all(b.max_energy_j >= a.max_energy_j for a, b in zip(en, en[1:]))
        assert all(b.latency_s <= a.latency_s * (1 + REL) for a, b in zip(en, en[1:])), en
        assert all(r.energy_j <= r.max_energy_j * (1 + REL) + 1e-12 for r in en)
        lat = sorted((r for r in cell if r.sweep == LATENCY_SWEEP), key=lambda r: r.point)
        assert all(b.max_latency_s >= a.max_latency_s for a, b in zip(lat, lat[1:]))
        assert all(b.energy_j <= a.energy_j * (1 + REL) + 1e-12 for a, b in zip(lat, lat[1:])), lat
        assert all(r.latency_s <= r.max_latency_s * (1 + REL) for r in lat)
        assert all(r.budget == r.max_energy_j for r in en) and all(r.budget == r.max_latency_s for r in lat)
        # the two sweeps span the same front: same ends
        assert close(en[-1].latency_s, lat[0].latency_s) and close(en[-1].energy_j, lat[0].energy_j)
        assert close(en[0].latency_s, lat[-1].latency_s) and close(en[0].energy_j, lat[-1].energy_j)


def test_baselines_never_beat_the_optimum(grid):
    rows, _, _ = grid
    for cell in cells_of(rows).values():
        l_min = min(r.latency_s for r in cell if r.sweep == LATENCY_SWEEP)
        e_min = min(r.energy_j for r in cell if r.sweep == ENERGY_SWEEP)
        for r in cell:
            if not r.sweep.startswith(BASELINE):
                continue
            # every baseline placement (layer-wise or merged) is one the ILP could choose
            assert r.latency_s >= l_min * (1 - REL) and r.bundle_latency_s >= l_min * (1 - REL), r
            assert r.energy_j >= e_min * (1 - REL) - 1e-12 and r.bundle_energy_j >= e_min * (1 - REL) - 1e-12, r


def test_pareto_flags(grid):
    rows, _, _ = grid
    for cell in cells_of(rows).values():
        for kind in (ENERGY_SWEEP, LATENCY_SWEEP):
            pts = [r for r in cell if r.sweep == kind]
            for r in pts:
                dominated = any(o.latency_s <= r.latency_s and o.energy_j <= r.energy_j
                                and (o.latency_s < r.latency_s or o.energy_j < r.energy_j) for o in pts)
                assert r.pareto == (not dominated)
        assert not any(r.pareto for r in cell if r.sweep.startswith(BASELINE))


# -- against brute force ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 5, 13])
def test_sweep_points_match_brute_force(seed):
    rng = random.Random(seed)
    n = rng.randint(3, 6)
    table = synthetic_table(seed, n)
    link = LINK_PRESETS[rng.choice(["3g", "4g", "wifi"])]
    k = rng.randint(1, n)
    res = sweep_cell(CellSpec(table=table, roles=ROLES, link=link, max_bundle=k, points=5, energy_source="synthetic"))
    base = PlacementProblem(table=table, roles=ROLES, link=link, max_bundle=k)
    for r in res.rows:
        if r.sweep == ENERGY_SWEEP:
            problem = dataclasses.replace(base, objective="latency", max_energy_j=r.max_energy_j)
            ref = brute_force(problem)
            assert ref is not None and close(r.latency_s, ref[0], 1e-7), (r, ref)
        elif r.sweep == LATENCY_SWEEP:
            problem = dataclasses.replace(base, objective="energy", max_latency_s=r.max_latency_s)
            ref = brute_force(problem)
            assert ref is not None and close(r.energy_j, ref[0], 1e-7), (r, ref)
        elif r.sweep == BASELINE + sweep.LAYERWISE:
            ref = brute_force(dataclasses.replace(base, max_bundle=1))
            assert close(r.latency_s, ref[0], 1e-7)
    # the energy sweep starts at the least energy of all, the latency sweep at the least latency
    least_e = brute_force(dataclasses.replace(base, objective="energy"))[0]
    least_l = brute_force(base)[0]
    assert close(min(r.max_energy_j for r in res.rows if r.sweep == ENERGY_SWEEP), max(least_e, 1e-12), 1e-7)
    assert close(min(r.max_latency_s for r in res.rows if r.sweep == LATENCY_SWEEP), least_l, 1e-7)


def test_neurosurgeon_is_best_single_split():
    table = synthetic_table(21, 5)
    link = LINK_PRESETS["wifi"]
    spec = CellSpec(table=table, roles=ROLES, link=link, max_bundle=5)
    row = next(r for r in sweep.baselines(spec) if r.sweep == BASELINE + sweep.NEUROSURGEON)
    best = min(
        evaluate(table, ROLES, link, sweep.per_layer(5, [(EDGE, te)] * cut + [(CLOUD, "c0")] * (5 - cut))).latency_s
        for cut in range(6) for te in ("e0", "e1")
    )
    assert close(row.latency_s, best)
    placement = parse_placement(table.layer_names, row.placement)
    roles_seq = [a.role for a in placement]
    assert roles_seq == sorted(roles_seq)  # edge first, then cloud: one split


def test_zero_energy_optimum_is_swept():
    """All-cloud costs no edge energy when nothing crosses the link: budgets start just above 0."""
    table = synthetic_table(4, 4)
    table = dataclasses.replace(table, cut_bytes=(0,) + table.cut_bytes[1:-1] + (0,))
    res = sweep_cell(CellSpec(table=table, roles=ROLES, link=LINK_PRESETS["4g"], max_bundle=2, points=4))
    en = [r for r in res.rows if r.sweep == ENERGY_SWEEP]
    assert en[0].energy_j == 0.0 and en[0].max_energy_j > 0
    assert all(r.status == "optimal" for r in en)


# -- placements as text, merging ---------------------------------------------------------------


def test_merge_bundles_takes_longest_profiled():
    table = synthetic_table(0, 6)
    del table.costs[("edgedev", "e0", 0, 2)]  # not profiled: the merge must not use it
    layers = sweep.per_layer(6, [(EDGE, "e0")] * 4 + [(CLOUD, "c0")] * 2)
    assert merge_bundles(table, ROLES, layers, 3) == [
        Assignment(0, 1, EDGE, "e0"), Assignment(2, 3, EDGE, "e0"), Assignment(4, 5, CLOUD, "c0")]
    assert merge_bundles(table, ROLES, layers, 1) == layers


# -- assumed energy ---------------------------------------------------------------------------


def test_assume_edge_power_fills_and_labels():
    table = synthetic_table(2, 4, energy=False)
    filled, label = assume_edge_power(table, ROLES[EDGE], [2.0, 5.0])
    assert label == "assumed:2@e0,5@e1"
    for (dev, setting, s, e), c in filled.costs.items():
        if dev == "edgedev":
            w = 2.0 if setting == "e0" else 5.0
            assert c.energy_j == pytest.approx(w * c.latency_s) and c.energy_source == f"assumed:{w:g}"
        else:
            assert c.energy_j is None
    assert all(c.energy_j is None for c in table.costs.values())  # the original is untouched
    _, label = assume_edge_power(table, ROLES[EDGE], [3.0])
    assert label == "assumed:3"
    with pytest.raises(UsageError, match="one per edge setting"):
        assume_edge_power(table, ROLES[EDGE], [1.0, 2.0, 3.0])
    with pytest.raises(UsageError, match="already have edge energy"):
        assume_edge_power(synthetic_table(2, 4), ROLES[EDGE], [3.0])


def test_cli_assumed_energy(tmp_path):
    prof = write_profile_csv(tmp_path / "synthetic.csv", synthetic_table(6, 4, energy=False))
    code, rows, _ = cli(tmp_path, "--assume-edge-power", "4", "--links", "wifi", "--points", "3",
                        "--plot", str(tmp_path / "out" / "p.png"), profiles=[prof])
    assert code == 0
    assert rows and all(r.energy_source == "assumed:4" for r in rows)
    table, _ = assume_edge_power(load_profiles(prof), ROLES[EDGE], [4.0])
    for r in rows:
        ev = evaluate(table, ROLES, LINK_PRESETS["wifi"], parse_placement(table.layer_names, r.placement))
        assert close(r.energy_j, ev.energy_j)
    assert sweep.energy_note(["assumed:4"]).startswith("edge energy ASSUMED")


# -- failures ---------------------------------------------------------------------------------


def test_failed_cell_is_recorded_and_the_rest_completes():
    good = CellSpec(table=synthetic_table(1, 4), roles=ROLES, link=LINK_PRESETS["4g"], max_bundle=4, points=3)
    broken_table = synthetic_table(1, 4)
    del broken_table.costs[("clouddev", "c0", 1, 3)]
    bad = dataclasses.replace(good, table=broken_table)
    results = run_grid([bad, good], progress=False)
    assert results[0].failed and len(results[0].rows) == 1
    row = results[0].rows[0]
    assert row.sweep == CELL_FAILED and row.status == "error" and "no profile for bundle" in row.error
    assert not results[1].failed and len(results[1].rows) > 6


@pytest.mark.parametrize("jobs", [1, 2])
def test_cli_failed_cell(tmp_path, monkeypatch, jobs):
    if jobs > 1 and multiprocessing.get_start_method() != "fork":
        pytest.skip("the patched function reaches worker processes only when they are forked")
    real = sweep.sweep_cell

    def flaky(spec):
        if spec.link.name == "3g":
            raise RuntimeError("solver exploded")
        return real(spec)

    monkeypatch.setattr(sweep_cell_module, "sweep_cell", flaky)  # workers are forked: they see it too
    prof = write_profile_csv(tmp_path / "synthetic.csv", synthetic_table(9, 4))
    code, rows, _ = cli(tmp_path, "--points", "3", "--jobs", str(jobs), profiles=[prof])
    assert code == EXIT_CELLS_FAILED
    failed = [r for r in rows if r.sweep == CELL_FAILED]
    assert len(failed) == 1 and failed[0].link == "3g" and failed[0].error == "RuntimeError: solver exploded"
    assert {r.link for r in rows if r.sweep == ENERGY_SWEEP} == {"4g", "wifi"}


def test_interrupted_grid_keeps_cells_and_resumes(tmp_path, monkeypatch):
    prof = write_profile_csv(tmp_path / "synthetic.csv", synthetic_table(10, 4))
    real = sweep.sweep_cell
    calls: list[str] = []

    def interrupt_on_wifi(spec):
        calls.append(spec.link.name)
        if spec.link.name == "wifi":
            raise KeyboardInterrupt
        return real(spec)

    monkeypatch.setattr(sweep_cell_module, "sweep_cell", interrupt_on_wifi)
    code, rows, out = cli(tmp_path, "--points", "3", profiles=[prof])
    assert code == 130 and not out.exists()  # no half-written CSV
    partial = out.parent / ".sweep.csv.partial"
    assert len(list(partial.glob("*.csv"))) == 2
    calls.clear()
    monkeypatch.setattr(sweep_cell_module, "sweep_cell", lambda spec: (calls.append(spec.link.name), real(spec))[1])
    code, rows, out = cli(tmp_path, "--points", "3", "--resume", profiles=[prof])
    assert code == 0 and calls == ["wifi"]
    assert [r.link for r in rows if r.sweep == ENERGY_SWEEP] == ["3g"] * 3 + ["4g"] * 3 + ["wifi"] * 3
    assert not partial.exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _, again, _ = cli(fresh, "--points", "3", profiles=[prof])
    strip = lambda rs: [dataclasses.replace(r, solve_time_s=None, solver="") for r in rs]  # noqa: E731
    assert strip(again) == strip(rows)


def _err(capsys) -> str:
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give one or more profile files"),
        (["{prof}"], "--out CSV is required"),
        (["{prof}", "--out", "{out}"], "--edge DEV is required"),
        (["{missing}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev"], "profile file not found"),
        (["{prof}", "--out", "{out}", "--edge", "nope", "--cloud", "clouddev"], "unknown device 'nope'"),
        (["{prof}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev", "--links", "5g"], "unknown link '5g'"),
        (["{prof}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev", "--points", "0"], "must be >= 1"),
        (["{prof}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev", "--models", "vgg"], "no profiles of model 'vgg'"),
        (["{prof}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev", "--assume-edge-power", "x"],
         "not a number of watts"),
        (["{prof}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev", "--assume-edge-power", "1,2,3"],
         "one per edge setting"),
        (["{prof}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev", "--assume-edge-power", "-1"],
         "positive numbers of watts"),
        (["{prof}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev", "--edge-settings", "e7"],
         "no setting 'e7'"),
        (["{prof}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev", "--solver", "glpk"], "invalid choice"),
        (["{noenergy}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev"], "--assume-edge-power W"),
        (["{prof}", "--out", "{tmp}", "--edge", "edgedev", "--cloud", "clouddev"], "is a folder"),
        (["{prof}", "--out", "{out}", "--edge", "edgedev", "--cloud", "clouddev", "--plot", "{tmp}/p.xyz"],
         "unknown figure type 'xyz'"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    prof = write_profile_csv(tmp_path / "synthetic.csv", synthetic_table(1, 3))
    noenergy = write_profile_csv(tmp_path / "noenergy.csv", synthetic_table(1, 3, energy=False))
    subs = {"prof": str(prof), "noenergy": str(noenergy), "out": str(tmp_path / "o.csv"),
            "missing": str(tmp_path / "missing.csv"), "tmp": str(tmp_path)}
    code = run_main(sweep_cli.main, [a.format(**subs) for a in args])
    err = _err(capsys)
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "o.csv").exists()


def test_cli_subprocess_error_and_help(tmp_path):
    for cmd in ([PY, "-m", "dime.sweep"], [PY, "-m", "dime.cli", "sweep"]):
        proc = subprocess.run([*cmd, str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.csv"), "--edge", "a",
                               "--cloud", "b"], capture_output=True, text=True, env=cli_env(), cwd=tmp_path)
        assert_one_line_error(proc, 2)
        assert "profile file not found" in proc.stderr
    proc = subprocess.run([PY, "-m", "dime.sweep", "--help"], capture_output=True, text=True, env=cli_env(), cwd=ROOT)
    assert proc.returncode == 0 and "--assume-edge-power" in proc.stdout and "--jobs" in proc.stdout
