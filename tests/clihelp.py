"""Shared helpers for tests that run the CLIs in subprocesses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

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
