"""The sweep's CSV columns, custom links, resume from damaged cells and signals (SIGINT, SIGTERM)."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clihelp import PY, cli_env
from instances import random_table, write_profile_csv

from dime.cliargs import run_main
from dime.sweep import ENERGY_SWEEP, LATENCY_SWEEP, read_rows
from dime.sweep import cli as sweep_cli


def _sweep(tmp_path: Path, prof: Path, *args: str) -> tuple[int, Path]:
    out = tmp_path / "out" / "sweep.csv"
    argv = [str(prof), "--edge", "edgedev", "--cloud", "clouddev", "--out", str(out), "-q", *args]
    return run_main(sweep_cli.main, argv), out


def synthetic_table(seed: int, n: int):
    devices = {"edgedev": ["e0", "e1"], "clouddev": ["c0"]}
    return random_table(random.Random(seed), n, devices, ["edgedev"], 1e-2, model="synthetic")


@pytest.fixture
def prof(tmp_path: Path) -> Path:
    return write_profile_csv(tmp_path / "synthetic.csv", synthetic_table(3, 4))


def test_budget_column_holds_each_points_budget(tmp_path, prof):
    code, out = _sweep(tmp_path, prof, "--points", "4", "--links", "3g")
    assert code == 0
    with open(out, newline="") as f:
        recs = list(csv.DictReader(f))
    energy = [r for r in recs if r["sweep"] == ENERGY_SWEEP]
    latency = [r for r in recs if r["sweep"] == LATENCY_SWEEP]
    assert len(energy) == 4 and len(latency) == 4
    assert all(r["budget"] != "" and float(r["budget"]) == float(r["max_energy_j"]) for r in energy)
    assert all(r["budget"] != "" and float(r["budget"]) == float(r["max_latency_s"]) for r in latency)


def test_custom_links_through_the_one_parser(tmp_path, prof):
    code, out = _sweep(tmp_path, prof, "--points", "2", "--links", "4g,100/200/20")
    assert code == 0
    links = {r.link for r in read_rows(out)}
    assert links == {"4g", "100up-200down-20ms"}


@pytest.mark.parametrize("damage", ["header-only", "binary", "bad-number", "truncated-row"])
def test_resume_recomputes_a_cell_it_cannot_read(tmp_path, prof, damage):
    # A first run interrupted after every cell is on disk: simulate it by keeping the partial folder.
    code, out = _sweep(tmp_path, prof, "--points", "2", "--links", "3g,4g")
    assert code == 0
    reference = read_rows(out)
    partial = out.parent / f".{out.name}.partial"
    partial.mkdir()
    from dime.sweep import build_cells, options_from_args, rows_to_csv
    from dime.sweep.grid import cell_path

    args = sweep_cli.build_parser().parse_args(
        [str(prof), "--edge", "edgedev", "--cloud", "clouddev", "--out", str(out), "--points", "2", "--links", "3g,4g"])
    cells = build_cells(options_from_args(args))
    by_link = {c.link.name: c for c in cells}
    good = [r for r in reference if r.link == "4g"]
    cell_path(partial, by_link["4g"]).write_text(rows_to_csv(good))
    text = rows_to_csv([r for r in reference if r.link == "3g"])
    bad = cell_path(partial, by_link["3g"])
    if damage == "header-only":
        bad.write_text(text.splitlines()[0] + "\n")
    elif damage == "binary":
        bad.write_bytes(b"\xff\xfe\x00garbage")
    elif damage == "bad-number":
        lines = text.splitlines()
        bad.write_text("\n".join([lines[0], lines[1].replace("energy-budget,0", "energy-budget,zero", 1)] + lines[2:]))
    else:
        lines = text.splitlines()
        bad.write_text("\n".join(lines[:-1] + [lines[-1][: len(lines[-1]) // 3]]) + "\n")
    out.unlink()
    code, _ = _sweep(tmp_path, prof, "--points", "2", "--links", "3g,4g", "--resume")
    assert code == 0
    rows = read_rows(out)
    assert {r.link for r in rows} == {"3g", "4g"}  # no cell dropped
    strip = lambda rs: [(r.sweep, r.link, r.point, r.placement, r.latency_s, r.energy_j) for r in rs]  # noqa: E731
    assert strip(rows) == strip(reference)
    assert not partial.exists()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


SLOW_CELL = """
import sys, time
sys.path[:0] = {paths!r}
import dime.sweep.cell as cell
real = cell.sweep_cell
def slow(spec):
    if spec.link.name != "3g":
        time.sleep(120)  # a cell that would outlast the test
    return real(spec)
cell.sweep_cell = slow
from dime.cliargs import run_main
from dime.sweep.cli import main
sys.exit(run_main(main, sys.argv[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the worker processes")
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("jobs", [1, 2])
def test_signal_stops_the_sweep_and_its_workers(tmp_path, prof, sig, code, jobs):
    if jobs > 1 and __import__("multiprocessing").get_start_method() != "fork":
        pytest.skip("the slow cell reaches worker processes only when they are forked")
    out = tmp_path / "out" / "sweep.csv"
    script = tmp_path / "slow_sweep.py"
    root = Path(__file__).resolve().parent.parent
    script.write_text(SLOW_CELL.format(paths=[str(root), str(Path(__file__).parent)]))
    proc = subprocess.Popen(
        [PY, str(script), str(prof), "--edge", "edgedev", "--cloud", "clouddev", "--out", str(out), "-q",
         "--points", "2", "--links", "3g,4g,wifi", "--jobs", str(jobs)],
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out.parent / f".{out.name}.partial"
    deadline = time.monotonic() + 60
    def finished() -> list[Path]:  # atomic writes go through hidden temporary files first
        return [p for p in partial.glob("*.csv") if not p.name.startswith(".")] if partial.is_dir() else []

    while not finished():  # the fast 3g cell is kept
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the fast cell never finished"
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert len(workers) >= (jobs if jobs > 1 else 0)
    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    try:
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - t0 < 10, "the sweep did not stop within a few seconds"
    assert proc.returncode == code, err
    assert "Traceback" not in err
    time.sleep(0.5)
    assert not [w for w in workers if _alive(w)], "worker processes were left running"
    assert not out.exists()
    kept = finished()
    assert len(kept) == 1 and read_rows(kept[0])  # the finished cell, complete
