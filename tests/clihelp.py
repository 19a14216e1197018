"""Shared helpers for tests that run the CLIs in subprocesses."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dime.cliargs import run_main

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
SHARED_IMAGES = ROOT.parent / "shared" / "data" / "imagenette_samples"
PY = sys.executable


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: the tests folder importable (toy models)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture
def images_dir() -> Path | None:
    return SHARED_IMAGES if SHARED_IMAGES.is_dir() else None


def assert_one_line_error(proc, code: int = 2) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, proc.stderr


def run_cli(module: str, *args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` in this process, as its entry point runs it (run_main around the
    module's main): the exit code, stdout and stderr (log lines included), without starting an
    interpreter and importing torch again. Tests of process behaviour (signals, children, the
    `-m` entry itself) use subprocess instead."""
    entry = importlib.import_module(module)
    if not hasattr(entry, "main"):
        entry = importlib.import_module(f"{module}.__main__")
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []  # setup_logging's basicConfig then writes to this call's stderr, as in a fresh process
    here = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run_main(entry.main, argv)
            except SystemExit as e:  # --help
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        os.chdir(here)
        for h in root.handlers:
            h.close()
        root.handlers, root.level = saved
    return subprocess.CompletedProcess([PY, "-m", module, *argv], code, out.getvalue(), err.getvalue())
