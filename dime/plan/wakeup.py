"""The optimum once devices' wake-up after idling counts: a branch and bound over the DP's chain.

Wake-up (dime.core.costs, `dime.profile --wakeup`) makes a segment's cost depend on how long its
device idled before it, which depends on the rest of the placement: not a sum of per-bundle
and per-cut terms, so neither the DP's recursion nor the ILP holds it. But it only ever adds
(to latency, and to the energy of energy-counted roles), so

- every placement's cost with wake-up is at least its cost without (what the DP and the ILP
  minimise), and a placement within the budgets with wake-up is within them without;
- the DP's cost-to-go (merge rule relaxed) bounds any completion of a partial chain from below,
  and so does each bundle's wake-up after at least the idle its segment is known to follow:
  its device computed nothing while the previous segment ran and the data moved to it.

The search walks chains of bundles depth first, cheapest bound first, from the backend's plan
(evaluated with wake-up) as the first incumbent, and drops every partial chain whose bound
cannot beat the incumbent (or breaks a budget). Each complete chain is evaluated by
dime.core.costs.evaluate, as the brute force does; what survives is the optimum with wake-up.
Problems the DP cannot hold (memory limits, one setting per device) keep the backend's plan.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dime.core.costs import Assignment, Evaluation, WakeUp
from dime.plan.dp import _Chain, _structure_unsupported, _to_go, _within
from dime.plan.statement import ENERGY, LATENCY, PlacementProblem, budget_with_slack

log = logging.getLogger(__name__)

# Partial chains expanded before the search stops with the best placement found (a note says so):
# 10-30 s of Python on this project's VM (benchmarks/README.md).
DEFAULT_NODE_LIMIT = 100_000
_TOL = 1e-12


def search_unsupported(problem: PlacementProblem) -> str | None:
    """Why the search cannot run on this problem (None: it can)."""
    return _structure_unsupported(problem)


@dataclass
class SearchResult:
    placement: list[Assignment] | None  # None: no placement within the budgets
    evaluation: Evaluation | None
    proven: bool  # False: stopped at the node limit, the best found
    nodes: int
    time_s: float


def search(problem: PlacementProblem, objective: str, max_latency_s: float | None = None,
           max_energy_j: float | None = None, starts: Sequence[Sequence[Assignment]] = (),
           node_limit: int = DEFAULT_NODE_LIMIT, chain: _Chain | None = None,
           time_limit_s: float | None = None) -> SearchResult:
    """The least-`objective` placement (ties: the other quantity) with wake-up, within the budgets.

    `starts`: placements to begin with as incumbents (the backend's plan). `chain`: the DP's
    arrays of this problem, when already built. The search stops with the best found (proven
    False) after `node_limit` partial chains or `time_limit_s` seconds.
    """
    if objective not in (LATENCY, ENERGY):
        raise ValueError(f"the wake-up search minimises latency or energy, not {objective}")
    t0 = time.perf_counter()
    ch = chain if chain is not None else _Chain(problem)
    n, K, src, sr = ch.n, ch.k, ch.source, ch.slot_role
    en_used = objective == ENERGY or max_energy_j is not None
    en = ch.en if en_used else np.where(np.isnan(ch.en), 0.0, ch.en)
    route_en = ch.route_en if en_used else np.where(np.isnan(ch.route_en), 0.0, ch.route_en)
    lat_to_go = _to_go(ch, ch.lat, ch.route_lat)
    en_to_go = _to_go(ch, en, route_en)
    lat_cap = math.inf if max_latency_s is None else budget_with_slack(max_latency_s) * (1 + _TOL)
    en_cap = math.inf if max_energy_j is None else budget_with_slack(max_energy_j) * (1 + _TOL)
    roles, table = problem.roles, problem.table
    curves: list[WakeUp | None] = [table.wakeup.get((roles[r].device, t)) for r, t in ch.slots]

    def bundle_extra(j: int, start: int, length: int, idle_s: float) -> float:
        curve = curves[j]
        if curve is None or idle_s <= 0.0:
            return 0.0
        r, t = ch.slots[j]
        own = table.costs[(roles[r].device, t, start, start + length - 1)].wakeup_s
        return curve.bundle_extra(idle_s, own)

    def key(ev: Evaluation) -> tuple[float, float]:
        other_en = ev.energy_j if not math.isnan(ev.energy_j) else 0.0
        return (ev.latency_s, other_en) if objective == LATENCY else (ev.energy_j, ev.latency_s)

    best: tuple[tuple[float, float], list[Assignment], Evaluation] | None = None

    def offer(placement: list[Assignment]) -> None:
        nonlocal best
        ev = problem.evaluate(placement)
        if not (_within(ev.latency_s, max_latency_s) and (max_energy_j is None or _within(ev.energy_j, max_energy_j))):
            return
        k = key(ev)
        if best is None or k < best[0]:
            best = (k, placement, ev)

    for p in starts:
        offer(list(p))

    # A partial chain: (bound, cut, slot, last length, latency, energy, segment's time so far, the
    # least idle before the segment, steps). Latency and energy are the DP's sums plus each
    # bundle's wake-up after that least idle (and its energy at the bundle's mean power, as
    # evaluate prices it): lower bounds of the chain's own.
    stack: list[tuple[float, int, int, int, float, float, float, float, tuple[tuple[int, int, int], ...]]]
    stack = [(0.0, 0, -1, 0, 0.0, 0.0, 0.0, 0.0, ())]
    nodes = 0
    proven = True
    while stack:
        _, k, j, L, lat, energy, seg, seg_idle, steps = stack.pop()
        if best is not None and _cannot_beat(objective, lat + lat_to_go[k, sr[j] if j >= 0 else src],
                                              energy + en_to_go[k, sr[j] if j >= 0 else src], best[0]):
            continue  # the incumbent improved since this was pushed
        nodes += 1
        if nodes > node_limit or (time_limit_s is not None and nodes % 1000 == 0
                                  and time.perf_counter() - t0 > time_limit_s):
            proven = False
            break
        if k == n:
            offer(ch.placement(list(steps)))
            continue
        here = sr[j] if j >= 0 else src
        children = []
        for length in range(1, min(K, n - k) + 1):
            c_lat = ch.lat[:, k, length - 1]
            c_en = en[:, k, length - 1]
            for j2 in np.flatnonzero(np.isfinite(c_lat)):
                j2 = int(j2)
                if j2 == j and not problem.bundle_sum and L + length <= K:
                    continue  # the merge rule: the union is profiled, and is what runs
                r2 = int(sr[j2])
                if r2 == here:
                    idle2, lat2, en2, seg2 = seg_idle, lat, energy, seg
                else:
                    moved = ch.route_lat[k, here, r2]
                    if not math.isfinite(moved):
                        continue
                    # r2 computed nothing during the segment just ended and the move
                    idle2 = moved + (seg if j >= 0 else 0.0)
                    lat2, en2, seg2 = lat + moved, energy + route_en[k, here, r2], 0.0
                extra = bundle_extra(j2, k, length, idle2)
                lat2 += c_lat[j2] + extra
                seg2 += c_lat[j2] + extra
                en2 += c_en[j2] + (extra * c_en[j2] / max(c_lat[j2], 1e-12) if extra else 0.0)
                k2 = k + length
                if k2 == n and r2 != src:
                    back_lat, back_en = ch.route_lat[n, r2, src], route_en[n, r2, src]
                else:
                    back_lat = back_en = 0.0
                lb_lat = lat2 + (lat_to_go[k2, r2] if k2 < n else back_lat)
                lb_en = en2 + (en_to_go[k2, r2] if k2 < n else back_en)
                if lb_lat > lat_cap or lb_en > en_cap or math.isnan(lb_en):
                    continue
                if best is not None and _cannot_beat(objective, lb_lat, lb_en, best[0]):
                    continue
                bound = lb_lat if objective == LATENCY else lb_en
                children.append((bound, k2, j2, length, lat2, en2, seg2, idle2, steps + ((k, k2 - 1, j2),)))
        children.sort(key=lambda c: c[0], reverse=True)  # the cheapest bound is popped first
        stack.extend(children)
    elapsed = time.perf_counter() - t0
    log.debug("wake-up search: %d partial chains in %.3f s%s", nodes, elapsed, "" if proven else " (stopped)")
    if best is None:
        return SearchResult(None, None, proven, nodes, elapsed)
    return SearchResult(best[1], best[2], proven, nodes, elapsed)


def _cannot_beat(objective: str, lb_lat: float, lb_en: float, best: tuple[float, float]) -> bool:
    """Whether a chain bounded below by (lb_lat, lb_en) cannot beat the incumbent's key, ties
    included (a tie in the objective may still win on the other quantity)."""
    primary, other = (lb_lat, lb_en) if objective == LATENCY else (lb_en, lb_lat)
    slack = _TOL * max(1.0, abs(best[0]))
    if primary > best[0] + slack:
        return True
    return primary >= best[0] - slack and other > best[1] + _TOL * max(1.0, abs(best[1]))
