"""The placement planner: the problem (statement.py), the ILP (problem.py, linear.py, backends) and the
exact label-setting DP (dp.py), behind one PlacementProblem -> Solution API."""

from dime.core.costs import ROLE_NAMES
from dime.plan.backends import AUTO_ORDER, BACKEND_NAMES, BACKENDS, get_backend
from dime.plan.dp import Front, dp_unsupported, solve_front
from dime.plan.linear import LinearModel
from dime.plan.problem import (
    OBJECTIVES,
    PlacementModel,
    PlacementProblem,
    Solution,
    build_model,
    solve,
)

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "BACKEND_NAMES",
    "Front",
    "OBJECTIVES",
    "ROLE_NAMES",
    "LinearModel",
    "PlacementModel",
    "PlacementProblem",
    "Solution",
    "build_model",
    "dp_unsupported",
    "get_backend",
    "solve",
    "solve_front",
]
