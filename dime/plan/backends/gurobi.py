"""Gurobi through gurobipy (imported lazily; the pip wheel has a size-limited license)."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

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
    BackendUnavailableError,
    RawResult,
    result,
)
from dime.plan.linear import LinearModel

SIZE_LIMIT_ERRNO = 10010  # GRB.Error.SIZE_LIMIT_EXCEEDED: "Model too large for size-limited license"
# NO_LICENSE, NETWORK, JOB_REJECTED, CLOUD, CSWORKER, SECURITY: no usable license here,
# rather than "this model failed".
LICENSE_ERRNOS = {10009, 10022, 10023, 10028, 10030, 10032}

_env: Any = None
_env_lock = threading.Lock()


def _quiet_env() -> Any:
    """One shared quiet environment: starting one checks the license, which takes time."""
    global _env
    with _env_lock:
        if _env is None:
            import gurobipy as gp

            env = gp.Env(empty=True)
            env.setParam("OutputFlag", 0)
            env.start()
            _env = env
        return _env


def _unavailable(e: Any) -> BackendUnavailableError:
    errno = getattr(e, "errno", None)
    msg = str(getattr(e, "message", e)).split(";")[0].strip().rstrip(".")
    if errno == SIZE_LIMIT_ERRNO:
        return BackendUnavailableError("gurobi", f"model too large for size-limited license (error {errno})")
    return BackendUnavailableError("gurobi", f"no usable license ({msg}, error {errno})")


class GurobiBackend(Backend):
    module = "gurobipy"

    def name(self) -> str:
        return "gurobi"

    def solve(
        self, model: LinearModel, time_limit_s: float | None = None, initial: np.ndarray | None = None
    ) -> RawResult:
        self._require()
        import gurobipy as gp
        from gurobipy import GRB

        t0 = time.perf_counter()
        try:
            env = _quiet_env()
        except gp.GurobiError as e:
            raise _unavailable(e) from None
        m = None
        try:
            m = gp.Model(model.name, env=env)
            m.Params.MIPGap = 0.0
            m.Params.MIPGapAbs = 0.0
            m.Params.FeasibilityTol = FEASIBILITY_TOL
            m.Params.IntFeasTol = INTEGRALITY_TOL
            if time_limit_s is not None:
                m.Params.TimeLimit = float(time_limit_s)
            vtypes = [
                GRB.BINARY if i and lo == 0 and up == 1 else GRB.INTEGER if i else GRB.CONTINUOUS
                for i, lo, up in zip(model.var_integer, model.var_lower, model.var_upper)
            ]
            xs = m.addVars(
                model.num_vars,
                lb=[-GRB.INFINITY if math.isinf(v) else float(v) for v in model.var_lower],
                ub=[GRB.INFINITY if math.isinf(v) else float(v) for v in model.var_upper],
                vtype=vtypes,
            )
            xl = [xs[j] for j in range(model.num_vars)]
            if initial is not None:
                for x, v in zip(xl, initial):
                    x.Start = float(v)
            if model.var_priority is not None:
                for x, p in zip(xl, model.var_priority):
                    x.BranchPriority = int(p)
            m.setObjective(gp.LinExpr(model.objective.tolist(), xl) + float(model.objective_offset), GRB.MINIMIZE)
            for name, idx, val, lo, up in model.rows():
                expr = gp.LinExpr(val.tolist(), [xl[j] for j in idx])
                if lo == up:
                    m.addLConstr(expr, GRB.EQUAL, lo, name)
                else:
                    if lo != -math.inf:
                        m.addLConstr(expr, GRB.GREATER_EQUAL, lo, name)
                    if up != math.inf:
                        m.addLConstr(expr, GRB.LESS_EQUAL, up, name)
            m.optimize()
            elapsed = time.perf_counter() - t0
            status = m.Status
            values = np.array([x.X for x in xl], dtype=float) if m.SolCount > 0 else None
        except gp.GurobiError as e:
            if getattr(e, "errno", None) in LICENSE_ERRNOS | {SIZE_LIMIT_ERRNO}:
                raise _unavailable(e) from None
            raise SolverError(f"gurobi failed: {e} (error {getattr(e, 'errno', '?')})") from None
        finally:
            if m is not None:
                m.dispose()
        if status == GRB.INTERRUPTED:
            # Gurobi takes over SIGINT while it optimises; hand the user's Ctrl-C back.
            raise KeyboardInterrupt
        if status == GRB.OPTIMAL:
            return result(model, OPTIMAL, values, elapsed)
        if status in (GRB.INFEASIBLE, GRB.INF_OR_UNBD):
            # Every variable is bounded, so "infeasible or unbounded" can only be infeasible.
            return result(model, INFEASIBLE, None, elapsed)
        if status == GRB.TIME_LIMIT:
            return result(model, TIME_LIMIT, values, elapsed, "stopped at the time limit")
        return result(model, ERROR, None, elapsed, f"Gurobi status {status}")
