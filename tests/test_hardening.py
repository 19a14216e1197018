"""Issue 14, the parts of profiling, energy, powerlog, solve and the shared CLI plumbing:
bad paths, bad numbers and foreign files give one `error:` line and exit 2, and leave
every file as it was (byte for byte) or complete."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clihelp import ROOT, assert_one_line_error, run_cli

from dime.errors import MeterError, UsageError
from dime.fileio import check_output_dir, check_output_path
from dime.profiling.power.client import PowerLogClient
from dime.profiling.power.powerlog import CSV_COLUMNS, PowerLogServer

PROFILES = ROOT / "profiles"
ALEXNET = PROFILES / "alexnet-xeon-2core.csv"
VGG = PROFILES / "vgg11-xeon-2core.csv"
E = ["--edge", "xeon-2core", "--edge-settings", "threads=1", "--cloud", "xeon-2core",
     "--cloud-settings", "threads=2", "--link", "wifi"]
TOY = ["--model", "toy_models:skipnet", "--cuts", "conv1,conv2,conv3,pool"]


def cli(module: str, *args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run_cli(module, *args, cwd=cwd)  # in this process: the CLI's exit code and output, no interpreter start


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def toy_samples(tmp_path_factory):
    from dime.capture.models import load_model
    from dime.capture.samples import generate

    folder = tmp_path_factory.mktemp("toy") / "samples"
    generate(load_model("toy_models:skipnet", cuts=["conv1", "conv2", "conv3", "pool"]), folder, count=1,
             progress=False)
    return folder


# ------------------------------------------------------------------------------ 1. output paths


@pytest.fixture
def places(tmp_path):
    """A folder, a regular file, and a path below that file."""
    folder = tmp_path / "adir"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    regular = tmp_path / "afile"
    regular.write_text("plain file\n")
    return {"DIR": folder, "FILE/x": regular / "x.out", "FILE/sub/x": regular / "sub" / "x.out"}


def _power_files(tmp_path: Path, mw: float = 4000.0, idle_rows: int = 0) -> tuple[Path, Path]:
    t = np.arange(100.0, 110.0, 0.01)
    power = pd.DataFrame({c: 0 for c in CSV_COLUMNS}, index=range(len(t)))
    power["host_time_s"] = t
    power["meter_ms"] = np.round((t - t[0]) * 1000).astype(int)
    power["input_mw"] = mw
    power_path = tmp_path / "power.csv"
    power.to_csv(power_path, index=False)
    windows = [(101.0, 101.5), (102.0, 102.25), (103.0, 104.0)]
    timing = pd.DataFrame({
        "model": "m", "device": "d", "setting": "default", "bundle": ["a", "a", "b"],
        "start": ["a", "a", "b"], "end": ["a", "a", "b"], "in_bytes": 1, "out_bytes": 1, "iteration": [0, 1, 0],
        "run": 0, "latency_s": [b - a for a, b in windows], "energy_j": "",
        "t_start_s": [a for a, _ in windows], "t_end_s": [b for _, b in windows],
    })
    timing_path = tmp_path / "timing.csv"
    timing.to_csv(timing_path, index=False)
    return timing_path, power_path


OUTPUT_CASES = {
    "solve --json": lambda tp, target: ("dime.solve", [ALEXNET, *E, "--json", target]),
    "solve --write-lp": lambda tp, target: ("dime.solve", [ALEXNET, *E, "--write-lp", target]),
    "profile --out": lambda tp, target: ("dime.profile", [*TOY, "--samples", tp / "none", "--out", target]),
    "energy join --out": lambda tp, target: (
        "dime.energy", ["join", "--timing", _power_files(tp)[0], "--power", tp / "power.csv", "--out", target]),
    "powerlog --dir": lambda tp, target: ("dime.powerlog", ["serve", "--serial", "/dev/null", "--port", "0",
                                                            "--dir", target]),
    "samples --out": lambda tp, target: ("dime.samples", [*TOY, "--count", "1", "--out", target]),
}


@pytest.mark.parametrize("where", ["DIR", "FILE/x", "FILE/sub/x"])
@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_unusable_output_paths_are_one_line_before_any_work(tmp_path, places, case, where):
    target = places[where]
    if case in ("powerlog --dir", "samples --out") and where == "DIR":
        pytest.skip("a folder is what these outputs want")
    module, args = OUTPUT_CASES[case](tmp_path, target)
    before = snapshot(tmp_path)
    p = cli(module, *args)
    assert_one_line_error(p)
    assert str(target) in p.stderr
    assert p.stdout == ""  # refused before solving, profiling or joining printed anything
    assert snapshot(tmp_path) == before


def test_input_folder_or_missing_file_is_one_line(tmp_path):
    timing, power = _power_files(tmp_path)
    for args in (["--timing", tmp_path, "--power", power], ["--timing", timing, "--power", tmp_path / "nope.csv"]):
        p = cli("dime.energy", "join", *args, "--out", tmp_path / "o.csv")
        assert_one_line_error(p)
        assert str(args[1] if args[1] == tmp_path else args[3]) in p.stderr
    assert not (tmp_path / "o.csv").exists()


def test_check_output_path_library(tmp_path):
    (tmp_path / "f").write_text("x")
    assert check_output_path(tmp_path / "new" / "deep" / "o.csv") == tmp_path / "new" / "deep" / "o.csv"
    assert not (tmp_path / "new").exists()  # nothing created
    assert check_output_path(tmp_path / "f") == tmp_path / "f"
    for bad, why in ((tmp_path, "is a folder"), (tmp_path / "f" / "o.csv", "is a file, not a folder"),
                     ("", "not a file name")):
        with pytest.raises(UsageError, match=why):
            check_output_path(bad, "--out")
    os.symlink(tmp_path / "missing-target", tmp_path / "dangling")
    with pytest.raises(UsageError, match="dangling"):
        check_output_path(tmp_path / "dangling", "--out")
    assert check_output_dir(tmp_path / "logs") == tmp_path / "logs"
    with pytest.raises(UsageError, match="is a file"):
        check_output_dir(tmp_path / "f", "--dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="not writable"):
            check_output_path(ro / "o.json", "--json")
    finally:
        ro.chmod(0o700)


# ------------------------------------------------------------------------------ 2. profile files


def _toy_profile(samples: Path, out: Path, *extra: object) -> subprocess.CompletedProcess:
    return cli("dime.profile", *TOY, "--device-name", "toy", "--max-bundle", "2", "--iterations", "2", "--runs", "1",
               "--warmup", "0", "--samples", samples, "--out", out, *extra)


def test_profile_out_of_another_model_is_refused_untouched(tmp_path, toy_samples):
    out = tmp_path / "x.csv"
    shutil.copy(VGG, out)
    shutil.copy(VGG.with_name(VGG.name + ".meta.json"), tmp_path / "x.csv.meta.json")
    before = snapshot(tmp_path)
    p = _toy_profile(toy_samples, out)
    assert_one_line_error(p)
    assert "vgg11 on xeon-2core (2640 rows)" in p.stderr and "--overwrite" in p.stderr
    assert snapshot(tmp_path) == before
    p = _toy_profile(toy_samples, out, "--overwrite", "-q")
    assert p.returncode == 0, p.stderr
    rows = pd.read_csv(out)
    assert set(rows["model"]) == {"toy_models:skipnet"} and len(rows) == 9 * 2  # 5 + 4 bundles, 2 runs each


@pytest.mark.parametrize("changed", [["--iterations", "3"], ["--warmup", "1"], ["--device-name", "other"],
                                     ["--context", "chain"]])
def test_profile_out_with_other_parameters_is_refused_untouched(tmp_path, toy_samples, changed):
    out = tmp_path / "p.csv"
    assert _toy_profile(toy_samples, out, "-q").returncode == 0
    before = snapshot(tmp_path)
    p = _toy_profile(toy_samples, out, *changed)
    assert_one_line_error(p)
    assert (changed[0] in p.stderr) or (changed[0] == "--device-name" and "on toy (18 rows)" in p.stderr)
    assert snapshot(tmp_path) == before


def test_profile_resume_drops_only_partial_bundles_and_counts_them(tmp_path, toy_samples):
    out = tmp_path / "p.csv"
    assert _toy_profile(toy_samples, out, "-q").returncode == 0
    complete = out.read_text().splitlines(keepends=True)
    out.write_text("".join(complete[:-1]))  # the last bundle lost one of its 2 runs
    p = _toy_profile(toy_samples, out)
    assert p.returncode == 0, p.stderr
    assert "dropped 1 incomplete bundle(s) (1 of 17 rows" in p.stderr
    rows = pd.read_csv(out)
    assert len(rows) == 18 and rows.groupby("bundle").size().eq(2).all()


def test_profile_without_meta_refuses_bundles_with_more_runs(tmp_path, toy_samples):
    out = tmp_path / "p.csv"
    assert _toy_profile(toy_samples, out, "-q").returncode == 0
    (tmp_path / "p.csv.meta.json").unlink()
    before = snapshot(tmp_path)
    p = _toy_profile(toy_samples, out, "--iterations", "1")
    assert_one_line_error(p)
    assert "other parameters" in p.stderr
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------ 3. numbers


@pytest.mark.parametrize("args", [
    ["--max-bundle", "0"], ["--iterations", "0"], ["--runs", "-1"], ["--warmup", "x"],
    ["--threads", "100000"], ["--min-window", "nan"], ["--iterations", "abc"],
])
def test_profile_numbers(tmp_path, toy_samples, args):
    out = tmp_path / "p.csv"
    p = _toy_profile(toy_samples, out, *args)
    assert_one_line_error(p)
    assert args[0] in p.stderr
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["--offset-s", "nan"], ["--offset-s", "inf"], ["--offset-s", "abc"], ["--idle-power-w", "nan"],
    ["--idle-power-w", "-1"], ["--idle-power-w", "1000"],
])
def test_energy_join_refuses_what_would_write_nan_or_negative(tmp_path, args):
    timing, power = _power_files(tmp_path)
    out = tmp_path / "o.csv"
    p = cli("dime.energy", "join", "--timing", timing, "--power", power, "--out", out, *args)
    assert_one_line_error(p)
    assert "usage:" not in p.stderr
    assert not out.exists()


def test_energy_join_clamps_only_when_asked_with_a_note_per_row(tmp_path):
    timing, power = _power_files(tmp_path)  # 4 W
    out = tmp_path / "o.csv"
    p = cli("dime.energy", "join", "--timing", timing, "--power", power, "--out", out, "--offset-s", "0",
            "--idle-power-w", "4.5", "--clamp-negative")
    assert p.returncode == 0, p.stderr
    got = pd.read_csv(out)
    assert (got["energy_j"] == 0).all()
    assert got["energy_note"].str.startswith("clamped to 0 from -").all()
    assert got["energy_total_j"].tolist() == pytest.approx([2.0, 1.0, 4.0])
    warnings = [line for line in p.stderr.splitlines() if "set to 0" in line]
    assert len(warnings) == 2 and "d default a: 2 of 2 runs" in warnings[0]  # one per bundle
    p = cli("dime.energy", "join", "--timing", timing, "--power", power, "--out", tmp_path / "p.csv",
            "--offset-s", "0", "--idle-power-w", "3.5")  # below the measured 4 W: plain subtraction
    assert p.returncode == 0 and "energy_note" not in pd.read_csv(tmp_path / "p.csv").columns


@pytest.mark.parametrize("column,row,value,what", [
    ("input_mw", 5, "-300", "negative power"),
    ("input_mw", 5, "abc", "not a finite number"),
    ("host_time_s", 3, "", "host_time_s is empty"),
    ("t_start_s", 1, "soon", "not a finite number"),
    ("latency_s", 0, "fast", "not a finite number"),
])
def test_energy_join_bad_cells_name_file_and_line(tmp_path, column, row, value, what):
    timing, power = _power_files(tmp_path)
    path = power if column in CSV_COLUMNS else timing
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[row, column] = value
    df.to_csv(path, index=False)
    p = cli("dime.energy", "join", "--timing", timing, "--power", power, "--out", tmp_path / "o.csv",
            "--offset-s", "0", "--idle-power-w", "1")
    assert_one_line_error(p)
    assert f"{path}: line {row + 2}" in p.stderr and what in p.stderr
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("column,value,what", [
    ("energy_j", "1e308", "implausible"), ("latency_s", "1e308", "implausible"), ("energy_j", "-1", "negative"),
    ("latency_s", "nan", "is not a number"), ("energy_j", "inf", "not finite"), ("in_bytes", "1e300", "whole number"),
])
def test_implausible_profile_numbers_are_refused_with_the_row(tmp_path, column, value, what):
    df = pd.read_csv(ALEXNET, dtype=str, keep_default_na=False)
    df["energy_j"] = (df["latency_s"].astype(float) * 20).map("{:.9g}".format)
    df.loc[7, column] = value
    path = tmp_path / "p.csv"
    df.to_csv(path, index=False)
    p = cli("dime.solve", path, *E, "--objective", "energy")
    assert_one_line_error(p)
    assert f"{path}: line 9: {column}" in p.stderr and what in p.stderr
    assert "RuntimeWarning" not in p.stderr


@pytest.mark.parametrize("flag", ["--max-latency", "--max-energy", "--uplink-mbps", "--time-limit"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_solve_budgets_finite_and_positive(flag, value):
    p = cli("dime.solve", ALEXNET, *E, flag, value)
    assert_one_line_error(p)
    assert flag in p.stderr and "usage:" not in p.stderr


def test_same_file_twice_and_duplicate_rows_warn_once_with_the_count(tmp_path):
    alone = cli("dime.solve", ALEXNET, *E)
    assert alone.returncode == 0
    p = cli("dime.solve", ALEXNET, ALEXNET.relative_to(ROOT), *E)
    assert p.returncode == 0
    assert p.stderr.count("given more than once") == 1 and "1 profile file(s)" in p.stderr
    assert p.stdout.splitlines()[:-1] == alone.stdout.splitlines()[:-1]  # runs counted once; solve time differs
    dup = tmp_path / "dup.csv"
    lines = ALEXNET.read_text().splitlines(keepends=True)
    dup.write_text("".join(lines + lines[1:4]))
    p = cli("dime.solve", dup, *E)
    assert p.returncode == 0
    warnings = [line for line in p.stderr.splitlines() if "repeat the model" in line]
    assert len(warnings) == 1 and "3 row(s)" in warnings[0] and f"{dup}: line 1442" in warnings[0]


# ------------------------------------------------------------------------------ 5. powerlog serve


@pytest.fixture
def serve(tmp_path):
    master, slave = os.openpty()
    servers = []

    def start(**kw) -> PowerLogServer:
        srv = PowerLogServer(os.ttyname(slave), tmp_path / "logs", port=0, **kw)
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
    os.close(master)
    os.close(slave)


def test_powerlog_never_follows_a_planted_part_symlink(serve, tmp_path):
    srv = serve()
    outside = tmp_path / "outside.csv"
    outside.write_text("precious\n")
    os.symlink(outside, tmp_path / "logs" / ".run.csv.part")
    with PowerLogClient(*srv.address) as client:
        with pytest.raises(MeterError, match=r"\.run\.csv\.part is in the way"):
            client.start("run")
        assert client.status()["recording"] == "-"
    assert outside.read_text() == "precious\n"
    assert os.path.islink(tmp_path / "logs" / ".run.csv.part")


def test_powerlog_refuses_an_existing_recording_unless_asked(serve, tmp_path):
    srv = serve()
    with PowerLogClient(*srv.address) as client:
        client.start("run")
        client.stop()
        before = (tmp_path / "logs" / "run.csv").read_bytes()
        with pytest.raises(MeterError, match="run.csv exists"):
            client.start("run")
    assert (tmp_path / "logs" / "run.csv").read_bytes() == before
    srv.shutdown()
    srv = serve(overwrite=True)
    with PowerLogClient(*srv.address) as client:
        client.start("run")
        assert client.stop()["file"] == "run.csv"


def test_powerlog_keeps_a_recording_that_appeared_meanwhile(serve, tmp_path):
    srv = serve()
    with PowerLogClient(*srv.address) as client:
        client.start("run")
        (tmp_path / "logs" / "run.csv").write_text("someone else's\n")
        assert client.stop()["file"] == "run.1.csv"
    assert (tmp_path / "logs" / "run.csv").read_text() == "someone else's\n"
    assert pd.read_csv(tmp_path / "logs" / "run.1.csv").columns.tolist() == list(CSV_COLUMNS)


def test_powerlog_caps_connections(serve):
    srv = serve(max_clients=2)
    held = [socket.create_connection(srv.address, timeout=5) for _ in range(2)]
    try:
        for s in held:
            s.sendall(b"ping\n")
            assert s.makefile("rb").readline() == b"pong\n"
        extra = socket.create_connection(srv.address, timeout=5)
        f = extra.makefile("rb")
        assert f.readline() == b"error too many connections\n" and f.readline() == b""
        extra.close()
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while True:  # the slots come back once the held connections are gone
        with PowerLogClient(*srv.address) as client:
            try:
                assert client.request("ping") == "pong"
                break
            except MeterError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def test_powerlog_drops_idle_clients_and_the_client_reconnects(serve, tmp_path):
    srv = serve(idle_timeout_s=0.3)
    raw = socket.create_connection(srv.address, timeout=5)
    t0 = time.monotonic()
    assert raw.makefile("rb").readline() == b""  # closed by the server
    assert 0.25 < time.monotonic() - t0 < 4
    raw.close()
    with PowerLogClient(*srv.address) as client:
        client.start("idle")
        time.sleep(0.6)  # longer than the timeout: the connection is gone, the recording is not
        assert client.stop()["file"] == "idle.csv"


# ------------------------------------------------------------------------------ 6. usage errors


@pytest.mark.parametrize("module,args", [
    ("dime.powerlog", ["serve", "--serial", "/dev/null", "--dir", "logs", "--port", "abc"]),
    ("dime.powerlog", ["serve", "--serial", "/dev/null", "--dir", "logs", "--port", "70000"]),
    ("dime.powerlog", ["serve", "--dir", "logs"]),
    ("dime.powerlog", ["nosuch"]),
    ("dime.energy", ["join", "--timing", "t.csv", "--power", "p.csv", "--out", "o.csv", "--offset-s", "abc"]),
    ("dime.energy", ["offset", "--port", "abc"]),
    ("dime.energy", []),
    ("dime.profile", ["--model", "alexnet", "--max-bundle", "two"]),
    ("dime.profile", ["--model", "alexnet", "--power", "watts"]),
    ("dime.samples", ["--model", "alexnet", "--count", "abc"]),
    ("dime.solve", ["--rtt-ms", "abc"]),
])
def test_usage_errors_are_one_line(tmp_path, module, args):
    p = cli(module, *args, cwd=tmp_path)
    assert_one_line_error(p)
    assert "usage:" not in p.stderr
    assert list(tmp_path.iterdir()) == []
