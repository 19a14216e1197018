"""Energy integration and the `python -m dime.energy join` command on synthetic power logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dime.cliargs import run_main
from dime.errors import UsageError
from dime.profiling.power.clock import estimate_offset_s
from dime.profiling.power.join import (
    cumulative_energy_j,
    integrate_energy_j,
    join_energy,
    main,
)
from dime.profiling.power.powerlog import CSV_COLUMNS

REPO = Path(__file__).resolve().parents[1]


def test_constant_power_exact():
    t = np.arange(0.0, 10.0001, 0.01)
    p = np.full_like(t, 5.0)
    assert integrate_energy_j(t, p, 1.234, 7.891) == pytest.approx(5.0 * (7.891 - 1.234),
                                                                    rel=1e-12)
    assert integrate_energy_j(t, p, 3.0, 3.0) == 0.0


def test_linear_power_exact_with_interpolated_edges():
    t = np.linspace(0.0, 10.0, 11)  # 1 s spacing: window edges fall between samples
    p = 2.0 + 3.0 * t

    def exact(a, b):
        return 2.0 * (b - a) + 1.5 * (b * b - a * a)

    for a, b in [(0.25, 0.75), (0.5, 9.5), (0.0, 10.0), (3.3, 3.31), (2.0, 5.0)]:
        assert integrate_energy_j(t, p, a, b) == pytest.approx(exact(a, b), rel=1e-12)
    assert cumulative_energy_j(t, p, [10.0])[0] == pytest.approx(exact(0, 10))


def test_unsorted_samples_are_sorted():
    t = np.array([2.0, 0.0, 1.0])
    p = np.array([4.0, 0.0, 2.0])  # p = 2 t
    assert integrate_energy_j(t, p, 0.5, 1.5) == pytest.approx(1.5**2 - 0.5**2)


def test_window_outside_or_reversed_raises():
    t, p = [0.0, 1.0, 2.0], [1.0, 1.0, 1.0]
    with pytest.raises(UsageError, match="outside"):
        integrate_energy_j(t, p, -0.1, 1.0)
    with pytest.raises(UsageError, match="outside"):
        integrate_energy_j(t, p, 1.0, 2.5)
    with pytest.raises(UsageError, match="bad window"):
        integrate_energy_j(t, p, 1.5, 1.0)
    with pytest.raises(UsageError, match="at least 2"):
        integrate_energy_j([0.0], [1.0], 0.0, 0.0)


def test_estimate_offset_uses_fastest_round_trip():
    trips = [
        (0.0, 100.9, 1.0),  # slow trip, asymmetric
        (2.0, 102.0005, 2.001),  # fast: offset 100.0
        (3.0, 103.2, 3.1),
    ]
    off, rtt = estimate_offset_s(trips)
    assert off == pytest.approx(100.0, abs=1e-9)
    assert rtt == pytest.approx(0.001)
    with pytest.raises(UsageError):
        estimate_offset_s([])


# ------------------------------------------------------------------------------- join


def power_log(path: Path, t: np.ndarray, mw: np.ndarray) -> Path:
    df = pd.DataFrame({c: 0 for c in CSV_COLUMNS}, index=range(len(t)))
    df["host_time_s"] = t
    df["meter_ms"] = np.round((t - t[0]) * 1000 + 5000).astype(int)
    df["input_mw"] = mw
    df.to_csv(path, index=False)
    return path


def timing(path: Path, windows: list[tuple[float, float]], **extra) -> Path:
    df = pd.DataFrame({
        "model": "m", "device": "orin", "setting": "default", "bundle": "0-1",
        "start": 0, "end": 1, "in_bytes": 1, "out_bytes": 1, "iteration": 0,
        "run": range(len(windows)),
        "latency_s": [b - a for a, b in windows],
        "energy_j": np.nan,
        "t_start_s": [a for a, _ in windows], "t_end_s": [b for _, b in windows],
        **extra,
    })
    df.to_csv(path, index=False)
    return path


def test_join_cli_constant_and_linear(tmp_path):
    t = np.arange(1000.0, 1010.0, 0.005)  # host time, 200 Hz
    mw = 4000.0 + 1000.0 * (t - 1000.0)  # 4 W rising 1 W/s
    pw = power_log(tmp_path / "p.csv", t, mw)
    offset = 1000.0 - 50.0  # device clock starts at 50 when the host's is at 1000
    windows = [(51.0, 52.0), (52.5012, 55.25), (58.0, 59.9)]
    tm = timing(tmp_path / "t.csv", windows)
    out = tmp_path / "out.csv"
    rc = run_main(main, ["join", "--timing", str(tm), "--power", str(pw), "--out", str(out),
                         "--offset-s", str(offset)])
    assert rc == 0
    got = pd.read_csv(out)
    for (a, b), e in zip(windows, got["energy_j"]):
        a, b = a + offset - 1000.0, b + offset - 1000.0
        assert e == pytest.approx(4.0 * (b - a) + 0.5 * (b * b - a * a), rel=1e-9)
    assert (got["energy_source"] == "smartpower3").all()
    assert list(got.columns[:12]) == list(pd.read_csv(tm).columns[:12])


def test_join_offset_column_and_repeats(tmp_path):
    t = np.linspace(0.0, 10.0, 101)
    pw = power_log(tmp_path / "p.csv", t, np.full_like(t, 3000.0))
    df = pd.read_csv(timing(tmp_path / "t.csv", [(1.0, 3.0), (4.0, 5.0)]))
    df["clock_offset_s"] = 2.0
    df["repeats"] = [4, 1]
    out = join_energy(df, pd.read_csv(pw))
    assert list(out["energy_j"]) == pytest.approx([3.0 * 2 / 4, 3.0 * 1])


def test_join_idle_power_subtracted_like_the_profiler(tmp_path):
    t = np.linspace(0.0, 10.0, 101)
    power = pd.read_csv(power_log(tmp_path / "p.csv", t, np.full_like(t, 5000.0)))
    df = pd.read_csv(timing(tmp_path / "t.csv", [(1.0, 3.0)]))
    df["repeats"] = 2
    df["latency_s"] = 1.0
    out = join_energy(df, power, offset_s=0.0, idle_power_w=2.0)
    assert out["energy_total_j"][0] == pytest.approx(5.0)  # 10 J over 2 repeats
    assert out["idle_power_w"][0] == pytest.approx(2.0)
    assert out["energy_j"][0] == pytest.approx(5.0 - 2.0 * 1.0)


def test_join_rows_without_timestamps_are_kept(tmp_path):
    t = np.linspace(0.0, 10.0, 101)
    power = pd.read_csv(power_log(tmp_path / "p.csv", t, np.full_like(t, 1000.0)))
    df = pd.read_csv(timing(tmp_path / "t.csv", [(1.0, 2.0), (3.0, 4.0)]))
    df.loc[1, ["t_start_s", "t_end_s"]] = np.nan
    df.loc[1, "energy_j"] = 9.0
    df["energy_source"] = ["", "rapl"]
    out = join_energy(df, power, offset_s=0.0)
    assert list(out["energy_j"]) == pytest.approx([1.0, 9.0])
    assert list(out["energy_source"]) == ["smartpower3", "rapl"]


def test_join_window_outside_log_is_exit_2_one_line(tmp_path, capsys):
    t = np.linspace(0.0, 10.0, 101)
    pw = power_log(tmp_path / "p.csv", t, np.full_like(t, 1000.0))
    tm = timing(tmp_path / "t.csv", [(1.0, 2.0), (9.0, 11.0)])
    out = tmp_path / "out.csv"
    rc = run_main(main, ["join", "--timing", str(tm), "--power", str(pw), "--out", str(out),
                         "--offset-s", "0"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside the power log" in err[0]
    assert not out.exists()


def test_join_sparse_log_fails_unless_allowed(tmp_path, capsys):
    t = np.arange(0.0, 10.0, 1.0)  # 1 Hz meter
    pw = power_log(tmp_path / "p.csv", t, np.full_like(t, 2000.0))
    tm = timing(tmp_path / "t.csv", [(2.1, 2.2), (3.0, 6.0)])
    out = tmp_path / "out.csv"
    args = ["join", "--timing", str(tm), "--power", str(pw), "--out", str(out), "--offset-s",
            "0"]
    assert run_main(main, args) == 2
    err = capsys.readouterr().err
    assert "fewer than 2" in err and "longer window" in err
    assert run_main(main, args + ["--allow-sparse"]) == 0
    got = pd.read_csv(out)
    assert list(got["energy_j"]) == pytest.approx([0.2, 6.0])


def test_join_meter_clock(tmp_path):
    t_true = np.arange(0.0, 5.0, 0.01)
    jitter = np.where(np.arange(t_true.size) % 3 == 0, 0.004, 0.001)  # USB delays
    df = pd.read_csv(power_log(tmp_path / "p.csv", t_true + jitter, 1000.0 + 1000.0 * t_true))
    df["meter_ms"] = np.round(t_true * 1000).astype(int) + 777
    tm = pd.read_csv(timing(tmp_path / "t.csv", [(1.0, 2.0)]))
    out = join_energy(tm, df, offset_s=0.0, clock="meter")
    a, b = 1.0 - 0.001, 2.0 - 0.001  # the least-delayed line anchors the meter clock
    assert out["energy_j"][0] == pytest.approx((b - a) + 0.5 * (b * b - a * a), rel=1e-9)


def test_join_missing_columns_is_usage_error(tmp_path):
    t = np.linspace(0.0, 1.0, 11)
    power = pd.read_csv(power_log(tmp_path / "p.csv", t, np.full_like(t, 1.0)))
    with pytest.raises(UsageError, match="t_start_s"):
        join_energy(pd.DataFrame({"latency_s": [1.0]}), power)
    tm = pd.read_csv(timing(tmp_path / "t.csv", [(0.1, 0.2)]))
    with pytest.raises(UsageError, match="_mw or _w"):
        join_energy(tm, power.assign(watts=1.0), power_column="watts")


def test_join_module_entry_point(tmp_path):
    t = np.linspace(0.0, 10.0, 101)
    pw = power_log(tmp_path / "p.csv", t, np.full_like(t, 1000.0))
    tm = timing(tmp_path / "t.csv", [(1.0, 2.0)])
    out = tmp_path / "o.csv"
    r = subprocess.run(
        [sys.executable, "-m", "dime.energy", "join", "--timing", str(tm), "--power", str(pw),
         "--out", str(out)], cwd=str(REPO), capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(out)["energy_j"][0] == pytest.approx(1.0)
    assert "offset 0" in r.stderr  # warned about the assumed shared clock
