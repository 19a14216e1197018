"""Issue 22, 3: bad input that hung, crashed or passed silently. Each case: exit 2 (1 for an
infeasible problem), exactly one `error:` line, and nothing written or half-written.

The CLIs run in this process (their `main` under run_main, as the console scripts do), each
in a thread with a time limit, so that a read that blocks (a FIFO) fails the test instead of
hanging it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from pathlib import Path
from typing import Callable, Sequence

import pytest
from clihelp import assert_one_line_error
from nd_helpers import SKIP_CUTS, SKIPNET, SMALL, fake_profile, solution, system_file

from dime.cliargs import run_main

TIMEOUT_S = 120  # far beyond any case here, on a loaded machine; a blocked read never ends


def _main(module: str) -> Callable[[Sequence[str] | None], int]:
    import importlib

    names = {"solve": "dime.plan.solve", "validate": "dime.run.validate", "sweep": "dime.sweep.cli",
             "run": "dime.run.cli", "samples": "dime.capture.samples", "profile": "dime.profiling.profiler",
             "energy": "dime.profiling.power.join"}
    return importlib.import_module(names[module]).main


def cli(capsys, module: str, *args: object, unblock: Sequence[Path] = ()) -> subprocess.CompletedProcess:
    """`module`'s main on `args` in a thread; a call still running after TIMEOUT_S fails the test
    (the FIFOs in `unblock` are then opened for writing, so that its thread can end)."""
    argv = [str(a) for a in args]
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["rc"] = run_main(_main(module), argv)
        except BaseException as e:  # a traceback the CLI let through
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(TIMEOUT_S)
    if t.is_alive():
        for fifo in unblock:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)) if fifo.exists() else None
        pytest.fail(f"{module} {' '.join(argv)}: still running after {TIMEOUT_S} s (a blocking read?)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, box["rc"], out, err)


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under `folder`: a regular file's bytes, else its kind (a FIFO stays a FIFO)."""
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        out[key] = p.read_bytes() if p.is_file() and not p.is_symlink() else (
            "link" if p.is_symlink() else "dir" if p.is_dir() else "special")
    return out


@pytest.fixture
def setup(tmp_path):
    """A made-up skipnet profile, a two-device system on it, a solution, feature maps for the
    profiler, a power log and timing for energy join, and the bad files: a FIFO and a link to /dev/zero."""
    prof = tmp_path / "skipnet.csv"
    fake_profile(prof)
    system = system_file(tmp_path, 2)
    sol = solution(tmp_path, [(0, 1, "a"), (2, 3, "b")])
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.csv"
    zero.symlink_to("/dev/zero")
    return {"tmp": tmp_path, "prof": prof, "sys": system, "sol": sol, "fifo": fifo, "zero": zero}


def _system_listing(s, bad: Path) -> Path:
    path = s["tmp"] / "bad-sys.toml"
    path.write_text(s["sys"].read_text().replace('profiles = ["skipnet.csv"]', f'profiles = ["{bad}"]'))
    return path


TWO = ["--edge", "cpu", "--cloud", "cpu"]
SOLVE = [*TWO, "--link", "wifi"]
RUN = ["local", "--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL, "--shaper", "user", "-q"]
MODEL = ["--model", SKIPNET, "--cuts", ",".join(SKIP_CUTS), "--inputs", "x:float32:1x3x16x16"]
VALIDATE_TWO = ["--profile", "{prof}", "--models", SKIPNET, *TWO, "--edge-settings", "threads=1",
                "--cloud-settings", "threads=1", "--cuts", ",".join(SKIP_CUTS), "--input-shape", SMALL]

# (command, option): the arguments with BAD where the bad file goes; {name} are the setup's files
FILE_OPTIONS: dict[tuple[str, str], list[str]] = {
    ("solve", "PROFILE"): ["BAD", *SOLVE],
    ("solve", "--profile"): ["--profile", "BAD", *SOLVE],
    ("solve", "--system"): ["--system", "BAD"],
    ("solve", "system profiles"): ["--system", "SYS(BAD)"],
    ("solve", "--json"): ["{prof}", *SOLVE, "--json", "BAD"],
    ("solve", "--write-lp"): ["{prof}", *SOLVE, "--write-lp", "BAD"],
    ("validate", "--system"): ["--system", "BAD", "--out", "{tmp}/v.csv"],
    ("validate", "system profiles"): ["--system", "SYS(BAD)", "--out", "{tmp}/v.csv"],
    ("validate", "--profile"): [*VALIDATE_TWO[:1], "BAD", *VALIDATE_TWO[2:], "--out", "{tmp}/v.csv"],
    ("validate", "--images"): [*VALIDATE_TWO, "--images", "BAD", "--out", "{tmp}/v.csv", "--splits", "none"],
    ("validate", "--out"): [*VALIDATE_TWO, "--out", "BAD"],
    ("validate", "--summary"): [*VALIDATE_TWO, "--out", "{tmp}/v.csv", "--summary", "BAD"],
    ("sweep", "PROFILE"): ["BAD", *TWO, "--out", "{tmp}/s.csv"],
    ("sweep", "--profile"): ["--profile", "BAD", *TWO, "--out", "{tmp}/s.csv"],
    ("sweep", "--out"): ["{prof}", *TWO, "--out", "BAD"],
    ("sweep", "--plot"): ["{prof}", *TWO, "--out", "{tmp}/s.csv", "--plot", "BAD"],
    ("run", "--solution"): [*RUN, "--system", "{sys}", "--solution", "BAD"],
    ("run", "--system"): [*RUN, "--system", "BAD", "--solution", "{sol}", "--model", SKIPNET],
    ("run", "system profiles"): [*RUN, "--system", "SYS(BAD)", "--solution", "{sol}"],
    ("run", "--plan"): [*RUN, "--model", SKIPNET, "--plan", "BAD"],
    ("run", "--profile"): [*RUN, "--model", SKIPNET, "--split", "conv1", "--profile", "BAD"],
    ("run", "--weights"): [*RUN, "--system", "{sys}", "--solution", "{sol}", "--weights", "BAD"],
    ("run", "--images"): [*RUN, "--system", "{sys}", "--solution", "{sol}", "--images", "BAD"],
    ("run", "--out"): [*RUN, "--system", "{sys}", "--solution", "{sol}", "--out", "BAD"],
    ("run", "--outputs"): [*RUN, "--system", "{sys}", "--solution", "{sol}", "--outputs", "BAD"],
    ("samples", "--weights"): [*MODEL, "--weights", "BAD", "--out", "{tmp}/samples", "-q"],
    ("samples", "--images"): [*MODEL, "--images", "BAD", "--out", "{tmp}/samples", "-q"],
    ("samples", "--out"): [*MODEL, "--out", "BAD", "-q"],
    ("profile", "--samples"): [*MODEL, "--samples", "BAD", "--out", "{tmp}/p.csv", "-q"],
    ("profile", "--out"): [*MODEL, "--samples", "{tmp}", "--out", "BAD", "-q"],
    ("profile", "--weights"): [*MODEL, "--weights", "BAD", "--samples", "{tmp}", "--out", "{tmp}/p.csv", "-q"],
    ("energy", "--timing"): ["join", "--timing", "BAD", "--power", "{prof}", "--out", "{tmp}/e.csv"],
    ("energy", "--power"): ["join", "--timing", "{prof}", "--power", "BAD", "--out", "{tmp}/e.csv"],
    ("energy", "--out"): ["join", "--timing", "{prof}", "--power", "{prof}", "--out", "BAD"],
}


def _args(s, template: Sequence[str], bad: Path) -> list[str]:
    out = []
    for a in template:
        if a == "BAD":
            out.append(str(bad))
        elif a == "SYS(BAD)":
            out.append(str(_system_listing(s, bad)))
        else:
            out.append(a.format(**{k: v for k, v in s.items()}))
    return out


@pytest.mark.parametrize("kind", ["fifo", "zero"])
@pytest.mark.parametrize("case", list(FILE_OPTIONS), ids=[f"{c}:{o}".replace(" ", "_") for c, o in FILE_OPTIONS])
def test_a_fifo_or_dev_zero_for_any_file_option_is_one_line_at_once(capsys, setup, case, kind):
    """Given as any input or output file (or folder), a FIFO neither blocks nor is read, and a
    link to /dev/zero is not read without end: one line naming it, exit 2, nothing written."""
    bad = setup[kind]
    args = _args(setup, FILE_OPTIONS[case], bad)
    before = snapshot(setup["tmp"])
    p = cli(capsys, case[0], *args, unblock=[setup["fifo"]])
    assert_one_line_error(p)
    (line,) = [x for x in p.stderr.splitlines() if x.startswith("error:")]
    assert str(bad) in line, line
    assert snapshot(setup["tmp"]) == before


# ---- --inputs ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec,needle", [
    ("x:float32:1x3x16x16,y:float32:1x3x16x16", "forward takes (x)"),  # one more than forward takes
    ("img:float32:1x3x16x16", "forward takes (x)"),  # a name forward does not have
    ("x:float32:100000x100000x100", "bytes per sample"),  # bounded before anything is allocated
])
def test_samples_refuses_inputs_the_model_does_not_take_and_writes_nothing(capsys, tmp_path, spec, needle):
    out = tmp_path / "samples"
    p = cli(capsys, "samples", "--model", SKIPNET, "--inputs", spec, "--count", "1", "--out", out, "-q")
    assert_one_line_error(p)
    assert needle in p.stderr, p.stderr
    assert not out.exists()


@pytest.mark.parametrize("spec", ["x:float32:1x4x16x16", "x:int64:1x3x16x16"])
def test_inputs_of_another_shape_or_dtype_are_the_one_error_line_only(capsys, tmp_path, spec):
    """The capture's run fails inside torch, whose message runs to several lines: only its first is shown."""
    out = tmp_path / "samples"
    p = cli(capsys, "samples", "--model", SKIPNET, "--inputs", spec, "--count", "1", "--out", out, "-q")
    assert_one_line_error(p)
    assert p.stderr.count("\n") == 1 and "running it on its example inputs failed" in p.stderr, p.stderr
    assert not out.exists()


def test_input_names_follow_forward():
    """In order for a module's forward; by name (hf) each an argument; *args accepts any."""
    import torch

    from dime.capture.inputs import check_forward_names, parse_inputs
    from dime.errors import UsageError

    def two(x, mask=None):
        return x

    def anything(*xs):
        return xs

    check_forward_names(two, parse_inputs("x:float32:2"), "m")
    check_forward_names(two, parse_inputs("x:float32:2,mask:bool:2"), "m")
    check_forward_names(anything, parse_inputs("a:float32:2,b:float32:2"), "m")
    check_forward_names(two, parse_inputs("mask:bool:2,x:float32:2"), "m", by_name=True)
    for spec, by_name in (("mask:bool:2,x:float32:2", False), ("y:float32:2", False), ("y:float32:2", True)):
        with pytest.raises(UsageError, match=r"m's forward takes \(x, mask\)"):
            check_forward_names(two, parse_inputs(spec), "m", by_name=by_name)
    assert torch.float32 in {s.dtype for s in parse_inputs("x:float32:1x3")}


# ---- profiles and system files -------------------------------------------------------------
def _other_model_profile(path: Path) -> Path:
    fake_profile(path)
    path.write_text(path.read_text().replace(SKIPNET, "toy_models:other"))
    return path


def test_a_system_device_whose_profiles_hold_only_another_model_is_refused(capsys, tmp_path):
    system = system_file(tmp_path, 3)
    _other_model_profile(tmp_path / "other.csv")
    text = system.read_text()
    last = text.rindex('profiles = ["skipnet.csv"]')
    system.write_text(text[:last] + 'profiles = ["other.csv"]' + text[last + len('profiles = ["skipnet.csv"]'):])
    p = cli(capsys, "solve", "--system", system)
    assert_one_line_error(p)
    assert "device 'c'" in p.stderr and "hold no rows of cpu" in p.stderr, p.stderr


def test_two_devices_standing_for_one_profiled_device_with_other_files_are_refused(capsys, tmp_path):
    """Their rows would be averaged into one table, each device's costs mixed with the other's."""
    system = system_file(tmp_path, 2)
    fake_profile(tmp_path / "second.csv")
    text = system.read_text()
    last = text.rindex('profiles = ["skipnet.csv"]')
    system.write_text(text[:last] + 'profiles = ["second.csv"]' + text[last + len('profiles = ["skipnet.csv"]'):])
    p = cli(capsys, "solve", "--system", system)
    assert_one_line_error(p)
    assert "which it does not list" in p.stderr, p.stderr


@pytest.mark.parametrize("where", ["folder", "under a file"])
@pytest.mark.parametrize("how", ["solve PROFILE", "system profiles", "run --profile"])
def test_a_profile_path_that_is_a_folder_or_under_a_file_says_so(capsys, tmp_path, where, how):
    s = {"tmp": tmp_path, "sys": system_file(tmp_path, 2), "prof": tmp_path / "skipnet.csv"}
    if where == "folder":
        bad, said = tmp_path / "adir", "is a folder"
        bad.mkdir()
    else:
        bad, said = s["prof"] / "x.csv", f"{s['prof']} is a file, not a folder"
    if how == "solve PROFILE":
        p = cli(capsys, "solve", bad, *SOLVE)
    elif how == "system profiles":
        p = cli(capsys, "solve", "--system", _system_listing(s, bad))
    else:
        p = cli(capsys, "run", *RUN, "--model", SKIPNET, "--split", "conv1", "--profile", bad)
    assert_one_line_error(p)
    assert said in p.stderr and "not found" not in p.stderr, p.stderr


@pytest.mark.parametrize("links", ["", ","])
def test_sweep_links_naming_no_link_are_refused(capsys, tmp_path, links):
    prof = tmp_path / "skipnet.csv"
    fake_profile(prof)
    out = tmp_path / "s.csv"
    p = cli(capsys, "sweep", prof, *TWO, "--links", links, "--out", out)
    assert_one_line_error(p)
    assert "--links" in p.stderr
    assert not out.exists()


# ---- dime.run ------------------------------------------------------------------------------
def _solution_with(tmp_path: Path, change: Callable[[dict], None]) -> Path:
    path = solution(tmp_path, [(0, 1, "a"), (2, 3, "c")])
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_run_local_checks_the_solution_before_any_device_namespace_or_weight(capsys, tmp_path, monkeypatch):
    """A setting the system does not profile: one line naming it, before the launcher picks a
    shaper (namespaces) or starts a device (which loads the weights)."""
    import dime.run.control.local as local

    def never(*a, **kw):
        raise AssertionError("the launcher went on past a bad solution")

    monkeypatch.setattr(local, "choose_shaper", never)
    monkeypatch.setattr(local, "_start", never)
    system = system_file(tmp_path, 3, relays="b")
    sol = _solution_with(tmp_path, lambda d: d["placement"][1].update(setting="threads=7"))
    p = cli(capsys, "run", *RUN, "--system", system, "--solution", sol)
    assert_one_line_error(p)
    assert "pool+tail on c at setting 'threads=7'" in p.stderr and "threads=1" in p.stderr, p.stderr


def test_a_prediction_that_cannot_be_made_names_the_devices(caplog, tmp_path):
    """predict() with N devices and a missing cost: a warning in the devices' names (it passed
    the default two role names, and ended in an IndexError)."""
    from dime.core.costs import Assignment, Role
    from dime.core.links import Link
    from dime.core.network import NetLink, Network
    from dime.profiling.reader import load_profiles
    from dime.run.plan import predict

    fake_profile(tmp_path / "p.csv")
    table = load_profiles([tmp_path / "p.csv"])
    roles = [Role("cpu", ("threads=1",), name) for name in "abc"]
    fast = Link("fast", 100, 100)
    net = Network(3, (NetLink(0, 1, fast), NetLink(1, 2, fast)), 0)
    placement = [Assignment(0, 1, 0, "threads=1"), Assignment(2, 3, 2, "threads=7")]
    with caplog.at_level(logging.WARNING, logger="dime.run"):
        assert predict(table, roles, net, placement) == (None, None)
    assert "conv1+conv2@a/threads=1 | pool+tail@c/threads=7" in caplog.text


@pytest.mark.parametrize("entries,said", [
    ([(0, 1, "a"), (1, 3, "c")], "layer conv2 placed twice"),
    ([(0, 0, "a"), (2, 3, "c")], "layer conv2 placed nowhere"),
])
def test_a_solution_that_is_not_a_chain_shows_its_placement(capsys, tmp_path, entries, said):
    system = system_file(tmp_path, 3, relays="b")
    sol = solution(tmp_path, entries)
    p = cli(capsys, "run", *RUN, "--system", system, "--solution", sol)
    assert_one_line_error(p)
    assert said in p.stderr and "@a/threads=1" in p.stderr and "Assignment(" not in p.stderr, p.stderr


def test_solve_says_when_json_replaces_a_file(capsys, tmp_path, caplog):
    prof = tmp_path / "skipnet.csv"
    fake_profile(prof)
    out = tmp_path / "sol.json"
    out.write_text("kept by someone\n")
    with caplog.at_level(logging.INFO, logger="dime.solve"):
        p = cli(capsys, "solve", prof, *SOLVE, "--json", out, "-q")
    assert p.returncode == 0, p.stderr
    assert json.loads(out.read_text())["model"] == SKIPNET
    notes = [(r.levelno, r.getMessage()) for r in caplog.records if "replaced" in r.getMessage()]
    assert notes == [(logging.WARNING, f"note: replaced the existing {out}")]  # shown even with -q
