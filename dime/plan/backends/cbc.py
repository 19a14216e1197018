"""CBC through PuLP (the CBC binary bundled with PuLP)."""

from __future__ import annotations

import os
import tempfile
import time
import warnings

import numpy as np

from dime.errors import SolverError
from dime.plan.backends._pulp import to_pulp
from dime.plan.backends.base import (
    ERROR,
    INFEASIBLE,
    INTEGRALITY_TOL,
    OPTIMAL,
    TIME_LIMIT,
    Backend,
    BackendUnavailableError,
    RawResult,
    result,
)
from dime.plan.linear import LinearModel


class CbcBackend(Backend):
    module = "pulp"

    def name(self) -> str:
        return "cbc"

    def solve(
        self, model: LinearModel, time_limit_s: float | None = None, initial: np.ndarray | None = None
    ) -> RawResult:
        self._require()
        import pulp

        t0 = time.perf_counter()
        prob, xs = to_pulp(model)
        if initial is not None:
            for x, v in zip(xs, initial):
                x.setInitialValue(float(v))
        with tempfile.TemporaryDirectory(prefix="dime-cbc-") as tmp:
            # CBC keeps its default primal tolerance (1e-7, in the model's ms/mJ):
            # at 1e-9 its preprocessing declares budgets met with equality infeasible.
            options = [f"integerTolerance {INTEGRALITY_TOL}"]
            if model.var_priority is not None:
                options.append(f"priorityIn {_write_priorities(prob, xs, model, tmp)}")
            with warnings.catch_warnings():
                # PuLP 3.x warns that PULP_CBC_CMD goes away in PuLP 4; it is still the
                # one CBC that ships with PuLP, so use it and keep the warning off our output.
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*PULP_CBC_CMD.*")
                solver = pulp.PULP_CBC_CMD(
                    msg=False, timeLimit=time_limit_s, gapRel=0.0, gapAbs=0.0, options=options,
                    warmStart=initial is not None,
                )
            if not solver.available():
                raise BackendUnavailableError("cbc", "the CBC binary bundled with PuLP cannot be run")
            try:
                status = prob.solve(solver)
            except pulp.PulpSolverError as e:
                raise SolverError(f"cbc failed: {str(e).strip().splitlines()[0]}") from None
        elapsed = time.perf_counter() - t0
        sol_status = prob.sol_status
        values = None
        if sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            values = np.array([x.varValue if x.varValue is not None else 0.0 for x in xs], dtype=float)
        if status == pulp.LpStatusOptimal and sol_status == pulp.LpSolutionOptimal:
            return result(model, OPTIMAL, values, elapsed)
        if status == pulp.LpStatusOptimal and sol_status == pulp.LpSolutionIntegerFeasible:
            return result(model, TIME_LIMIT, values, elapsed, "stopped at the time limit")
        if status == pulp.LpStatusInfeasible:
            return result(model, INFEASIBLE, None, elapsed)
        if status == pulp.LpStatusNotSolved and time_limit_s is not None:
            return result(model, TIME_LIMIT, None, elapsed, "stopped at the time limit")
        return result(model, ERROR, None, elapsed, f"PuLP status {pulp.LpStatus.get(status, status)}")


def _write_priorities(prob, xs, model: LinearModel, folder: str) -> str:  # type: ignore[no-untyped-def]
    """CBC's priority file (csv: name, priority; lower is branched first) for the integer variables.

    PuLP hands CBC an MPS file with its columns renamed X0000000... in the order of its own
    sorted variable list (variables in no row are left out), so the names are looked up the
    same way.
    """
    assert model.var_priority is not None
    renamed = prob.normalisedNames()[1]
    top = int(np.max(model.var_priority)) if len(model.var_priority) else 0
    path = os.path.join(folder, "priorities.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("name,priority\n")
        for x, p, integer in zip(xs, model.var_priority, model.var_integer):
            if integer and x.name in renamed:
                f.write(f"{renamed[x.name]},{1 + top - int(p)}\n")
    return path
