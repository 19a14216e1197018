"""A solved placement and the per-transfer and per-device details that solve's JSON reports."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from dime.core.costs import (
    Assignment,
    CostTable,
    Evaluation,
    Role,
    resolve_roles,
)


@dataclass(frozen=True)
class Solution:
    """A solved placement; every number comes from dime.core.costs.evaluate on `placement`."""

    status: str  # "optimal" or "time_limit" (best found, not proven optimal)
    objective: float  # value of the objective, in SI units (s or J; throughput: the period in s)
    objective_name: str  # "latency" | "energy" | "throughput"
    evaluation: Evaluation
    solver: str
    solve_time_s: float
    placement: tuple[Assignment, ...]  # chosen bundles in chain order
    note: str = ""  # why `auto` passed over a backend, or other remarks

    def to_json_dict(self, table: CostTable, roles: Sequence[Role]) -> dict[str, Any]:
        ev = self.evaluation
        roles = resolve_roles(roles)
        return {
            "status": self.status,
            "objective": num_or_none(self.objective),
            "objective_name": self.objective_name,
            "latency_s": num_or_none(ev.latency_s),
            "compute_latency_s": num_or_none(ev.compute_latency_s),
            "wakeup_s": num_or_none(ev.wakeup_s),
            "comm_latency_s": num_or_none(ev.comm_latency_s),
            "energy_j": num_or_none(ev.energy_j),
            "compute_energy_j": num_or_none(ev.compute_energy_j),
            "comm_energy_j": num_or_none(ev.comm_energy_j),
            "energy_assumed": ev.energy_assumed,
            "period_s": num_or_none(ev.period_s),
            "throughput_fps": num_or_none(1.0 / ev.period_s) if ev.period_s > 0 else None,
            "bottleneck": ev.bottleneck,
            "solver": self.solver,
            "solve_time_s": self.solve_time_s,
            "note": self.note,
            "placement": [
                {
                    "bundle": table.bundle_name(a.start, a.end),
                    "start": table.layer_names[a.start],
                    "end": table.layer_names[a.end],
                    "device": roles[a.role].device,
                    "setting": a.setting,
                    "role": roles[a.role].name,
                    "latency_s": table.cost(roles[a.role].device, a.setting, a.start, a.end).latency_s,
                    "energy_j": _bundle_energy(table, roles, a),
                    **_bundle_source(table, roles, a),
                }
                for a in self.placement
            ],
        }


def num_or_none(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _bundle_source(table: CostTable, roles: Sequence[Role], a: Assignment) -> dict[str, Any]:
    """Whether the bundle's cost was measured or predicted (dime.predict), with its uncertainty."""
    c = table.cost(roles[a.role].device, a.setting, a.start, a.end)
    return {"latency_source": c.latency_source, "latency_sd_s": c.latency_sd_s}


def _bundle_energy(table: CostTable, roles: Sequence[Role], a: Assignment) -> float | None:
    """Measured energy of bundles on energy-counted roles (the edge's, for two roles)."""
    if not roles[a.role].energy:
        return None
    return table.cost(roles[a.role].device, a.setting, a.start, a.end).energy_j
