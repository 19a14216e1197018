"""A (model, link setting) cell of a sweep grid, and the rows made from its placements."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

from dime.core.costs import (
    Assignment,
    CostTable,
    Evaluation,
    Role,
    as_network,
    resolve_roles,
)
from dime.core.links import Link
from dime.core.network import Network
from dime.core.placement import format_placement
from dime.errors import DimeError, InfeasibleError
from dime.plan import PlacementModel, PlacementProblem, Solution
from dime.sweep.rows import SweepRow


@dataclass(frozen=True)
class CellSpec:
    """One (model, link setting) cell of a grid: everything a worker process needs.

    Two roles (edge, cloud) and one Link are DIME's case; any number of roles on a Network
    (a system file, with `link_label` naming the link setting) is the same cell.
    """

    table: CostTable
    roles: tuple[Role, ...]  # (edge, cloud) with a Link; the network's devices with a Network
    link: Link | Network
    max_bundle: int
    points: int = 20
    solver: str = "auto"
    time_limit_s: float | None = None
    energy_source: str = ""  # label written to every row
    link_label: str = ""  # the link setting's name in the rows ("": the Link's own name)
    bundle_sum: bool = False  # DIME's semantics instead of the merge rule
    private_layers: int = 0
    pin: tuple[tuple[int, int], ...] = ()  # (layer, role)
    one_setting_per_device: bool = False

    @classmethod
    def from_problem(cls, problem: PlacementProblem, link_label: str = "", **options: Any) -> CellSpec:
        """The cell of a problem (its budgets and objective aside: the sweep sets those)."""
        return cls(
            table=problem.table, roles=problem.roles, link=problem.link, max_bundle=problem.max_bundle,
            link_label=link_label, bundle_sum=problem.bundle_sum, private_layers=problem.private_layers,
            pin=problem.pin, one_setting_per_device=problem.one_setting_per_device, **options,
        )

    @property
    def problem(self) -> PlacementProblem:
        """The placement problem of the cell, without budgets (min latency)."""
        return PlacementProblem(
            table=self.table, roles=self.roles, link=self.link, max_bundle=self.max_bundle,
            private_layers=self.private_layers, pin=self.pin,
            one_setting_per_device=self.one_setting_per_device, bundle_sum=self.bundle_sum,
        )

    @property
    def link_name(self) -> str:
        if self.link_label:
            return self.link_label
        return self.link.name if isinstance(self.link, Link) else "network"

    @property
    def label(self) -> str:
        return f"{self.table.model}/{self.link_name}"

    def key(self) -> str:
        """A digest of everything that decides the cell's rows (for --resume)."""
        h = hashlib.sha256()
        t = self.table
        h.update(repr((t.model, t.layer_names, t.cut_bytes, sorted(t.costs.items()))).encode())
        h.update(repr((self.roles, self.link, self.max_bundle, self.points, self.solver,
                       self.time_limit_s, self.energy_source, self.link_label, self.bundle_sum,
                       self.private_layers, self.pin, self.one_setting_per_device)).encode())
        return h.hexdigest()[:16]

    def resolved_roles(self) -> tuple[Role, ...]:
        """The roles with their names and energy flags (edge, cloud for two)."""
        return resolve_roles(self.roles, as_network(self.link).source)


@dataclass
class CellResult:
    """The rows of one cell and what producing them cost."""

    rows: list[SweepRow]
    wall_s: float  # time spent on the cell, in its worker
    solves: int = 0  # ILP solves, the anchors of the sweeps included
    failed: bool = False
    reused: bool = False  # read back from a previous run's partial file


def settings_text(roles: Sequence[Role], placement: Sequence[Assignment]) -> str:
    used: list[dict[str, None]] = [{} for _ in roles]
    for a in placement:
        used[a.role][a.setting] = None
    return "; ".join(f"{role.name}:{','.join(used[r])}" for r, role in enumerate(roles) if used[r])


def devices_text(roles: Sequence[Role]) -> str:
    """``camera=xeon-2core(threads=1); router=relay; ...``: every role, as the rows name it."""
    return "; ".join(f"{r.name}={r.device}({','.join(r.settings)})" if r.compute else f"{r.name}=relay"
                     for r in roles)


def base_row(spec: CellSpec, sweep: str) -> SweepRow:
    roles = spec.resolved_roles()
    src = as_network(spec.link).source
    edge = roles[src]
    # The cloud columns keep DIME's two-device meaning; with more devices, `devices` says it all.
    cloud = roles[1 - src] if len(roles) == 2 and all(r.compute for r in roles) else None
    return SweepRow(
        model=spec.table.model,
        edge=edge.device,
        cloud=cloud.device if cloud else "",
        edge_settings=",".join(edge.settings),
        cloud_settings=",".join(cloud.settings) if cloud else "",
        link=spec.link_name,
        max_bundle=spec.max_bundle,
        sweep=sweep,
        bundle_sum=spec.bundle_sum,
        devices=devices_text(roles),
        energy_of=",".join(r.name for r in roles if r.energy),
        energy_source=spec.energy_source,
    )


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def fill_row(
    row: SweepRow,
    spec: CellSpec,
    placement: Sequence[Assignment],
    ev: Evaluation,
    bundle_ev: Evaluation | None = None,
) -> SweepRow:
    bundle_ev = bundle_ev or ev
    roles, table = spec.resolved_roles(), spec.table
    row.latency_s = _num(ev.latency_s)
    row.compute_latency_s = _num(ev.compute_latency_s)
    row.comm_latency_s = _num(ev.comm_latency_s)
    row.energy_j = _num(ev.energy_j)
    row.compute_energy_j = _num(ev.compute_energy_j)
    row.comm_energy_j = _num(ev.comm_energy_j)
    row.bundle_latency_s = _num(bundle_ev.latency_s)
    row.bundle_energy_j = _num(bundle_ev.energy_j)
    src = as_network(spec.link).source
    row.edge_layers = sum(a.end - a.start + 1 for a in placement if a.role == src)
    row.cloud_layers = table.n_layers - row.edge_layers
    row.settings = settings_text(roles, placement)
    row.placement = format_placement(table.layer_names, placement, [r.name for r in roles])
    return row


def solution_row(spec: CellSpec, sweep: str, sol: Solution, bundle_ev: Evaluation | None = None) -> SweepRow:
    row = fill_row(base_row(spec, sweep), spec, sol.placement, sol.evaluation, bundle_ev)
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
