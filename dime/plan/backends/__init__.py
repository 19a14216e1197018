"""Solver backends and the `auto` choice among them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from dime.errors import SolverError, UsageError
from dime.plan.backends.base import Backend, BackendUnavailableError, RawResult
from dime.plan.backends.cbc import CbcBackend
from dime.plan.backends.gurobi import GurobiBackend
from dime.plan.backends.highs import HighsBackend
from dime.plan.linear import LinearModel

log = logging.getLogger(__name__)

BACKENDS: dict[str, type[Backend]] = {"gurobi": GurobiBackend, "cbc": CbcBackend, "highs": HighsBackend}
AUTO_ORDER: tuple[str, ...] = ("gurobi", "cbc", "highs")
# "dp" is the label-setting DP (dime.plan.dp): no LinearModel, so not a Backend; the model dispatches it.
BACKEND_NAMES: tuple[str, ...] = ("auto", "dp") + tuple(BACKENDS)

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "BACKEND_NAMES",
    "AutoChoice",
    "Backend",
    "BackendUnavailableError",
    "RawResult",
    "get_backend",
    "run_backend",
]


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name.lower()]()
    except KeyError:
        raise UsageError(f"unknown solver {name!r}; choose from {', '.join(BACKEND_NAMES)}") from None


@dataclass
class AutoChoice:
    """Remembers, for one model structure, which backends `auto` found unusable and why.

    The model's size does not change when only budgets change, so a backend that was too
    large for its license once is not tried again on every re-solve of a sweep.
    """

    skipped: dict[str, str] = field(default_factory=dict)  # backend -> reason


def run_backend(
    name: str, model: LinearModel, time_limit_s: float | None = None, auto: AutoChoice | None = None,
    initial: np.ndarray | None = None,
) -> tuple[RawResult, str, str]:
    """Solve with backend `name` or, for "auto", the first usable in AUTO_ORDER.

    `initial`: a feasible point to start from (see Backend). Returns (result, backend used,
    note); the note says why `auto` passed over a backend.
    """
    if name.lower() != "auto":
        return get_backend(name).solve(model, time_limit_s, initial), name.lower(), ""
    auto = auto if auto is not None else AutoChoice()
    for candidate in AUTO_ORDER:
        if candidate in auto.skipped:
            continue
        backend = get_backend(candidate)
        if not backend.is_installed():
            auto.skipped[candidate] = "not installed"
            continue
        try:
            raw = backend.solve(model, time_limit_s, initial)
        except BackendUnavailableError as e:
            auto.skipped[candidate] = e.reason
            log.debug("auto: %s unusable: %s", candidate, e.reason)
            continue
        note = "; ".join(f"{b}: {why}" for b, why in auto.skipped.items())
        if note:
            note += f"; used {candidate}"
        return raw, candidate, note
    raise SolverError(
        "no solver backend usable: " + "; ".join(f"{b}: {why}" for b, why in auto.skipped.items())
    )
