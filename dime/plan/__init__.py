"""The placement ILP: model building (problem.py), a neutral linear form (linear.py), backends."""

from dime.core.costs import ROLE_NAMES
from dime.plan.backends import AUTO_ORDER, BACKEND_NAMES, BACKENDS, get_backend
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
    "OBJECTIVES",
    "ROLE_NAMES",
    "LinearModel",
    "PlacementModel",
    "PlacementProblem",
    "Solution",
    "build_model",
    "get_backend",
    "solve",
]
