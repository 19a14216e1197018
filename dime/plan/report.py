"""Per-transfer and per-device details of a solved placement, for solve's report and JSON."""

from __future__ import annotations

from typing import Any, Sequence

from dime.core.costs import Assignment, memory_use, moves
from dime.plan.problem import PlacementProblem


def transfer_details(problem: PlacementProblem, placement: Sequence[Assignment]) -> list[dict[str, Any]]:
    """Every move of data in a placement: cut, ends, route, bytes, latency and radio energy."""
    roles, net, table = problem.roles, problem.network, problem.table
    energy = [bool(r.energy) for r in roles]
    out = []
    for cut, src, dst in moves(placement, table.n_layers, net.source):
        route = net.route(src, dst, table.cut_bytes[cut], energy)
        out.append({
            "cut": cut,
            "before": table.layer_names[cut] if cut < table.n_layers else None,
            "from": roles[src].name,
            "to": roles[dst].name,
            "route": [roles[d].name for d in route.nodes],
            "links": [net.links[h.link].link.name for h in route.hops],
            "bytes": route.nbytes,
            "latency_s": route.latency_s,
            "energy_j": route.energy_j,
        })
    return out


def device_details(problem: PlacementProblem, placement: Sequence[Assignment]) -> list[dict[str, Any]]:
    """Each role: its profiled device, settings, energy flag, memory and what it runs
    (a relay: profile_device "", settings [], compute false, no bundles)."""
    out = []
    for r, role in enumerate(problem.roles):
        mine = [a for a in placement if a.role == r]
        used = memory_use(problem.table, placement, r) if problem.table.param_bytes else None
        out.append({
            "name": role.name,
            "profile_device": role.device,
            "settings": list(role.settings),
            "compute": role.compute,
            "energy": bool(role.energy),
            "source": r == problem.source,
            "memory_bytes": role.memory_bytes,
            "memory_used_bytes": used,
            "compute_latency_s": sum(
                problem.table.cost(role.device, a.setting, a.start, a.end).latency_s for a in mine
            ),
            "bundles": len(mine),
        })
    return out
