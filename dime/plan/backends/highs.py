"""HiGHS through highspy, fed the sparse arrays directly."""

from __future__ import annotations

import time

import numpy as np

from dime.errors import SolverError
from dime.plan.backends.base import (
    ERROR,
    FEASIBILITY_TOL,
    INFEASIBLE,
    INTEGRALITY_TOL,
    OPTIMAL,
    TIME_LIMIT,
    Backend,
    RawResult,
    result,
)
from dime.plan.linear import LinearModel


def _new_highs():  # type: ignore[no-untyped-def]
    import highspy

    # highspy.Highs() prints a banner to stdout while it sets up callbacks, before any
    # option can turn output off; the plain C++ class underneath stays quiet.
    base = getattr(getattr(highspy, "_core", None), "_Highs", None)
    h = base() if base is not None else highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


class HighsBackend(Backend):
    module = "highspy"

    def name(self) -> str:
        return "highs"

    def solve(
        self, model: LinearModel, time_limit_s: float | None = None, initial: np.ndarray | None = None
    ) -> RawResult:
        self._require()
        import highspy

        t0 = time.perf_counter()
        h = _new_highs()
        inf = highspy.kHighsInf
        lp = highspy.HighsLp()
        lp.num_col_ = model.num_vars
        lp.num_row_ = model.num_rows
        lp.col_cost_ = model.objective.astype(float)
        lp.offset_ = float(model.objective_offset)
        lp.col_lower_ = np.where(np.isinf(model.var_lower), -inf, model.var_lower)
        lp.col_upper_ = np.where(np.isinf(model.var_upper), inf, model.var_upper)
        lp.row_lower_ = np.where(np.isinf(model.row_lower), -inf, model.row_lower)
        lp.row_upper_ = np.where(np.isinf(model.row_upper), inf, model.row_upper)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_ = model.num_vars
        lp.a_matrix_.num_row_ = model.num_rows
        lp.a_matrix_.start_ = model.row_start.astype(np.int32)
        lp.a_matrix_.index_ = model.row_index.astype(np.int32)
        lp.a_matrix_.value_ = model.row_value.astype(float)
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous for b in model.var_integer
        ]
        options = {
            "mip_rel_gap": 0.0,
            "mip_abs_gap": 0.0,
            "primal_feasibility_tolerance": FEASIBILITY_TOL,
            "mip_feasibility_tolerance": INTEGRALITY_TOL,
        }
        if time_limit_s is not None:
            options["time_limit"] = float(time_limit_s)
        for key, value in options.items():
            if h.setOptionValue(key, value) != highspy.HighsStatus.kOk:
                raise SolverError(f"highs: cannot set option {key}={value}")
        if h.passModel(lp) == highspy.HighsStatus.kError:
            raise SolverError("highs: the model was rejected")
        if initial is not None:
            # HiGHS has no branching priorities; var_priority is ignored.
            start = highspy.HighsSolution()
            start.col_value = np.asarray(initial, dtype=float)
            start.value_valid = True
            h.setSolution(start)
        h.run()
        elapsed = time.perf_counter() - t0
        status = h.getModelStatus()
        ms = highspy.HighsModelStatus
        has_solution = h.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible
        values = np.array(h.getSolution().col_value, dtype=float) if has_solution else None
        if status == ms.kOptimal:
            return result(model, OPTIMAL, values, elapsed)
        if status in (ms.kInfeasible, ms.kUnboundedOrInfeasible):
            # Every variable is bounded, so "unbounded or infeasible" can only be infeasible.
            return result(model, INFEASIBLE, None, elapsed)
        if status == ms.kTimeLimit:
            return result(model, TIME_LIMIT, values, elapsed, "stopped at the time limit")
        return result(model, ERROR, None, elapsed, f"HiGHS status {h.modelStatusToString(status)}")
