"""The interface every solver backend implements."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from dime.errors import SolverError
from dime.plan.linear import (
    ERROR,
    INFEASIBLE,
    OPTIMAL,
    STATUSES,
    TIME_LIMIT,
    LinearModel,
)

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "RawResult",
    "OPTIMAL",
    "INFEASIBLE",
    "TIME_LIMIT",
    "ERROR",
]

# Every backend is asked for the exact optimum (zero MIP gap) and tight feasibility, so
# that all of them return the same objective; the models are small enough for that.
FEASIBILITY_TOL = 1e-9
INTEGRALITY_TOL = 1e-9


class BackendUnavailableError(SolverError):
    """The backend cannot solve this model here: not installed, no license, too large for it."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend}: {reason}")
        self.backend = backend
        self.reason = reason


@dataclass(frozen=True)
class RawResult:
    """What a backend found, in the model's own units."""

    status: str  # one of dime.plan.linear.STATUSES
    values: np.ndarray | None  # None when no solution is known
    objective: float | None
    solve_time_s: float
    message: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


class Backend(ABC):
    """A MILP solver. `solve` must not print; a missing/unlicensed solver raises BackendUnavailableError.

    `initial`, when given, is a feasible point of the model (one value per variable) that the
    solver may start from; it never changes the optimum, only how soon it is found.
    """

    module: str = ""  # the Python module that must be importable

    @abstractmethod
    def name(self) -> str: ...

    def is_installed(self) -> bool:
        """Whether the solver's module can be imported (checked without importing it)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False

    @abstractmethod
    def solve(
        self, model: LinearModel, time_limit_s: float | None = None, initial: np.ndarray | None = None
    ) -> RawResult: ...

    def _require(self) -> None:
        if not self.is_installed():
            raise BackendUnavailableError(self.name(), f"not installed (no module {self.module})")


def result(
    model: LinearModel, status: str, values: np.ndarray | None, solve_time_s: float, message: str = ""
) -> RawResult:
    """A RawResult with the objective recomputed from the values (same arithmetic for every backend)."""
    if values is not None:
        values = np.asarray(values, dtype=float)
    objective = model.objective_value(values) if values is not None else None
    return RawResult(status, values, objective, solve_time_s, message)
