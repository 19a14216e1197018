"""Which bundles `dime.profile --measure FRACTION` measures at one setting: plan-aware (no torch).

A profile is made before anyone knows the system it will be planned on, so the choice plans
on a small family of stand-in problems instead (Probes) and measures what their plans rest on:

- this device as the edge (it holds the input and gets the output back) with a peer that is
  `speedup` times faster, and as the cloud of an edge `speedup` times slower; the peer's
  bundles cost this device's (measured, or predicted mean) divided or multiplied by the
  speedup, so they are never what is measured;
- links on which moving a feature map of the median cut size takes `move_share` times the
  model's time here (its single layers summed): from a link so fast that the faster side runs
  everything to one so slow that the source does;
- both semantics (the merge rule and --bundle-sum), the latency objective, every bundle of up
  to max_bundle layers (the profile's K).

Rounds: after the single layers and the longest bundles, predict every other bundle from what
is measured (dime.profiling.predict), solve each stand-in problem (the DP: milliseconds), and
collect the predicted bundles of this device that its plan uses and those its challenger uses
(the plan solved again with the plan's predicted bundles at mean + z sd and the others at mean
- z sd, as dime.plan.refine does). Measure the one used by the most plans (then challengers,
then the largest sd), predict again and repeat, until the budget is spent: one bundle a
round, or a few where the budget would take more than `rounds` rounds. When every plan and
challenger rests on measured bundles, the rest of the budget goes to the least certain
predictions (choose_bundles).

A round depends on the values of the earlier rounds' bundles only, never on other rows of the
file, so a resumed profile replays the same rounds and measures the same set.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from dime.core.costs import Assignment, BundleCost, CostTable, Role
from dime.core.links import Link
from dime.plan.problem import PlacementProblem, build_model
from dime.plan.refine import Z_DEFAULT, challenger_table
from dime.profiling.predict import (
    DEFAULT_PARAMS,
    Bundle,
    BundleFit,
    BundleModel,
    PredictorParams,
    base_bundles,
    bundles_upto,
    choose_bundles,
)
from dime.profiling.schema import PREDICTED

log = logging.getLogger(__name__)

HERE = "here"  # the profiled device in the stand-in problems
SETTING = "measured"


@dataclass(frozen=True)
class Probes:
    """The stand-in problems a plan-aware choice plans on (see the module's docstring)."""

    peer_speedups: tuple[float, ...] = (2.0, 4.0)
    # at 1 the source already does everything: a fast peer saves less than the move costs
    move_shares: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    semantics: tuple[bool, ...] = (False, True)  # bundle_sum off (merge rule) and on
    z: float = Z_DEFAULT  # a challenger's optimism, in predicted sds
    rounds: int = 16  # the budget past the base is spent in at most this many rounds


DEFAULT_PROBES = Probes()


def _peer(speedup: float) -> str:
    return f"peer-x{speedup:g}"


def probe_table(fit: BundleFit, measured: dict[Bundle, float], n_layers: int, max_bundle: int,
                cut_bytes: Sequence[int], probes: Probes) -> CostTable:
    """This device's bundles (measured, or predicted with their sd) and the peers' (scaled)."""
    speeds = sorted({r for s in probes.peer_speedups for r in (s, 1.0 / s)})
    costs: dict[tuple[str, str, int, int], BundleCost] = {}
    for s, e in bundles_upto(n_layers, max_bundle):
        if (s, e) in measured:
            c = BundleCost(latency_s=measured[(s, e)], runs=1)
        else:
            mean, sd = fit.predict(s, e)
            c = BundleCost(latency_s=mean, runs=1, latency_source=PREDICTED, latency_sd_s=sd)
        costs[(HERE, SETTING, s, e)] = c
        for r in speeds:
            costs[(_peer(r), SETTING, s, e)] = BundleCost(latency_s=c.latency_s / r, runs=1)
    settings = {HERE: (SETTING,), **{_peer(r): (SETTING,) for r in speeds}}
    return CostTable(model="probe", layer_names=tuple(f"layer{i}" for i in range(n_layers)),
                     cut_bytes=tuple(cut_bytes), settings=settings, costs=costs)


def probe_problems(table: CostTable, max_bundle: int, probes: Probes) -> list[PlacementProblem]:
    """The stand-in problems over `table` (probe_table's)."""
    n = table.n_layers
    model_s = sum(table.costs[(HERE, SETTING, i, i)].latency_s for i in range(n))
    median_bytes = max(float(np.median(table.cut_bytes)), 1.0)
    out = []
    here = Role(HERE, (SETTING,))
    for x in probes.move_shares:
        mbps = 8 * median_bytes / max(x * model_s, 1e-12) / 1e6
        link = Link(f"probe-{x:g}", mbps, mbps)
        for speedup in probes.peer_speedups:
            for roles in ((here, Role(_peer(speedup), (SETTING,))), (Role(_peer(1.0 / speedup), (SETTING,)), here)):
                for bundle_sum in probes.semantics:
                    out.append(PlacementProblem(table=table, roles=roles, link=link, max_bundle=max_bundle,
                                                bundle_sum=bundle_sum))
    return out


def _predicted_here(problem: PlacementProblem, placement: Sequence[Assignment]) -> list[Bundle]:
    table = problem.table
    out = []
    for a in placement:
        if problem.roles[a.role].device == HERE and table.costs[(HERE, SETTING, a.start, a.end)].predicted:
            out.append((a.start, a.end))
    return out


def plan_bundles(table: CostTable, max_bundle: int, probes: Probes) -> list[Bundle]:
    """The predicted bundles of this device that the stand-in problems' plans and challengers
    use: those in the most plans first, then in the most challengers, then the largest sd."""
    in_plans: Counter[Bundle] = Counter()
    in_rivals: Counter[Bundle] = Counter()
    rival_tables: dict[frozenset, CostTable] = {}  # many stand-in problems share a plan
    for problem in probe_problems(table, max_bundle, probes):
        sol = build_model(problem).solve("auto")
        plan = _predicted_here(problem, sol.placement)
        in_plans.update(plan)
        keys = frozenset((problem.roles[a.role].device, a.setting, a.start, a.end) for a in sol.placement)
        if keys not in rival_tables:
            rival_tables[keys] = challenger_table(table, set(keys), probes.z)
        rival = build_model(dataclasses.replace(problem, table=rival_tables[keys])).solve("auto")
        in_rivals.update(b for b in _predicted_here(problem, rival.placement) if b not in plan)
    wanted = set(in_plans) | set(in_rivals)

    def sd(b: Bundle) -> float:
        return table.costs[(HERE, SETTING, *b)].latency_sd_s or 0.0

    return sorted(wanted, key=lambda b: (-in_plans[b], -in_rivals[b], -sd(b), b))


@dataclass(frozen=True)
class PlanAwareChoice:
    """The plan-aware chooser (a dime.profiling.predict.Chooser; see the module's docstring)."""

    probes: Probes = DEFAULT_PROBES
    params: PredictorParams = DEFAULT_PARAMS

    def __call__(self, n_layers: int, max_bundle: int, cut_bytes: Sequence[int], budget: int,
                 value: Callable[[Bundle], float]) -> Iterator[list[Bundle]]:
        k = min(max_bundle, n_layers)
        base = base_bundles(n_layers, k)
        yield base
        chosen = list(base)
        singles = [value((i, i)) for i in range(n_layers)]
        model = BundleModel(singles, cut_bytes, self.params)
        # one bundle a round is the most adaptive; past `rounds` rounds the solves would cost
        # more than measuring, so larger budgets take a few a round
        per_round = max(1, math.ceil((budget - len(base)) / max(self.probes.rounds, 1)))
        while len(chosen) < budget:
            measured = {b: value(b) for b in chosen}
            table = probe_table(model.fit(measured), measured, n_layers, k, cut_bytes, self.probes)
            wanted = plan_bundles(table, k, self.probes)  # predicted, hence not measured yet
            if not wanted:
                break
            take = wanted[: min(budget - len(chosen), per_round)]
            log.debug("plan-aware round: %s", take)
            chosen += take
            yield take
        if len(chosen) < budget:
            rest = choose_bundles(singles, cut_bytes, k, budget, self.params, start=chosen)[len(chosen):]
            if rest:
                yield rest

    def describe(self) -> dict[str, Any]:
        return {"choice": "plan-aware (dime.plan.choose): what the plans of stand-in problems rest on, then the "
                          "least certain predictions", "probes": dataclasses.asdict(self.probes)}
