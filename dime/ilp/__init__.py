"""The placement ILP: model building (problem.py), a neutral linear form (linear.py), backends."""

from dime.ilp.backends import AUTO_ORDER, BACKEND_NAMES, BACKENDS, get_backend
from dime.ilp.linear import LinearModel
from dime.ilp.problem import (
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
