"""N-device sweeps (`dime.sweep --system`), link settings, `--bundle-sum` and the point-source seam.

Every profile here is synthetic (random or made-up costs, written to tmp_path); none is a
measurement. The oracle is brute force over placements (dime.plan.bruteforce).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from pathlib import Path

import pytest
from instances import random_table, write_profile_csv

from dime import sweep
from dime.cliargs import run_main
from dime.core.costs import BundleCost, CostTable, evaluate
from dime.core.links import LINK_PRESETS, Link
from dime.core.placement import parse_placement
from dime.errors import InfeasibleError
from dime.plan import PlacementProblem, Solution
from dime.plan.bruteforce import evaluated, optimum
from dime.plan.problem import budget_with_slack
from dime.plan.system import build_problem, load_system
from dime.sweep import BASELINE, ENERGY_SWEEP, LATENCY_SWEEP, CellSpec, SweepRow, read_rows
from dime.sweep import cell as sweep_cell_module
from dime.sweep import cli as sweep_cli
from dime.sweep.spec import CellSolver

REL = 1e-7
DEVICES = {"srcdev": ["s0", "s1"], "middev": ["m0"], "fardev": ["f0", "f1"]}
NAMES = {"a": "srcdev", "b": "middev", "c": "fardev"}
CUSTOM = Link("50up-20down-5ms", 50.0, 20.0, rtt_ms=5.0)  # what --links a-b=50/20/5 parses to


def write_system(d: Path, profile: Path, *, extra: str = "", energy_b: bool = True, name: str = "sys.toml") -> Path:
    """a (the source) -> b -> c in a line plus a direct a -> c link; a's and b's energy count."""
    text = f'source = "a"\n{extra}\n'
    for dev, prof_dev in NAMES.items():
        text += f'[[device]]\nname = "{dev}"\nprofiles = ["{profile.name}"]\nprofile_device = "{prof_dev}"\n'
        if dev == "b" and energy_b:
            text += "energy = true\n"
        text += "\n"
    text += ('[[link]]\nends = ["a", "b"]\npreset = "wifi"\n\n'
             '[[link]]\nends = ["b", "c"]\nup_mbps = 100\ndown_mbps = 100\nrtt_ms = 2\n\n'
             '[[link]]\nends = ["a", "c"]\npreset = "4g"\nrtt_ms = 30\n')
    path = d / name
    path.write_text(text)
    return path


def sweep_cli_run(out: Path, *args: str) -> tuple[int, list[SweepRow]]:
    code = run_main(sweep_cli.main, ["--out", str(out), "-q", *args])
    return code, (read_rows(out) if out.exists() else [])


def close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def cells_of(rows: list[SweepRow]) -> dict[tuple[str, str], list[SweepRow]]:
    out: dict[tuple[str, str], list[SweepRow]] = {}
    for r in rows:
        out.setdefault((r.model, r.link), []).append(r)
    return out


@pytest.fixture(scope="module")
def nd(tmp_path_factory):
    """A 3-device system swept over two rates of its a-b link (in two processes)."""
    d = tmp_path_factory.mktemp("nd")
    table = random_table(random.Random(7), 5, DEVICES, ["srcdev", "middev"], 1e-2)
    prof = write_profile_csv(d / "synthetic.csv", table)
    system = write_system(d, prof)
    code, rows = sweep_cli_run(d / "out" / "sweep.csv", "--system", str(system), "--links", "a-b=wifi,50/20/5",
                               "--points", "4", "--jobs", "2")
    assert code == 0
    problem = build_problem(load_system(system))
    net = problem.network
    networks = {
        "a-b=wifi": net,
        f"a-b={CUSTOM.name}": dataclasses.replace(net, links=(dataclasses.replace(net.links[0], link=CUSTOM),)
                                                  + net.links[1:]),
    }
    return rows, problem, networks, d


def _problem(problem: PlacementProblem, networks, link: str) -> PlacementProblem:
    return dataclasses.replace(problem, link=networks[link])


def test_rows_of_a_system_sweep(nd):
    rows, problem, networks, d = nd
    cells = cells_of(rows)
    assert set(cells) == {("synthetic", link) for link in networks}
    expected = Counter({"all-a": 2, "all-b": 1, "all-c": 2, "neurosurgeon": 2, "layerwise": 1,
                        "layerwise-energy": 1, "dime-a-fastest": 1, "dime-a-slowest": 1})
    for cell in cells.values():
        for kind in (ENERGY_SWEEP, LATENCY_SWEEP):
            pts = [r for r in cell if r.sweep == kind]
            assert [r.point for r in pts] == list(range(4))
            assert all(r.status == "optimal" and not r.error for r in pts), pts
        assert Counter(r.sweep.removeprefix(BASELINE) for r in cell if r.sweep.startswith(BASELINE)) == expected
        for r in cell:
            assert r.devices == "a=srcdev(s0,s1); b=middev(m0); c=fardev(f0,f1)"
            assert (r.edge, r.edge_settings, r.cloud, r.cloud_settings) == ("srcdev", "s0,s1", "", "")
            assert r.energy_of == "a,b" and r.energy_source == "a synthetic; b synthetic"
            assert r.bundle_sum is False and r.max_bundle == 5
        # the instance is not trivial: the front has several points, and some offload
        front = {(r.latency_s, r.energy_j) for r in cell if r.pareto}
        assert len(front) >= 3, front
    assert any(r.cloud_layers for r in rows if r.sweep in (ENERGY_SWEEP, LATENCY_SWEEP))


def test_plot_of_a_system_sweep(nd, tmp_path):
    rows, _, _, _ = nd
    sweep.plot_rows(rows, tmp_path / "nd.png", dpi=60)
    assert (tmp_path / "nd.png").stat().st_size > 10_000


def test_every_row_is_its_placement_reevaluated(nd):
    rows, problem, networks, _ = nd
    names = [r.name for r in problem.roles]
    table = problem.table
    for r in rows:
        if r.status not in ("optimal", "evaluated"):
            continue
        placement = parse_placement(table.layer_names, r.placement, names)
        ev = evaluate(table, problem.roles, networks[r.link], placement)
        for field in ("latency_s", "compute_latency_s", "comm_latency_s", "energy_j", "compute_energy_j",
                      "comm_energy_j"):
            assert close(getattr(r, field), getattr(ev, field)), (r, field, ev)
        name = r.sweep.removeprefix(BASELINE)
        if r.sweep.startswith(BASELINE) and sweep.is_layer_sum(name):
            assert all(a.start == a.end for a in placement)
            merged = sweep.merge_bundles(table, problem.roles, placement, r.max_bundle)
            real = evaluate(table, problem.roles, networks[r.link], merged)
        else:
            real = ev
        assert close(r.bundle_latency_s, real.latency_s) and close(r.bundle_energy_j, real.energy_j), r
        assert r.edge_layers == sum(a.end - a.start + 1 for a in placement if a.role == problem.source)
        assert r.edge_layers + r.cloud_layers == table.n_layers


def test_points_are_the_exact_optima_and_the_front_is_non_dominated(nd):
    rows, problem, networks, _ = nd
    for (_, link), cell in cells_of(rows).items():
        p = _problem(problem, networks, link)
        candidates = evaluated(p)
        for r in cell:
            if r.sweep == ENERGY_SWEEP:
                ref = optimum(dataclasses.replace(p, objective="latency", max_energy_j=r.max_energy_j), candidates)
                assert ref is not None and close(r.latency_s, ref[0], REL), (r, ref[0])
            elif r.sweep == LATENCY_SWEEP:
                ref = optimum(dataclasses.replace(p, objective="energy", max_latency_s=r.max_latency_s), candidates)
                assert ref is not None and close(r.energy_j, ref[0], REL), (r, ref[0])
        pts = [r for r in cell if r.sweep in (ENERGY_SWEEP, LATENCY_SWEEP)]
        front = [r for r in pts if r.pareto]

        def dominates(o: SweepRow, r: SweepRow) -> bool:
            return (o.latency_s <= r.latency_s and o.energy_j <= r.energy_j
                    and (o.latency_s < r.latency_s or o.energy_j < r.energy_j))

        assert not any(dominates(o, r) for r in front for o in front)
        assert all(any(o.latency_s <= r.latency_s and o.energy_j <= r.energy_j for o in front) for r in pts)
        # the ends of the front are the least latency and the least energy of all placements
        assert close(min(r.latency_s for r in front), min(ev.latency_s for _, ev in candidates), REL)
        assert close(min(r.energy_j for r in front), min(ev.energy_j for _, ev in candidates), REL)


def test_baselines_never_beat_the_optimum_at_their_budget(nd):
    rows, problem, networks, _ = nd
    compared = 0
    for (_, link), cell in cells_of(rows).items():
        energy_pts = [r for r in cell if r.sweep == ENERGY_SWEEP]
        latency_pts = [r for r in cell if r.sweep == LATENCY_SWEEP]
        for b in cell:
            if not b.sweep.startswith(BASELINE):
                continue
            assert b.status in ("optimal", "evaluated"), b  # this system has no constraint to break
            # where a baseline really lands: its decisions as bundles (all of them placements the ILP may choose)
            lat, en = b.bundle_latency_s, b.bundle_energy_j
            for r in energy_pts:
                if r.max_energy_j >= en:
                    assert r.latency_s <= lat * (1 + REL), (r, b)
                    compared += 1
            for r in latency_pts:
                if r.max_latency_s >= lat:
                    assert r.energy_j <= en * (1 + REL) + 1e-12, (r, b)
                    compared += 1
    assert compared > 20


def test_neurosurgeon_is_the_best_single_split_to_each_device(nd):
    rows, problem, networks, _ = nd
    table, roles = problem.table, problem.roles
    n = table.n_layers
    for (_, link), cell in cells_of(rows).items():
        splits = [r for r in cell if r.sweep == BASELINE + sweep.NEUROSURGEON]
        assert len(splits) == 2
        for target, r in zip((1, 2), splits):  # one row per other device, in the system's order
            placement = parse_placement(table.layer_names, r.placement, [x.name for x in roles])
            seq = [a.role for a in placement]
            assert seq == sorted(seq) and set(seq) <= {0, target}  # layers 0..k-1 on the source, the rest on target
            best = min(
                evaluate(table, roles, networks[link],
                         sweep.per_layer(n, [(0, ts)] * cut + [(target, td)] * (n - cut))).latency_s
                for cut in range(n + 1) for ts in roles[0].settings for td in roles[target].settings
            )
            assert close(r.latency_s, best)


# -- two devices are the special case -----------------------------------------------------------


def test_two_device_system_gives_the_flags_rows(tmp_path):
    devices = {"edgedev": ["e0", "e1"], "clouddev": ["c0"]}
    table = random_table(random.Random(3), 4, devices, ["edgedev"], 1e-2)
    prof = write_profile_csv(tmp_path / "synthetic.csv", table)
    (tmp_path / "two.toml").write_text(
        'source = "edge"\n[[device]]\nname = "edge"\nprofiles = ["synthetic.csv"]\nprofile_device = "edgedev"\n'
        '[[device]]\nname = "cloud"\nprofiles = ["synthetic.csv"]\nprofile_device = "clouddev"\n'
        '[[link]]\nends = ["edge", "cloud"]\npreset = "4g"\n')
    code, flags = sweep_cli_run(tmp_path / "flags.csv", str(prof), "--edge", "edgedev", "--cloud", "clouddev",
                                "--links", "4g", "--points", "3")
    assert code == 0
    code, system = sweep_cli_run(tmp_path / "system.csv", "--system", str(tmp_path / "two.toml"), "--points", "3")
    assert code == 0
    assert {r.link for r in flags} == {"4g"} and {r.link for r in system} == {sweep.AS_GIVEN}
    strip = lambda rs: [dataclasses.replace(r, link="", solve_time_s=None) for r in rs]  # noqa: E731
    assert strip(system) == strip(flags)
    assert flags[0].devices == "edge=edgedev(e0,e1); cloud=clouddev(c0)" and flags[0].cloud == "clouddev"


# -- bundle sums (DIME's semantics) ----------------------------------------------------------


def _merge_costly_table() -> CostTable:
    """A bundle of several layers costs 1.5 times its layers' sum: the merge rule forces such bundles
    on a device with one setting, bundle sums do not. The source is the fastest device."""
    names = tuple(f"l{i}" for i in range(4))
    per_layer = {"srcdev": 0.002, "middev": 0.004, "fardev": 0.003}
    costs = {}
    for dev, settings in DEVICES.items():
        for t in settings:
            for s in range(4):
                for e in range(s, 4):
                    lat = per_layer[dev] * (e - s + 1) * (1.5 if e > s else 1.0) * (1.2 if t.endswith("1") else 1.0)
                    energy = lat * 5.0 if dev in ("srcdev", "middev") else None
                    costs[(dev, t, s, e)] = BundleCost(lat, energy, "made-up" if energy else "", 3)
    return CostTable("madeup", names, (50_000, 20_000, 20_000, 10_000, 1_000),
                     {d: tuple(s) for d, s in DEVICES.items()}, costs)


def test_bundle_sum_sweeps_dimes_semantics(tmp_path):
    prof = write_profile_csv(tmp_path / "madeup.csv", _merge_costly_table())
    system = write_system(tmp_path, prof)
    by_file = write_system(tmp_path, prof, extra="[constraints]\nbundle_sum = true\n", name="sum.toml")
    runs = {}
    for label, args in (("merge", [str(system)]), ("flag", [str(system), "--bundle-sum"]),
                        ("file", [str(by_file)])):
        code, rows = sweep_cli_run(tmp_path / f"{label}.csv", "--system", *args, "--points", "2")
        assert code == 0
        runs[label] = rows
    assert all(r.bundle_sum is False for r in runs["merge"])
    assert all(r.bundle_sum is True for r in runs["flag"] + runs["file"])
    strip = lambda rs: [dataclasses.replace(r, solve_time_s=None) for r in rs]  # noqa: E731
    assert strip(runs["flag"]) == strip(runs["file"])
    problem = build_problem(load_system(system))
    fastest = {k: min(r.latency_s for r in rows if r.sweep == LATENCY_SWEEP) for k, rows in runs.items()}
    assert fastest["flag"] < fastest["merge"] * (1 - 1e-6)  # a different optimum
    for semantics, label in ((False, "merge"), (True, "flag")):
        p = dataclasses.replace(problem, bundle_sum=semantics)
        assert close(fastest[label], optimum(p, evaluated(p))[0], REL)


# -- where the points come from -----------------------------------------------------------------


class BruteFront:
    """The latency-energy front of all placements (dime.plan's Front API), by brute force."""

    def __init__(self, problem: PlacementProblem) -> None:
        best: dict[float, tuple[float, list, object]] = {}
        for placement, ev in evaluated(problem):
            if ev.latency_s not in best or ev.energy_j < best[ev.latency_s][0]:
                best[ev.latency_s] = (ev.energy_j, placement, ev)
        self.points: list[Solution] = []
        for lat in sorted(best):
            en, placement, ev = best[lat]
            if not self.points or en < self.points[-1].evaluation.energy_j:
                self.points.append(Solution("optimal", lat, "latency", ev, "bruteforce", 0.0, tuple(placement)))

    def min_latency(self, max_energy_j: float | None = None) -> Solution | None:
        ok = [s for s in self.points if max_energy_j is None or s.evaluation.energy_j <= budget_with_slack(max_energy_j)]
        return ok[0] if ok else None

    def min_energy(self, max_latency_s: float | None = None) -> Solution | None:
        ok = [s for s in self.points
              if max_latency_s is None or s.evaluation.latency_s <= budget_with_slack(max_latency_s)]
        return ok[-1] if ok else None


def test_points_read_off_a_front_give_the_same_rows(nd, monkeypatch):
    _, problem, networks, _ = nd
    spec = CellSpec.from_problem(_problem(problem, networks, "a-b=wifi"), "a-b=wifi", points=4)
    ilp_spec = dataclasses.replace(spec, solver="cbc")
    ilp_solver = CellSolver(ilp_spec)
    ilp = sweep.sweep_points(ilp_spec, ilp_solver)  # one ILP solve per budget
    assert {r.solver for r in ilp} == {"cbc"} and ilp_solver.count > len(ilp)
    dp_solver = CellSolver(spec)
    dp = sweep.sweep_points(spec, dp_solver)  # the default: one DP front for the whole cell
    assert {r.solver for r in dp} == {"dp"} and dp_solver.count == 1
    monkeypatch.setattr(sweep_cell_module, "point_source",
                        lambda spec, solve: sweep.FrontPoints(BruteFront(spec.problem)))
    brute = sweep.sweep_points(spec, CellSolver(spec))
    assert {r.solver for r in brute} == {"bruteforce"}
    for front in (dp, brute):
        assert [(r.sweep, r.point, r.pareto) for r in front] == [(r.sweep, r.point, r.pareto) for r in ilp]
        for a, b in zip(front, ilp):
            assert close(a.budget, b.budget, REL) and close(a.latency_s, b.latency_s, REL), (a, b)
            assert close(a.energy_j, b.energy_j, REL), (a, b)
    with pytest.raises(InfeasibleError, match="--max-energy"):
        sweep.FrontPoints(BruteFront(spec.problem)).best("latency", max_energy_j=1e-12)


# -- assumed power and errors ---------------------------------------------------------------------


def test_assumed_power_of_a_device(tmp_path):
    table = random_table(random.Random(11), 3, DEVICES, ["srcdev"], 1e-2)  # middev has no energy
    prof = write_profile_csv(tmp_path / "synthetic.csv", table)
    system = write_system(tmp_path, prof)
    code, rows = sweep_cli_run(tmp_path / "o.csv", "--system", str(system), "--assume-power", "b=2",
                               "--points", "2")
    assert code == 0 and rows
    assert {r.energy_source for r in rows} == {"a synthetic; b assumed:2"}
    problem = build_problem(load_system(system))
    assumed, _ = sweep.assume_power(problem.table, problem.roles, {"b": [2.0]})
    for r in rows:
        if r.placement:
            ev = evaluate(assumed, problem.roles, problem.network,
                          parse_placement(table.layer_names, r.placement, [x.name for x in problem.roles]))
            assert close(r.energy_j, ev.energy_j)
    note = sweep.energy_note(["a synthetic; b assumed:2"], "energy of a,b")
    assert note == "energy of a,b ASSUMED = W × latency (b 2 W), not measured; measured: a synthetic"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--links", "x-y=4g"], "has no link 'x-y'; its links: a-b, b-c, a-c"),
        (["--links", "b-a=4g"], "has no link 'b-a'"),
        (["--links", "4g"], "with --system give NAME=LIST"),
        (["--links", "a-b="], "give NAME=VALUE"),
        (["--links", "a-b=,"], "empty --links a-b list"),
        (["--links", "a-b=5g"], "unknown link '5g'"),
        (["--links", "a-b=0/10"], "uplink_mbps must be a positive number"),
        (["--links", "a-b=1/2/3/4"], "give a preset or UP/DOWN[/RTT]"),
        (["--links", "a-b=4g", "--links", "a-b=wifi"], "names a-b twice"),
        (["--edge", "srcdev"], "--system describes the devices; drop --edge"),
        (["--assume-power", "z=3"], "no computing device 'z'"),
        (["--assume-power", "b=1,2"], "one per b setting"),
        (["--assume-power", "b=x"], "not a number of watts"),
        (["--assume-power", "a=3"], "already have a energy"),
        (["--assume-edge-power", "3", "--assume-power", "a=3"], "both give the power of a"),
        (["--models", "vgg"], "no rows for model 'vgg'"),
    ],
)
def test_system_errors_are_one_line(tmp_path, capsys, args, message):
    table = random_table(random.Random(1), 3, DEVICES, ["srcdev", "middev"], 1e-2)
    system = write_system(tmp_path, write_profile_csv(tmp_path / "synthetic.csv", table))
    out = tmp_path / "o.csv"
    code = run_main(sweep_cli.main, ["--system", str(system), "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not out.exists()


@pytest.mark.parametrize(
    "case, message",
    [
        ("no-energy", "no energy for b (middev, m0), e.g. bundle"),
        ("none-counts", "no device's energy counts"),
        ("shared", "a and b both stand in for srcdev (s0)"),
        ("two-device-names", "NAME=LIST names a link of a system file"),
        ("two-device-empty", "empty --links list"),
        ("missing", "system file not found"),
    ],
)
def test_energy_and_mode_errors(tmp_path, capsys, case, message):
    table = random_table(random.Random(1), 3, DEVICES, ["srcdev"], 1e-2)
    prof = write_profile_csv(tmp_path / "synthetic.csv", table)
    system = write_system(tmp_path, prof)
    args = ["--system", str(system)]
    if case == "none-counts":
        system.write_text(system.read_text().replace('name = "a"\n', 'name = "a"\nenergy = false\n')
                          .replace("energy = true\n", ""))
    elif case == "shared":  # b stands in for the source's device too: one (device, setting), two powers
        system.write_text(system.read_text().replace('profile_device = "middev"', 'profile_device = "srcdev"'))
        args += ["--assume-power", "a=1", "--assume-power", "b=2"]
        table = random_table(random.Random(1), 3, DEVICES, [], 1e-2)
        write_profile_csv(prof, table)
    elif case == "two-device-names":
        args = [str(prof), "--edge", "srcdev", "--cloud", "fardev", "--links", "a-b=4g"]
    elif case == "two-device-empty":
        args = [str(prof), "--edge", "srcdev", "--cloud", "fardev", "--links", ""]
    elif case == "missing":
        args = ["--system", str(tmp_path / "nope.toml")]
    out = tmp_path / "o.csv"
    code = run_main(sweep_cli.main, [*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not out.exists()


def test_baselines_that_break_the_systems_constraints_are_infeasible(tmp_path):
    table = random_table(random.Random(5), 4, DEVICES, ["srcdev", "middev"], 1e-2)
    prof = write_profile_csv(tmp_path / "synthetic.csv", table)
    system = write_system(tmp_path, prof, extra='[constraints]\npin = { "layer3.conv" = "c" }\n')  # the last layer
    code, rows = sweep_cli_run(tmp_path / "o.csv", "--system", str(system), "--points", "2")
    assert code == 0
    names = [r.name for r in build_problem(load_system(system)).roles]
    broken = [r for r in rows if r.status == "infeasible"]
    assert {r.sweep for r in broken} == {BASELINE + "all-a", BASELINE + "all-b", BASELINE + sweep.NEUROSURGEON}
    assert all(r.latency_s is None for r in broken)
    assert sum(r.sweep == BASELINE + "all-a" for r in broken) == 2  # one per setting of a
    assert "no single split to b" in next(r.error for r in broken if r.sweep == BASELINE + sweep.NEUROSURGEON)
    assert "may not run on a" in next(r.error for r in broken if r.sweep == BASELINE + "all-a")
    for r in rows:  # every placement written keeps the pin
        if r.placement:
            last = parse_placement(table.layer_names, r.placement, names)[-1]
            assert names[last.role] == "c", r


def test_system_cells_resume_from_their_partial_files(nd, tmp_path):
    _, _, _, d = nd
    opts = sweep.SweepOptions(profiles=(), out=tmp_path / "o.csv", system=d / "sys.toml", points=2,
                              link_rates=(("a-b", (LINK_PRESETS["wifi"], CUSTOM)), ("b-c", (LINK_PRESETS["4g"],))))
    cells = sweep.build_cells(opts)
    assert [c.link_name for c in cells] == ["a-b=wifi, b-c=4g", f"a-b={CUSTOM.name}, b-c=4g"]
    first = sweep.run_grid(cells, partial_dir=tmp_path / "partial", progress=False)
    again = sweep.run_grid(cells, partial_dir=tmp_path / "partial", resume=True, progress=False)
    assert all(r.reused for r in again) and not any(r.reused for r in first)
    assert [row for r in again for row in r.rows] == [row for r in first for row in r.rows]
