"""A (model, link) cell of a sweep grid, and the rows made from its placements."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

from dime.core.costs import (
    CLOUD,
    EDGE,
    ROLE_NAMES,
    Assignment,
    CostTable,
    Evaluation,
    Role,
)
from dime.core.links import Link
from dime.core.placement import format_placement
from dime.errors import DimeError, InfeasibleError
from dime.plan import PlacementModel, Solution
from dime.sweep.rows import SweepRow


@dataclass(frozen=True)
class CellSpec:
    """One (model, link) cell of a grid: everything a worker process needs."""

    table: CostTable
    roles: tuple[Role, Role]
    link: Link
    max_bundle: int
    points: int = 20
    solver: str = "auto"
    time_limit_s: float | None = None
    energy_source: str = ""  # label written to every row

    @property
    def label(self) -> str:
        return f"{self.table.model}/{self.link.name}"

    def key(self) -> str:
        """A digest of everything that decides the cell's rows (for --resume)."""
        h = hashlib.sha256()
        t = self.table
        h.update(repr((t.model, t.layer_names, t.cut_bytes, sorted(t.costs.items()))).encode())
        h.update(repr((self.roles, self.link, self.max_bundle, self.points, self.solver,
                       self.time_limit_s, self.energy_source)).encode())
        return h.hexdigest()[:16]


@dataclass
class CellResult:
    """The rows of one cell and what producing them cost."""

    rows: list[SweepRow]
    wall_s: float  # time spent on the cell, in its worker
    solves: int = 0  # ILP solves, the anchors of the sweeps included
    failed: bool = False
    reused: bool = False  # read back from a previous run's partial file


def settings_text(placement: Sequence[Assignment]) -> str:
    used: list[dict[str, None]] = [{}, {}]
    for a in placement:
        used[a.role][a.setting] = None
    return "; ".join(f"{ROLE_NAMES[r]}:{','.join(used[r])}" for r in (EDGE, CLOUD) if used[r])


def base_row(spec: CellSpec, sweep: str) -> SweepRow:
    edge, cloud = spec.roles
    return SweepRow(
        model=spec.table.model,
        edge=edge.device,
        cloud=cloud.device,
        edge_settings=",".join(edge.settings),
        cloud_settings=",".join(cloud.settings),
        link=spec.link.name,
        max_bundle=spec.max_bundle,
        sweep=sweep,
        energy_source=spec.energy_source,
    )


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def fill_row(
    row: SweepRow,
    table: CostTable,
    placement: Sequence[Assignment],
    ev: Evaluation,
    bundle_ev: Evaluation | None = None,
) -> SweepRow:
    bundle_ev = bundle_ev or ev
    row.latency_s = _num(ev.latency_s)
    row.compute_latency_s = _num(ev.compute_latency_s)
    row.comm_latency_s = _num(ev.comm_latency_s)
    row.energy_j = _num(ev.energy_j)
    row.compute_energy_j = _num(ev.compute_energy_j)
    row.comm_energy_j = _num(ev.comm_energy_j)
    row.bundle_latency_s = _num(bundle_ev.latency_s)
    row.bundle_energy_j = _num(bundle_ev.energy_j)
    row.edge_layers = sum(a.end - a.start + 1 for a in placement if a.role == EDGE)
    row.cloud_layers = table.n_layers - row.edge_layers
    row.settings = settings_text(placement)
    row.placement = format_placement(table.layer_names, placement)
    return row


def solution_row(spec: CellSpec, sweep: str, sol: Solution, bundle_ev: Evaluation | None = None) -> SweepRow:
    row = fill_row(base_row(spec, sweep), spec.table, sol.placement, sol.evaluation, bundle_ev)
    row.status = sol.status
    row.solver = sol.solver
    row.solve_time_s = sol.solve_time_s
    if sol.note:
        row.error = sol.note if sol.status != "optimal" else ""
    return row


def failed_row(spec: CellSpec, sweep: str, err: BaseException) -> SweepRow:
    row = base_row(spec, sweep)
    row.status = "infeasible" if isinstance(err, InfeasibleError) else "error"
    row.error = error_text(err)
    return row


def error_text(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, DimeError):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class CellSolver:
    """Solves with the cell's backend and counts the solves."""

    def __init__(self, spec: CellSpec) -> None:
        self.spec = spec
        self.count = 0

    def __call__(self, model: PlacementModel) -> Solution:
        self.count += 1
        return model.solve(self.spec.solver, self.spec.time_limit_s)
