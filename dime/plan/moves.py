"""The moves of a placement ILP, shared by the bundle model (problem.py) and the run model (runs.py).

At each cut k the role holding the tensor (left side L[k,d]) and the role taking it (right
side R[k,d]) are joined by a 1-unit transportation problem: continuous y[k,a,b] (a != b,
the tensor moves from a to b over the least-latency route for its bytes) and z[k,d] (it
stays on d). See problem.py's docstring for why y is integral without being declared so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dime.core.costs import CostTable
from dime.core.network import Network
from dime.plan.linear import ModelBuilder

SCALE = 1e3  # model units per SI unit: ms per s, mJ per J
BYTES_SCALE = 1e-6  # MB per byte

Side = tuple[dict[int, float], float]  # (variable -> coefficient, constant)


@dataclass
class MoveTerms:
    """What the moves add to the objectives and period rows, in model units."""

    latency: dict[int, float] = field(default_factory=dict)  # variable -> route latency
    energy: dict[int, float] = field(default_factory=dict)  # variable -> route radio energy
    wire: dict[tuple[int, str], dict[int, float]] = field(default_factory=dict)  # link direction -> variable -> time
    index: dict[tuple[int, int, int], int] = field(default_factory=dict)  # (cut, from, to) -> variable (z: from == to)


def add_moves(
    b: ModelBuilder, table: CostTable, net: Network, tags: Sequence[str], energy: Sequence[bool],
    left: Sequence[Sequence[dict[int, float]]], right: Sequence[Sequence[dict[int, float]]],
    *, stay_at_inner_cuts: bool = True, max_wire: float | None = None,
) -> MoveTerms:
    """Add the move variables and rows of every cut 0..n.

    left[k][d] / right[k][d]: the variables (with coefficient 1) whose sum is L[k,d] / R[k,d]
    (cut 0's left side is the source, as is cut n's right side). Without
    `stay_at_inner_cuts` no z exists at inner cuts (the run model: consecutive runs are on
    different roles). `max_wire` (model units) leaves out moves whose route puts more than
    that on one link direction: no placement with a period below it uses them.
    """
    n, D, src = table.n_layers, net.n_devices, net.source
    out = MoveTerms()
    for k in range(n + 1):
        lhs: list[Side] = [({}, 1.0 if d == src else 0.0) if k == 0 else (dict(left[k][d]), 0.0) for d in range(D)]
        rhs: list[Side] = [({}, 1.0 if d == src else 0.0) if k == n else (dict(right[k][d]), 0.0) for d in range(D)]
        live_l = [bool(t) or c > 0 for t, c in lhs]
        live_r = [bool(t) or c > 0 for t, c in rhs]
        out_of: dict[int, dict[int, float]] = {d: {} for d in range(D)}
        into: dict[int, dict[int, float]] = {d: {} for d in range(D)}
        for a in range(D):
            for c in range(D):
                if not (live_l[a] and live_r[c]):
                    continue
                if a == c:
                    if not stay_at_inner_cuts and 0 < k < n:
                        continue
                    v = b.add_var(f"z_{k}_{tags[a]}", integer=False)
                else:
                    route = net.route(a, c, table.cut_bytes[k], energy)
                    times = [(key, t * SCALE) for key, t in route.wire_s]
                    if max_wire is not None and any(t > max_wire for _, t in times):
                        continue
                    v = b.add_var(f"y_{k}_{tags[a]}_{tags[c]}", integer=False)
                    out.latency[v] = route.latency_s * SCALE
                    out.energy[v] = route.energy_j * SCALE
                    for key, t in times:
                        out.wire.setdefault(key, {})[v] = t
                out.index[(k, a, c)] = v
                out_of[a][v] = 1.0
                into[c][v] = 1.0
        for side, live, flows, way in ((lhs, live_l, out_of, "out"), (rhs, live_r, into, "in")):
            for d in range(D):
                if live[d]:
                    terms, const = side[d]
                    row = dict(flows[d])
                    for j, coef in terms.items():
                        row[j] = row.get(j, 0.0) - coef
                    b.add_row(f"move_{way}_{k}_{d}", row, const, const)
    return out
