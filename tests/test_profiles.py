"""Reading profile CSVs into a CostTable (synthetic profiles written by the tests)."""

from __future__ import annotations

import csv
import random
import subprocess
import sys
from pathlib import Path

import pytest
from instances import random_table, write_profile_csv

from dime.core.costs import Role
from dime.errors import ProfileError, UsageError
from dime.profiling.reader import (
    common_max_bundle,
    load_profiles,
    make_role,
    require_bundles,
    trimmed_mean,
)
from dime.profiling.schema import PROFILE_COLUMNS, REQUIRED_COLUMNS


@pytest.fixture
def table():
    return random_table(random.Random(7), 4, {"edge": ["a", "b"], "cloud": ["gpu"]}, ["edge"], 1e-3)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict], columns=PROFILE_COLUMNS) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _row(bundle: str, latency="0.1", energy="", device="d", setting="s", model="m", in_bytes=8, out_bytes=8, **kw):
    names = bundle.split("+")
    row = dict(model=model, device=device, setting=setting, bundle=bundle, start=names[0], end=names[-1],
               in_bytes=in_bytes, out_bytes=out_bytes, iteration=0, run=0, latency_s=latency, energy_j=energy)
    row.update(kw)
    return row


def _chain_rows(names, k=2, **kw) -> list[dict]:
    return [_row("+".join(names[s : s + n]), **kw) for n in range(1, k + 1) for s in range(len(names) - n + 1)]


# -- reading back what was written ---------------------------------------------------------


def test_round_trip(tmp_path, table):
    path = write_profile_csv(tmp_path / "p.csv", table, runs=4)
    got = load_profiles([path])
    assert got.model == table.model
    assert got.layer_names == table.layer_names
    assert got.cut_bytes == table.cut_bytes
    assert got.settings == {"edge": ("a", "b"), "cloud": ("gpu",)}
    assert got.setting_kinds[("edge", "a")] == "synthetic"
    assert got.sources == (str(path),)
    assert set(got.costs) == set(table.costs)
    for key, c in table.costs.items():
        g = got.costs[key]
        assert g.latency_s == pytest.approx(c.latency_s, rel=1e-12)
        assert g.runs == 4
        if c.energy_j is None:
            assert g.energy_j is None and g.energy_source == ""
        else:
            assert g.energy_j == pytest.approx(c.energy_j, rel=1e-12)
            assert g.energy_source == "synthetic"
    assert got.max_bundle("edge", "a") == 4


def test_accepts_single_path_and_pathlike(tmp_path, table):
    path = write_profile_csv(tmp_path / "p.csv", table)
    assert load_profiles(path).n_layers == 4
    assert load_profiles(str(path)).n_layers == 4


def test_layer_order_from_bundles_not_row_order(tmp_path, table):
    path = write_profile_csv(tmp_path / "p.csv", table)
    rows = _rows(path)
    random.Random(3).shuffle(rows)
    _write_rows(path, rows)
    got = load_profiles(path)
    assert got.layer_names == table.layer_names
    assert got.cut_bytes == table.cut_bytes


def test_layer_order_single_layer_profiles_follow_row_order(tmp_path):
    names = ["conv1", "bn1", "relu", "fc"]
    path = _write_rows(tmp_path / "p.csv", _chain_rows(names, k=1))
    got = load_profiles(path)
    assert got.layer_names == tuple(names)
    assert got.max_bundle("d", "s") == 1


def test_layer_names_with_dots_and_partial_k(tmp_path):
    names = ["features.0", "features.1", "avgpool", "classifier.6"]
    rows = _chain_rows(names, k=1) + [_row("features.0+features.1"), _row("avgpool+classifier.6")]
    got = load_profiles(_write_rows(tmp_path / "p.csv", rows))
    assert got.layer_names == tuple(names)
    assert got.max_bundle("d", "s") == 1  # features.1+avgpool is missing


def test_trimmed_mean_drops_each_end_separately(tmp_path):
    # 10 runs: latency 1..10, energy 10..1 with an outlier; trim 0.1 drops one run each side,
    # chosen per column (the fastest run is not the one with the least energy).
    rows = []
    for i in range(10):
        energy = 1000.0 if i == 0 else float(10 - i)
        rows.append(_row("x", latency=str(i + 1.0), energy=repr(energy), run=i))
    path = _write_rows(tmp_path / "p.csv", rows)
    c = load_profiles(path).costs[("d", "s", 0, 0)]
    assert c.latency_s == pytest.approx(sum(range(2, 10)) / 8)
    assert c.energy_j == pytest.approx(sum(range(2, 10)) / 8)  # drops 1.0 and the 1000.0 outlier
    assert c.runs == 10
    c0 = load_profiles(path, trim=0.0).costs[("d", "s", 0, 0)]
    assert c0.latency_s == pytest.approx(5.5)
    c2 = load_profiles(path, trim=0.25).costs[("d", "s", 0, 0)]  # floor(2.5) = 2 each side
    assert c2.latency_s == pytest.approx(sum(range(3, 9)) / 6)


def test_trimmed_mean_helper():
    assert trimmed_mean([5.0], 0.4) == 5.0
    assert trimmed_mean([1.0, 2.0, 100.0], 0.34) == 2.0
    assert trimmed_mean([3.0, 1.0, 2.0, 4.0], 0.1) == 2.5


def test_bad_trim(tmp_path, table):
    path = write_profile_csv(tmp_path / "p.csv", table)
    with pytest.raises(UsageError, match="trim"):
        load_profiles(path, trim=0.5)


def test_energy_none_when_empty_everywhere_and_source_first_non_empty(tmp_path):
    rows = [_row("x", energy="", run=0), _row("x", energy="", run=1)]
    rows += [_row("x", energy="1", device="e", energy_source="", run=0),
             _row("x", energy="3", device="e", energy_source="assumed:2.0", run=1)]
    got = load_profiles(_write_rows(tmp_path / "p.csv", rows))
    assert got.costs[("d", "s", 0, 0)].energy_j is None
    assert got.costs[("e", "s", 0, 0)].energy_j == 2.0
    assert got.costs[("e", "s", 0, 0)].energy_source == "assumed:2.0"


def test_files_merge_and_optional_columns_may_differ(tmp_path, table):
    a = write_profile_csv(tmp_path / "a.csv", table, skip=[k for k in table.costs if k[0] == "cloud"])
    b = write_profile_csv(tmp_path / "b.csv", table, skip=[k for k in table.costs if k[0] == "edge"],
                          columns=REQUIRED_COLUMNS)
    got = load_profiles([a, b])
    assert set(got.settings) == {"edge", "cloud"}
    assert got.costs[("cloud", "gpu", 0, 3)].energy_source == ""
    assert len(got.costs) == len(table.costs)


def test_model_choice(tmp_path):
    rows = _chain_rows(["a", "b"], model="m1") + _chain_rows(["c", "d", "e"], model="m2")
    path = _write_rows(tmp_path / "p.csv", rows)
    with pytest.raises(ProfileError, match=r"several models \(m1, m2\); choose one with --model"):
        load_profiles(path)
    assert load_profiles(path, model="m2").layer_names == ("c", "d", "e")
    with pytest.raises(ProfileError, match="no rows for model 'm3'; models: m1, m2"):
        load_profiles(path, model="m3")


# -- roles and coverage ---------------------------------------------------------------------


def test_make_role(tmp_path, table):
    got = load_profiles(write_profile_csv(tmp_path / "p.csv", table))
    assert make_role(got, "edge") == Role("edge", ("a", "b"))
    assert make_role(got, "edge", ["b"]) == Role("edge", ("b",))
    with pytest.raises(ProfileError, match=r"p.csv: unknown device 'phone'; known devices: edge, cloud"):
        make_role(got, "phone")
    with pytest.raises(ProfileError, match=r"device edge has no setting 'c'; its settings: a, b"):
        make_role(got, "edge", ["a", "c"])


def test_require_bundles_names_first_missing(tmp_path, table):
    missing = ("edge", "b", 1, 2)
    got = load_profiles(write_profile_csv(tmp_path / "p.csv", table, skip=[missing]))
    roles = [make_role(got, "edge"), make_role(got, "cloud")]
    require_bundles(got, roles, 1)
    assert common_max_bundle(got, roles) == 1
    with pytest.raises(ProfileError) as e:
        require_bundles(got, roles, 3)
    msg = str(e.value)
    assert "layer1.conv+layer2.conv (2 layers) on edge (b)" in msg and "max bundle 3" in msg
    assert "\n" not in msg


def test_common_max_bundle_zero_raises(tmp_path, table):
    got = load_profiles(write_profile_csv(tmp_path / "p.csv", table, skip=[("cloud", "gpu", 2, 2)]))
    with pytest.raises(ProfileError, match=r"bundle layer2.conv \(1 layers\) on cloud \(gpu\)"):
        common_max_bundle(got, [make_role(got, "edge"), make_role(got, "cloud")])


# -- bad files: one-line ProfileErrors naming the file ------------------------------------------


def _bad(tmp_path, rows, columns=PROFILE_COLUMNS) -> str:
    path = _write_rows(tmp_path / "bad.csv", rows, columns)
    with pytest.raises(ProfileError) as e:
        load_profiles(path)
    msg = str(e.value)
    assert "bad.csv" in msg and "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(ProfileError, match=r"nope.csv: profile file not found"):
        load_profiles(tmp_path / "nope.csv")


def test_folder(tmp_path):
    with pytest.raises(ProfileError, match="is a folder"):
        load_profiles(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ProfileError, match=r"e.csv: empty file"):
        load_profiles(tmp_path / "e.csv")


def test_binary_file(tmp_path):
    (tmp_path / "b.csv").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ProfileError, match=r"b.csv: not a"):
        load_profiles(tmp_path / "b.csv")


def test_not_a_profile_csv(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ProfileError, match=r"x.csv: not a profile CSV, missing columns: model, device"):
        load_profiles(tmp_path / "x.csv")


def test_missing_columns_named(tmp_path):
    cols = [c for c in PROFILE_COLUMNS if c not in ("latency_s", "in_bytes")]
    msg = _bad(tmp_path, _chain_rows(["a", "b"]), cols)
    assert msg.endswith("missing columns: in_bytes, latency_s")


def test_header_only(tmp_path):
    assert "no rows" in _bad(tmp_path, [])


@pytest.mark.parametrize(
    "latency, expected",
    [("nan", "latency_s 'nan' is not a number"), ("NaN", "latency_s 'NaN' is not a number"),
     ("", "latency_s is empty"), ("fast", "latency_s 'fast' is not a number"),
     ("-0.5", "latency_s '-0.5' is negative"), ("inf", "latency_s 'inf' is not finite")],
)
def test_bad_latency(tmp_path, latency, expected):
    rows = _chain_rows(["a", "b", "c"])
    rows[3]["latency_s"] = latency
    msg = _bad(tmp_path, rows)
    assert f"line 5: {expected}" in msg


@pytest.mark.parametrize("energy, expected", [("-1", "is negative"), ("lots", "is not a number")])
def test_bad_energy(tmp_path, energy, expected):
    rows = _chain_rows(["a", "b"], energy="1.0")
    rows[1]["energy_j"] = energy
    assert f"line 3: energy_j {energy!r} {expected}" in _bad(tmp_path, rows)


def test_mixed_empty_energy(tmp_path):
    rows = [_row("a", energy="1", run=0), _row("a", energy="", run=1)]
    assert "energy_j is empty in 1 of 2 runs of bundle a on d (s)" in _bad(tmp_path, rows)


@pytest.mark.parametrize("value", ["-1", "1.5", "big", ""])
def test_bad_bytes(tmp_path, value):
    rows = _chain_rows(["a", "b"])
    rows[0]["in_bytes"] = value
    assert "line 2: in_bytes" in _bad(tmp_path, rows)


def test_empty_key_cell(tmp_path):
    rows = _chain_rows(["a", "b"])
    rows[1]["device"] = ""
    assert "line 3: empty device" in _bad(tmp_path, rows)


def test_bundle_disagrees_with_start_end(tmp_path):
    rows = _chain_rows(["a", "b", "c"])
    rows[3]["end"] = "c"  # bundle a+b
    assert "does not run from start 'a' to end 'c'" in _bad(tmp_path, rows)


def test_single_layer_bundle_named_differently(tmp_path):
    rows = [_row("a"), _row("b")]
    rows[1]["bundle"] = "bee"
    assert "is not that one layer" in _bad(tmp_path, rows)


def test_inconsistent_order(tmp_path):
    rows = _chain_rows(["a", "b", "c"], k=1) + [_row("a+b"), _row("a+c")]
    assert "inconsistent layer order" in _bad(tmp_path, rows)


def test_cycle(tmp_path):
    rows = [_row("a"), _row("b"), _row("a+b"), _row("b+a")]
    assert "inconsistent layer order" in _bad(tmp_path, rows)


def test_inconsistent_cut_bytes(tmp_path):
    rows = _chain_rows(["a", "b", "c"])
    rows[4]["in_bytes"] = 9  # b+c starts at b: disagrees with the 1-layer bundle b
    assert "inconsistent sizes at the cut before layer b" in _bad(tmp_path, rows)


def test_no_torch_import():
    code = "import sys, dime.profiling.reader, dime.plan, dime.plan.solve; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
