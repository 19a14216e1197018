"""`python -m dime.solve` end to end, on synthetic profiles written by the tests."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import subprocess
from pathlib import Path

import pytest
from clihelp import run_cli
from instances import random_table, write_profile_csv

from dime.core.costs import BundleCost, Role
from dime.core.links import get_link
from dime.plan import PlacementProblem, build_model
from dime.profiling.reader import load_profiles

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m dime.solve` in this process (test_docs and test_hardening start it for real)."""
    return run_cli("dime.solve", *args, cwd=cwd or ROOT)


def one_line_error(p: subprocess.CompletedProcess, code: int) -> str:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def table():
    return random_table(random.Random(21), 5, {"jetson": ["maxn", "15w"], "a100": ["default"]}, ["jetson"], 1e-2)


@pytest.fixture
def profile(tmp_path, table) -> Path:
    return write_profile_csv(tmp_path / "vit_synthetic.csv", table, runs=5, spread=0.05, seed=1)


BASE = ("--edge", "jetson", "--cloud", "a100", "--link", "4g")


def parse_report(out: str) -> dict:
    """The numbers the CLI printed."""
    lines = out.splitlines()
    head = next(i for i, l in enumerate(lines) if l.lstrip().startswith("#"))
    rows = []
    for line in lines[head + 1 :]:
        if not line.strip():
            break
        tok = line.split()
        rows.append({"role": tok[-5], "device": tok[-4], "setting": tok[-3], "latency_s": float(tok[-2]),
                     "energy_j": None if tok[-1] == "-" else float(tok[-1]), "layers": tok[1]})
    num = r"([0-9.e+-]+)"
    lat = re.search(rf"^latency: {num} s = compute {num} s \+ communication {num} s$", out, re.M)
    en = re.search(rf"^edge energy: {num} J = compute {num} J \+ communication {num} J", out, re.M)
    solver = re.search(r"^solver: (\w+), (\w+), ", out, re.M)
    return {"rows": rows, "latency": tuple(map(float, lat.groups())),
            "energy": tuple(map(float, en.groups())) if en else None,
            "solver": solver.group(1), "status": solver.group(2)}


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=2e-6, abs_tol=1e-12)  # printed with 6 significant digits


def test_json_matches_printed(tmp_path, profile, table):
    out_json = tmp_path / "out" / "placement.json"
    p = run(profile, *BASE, "--max-latency", "1", "--json", out_json)
    assert p.returncode == 0, p.stderr
    data = json.loads(out_json.read_text())
    shown = parse_report(p.stdout)
    assert {"status", "objective", "latency_s", "compute_latency_s", "comm_latency_s", "energy_j",
            "compute_energy_j", "comm_energy_j", "solver", "solve_time_s", "placement"} <= set(data)
    assert shown["solver"] == data["solver"] and shown["status"] == data["status"] == "optimal"
    assert all(close(a, data[k]) for a, k in zip(shown["latency"], ("latency_s", "compute_latency_s", "comm_latency_s")))
    assert all(close(a, data[k]) for a, k in zip(shown["energy"], ("energy_j", "compute_energy_j", "comm_energy_j")))
    assert len(shown["rows"]) == len(data["placement"])
    names = list(table.layer_names)
    for row, entry in zip(shown["rows"], data["placement"]):
        assert (row["role"], row["device"], row["setting"]) == (entry["role"], entry["device"], entry["setting"])
        assert close(row["latency_s"], entry["latency_s"])
        assert entry["bundle"] == "+".join(names[names.index(entry["start"]) : names.index(entry["end"]) + 1])
        first, _, last = row["layers"].partition("-")
        assert names[int(first)] == entry["start"] and names[int(last or first)] == entry["end"]
    # the chain covers the model, in order
    assert data["placement"][0]["start"] == names[0] and data["placement"][-1]["end"] == names[-1]
    assert data["objective"] == data["latency_s"]
    # and agrees with the library on the same profile
    t = load_profiles(profile)
    problem = PlacementProblem(t, (Role("jetson", t.settings["jetson"]), Role("a100", ("default",))),
                               get_link("4g"), 5, max_latency_s=1.0)
    assert close(build_model(problem).solve("highs").objective, data["objective"])


def test_write_lp_and_mps(tmp_path, profile):
    for name in ("m.lp", "m.mps"):
        p = run(profile, *BASE, "--objective", "energy", "--max-latency", "1", "--write-lp", tmp_path / name,
                "--solver", "cbc", "-q")
        assert p.returncode == 0, p.stderr
        text = (tmp_path / name).read_text()
        assert "x_0_0_edge_0" in text
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.lp", "m.mps", "vit_synthetic.csv"]


def test_infeasible_exit_1_names_least_latency(profile):
    p = run(profile, *BASE, "--max-latency", "1e-6", "--solver", "highs")
    line = one_line_error(p, 1)
    m = re.fullmatch(r"error: no placement meets --max-latency 1e-06 s; the least feasible latency is ([0-9.e+-]+) s", line)
    assert m, line
    free = run(profile, *BASE, "--solver", "highs", "-q")
    assert close(float(m.group(1)), parse_report(free.stdout)["latency"][0])


def test_infeasible_energy(profile):
    line = one_line_error(run(profile, *BASE, "--objective", "energy", "--max-energy", "1e-9"), 1)
    assert "no placement meets --max-energy 1e-09 J; the least feasible energy is" in line


def test_settings_private_layers_one_setting(profile):
    p = run(profile, *BASE, "--edge-settings", "15w", "--private-layers", "2", "--max-bundle", "2", "-q")
    assert p.returncode == 0, p.stderr
    rows = parse_report(p.stdout)["rows"]
    assert all(r["setting"] == "15w" for r in rows if r["role"] == "edge")
    assert rows[0]["role"] == "edge"
    assert all(len(range(int(r["layers"].split("-")[0]), int(r["layers"].split("-")[-1]) + 1)) <= 2 for r in rows)
    p = run(profile, *BASE, "--one-setting-per-device", "--objective", "energy", "--max-latency", "1", "-q")
    assert p.returncode == 0, p.stderr
    assert len({r["setting"] for r in parse_report(p.stdout)["rows"] if r["role"] == "edge"}) == 1


def test_header_and_quiet(profile):
    p = run(profile, *BASE, "--link", "wifi", "--rtt-ms", "20")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("model synthetic: 5 layers; edge jetson (maxn, 15w); cloud a100 (default)")
    assert "link wifi (up 18.88 Mbps, down 54.97 Mbps, rtt 20 ms)" in p.stdout
    assert "max bundle 5" in p.stdout
    q = run(profile, *BASE, "-q")
    assert q.stdout.lstrip().startswith("#") and q.stderr == ""


def test_default_max_bundle_is_largest_covered(tmp_path, table):
    path = write_profile_csv(tmp_path / "p.csv", table, skip=[("a100", "default", 1, 3)])
    p = run(path, *BASE)
    assert p.returncode == 0, p.stderr
    assert "max bundle 2" in p.stdout
    line = one_line_error(run(path, *BASE, "--max-bundle", "4"), 2)
    assert "layer1.conv+layer2.conv+layer3.conv (3 layers) on a100 (default); max bundle 4" in line


def test_custom_link_and_profile_option(profile):
    p = run("--profile", profile, "--edge", "jetson", "--cloud", "a100", "--uplink-mbps", "100",
            "--downlink-mbps", "200", "--rtt-ms", "10")
    assert p.returncode == 0, p.stderr
    assert "link custom (up 100 Mbps, down 200 Mbps, rtt 10 ms)" in p.stdout
    assert "edge energy:" in p.stdout


def test_assumed_power_and_not_measured(tmp_path, table):
    assumed = dataclasses.replace(table, costs={
        k: dataclasses.replace(c, energy_source="assumed:3.5") if c.energy_j is not None else c
        for k, c in table.costs.items()})
    path = write_profile_csv(tmp_path / "a.csv", assumed)
    p = run(path, *BASE, "--link", "3g")
    assert p.returncode == 0, p.stderr
    assert re.search(r"^edge energy: .* J \(assumed power\)$", p.stdout, re.M)
    assert run(path, *BASE, "--json", tmp_path / "a.json").returncode == 0
    assert json.loads((tmp_path / "a.json").read_text())["energy_assumed"] is True

    unmeasured = dataclasses.replace(table, costs={
        k: BundleCost(c.latency_s, None, "", c.runs) for k, c in table.costs.items()})
    path = write_profile_csv(tmp_path / "n.csv", unmeasured)
    p = run(path, *BASE, "--link", "3g", "--json", tmp_path / "n.json")
    assert p.returncode == 0, p.stderr
    assert "edge energy: not measured" in p.stdout
    assert json.loads((tmp_path / "n.json").read_text())["energy_j"] is None
    line = one_line_error(run(path, *BASE, "--objective", "energy"), 2)
    assert "the edge profile has no energy for jetson" in line and "--assume-power" in line


def test_model_choice(tmp_path, table):
    other = dataclasses.replace(table, model="resnet_synthetic")
    a = write_profile_csv(tmp_path / "a.csv", table)
    b = write_profile_csv(tmp_path / "b.csv", other)
    line = one_line_error(run(a, b, *BASE), 2)
    assert "several models (synthetic, resnet_synthetic); choose one with --model" in line
    p = run(a, b, *BASE, "--model", "resnet_synthetic")
    assert p.returncode == 0 and p.stdout.startswith("model resnet_synthetic:")


def _corrupt(tmp_path: Path, profile: Path, column: str, value: str) -> Path:
    lines = profile.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[3].split(",")
    cells[header.index(column)] = value
    lines[3] = ",".join(cells)
    out = tmp_path / "bad.csv"
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.mark.parametrize(
    "column, value, expected",
    [("latency_s", "nan", "bad.csv: line 4: latency_s 'nan' is not a number"),
     ("latency_s", "-1e-3", "bad.csv: line 4: latency_s '-1e-3' is negative"),
     ("energy_j", "-2", "bad.csv: line 4: energy_j '-2' is negative")],
)
def test_bad_values_exit_2(tmp_path, profile, column, value, expected):
    assert expected in one_line_error(run(_corrupt(tmp_path, profile, column, value), *BASE), 2)


def test_missing_columns_exit_2(tmp_path, profile):
    lines = profile.read_text().splitlines()
    header = lines[0].split(",")
    drop = {header.index("latency_s"), header.index("bundle")}
    keep = [",".join(c for i, c in enumerate(l.split(",")) if i not in drop) for l in lines]
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(keep) + "\n")
    assert "bad.csv: not a profile CSV, missing columns: bundle, latency_s" in one_line_error(run(bad, *BASE), 2)


@pytest.mark.parametrize(
    "args, expected",
    [(("--edge", "phone", "--cloud", "a100", "--link", "4g"), "unknown device 'phone'; known devices: jetson, a100"),
     (("--edge", "jetson", "--cloud", "tpu", "--link", "4g"), "unknown device 'tpu'; known devices: jetson, a100"),
     (("--edge", "jetson", "--cloud", "a100"), "give --link or both --uplink-mbps and --downlink-mbps"),
     (("--edge", "jetson", "--cloud", "a100", "--link", "5g"), "unknown link '5g'; presets: 3g, 4g, wifi"),
     (("--cloud", "a100", "--link", "4g"), "--edge DEV is required; devices in the profiles: jetson, a100"),
     ((*BASE, "--edge-settings", "maxn,turbo"), "device jetson has no setting 'turbo'; its settings: maxn, 15w"),
     ((*BASE, "--max-latency", "-1"), "argument --max-latency: must be > 0, got -1"),
     ((*BASE, "--solver", "cplex"), "argument --solver: invalid choice: 'cplex'"),
     ((*BASE, "--private-layers", "9"), "--private-layers 9 exceeds the model's 5 layers"),
     ((*BASE, "--trim", "0.7"), "argument --trim: must be in [0, 0.5), got 0.7"),
     ((*BASE, "--bogus"), "unrecognized arguments: --bogus")],
)
def test_usage_errors_exit_2(profile, args, expected):
    assert expected in one_line_error(run(profile, *args), 2)


def test_missing_file_exit_2(tmp_path):
    line = one_line_error(run(tmp_path / "none.csv", *BASE), 2)
    assert line == f"error: {tmp_path / 'none.csv'}: profile file not found"


def test_no_profiles_exit_2():
    assert "give one or more profile files" in one_line_error(run(*BASE), 2)


def test_help():
    p = run("--help")
    assert p.returncode == 0 and "--max-latency" in p.stdout and "--one-setting-per-device" in p.stdout


def test_build_parser_is_reusable():
    from dime.plan.solve import build_parser

    args = build_parser("dime solve").parse_args(["p.csv", "--edge", "a", "--cloud", "b", "--link", "wifi"])
    assert args.profiles == ["p.csv"] and args.solver == "auto" and args.trim == 0.1


@pytest.mark.parametrize("context,noted", [("isolated", True), ("chain", False), (None, False)])
def test_note_on_chains_of_bundles_profiled_in_isolation(tmp_path, profile, table, context, noted):
    """Layers 0 and 1 must stay on the edge, one layer per bundle: two edge bundles in a row."""
    if context is not None:
        meta = {"device": "jetson", "model": "vit_synthetic"}
        if context == "chain":
            meta["context"] = "chain"  # files without the key were profiled in isolation
        (tmp_path / (profile.name + ".meta.json")).write_text(json.dumps(meta))
    out = tmp_path / "sol.json"
    p = run(profile, *BASE, "--max-bundle", "1", "--private-layers", "2", "--json", out)
    assert p.returncode == 0, p.stderr
    notes = json.loads(out.read_text())["profile_notes"]
    if noted:
        # only the edge's file says how it was timed; the run starts at layer 0
        assert len(notes) == 1 and " edge bundles in a row (" in notes[0], notes
        assert notes[0].split("(", 1)[1].startswith(table.layer_names[0] + " | " + table.layer_names[1])
        assert f"note: {notes[0]}" in p.stdout
    else:
        assert notes == [] and "note: " not in p.stdout


def test_assumed_power_gives_a_front_and_says_so(tmp_path):
    """The shipped profiles have no energy: an assumed edge power makes the front trade latency
    for energy, every point's energy is W x its edge latency, and the output says it is assumed."""
    prof = ROOT / "profiles" / "alexnet-xeon-2core.csv"
    out = tmp_path / "front.json"
    two = [prof, "--edge", "xeon-2core", "--edge-settings", "threads=1", "--cloud", "xeon-2core",
           "--cloud-settings", "threads=2", "--link", "300/300/1"]
    p = run(*two, "--assume-edge-power", "10", "--front", "--json", out)
    assert p.returncode == 0, p.stderr
    assert "assumed power" in p.stdout
    points = json.loads(out.read_text())["points"]
    assert len(points) >= 2
    for pt in points:
        edge_s = sum(b["latency_s"] for b in pt["placement"] if b["role"] == "edge")
        assert pt["energy_j"] == pytest.approx(10 * edge_s, rel=1e-9)
    lat = [pt["latency_s"] for pt in points]
    en = [pt["energy_j"] for pt in points]
    assert lat == sorted(lat) and en == sorted(en, reverse=True) and len(set(en)) == len(en)
    # without the power there is nothing to trade; a bad power is one line
    p = run(*two, "--front")
    assert p.returncode == 0 and "no energy to trade" in p.stdout
    assert "watts" in one_line_error(run(*two, "--assume-edge-power", "ten", "--front"), 2)
    assert "twice" in one_line_error(run(*two, "--assume-power", "edge=1", "--assume-power", "edge=2"), 2)
