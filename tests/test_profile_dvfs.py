"""The profiler driving a DVFS controller on a fake sysfs tree."""

from __future__ import annotations

import csv
from collections import Counter

from energy_fakes import CPU_BIG_KHZ, CPU_LITTLE_KHZ, build_cpufreq, snapshot

from dime.capture.models import load_model
from dime.capture.samples import generate
from dime.cliargs import run_main
from dime.profiling.profiler import main as profile_main


def test_cpufreq_settings_profiled_and_tree_restored(tmp_path, monkeypatch, capsys, shared_model):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = build_cpufreq(tmp_path / "sysroot")
    before = snapshot(root)
    m = shared_model("alexnet")
    generate(m, tmp_path / "samples", count=1, progress=False)
    out = tmp_path / "p.csv"
    code = run_main(profile_main, [
        "--model", "alexnet", "--torch-device", "cpu", "--device-name", "board", "--dvfs", "cpufreq",
        "--sysfs-root", str(root), "--settings", "all", "--assume-power", "3.5", "--max-bundle", "1",
        "--iterations", "1", "--runs", "1", "--warmup", "0", "--samples", str(tmp_path / "samples"),
        "--out", str(out), "-q",
    ])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out, newline="")))
    freqs_hz = sorted({f * 1000 for f in CPU_LITTLE_KHZ + CPU_BIG_KHZ})
    per_setting = Counter(r["setting"] for r in rows)
    assert sorted(int(s) for s in per_setting) == freqs_hz
    assert set(per_setting.values()) == {8}  # one row per layer
    assert {r["setting_kind"] for r in rows} == {"freq_hz"}
    assert all(r["energy_source"] == "assumed:3.5" for r in rows)
    assert snapshot(root) == before
    assert not any((tmp_path / "cache").rglob("*.json"))  # state file removed after restore


def test_unknown_setting_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = build_cpufreq(tmp_path / "sysroot")
    before = snapshot(root)
    generate(load_model("toy_models:skipnet"), tmp_path / "samples", count=1, progress=False)
    code = run_main(profile_main, [
        "--model", "toy_models:skipnet", "--device-name", "b", "--dvfs", "cpufreq", "--sysfs-root", str(root),
        "--settings", "123", "--samples", str(tmp_path / "samples"), "--out", str(tmp_path / "p.csv"),
    ])
    assert code == 2
    err = capsys.readouterr().err
    assert "not available" in err and "Traceback" not in err
    assert snapshot(root) == before
