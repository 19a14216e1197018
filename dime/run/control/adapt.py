"""Re-planning while queries flow (`--adapt`): the source follows the network with its plan.

Two triggers, one decision:

- **measured** (`--adapt`): every transfer of the run is a sample of its link direction
  (dime.run.links.estimate); the source keeps the median of the last few per direction. When
  a direction's estimate moves by more than the threshold (`--adapt-threshold`, 20%) from the
  rate the current plan was chosen for, the source re-solves the placement problem for the
  estimated rates.
- **schedule** (`--adapt schedule`, the oracle of the benchmarks): the source knows the link
  schedule and re-solves, for each of its steps, at the instant of the step.

Either way it switches only when the new plan's prediction under the new rates (latency, or the
period for --objective throughput) beats the current plan's prediction under the same rates by
more than the margin (`--adapt-margin`; the oracle switches on any gain): noise in the
estimates then causes no flapping. The switch itself is the session's (dime.run.control.session):
at a query boundary, the old plan drained first.

A direction the current plan leaves idle gets no samples, so a link that recovers would never be
seen again. Once such a direction's estimate, below its configured rate, is older than
`--adapt-explore-s`, it is forgotten: the planner assumes the configured rate again (the only
rate it knows without probing), the plan that uses the link is tried, and its first transfers
measure it. On a link that is still slow that costs a few slow queries per explore period.

The solver: the exact DP where it holds the problem, the ILP otherwise (the throughput objective,
memory limits, one setting per device), said once in the log.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from dime.core.costs import Assignment
from dime.core.links import DOWN, UP
from dime.core.network import Network
from dime.plan.dp import dp_unsupported
from dime.plan.problem import solve  # the function (`from dime.plan import solve` may give the module)
from dime.plan.solution import Solution
from dime.plan.statement import PlacementProblem, objective_value
from dime.run.control.session import Session, SwitchCost
from dime.run.links.estimate import Key, RateEstimator, Transfer
from dime.run.links.schedule import Clock, Schedule, change_times, network_at
from dime.run.options import ADAPT_MEASURED, ADAPT_SCHEDULE, AdaptOptions
from dime.run.plan import RunConfig, merged_config

log = logging.getLogger("dime.run")

TICK_S = 0.05  # how often the adapter looks at new samples and the clock
LOG_MOVE = 0.05  # an estimate is logged again once it moved this much from the last one logged


@dataclass(frozen=True)
class Replan:
    """One re-plan: why, what the solver said, what the source did (a row of --replans-out)."""

    at_s: float | None  # seconds into the schedule (None: before its start)
    trigger: str  # measured | schedule
    reason: str
    rates: str  # the rates solved for, `a->b=MBPS;...`
    solver: str
    solve_s: float
    old: str  # placement texts
    new: str
    pred_old_s: float  # the objective (latency or period) of each under the rates solved for
    pred_new_s: float
    switched: bool
    drain_s: float | None = None
    switch_s: float | None = None
    first_query: int | None = None  # the first query under the new plan


def solver_for(problem: PlacementProblem) -> tuple[str, str]:
    """(backend, what it is) for re-solving `problem`: the exact DP (milliseconds), else the ILP."""
    reason = dp_unsupported(problem)
    if reason is None:
        return "dp", "the exact DP"
    return "auto", f"the ILP: the DP cannot hold {reason}"


class Replanner:
    """The run's placement problem, re-solved for other link rates."""

    def __init__(self, problem: PlacementProblem) -> None:
        self.problem = problem
        self.backend, why = solver_for(problem)
        log.info("re-planning for %s with %s", problem.objective, why)

    def for_network(self, network: Network) -> PlacementProblem:
        return dataclasses.replace(self.problem, link=network)

    def solve(self, network: Network) -> tuple[Solution, float]:
        """The best placement for `network`, and the wall time the solve took."""
        t0 = time.perf_counter()
        sol = solve(self.for_network(network), self.backend)
        return sol, time.perf_counter() - t0

    def value(self, placement: Sequence[Assignment], network: Network) -> float:
        """The objective (latency or period, s) of `placement` over `network`."""
        return objective_value(self.problem.objective, self.for_network(network).evaluate(placement))

    def config(self, label: str, sol: Solution, network: Network, base: Network, network_label: str) -> RunConfig:
        """The config that runs `sol`: routes and predictions for the rates solved for; its
        `network` stays the links as configured, which the pacers and the kernel realise with
        the schedule."""
        p = self.problem
        cfg = merged_config(label, sol.placement, network, p.table, p.roles, p.max_bundle,
                            solver_latency_s=sol.evaluation.latency_s,
                            solver_throughput_fps=1 / sol.evaluation.period_s if sol.evaluation.period_s > 0 else None,
                            network_label=network_label)
        return dataclasses.replace(cfg, network=base)


def direction_names(names: Sequence[str], network: Network) -> dict[Key, str]:
    """`a->b` for every link direction."""
    out = {}
    for i, nl in enumerate(network.links):
        out[(i, UP)] = f"{names[nl.a]}->{names[nl.b]}"
        out[(i, DOWN)] = f"{names[nl.b]}->{names[nl.a]}"
    return out


def with_rates(network: Network, rates: dict[Key, float]) -> Network:
    """`network` with the given direction rates (Mbps)."""
    links = list(network.links)
    for (i, direction), mbps in rates.items():
        link = links[i].link
        field = "uplink_mbps" if direction == UP else "downlink_mbps"
        links[i] = dataclasses.replace(links[i], link=dataclasses.replace(link, **{field: mbps}))
    return dataclasses.replace(network, links=tuple(links))


def rates_of(network: Network) -> dict[Key, float]:
    return {(i, d): nl.link.rate_mbps(d) for i, nl in enumerate(network.links) for d in (UP, DOWN)}


class Adapter:
    """A thread of the source that re-plans and switches while the measurement runs."""

    def __init__(self, session: Session, replanner: Replanner, opts: AdaptOptions, base: Network,
                 schedule: Schedule, clock: Clock, names: Sequence[str], transfers: queue.Queue[Transfer],
                 network_label: str = "", on_replan: Callable[[Replan], None] | None = None) -> None:
        self.session = session
        self.replanner = replanner
        self.opts = opts
        self.base = base
        self.schedule = schedule
        self.clock = clock
        self.transfers = transfers
        self.network_label = network_label
        self.on_replan = on_replan
        self.dirs = direction_names(names, base)
        self.configured = rates_of(base)
        self.estimator = RateEstimator(opts.window, min(opts.min_samples, opts.window))
        self.basis = dict(self.configured)  # the rates the current plan was chosen for
        self.replans: list[Replan] = []
        self._logged: dict[Key, float] = {}
        self._steps = change_times(schedule) if opts.mode == ADAPT_SCHEDULE else []
        self._phase: int | None = None  # the schedule's phase handled last (0: before its first step)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dime-adapt", daemon=True)
        self.error: BaseException | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the decision (and switch) at hand."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.opts.mode == ADAPT_MEASURED:
                    self._measured()
                else:
                    self._scheduled()
                self._stop.wait(TICK_S)
        except BaseException as e:  # the run fails with it: every query still to come fails
            self.error = e
            self.session.fail(e)

    # ---- measured ---------------------------------------------------------------------
    def _measured(self) -> None:
        while True:
            try:
                t = self.transfers.get_nowait()
            except queue.Empty:
                break
            est = self.estimator.add(t)
            if est is not None:
                self._log_estimate(t.key, est)
        self._explore()
        view = self.view()
        moved = [k for k, v in view.items() if abs(v - self.basis[k]) > self.opts.threshold * self.basis[k]]
        if not moved:
            return
        reason = ", ".join(f"{self.dirs[k]} {view[k]:.3g} Mbps (planned for {self.basis[k]:.3g})" for k in moved)
        self.basis = dict(view)
        self._decide(with_rates(self.base, view), "measured", reason, self.opts.margin)

    def view(self) -> dict[Key, float]:
        """Each direction's estimate, its configured rate where it has none."""
        est = self.estimator.estimates()
        return {k: est.get(k, v) for k, v in self.configured.items()}

    def _explore(self) -> None:
        for k, mbps in self.estimator.estimates().items():
            idle = self.estimator.idle_s(k)
            if mbps < self.configured[k] and idle is not None and idle > self.opts.explore_s:
                log.info("%s: no transfer for %.1f s; assuming its configured %.3g Mbps again (was %.3g)",
                         self.dirs[k], idle, self.configured[k], mbps)
                self.estimator.forget(k)
                self._logged.pop(k, None)

    def _log_estimate(self, key: Key, mbps: float) -> None:
        last = self._logged.get(key)
        if last is None or abs(mbps - last) > LOG_MOVE * last:
            self._logged[key] = mbps
            log.info("rate estimate %s: %.3g Mbps (median of the last %d transfers; configured %.3g)",
                     self.dirs[key], mbps, self.estimator.samples(key), self.configured[key])

    # ---- schedule (the oracle) ------------------------------------------------------------
    def _scheduled(self) -> None:
        at = self.clock.elapsed_s()
        if at is None:
            return
        phase = sum(1 for t in self._steps if t <= at)  # 0: before the first step
        if phase == self._phase:
            return
        self._phase = phase
        if phase == 0:
            self._decide(self.base, "schedule", "the schedule's first phase", 0.0)
            return
        when = self._steps[phase - 1]
        self._decide(network_at(self.base, self.schedule, when), "schedule", f"the schedule's step at {when:g} s",
                     0.0)

    # ---- the decision -----------------------------------------------------------------------
    def _decide(self, network: Network, trigger: str, reason: str, margin: float) -> None:
        session = self.session
        current = session.config
        assert current is not None
        sol, solve_s = self.replanner.solve(network)
        old_value = self.replanner.value(current.placement, network)
        new_value = sol.objective
        plan = session.run.plan
        old_text, new_text = plan.placement_text(current.placement), plan.placement_text(sol.placement)
        cfg = self.replanner.config(f"replan-{len(self.replans) + 1}", sol, network, self.base, self.network_label)
        better = cfg.placement != current.placement and new_value < old_value * (1 - margin)
        rates = ";".join(f"{self.dirs[k]}={v:.4g}" for k, v in rates_of(network).items())
        at = self.clock.elapsed_s()
        what = f"{self.replanner.problem.objective} {new_value * 1e3:.2f} ms against {old_value * 1e3:.2f} ms"
        log.info("re-plan%s (%s: %s): %s solved in %.1f ms: %s -> %s, %s: %s",
                 f" at {at:.2f} s" if at is not None else "", trigger, reason, sol.solver, solve_s * 1e3, old_text,
                 new_text, what, "switching" if better else "staying")
        cost: SwitchCost | None = None
        if better:
            cost = session.switch(cfg)
            log.info("switched to %s: drained in %.1f ms, switched in %.1f ms; first query %d", new_text,
                     cost.drain_s * 1e3, cost.switch_s * 1e3, cost.first_query)
        rec = Replan(at, trigger, reason, rates, sol.solver, solve_s, old_text, new_text, old_value, new_value, better,
                     cost.drain_s if cost else None, cost.switch_s if cost else None,
                     cost.first_query if cost else None)
        self.replans.append(rec)
        if self.on_replan is not None:
            self.on_replan(rec)
