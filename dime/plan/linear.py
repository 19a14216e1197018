"""A solver-neutral mixed-integer linear model, the only thing backends see.

    minimize    objective · x + objective_offset
    subject to  row_lower <= A x <= row_upper     (A sparse, row-wise)
                var_lower <= x <= var_upper,  x_j integer where var_integer[j]

A row bound of ±inf means "no bound"; a row with both bounds infinite is inactive
(the budget rows when no budget is set). Changing budgets or the objective only
replaces `row_upper` / `objective`, so the arrays describing A are shared.

`var_priority` (optional) asks a backend to branch on variables of higher priority first;
it is a hint, never a constraint, and backends without priorities ignore it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

INF = math.inf

# Shared statuses every backend maps its own onto.
OPTIMAL = "optimal"
INFEASIBLE = "infeasible"
TIME_LIMIT = "time_limit"
ERROR = "error"
STATUSES = (OPTIMAL, INFEASIBLE, TIME_LIMIT, ERROR)


@dataclass(frozen=True, eq=False)
class LinearModel:
    name: str
    var_names: tuple[str, ...]
    var_lower: np.ndarray
    var_upper: np.ndarray
    var_integer: np.ndarray  # bool
    row_names: tuple[str, ...]
    row_start: np.ndarray  # CSR: row i holds entries row_start[i]:row_start[i+1]
    row_index: np.ndarray
    row_value: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    objective: np.ndarray
    objective_offset: float = 0.0
    var_priority: np.ndarray | None = None  # int, higher branches first; None: the solver's own choice

    @property
    def num_vars(self) -> int:
        return len(self.var_names)

    @property
    def num_rows(self) -> int:
        """All rows, inactive ones (both bounds infinite) included."""
        return len(self.row_names)

    @property
    def num_active_rows(self) -> int:
        return int(np.sum(np.isfinite(self.row_lower) | np.isfinite(self.row_upper)))

    def rows(self, active_only: bool = True) -> Iterator[tuple[str, np.ndarray, np.ndarray, float, float]]:
        """(name, indices, values, lower, upper) for each row."""
        for i, name in enumerate(self.row_names):
            lo, up = float(self.row_lower[i]), float(self.row_upper[i])
            if active_only and lo == -INF and up == INF:
                continue
            a, b = self.row_start[i], self.row_start[i + 1]
            yield name, self.row_index[a:b], self.row_value[a:b], lo, up

    def objective_value(self, x: np.ndarray) -> float:
        return float(self.objective @ x + self.objective_offset)

    def with_changes(
        self, objective: np.ndarray | None = None, row_upper: np.ndarray | None = None,
        var_upper: np.ndarray | None = None,
    ) -> "LinearModel":
        """A copy sharing the constraint matrix, with a new objective, row upper bounds and/or
        variable upper bounds."""
        return replace(
            self,
            objective=self.objective if objective is None else objective,
            row_upper=self.row_upper if row_upper is None else row_upper,
            var_upper=self.var_upper if var_upper is None else var_upper,
        )


@dataclass
class ModelBuilder:
    """Collects variables and rows, then freezes them into a LinearModel."""

    name: str = "model"
    _var_names: list[str] = field(default_factory=list)
    _lower: list[float] = field(default_factory=list)
    _upper: list[float] = field(default_factory=list)
    _integer: list[bool] = field(default_factory=list)
    _row_names: list[str] = field(default_factory=list)
    _row_start: list[int] = field(default_factory=lambda: [0])
    _row_index: list[int] = field(default_factory=list)
    _row_value: list[float] = field(default_factory=list)
    _row_lower: list[float] = field(default_factory=list)
    _row_upper: list[float] = field(default_factory=list)

    @property
    def num_vars(self) -> int:
        return len(self._var_names)

    def add_var(self, name: str, lower: float = 0.0, upper: float = 1.0, integer: bool = True) -> int:
        self._var_names.append(name)
        self._lower.append(lower)
        self._upper.append(upper)
        self._integer.append(integer)
        return len(self._var_names) - 1

    def add_row(self, name: str, terms: dict[int, float], lower: float, upper: float) -> int:
        for j, c in terms.items():
            if c != 0.0:
                self._row_index.append(j)
                self._row_value.append(float(c))
        self._row_start.append(len(self._row_index))
        self._row_names.append(name)
        self._row_lower.append(lower)
        self._row_upper.append(upper)
        return len(self._row_names) - 1

    def build(self, objective: np.ndarray | None = None, priority: np.ndarray | None = None) -> LinearModel:
        n = len(self._var_names)
        return LinearModel(
            name=self.name,
            var_names=tuple(self._var_names),
            var_lower=np.array(self._lower, dtype=float),
            var_upper=np.array(self._upper, dtype=float),
            var_integer=np.array(self._integer, dtype=bool),
            row_names=tuple(self._row_names),
            row_start=np.array(self._row_start, dtype=np.int64),
            row_index=np.array(self._row_index, dtype=np.int64),
            row_value=np.array(self._row_value, dtype=float),
            row_lower=np.array(self._row_lower, dtype=float),
            row_upper=np.array(self._row_upper, dtype=float),
            objective=np.zeros(n) if objective is None else objective,
            var_priority=priority,
        )
