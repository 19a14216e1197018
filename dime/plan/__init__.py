"""The placement ILP: model building (problem.py), a neutral linear form (linear.py), backends."""

from dime.plan.backends import AUTO_ORDER, BACKEND_NAMES, BACKENDS, get_backend
from dime.plan.linear import LinearModel
from dime.plan.problem import (
    OBJECTIVES,
    ROLE_NAMES,
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
    "LinearModel",
    "OBJECTIVES",
    "ROLE_NAMES",
    "PlacementModel",
    "PlacementProblem",
    "Solution",
    "build_model",
    "get_backend",
    "solve",
]
