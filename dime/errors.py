"""One exception root for dime; the CLIs turn these into one-line messages."""

from __future__ import annotations


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's text (torch and others add pages of context)."""
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


class DimeError(Exception):
    """Root of every error dime raises on purpose. CLI exit code 2."""

    exit_code = 2


class UsageError(DimeError):
    """Bad arguments or bad input files."""


class ModelError(DimeError):
    """A model cannot be loaded, traced or split."""


class ProfileError(DimeError):
    """A profile file is missing, malformed or does not cover what was asked."""


class SolverError(DimeError):
    """A solver backend is missing, unlicensed or failed."""


class InfeasibleError(DimeError):
    """The budgets admit no placement. CLI exit code 1."""

    exit_code = 1


class DvfsError(DimeError):
    """An operating point (clock frequency) cannot be listed, set or restored."""


class MeterError(DimeError):
    """A power meter is missing, unreadable or gave no usable reading."""


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that clean-up runs. CLI exit code 143."""


class ShaperError(DimeError):
    """Kernel link shaping (network namespaces, veth, tc) cannot be set up or measured."""
