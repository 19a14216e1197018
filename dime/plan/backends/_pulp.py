"""LinearModel -> PuLP problem, for the CBC backend and for writing LP/MPS files."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dime.plan.linear import LinearModel

if TYPE_CHECKING:
    import pulp


def to_pulp(model: LinearModel) -> tuple["pulp.LpProblem", list["pulp.LpVariable"]]:
    """The model as a PuLP problem and its variables in model order; inactive rows are left out."""
    import pulp

    prob = pulp.LpProblem(model.name, pulp.LpMinimize)
    xs = []
    for name, lo, up, integer in zip(model.var_names, model.var_lower, model.var_upper, model.var_integer):
        if not integer:
            cat = pulp.LpContinuous
        elif lo == 0.0 and up == 1.0:
            cat = pulp.LpBinary
        else:
            cat = pulp.LpInteger
        lower = None if math.isinf(lo) else float(lo)
        upper = None if math.isinf(up) else float(up)
        xs.append(prob.add_variable(name, lowBound=lower, upBound=upper, cat=cat))
    prob.setObjective(
        pulp.LpAffineExpression(
            [(xs[j], float(c)) for j, c in enumerate(model.objective) if c != 0.0],
            constant=float(model.objective_offset),
        )
    )
    for name, idx, val, lo, up in model.rows():
        expr = pulp.LpAffineExpression([(xs[j], float(c)) for j, c in zip(idx, val)])
        if lo == up:
            prob.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintEQ, rhs=lo), name)
        else:
            ranged = lo != -math.inf and up != math.inf  # two rows, told apart by suffix
            if lo != -math.inf:
                row = pulp.LpConstraint(expr, pulp.LpConstraintGE, rhs=lo)
                prob.addConstraint(row, f"{name}_lo" if ranged else name)
            if up != math.inf:
                row = pulp.LpConstraint(expr, pulp.LpConstraintLE, rhs=up)
                prob.addConstraint(row, f"{name}_up" if ranged else name)
    return prob, xs
