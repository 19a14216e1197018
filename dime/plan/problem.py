"""The placement ILP: what to decide, built once into a solver-neutral linear model.

Roles 0..D-1 (devices), joined by a network (dime.core.network; two roles and one link
are DIME's edge/cloud case, the same code). Source s holds the input, gets the output.
Decision: binary x[i,e,d,t] = bundle (layers i..e, at most K of them) runs on role d at
setting t of that role. The chosen bundles form a chain:

    flow   sum_e x[0,e,.,.] = 1;  for cut k in 1..n-1: sum x ending at k-1 = sum x starting at k;
           sum_i x[i,n-1,.,.] = 1.

Sides of cut k: L[k,d] = sum x ending at k-1 on d (cut 0: L[0,s] = 1), R[k,d] = sum x
starting at k on d (cut n: R[n,s] = 1). Moves, a 1-unit transportation problem per cut:
continuous y[k,a,b] >= 0 (a != b), z[k,d] >= 0 with

    sum_b y[k,a,b] + z[k,a] = L[k,a],   sum_a y[k,a,b] + z[k,b] = R[k,b].

Exactly one L and one R are 1, so y[k,a,b] = 1 exactly when the cut moves from a to b
(integral without being declared so). The route of each (k, a, b) is the least-latency
one for bytes_k, fixed in advance; its latency, energy and wire times are y's coefficients.

    latency    = sum x * latency + sum y * route latency
    energy     = sum x(energy-counted roles) * energy + sum y * route radio energy
    throughput = min T, T >= sum_{x on d} x * latency (each d), T >= sum y * wire (each link direction)
                 (solved over runs instead where that is exact: runs.py)
    memory     A_d >= (in + out bytes) * sum_t x[i,e,d,t] (each bundle), sum_{x on d} params * x + A_d <= cap_d
    merge rule (unless bundle_sum), at inner cut k, per (d,t), i = 1..K-1:
               sum x ending at k-1 on (d,t) with <= i layers + sum x starting at k on (d,t) with <= K-i layers <= 1

so two same-setting bundles in a row on one role are kept apart only when their union is
longer than K: otherwise the union's own measurement is the prediction.

A relay role (Role.compute False: a router, an access point) has no settings, hence no x,
no merge or memory rows and no compute in T; it is never a side of a cut, only a node of
routes, so the wire times of its links still bound T.

Inside the model seconds and joules are scaled to ms and mJ, bytes to MB (per-layer costs
can be 1e-5 s, which would sit at solver tolerance in SI units); every reported number
comes from re-evaluating the chosen placement with dime.core.costs.evaluate.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dime.core.costs import (
    Assignment,
    Evaluation,
    Role,
    bundles,
    check_chain,
    merge_violation,
)
from dime.errors import InfeasibleError, SolverError, UsageError
from dime.fileio import atomic_write
from dime.plan.backends import AutoChoice, RawResult, run_backend
from dime.plan.dp import DP, DpSolver, dp_unsupported, unsupported_error
from dime.plan.linear import ERROR, INF, INFEASIBLE, LinearModel, ModelBuilder
from dime.plan.moves import BYTES_SCALE, SCALE, add_moves
from dime.plan.runs import RunCosts, RunModel, pipelines, run_costs
from dime.plan.solution import Solution
from dime.plan.wakeup import search, search_unsupported
from dime.plan.statement import (  # noqa: F401  (re-exported: the ILP's users import them from here)
    ENERGY,
    LATENCY,
    OBJECTIVES,
    THROUGHPUT,
    PlacementProblem,
    _check_budget,
    budget_with_slack,
    energy_needed_error,
    infeasible_error,
    no_placement_error,
    objective_value,
)

log = logging.getLogger(__name__)

_KEEP: Any = object()  # "leave this budget as it is"


AUTO_DP_NOTE = "auto: exact label-setting DP (no memory limits, one setting per device or throughput objective)"


@dataclass
class _Lazy:
    """What a model and its with_budgets copies share, made on first need."""

    ilp: dict[str, Any] | None = None  # the attributes _build sets
    dp: DpSolver | None = None
    plain: PlacementModel | None = None  # the problem without wake-up, which the backends solve


class PlacementModel:
    """The ILP of a PlacementProblem, built once, on first need; and the DP where it applies.

    `with_budgets` returns a model that shares the constraint matrix and differs only in
    the objective and the budget rows' right-hand sides, so sweeps re-solve cheaply. The
    ILP is built when something needs it (an ILP backend, its size, write_lp): solving by
    the DP never builds it, and re-solves by the DP read off the DP's front.
    """

    def __init__(self, problem: PlacementProblem) -> None:
        self.problem = problem
        self.objective = problem.objective
        self.max_latency_s = problem.max_latency_s
        self.max_energy_j = problem.max_energy_j
        self._auto = AutoChoice()
        self._auto_runs = AutoChoice()  # the run model has another size (see runs.py)
        self._run_costs: dict[int, RunCosts] = {}  # filled on the first throughput solve, shared by copies
        self._lazy = _Lazy()

    def __getattr__(self, name: str) -> Any:
        # Reached only for attributes not set yet: the ILP's, which _build sets. Build once for
        # the model and all its with_budgets copies, then look again.
        lazy = self.__dict__.get("_lazy")
        if lazy is None or name.startswith("__"):
            raise AttributeError(name)
        if lazy.ilp is None:
            before = set(self.__dict__)
            self._build()
            lazy.ilp = {k: v for k, v in self.__dict__.items() if k not in before}
        else:
            self.__dict__.update(lazy.ilp)
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(name) from None

    # -- building ---------------------------------------------------------------------

    def _build(self) -> None:
        p = self.problem
        table, roles, net = p.table, p.roles, p.network
        n, K, D = table.n_layers, p.k, len(p.roles)
        energy = [bool(r.energy) for r in roles]
        tag = [re.sub(r"\W", "_", r.name) for r in roles]  # LP-file-safe role names
        b = ModelBuilder(name=f"dime_{table.model}".replace(" ", "_"))
        lat: dict[int, float] = {}
        en: dict[int, float] = {}
        energy_missing: str | None = None

        # x variables, first, so that their indices are 0..nx-1.
        self._x: list[tuple[int, int, int, str]] = []
        self._x_var: dict[tuple[int, int, int, str], int] = {}
        self._w_var: dict[tuple[int, str], int] = {}
        self._act_var: dict[int, int] = {}
        starts: list[list[int]] = [[] for _ in range(n)]  # layer k -> x starting there
        ends: list[list[int]] = [[] for _ in range(n)]  # layer e -> x ending there
        left: list[list[dict[int, float]]] = [[{} for _ in range(D)] for _ in range(n + 1)]  # L[k][d]
        right: list[list[dict[int, float]]] = [[{} for _ in range(D)] for _ in range(n + 1)]  # R[k][d]
        by_setting: dict[tuple[int, str], list[int]] = {}
        busy: list[dict[int, float]] = [{} for _ in range(D)]
        on_role: dict[tuple[int, int, int], list[int]] = {}  # (start, end, role) -> x at its settings
        end_at: dict[tuple[int, int, str], list[tuple[int, int]]] = {}  # (last layer, d, t) -> (x, length)
        start_at: dict[tuple[int, int, str], list[tuple[int, int]]] = {}
        for s, e in bundles(n, K):
            for r, role in enumerate(roles):
                if not p.allowed(s, e, r):
                    continue
                for ti, setting in enumerate(role.settings):
                    j = b.add_var(f"x_{s}_{e}_{tag[r]}_{ti}")
                    self._x.append((s, e, r, setting))
                    self._x_var[(s, e, r, setting)] = j
                    c = table.cost(role.device, setting, s, e)
                    lat[j] = c.latency_s * SCALE
                    busy[r][j] = c.latency_s * SCALE
                    if energy[r]:
                        if c.energy_j is None:
                            if energy_missing is None:
                                energy_missing = (
                                    f"the {role.name} profile has no energy for {role.device} ({setting}), "
                                    f"e.g. bundle {table.bundle_name(s, e)}"
                                )
                        else:
                            en[j] = c.energy_j * SCALE
                    starts[s].append(j)
                    ends[e].append(j)
                    left[e + 1][r][j] = 1.0
                    right[s][r][j] = 1.0
                    by_setting.setdefault((r, setting), []).append(j)
                    on_role.setdefault((s, e, r), []).append(j)
                    end_at.setdefault((e, r, setting), []).append((j, e - s + 1))
                    start_at.setdefault((s, r, setting), []).append((j, e - s + 1))
        self.num_x = len(self._x)

        # Flow: the chosen bundles chain from layer 0 to layer n-1.
        b.add_row("flow_0", {j: 1.0 for j in starts[0]}, 1.0, 1.0)
        for k in range(1, n):
            terms = {j: 1.0 for j in ends[k - 1]}
            terms.update({j: -1.0 for j in starts[k]})
            b.add_row(f"flow_{k}", terms, 0.0, 0.0)
        b.add_row(f"flow_{n}", {j: 1.0 for j in ends[n - 1]}, 1.0, 1.0)

        # Moves: y[k,a,b] (a != b) and z[k,d], continuous.
        moves = add_moves(b, table, net, tag, energy, left, right)
        lat.update(moves.latency)
        en.update(moves.energy)
        wire = moves.wire
        self._moves = moves.index

        if not p.bundle_sum:
            self._add_merge_rule(b, n, K, roles, end_at, start_at)

        # One setting per role: w[d,t] picks the setting; x at other settings is off.
        # Aggregated (sum x <= n w) rather than x <= w per bundle: far fewer rows, and the
        # exact optimum is the same.
        if p.one_setting_per_device:
            for r, role in enumerate(roles):
                if len(role.settings) < 2:
                    continue
                ws = []
                for ti, setting in enumerate(role.settings):
                    w = b.add_var(f"w_{r}_{ti}")
                    ws.append(w)
                    self._w_var[(r, setting)] = w
                    xs = by_setting.get((r, setting), [])
                    if xs:
                        terms = {j: 1.0 for j in xs}
                        terms[w] = -float(n)
                        b.add_row(f"one_setting_{r}_{ti}", terms, -INF, 0.0)
                b.add_row(f"one_setting_{r}", {w: 1.0 for w in ws}, 1.0, 1.0)

        # Memory: A_d reaches the largest in + out bytes among d's bundles (one row per bundle
        # and role: its settings exclude each other).
        for r, role in enumerate(roles):
            if role.memory_bytes is None:
                continue
            act = b.add_var(f"act_{r}", 0.0, INF, integer=False)
            self._act_var[r] = act
            cap_terms: dict[int, float] = {act: 1.0}
            for (s, e, rr), xs in on_role.items():
                if rr != r:
                    continue
                io = (table.cut_bytes[s] + table.cut_bytes[e + 1]) * BYTES_SCALE
                b.add_row(f"act_{r}_{s}_{e}", {act: 1.0, **{j: -io for j in xs}}, 0.0, INF)
                try:
                    params = table.param_bytes[(s, e)] * BYTES_SCALE
                except KeyError:
                    raise UsageError(
                        f"a memory limit on {role.name} needs param_bytes for bundle "
                        f"{table.bundle_name(s, e)}, which the profiles lack"
                    ) from None
                cap_terms.update({j: params for j in xs})
            b.add_row(f"memory_{r}", cap_terms, -INF, role.memory_bytes * BYTES_SCALE)

        # Throughput: the period T bounds every role's compute and every link direction's wire time
        # (a relay computes nothing: only the wire times of its links).
        self._period = b.add_var("period", 0.0, INF, integer=False)
        for r in range(D):
            if busy[r]:
                b.add_row(f"period_{roles[r].name}", {self._period: 1.0, **{j: -c for j, c in busy[r].items()}},
                          0.0, INF)
        for (i, d), terms in sorted(wire.items()):
            b.add_row(f"period_link{i}_{d}", {self._period: 1.0, **{j: -c for j, c in terms.items()}}, 0.0, INF)
        self._loads = [terms for terms in busy if terms] + [terms for _, terms in sorted(wire.items())]

        nv = b.num_vars
        # The largest load each variable adds to one role or link direction: with a feasible
        # period U known, a variable adding more than U is 0 in every better placement.
        self._load_coef = np.zeros(nv)
        for terms in self._loads:
            for j, c in terms.items():
                self._load_coef[j] = max(self._load_coef[j], c)
        self._lat_obj = np.zeros(nv)
        for j, c in lat.items():
            self._lat_obj[j] = c
        self._period_obj = np.zeros(nv)
        self._period_obj[self._period] = 1.0
        self._energy_missing = energy_missing
        self._en_obj: np.ndarray | None = None
        if energy_missing is None:
            self._en_obj = np.zeros(nv)
            for j, c in en.items():
                self._en_obj[j] = c
        # Budget rows, inactive (both bounds infinite) until a budget is set.
        self._lat_row = b.add_row("max_latency", lat, -INF, INF)
        self._en_row = b.add_row("max_energy", en, -INF, INF) if self._en_obj is not None else None
        self._base = b.build()
        log.debug(
            "placement model: %d variables (%d bundles x role x setting), %d rows",
            self._base.num_vars, self.num_x, self._base.num_rows,
        )

    @staticmethod
    def _add_merge_rule(
        b: ModelBuilder, n: int, K: int, roles: Sequence[Role],
        end_at: Mapping[tuple[int, int, str], list[tuple[int, int]]],
        start_at: Mapping[tuple[int, int, str], list[tuple[int, int]]],
    ) -> None:
        """At each inner cut and (role, setting): a bundle of a layers ending there and one
        of c layers starting there are not both chosen when a + c <= K (row i = a)."""
        for k in range(1, n):
            for r, role in enumerate(roles):
                if not role.compute:
                    continue
                for t in role.settings:
                    lefts, rights = end_at.get((k - 1, r, t), []), start_at.get((k, r, t), [])
                    last: frozenset[int] | None = None
                    for i in range(1, K):
                        lo = [j for j, ln in lefts if ln <= i]
                        hi = [j for j, ln in rights if ln <= K - i]
                        if not lo or not hi or frozenset(lo + hi) == last:
                            continue
                        last = frozenset(lo + hi)
                        b.add_row(f"merge_{k}_{r}_{t}_{i}", {j: 1.0 for j in lo + hi}, -INF, 1.0)

    # -- budgets and objective --------------------------------------------------------

    @property
    def has_energy(self) -> bool:
        """Whether every edge bundle in the model has a measured (or assumed) energy."""
        if self._lazy.ilp is None and dp_unsupported(self.problem, LATENCY) is None:
            return self._dp().has_energy
        return self._en_obj is not None

    @property
    def num_vars(self) -> int:
        return self._base.num_vars

    def num_constraints(self) -> int:
        """Rows given to the solver under the current budgets."""
        return self.linear_model().num_active_rows

    def with_budgets(
        self, *, objective: str = _KEEP, max_latency_s: float | None = _KEEP, max_energy_j: float | None = _KEEP
    ) -> PlacementModel:
        """The same model with another objective and/or budgets (None: no budget); shares the matrix."""
        m = copy.copy(self)
        if objective is not _KEEP:
            if objective not in OBJECTIVES:
                raise UsageError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
            m.objective = objective
        if max_latency_s is not _KEEP:
            _check_budget("max latency", max_latency_s)
            m.max_latency_s = max_latency_s
        if max_energy_j is not _KEEP:
            _check_budget("max energy", max_energy_j)
            m.max_energy_j = max_energy_j
        return m

    def _needs_energy(self) -> bool:
        return self.objective == ENERGY or self.max_energy_j is not None

    def _check_energy(self) -> None:
        if self._needs_energy() and self._en_obj is None:
            raise energy_needed_error(self._energy_missing)

    def linear_model(self) -> LinearModel:
        """The neutral model under the current objective and budgets."""
        self._check_energy()
        row_upper = self._base.row_upper.copy()
        if self.max_latency_s is not None:
            row_upper[self._lat_row] = budget_with_slack(self.max_latency_s) * SCALE
        if self.max_energy_j is not None and self._en_row is not None:
            row_upper[self._en_row] = budget_with_slack(self.max_energy_j) * SCALE
        obj = {LATENCY: self._lat_obj, ENERGY: self._en_obj, THROUGHPUT: self._period_obj}[self.objective]
        assert obj is not None
        return self._base.with_changes(objective=obj, row_upper=row_upper)

    # -- solving ----------------------------------------------------------------------

    def solve(
        self, backend: str = "auto", time_limit_s: float | None = None, start: Sequence[Assignment] | None = None,
    ) -> Solution:
        """Solve under the current objective and budgets.

        `backend` "dp" is the label-setting DP (UsageError where it does not apply), "auto"
        the DP where it applies, else the first usable ILP backend.

        `start`: a placement meeting every constraint and budget, for an ILP solver to start
        from (it never changes the optimum). The throughput objective is solved over runs
        where that model is exact (no energy budget, memory limit or one setting per role;
        runs.py), with the variables that no placement better than the start, or than the
        best one-stage-per-role pipeline, can use left out.

        Raises InfeasibleError (naming the budget and the least feasible value) when no
        placement meets the budgets, SolverError when the backend fails, UsageError when
        `start` breaks a constraint.
        """
        if start is not None:
            why = self.infeasibility(start)
            if why is not None:
                raise UsageError(f"the start placement {why}")
        if not self.problem.counts_wakeup:
            return self._solve(backend, time_limit_s, start)
        # The backends' sums and checks know no wake-up; it only ever adds, so a placement
        # within the budgets with it is within them without, and the search starts from there.
        if self._lazy.plain is None:
            problem = self.problem
            self._lazy.plain = PlacementModel(dataclasses.replace(problem, table=dataclasses.replace(problem.table,
                                                                                                     wakeup={})))
        plain = self._lazy.plain.with_budgets(objective=self.objective, max_latency_s=self.max_latency_s,
                                              max_energy_j=self.max_energy_j)
        try:
            sol = plain._solve(backend, time_limit_s, start)
        except InfeasibleError:
            if self.objective == THROUGHPUT or search_unsupported(self.problem) is not None:
                raise
            raise self._wakeup_infeasible() from None
        if self.objective == THROUGHPUT:  # the period has no wake-up; the latency has
            return dataclasses.replace(sol, evaluation=self.problem.evaluate(list(sol.placement)))
        return self._with_wakeup(sol, time_limit_s)

    def _with_wakeup(self, sol: Solution, time_limit_s: float | None = None) -> Solution:
        """The optimum once wake-up after idling counts (dime.plan.wakeup), from the backend's
        plan; where the search cannot run, the backend's plan with a note."""
        why = search_unsupported(self.problem)
        if why is not None:
            note = (f"wake-up after idling is in the numbers, but the plan is optimal without it "
                    f"(the search for the optimum with it cannot hold {why})")
            ev = self.problem.evaluate(list(sol.placement))
            self._warn_over_budget(ev)
            return dataclasses.replace(sol, evaluation=ev, objective=objective_value(self.objective, ev),
                                       note=f"{sol.note}; {note}" if sol.note else note)
        chain = self._plain_chain()
        res = search(self.problem, self.objective, self.max_latency_s, self.max_energy_j,
                     starts=[sol.placement], chain=chain, time_limit_s=time_limit_s)
        if res.placement is None or res.evaluation is None:
            raise self._wakeup_infeasible()
        ev = res.evaluation
        self._warn_over_budget(ev)
        note = (f"wake-up after idling counted: {res.nodes} partial chains searched in {res.time_s * 1e3:.0f} ms"
                + ("" if res.proven else "; stopped at its node or time limit: best found, not proven optimal"))
        return dataclasses.replace(
            sol, status=sol.status if res.proven else "search_limit", objective=objective_value(self.objective, ev),
            evaluation=ev, placement=tuple(res.placement), solve_time_s=sol.solve_time_s + res.time_s,
            note=f"{sol.note}; {note}" if sol.note else note)

    def _plain_chain(self) -> Any:
        plain = self._lazy.plain
        return plain._lazy.dp.chain if plain is not None and plain._lazy.dp is not None else None

    def _wakeup_infeasible(self) -> InfeasibleError:
        """No placement meets the budgets with wake-up: name the least values with it."""
        chain = self._plain_chain()
        least_lat = search(self.problem, LATENCY, chain=chain).evaluation
        least_en = None
        if self.max_energy_j is not None:
            least_en = search(self.problem, ENERGY, chain=chain).evaluation
        within = None
        if self.max_latency_s is not None and self.max_energy_j is not None:
            within = search(self.problem, LATENCY, max_energy_j=self.max_energy_j, chain=chain).evaluation
        return infeasible_error(
            self.max_latency_s, self.max_energy_j, least_lat.latency_s if least_lat else None,
            least_en.energy_j if least_en else None, within.latency_s if within else None)

    def _solve(self, backend: str, time_limit_s: float | None, start: Sequence[Assignment] | None) -> Solution:
        """The backend's solve, wake-up aside."""
        reason = dp_unsupported(self.problem, self.objective)
        if backend.lower() == DP or (backend.lower() == "auto" and reason is None):
            if reason is not None:
                raise unsupported_error(reason)
            sol = self._dp().solve(self.objective, self.max_latency_s, self.max_energy_j)
            return dataclasses.replace(sol, note=AUTO_DP_NOTE) if backend.lower() == "auto" else sol
        if self.objective == THROUGHPUT:
            raw, used, note, decode = self._solve_period(backend, time_limit_s, start)
        else:
            initial = None if start is None else self._values_of(start)
            raw, used, note = run_backend(backend, self.linear_model(), time_limit_s, self._auto, initial)
            decode = self.placement_from_values
        if backend.lower() == "auto":
            note = f"dp: not applicable: {reason}; {note or f'used {used}'}"
        if raw.status == INFEASIBLE:
            raise self._explain_infeasible(used, time_limit_s)
        if raw.status == ERROR:
            raise SolverError(f"{used}: {raw.message or 'failed'}")
        if raw.values is None:
            raise SolverError(f"{used}: stopped at the time limit of {time_limit_s} s before finding a placement")
        placement = decode(raw.values, used)
        ev = self.problem.evaluate(placement)
        self._warn_over_budget(ev)
        if raw.status != "optimal":
            remark = f"{used} {raw.message or raw.status}: best found, not proven optimal"
            note = f"{note}; {remark}" if note else remark
        return Solution(
            status=raw.status,
            objective=objective_value(self.objective, ev),
            objective_name=self.objective,
            evaluation=ev,
            solver=used,
            solve_time_s=raw.solve_time_s,
            placement=tuple(placement),
            note=note,
        )

    def _dp(self) -> DpSolver:
        if self._lazy.dp is None:
            self._lazy.dp = DpSolver(self.problem)
        return self._lazy.dp

    def placement_from_values(self, values: np.ndarray, solver: str = "solver") -> list[Assignment]:
        chosen = [self._x[j] for j in range(self.num_x) if values[j] > 0.5]
        return self._chain([Assignment(s, e, r, t) for s, e, r, t in sorted(chosen)], solver)

    def _chain(self, placement: list[Assignment], solver: str) -> list[Assignment]:
        try:
            check_chain(placement, self.problem.table.n_layers)
        except ValueError as e:
            raise SolverError(f"{solver} returned an invalid placement: {e}") from None
        return placement

    # -- the period (throughput) ------------------------------------------------------

    def _solve_period(
        self, backend: str, time_limit_s: float | None, start: Sequence[Assignment] | None
    ) -> tuple[RawResult, str, str, Callable[[np.ndarray, str], list[Assignment]]]:
        """Min period: over runs where that is exact, else over bundles, leaving out every
        variable that alone loads a role or link direction beyond a feasible period (the
        start's, else the best pipeline's).

        Only a `start` the caller gave is handed to the solver: the pipeline as CBC's MIP start
        made the 4-role, 60-layer benchmark 2.7x slower (benchmarks/README.md).
        """
        p = self.problem
        t0 = time.perf_counter()
        bound = start if start is not None else self._pipeline_start()
        cutoff = None if bound is None else p.evaluate(bound).period_s * SCALE * (1 + 1e-9)
        if self._runs_apply():
            budget = None if self.max_latency_s is None else budget_with_slack(self.max_latency_s) * SCALE
            rm = RunModel(p.table, p.roles, p.network, self._costs(), cutoff=cutoff, max_latency=budget,
                          name=f"dime_runs_{p.table.model}".replace(" ", "_"))
            lm, auto = rm.model, self._auto_runs
            initial = None if start is None else rm.values_of(start, p.table.n_layers, p.source)

            def decode(values: np.ndarray, solver: str) -> list[Assignment]:
                return self._chain(rm.placement_from_values(values), solver)

            log.debug("period over runs: %d runs, %d variables, cutoff %s ms", rm.num_runs, lm.num_vars, cutoff)
        else:
            lm, auto = self.linear_model(), self._auto
            decode = self.placement_from_values
            if cutoff is not None:
                lm = lm.with_changes(var_upper=np.where(self._load_coef > cutoff, 0.0, lm.var_upper))
            initial = None if start is None else self._values_of(start)
        prepared_s = time.perf_counter() - t0  # run costs, pipeline and model count as solving
        raw, used, note = run_backend(backend, lm, time_limit_s, auto, initial)
        return dataclasses.replace(raw, solve_time_s=raw.solve_time_s + prepared_s), used, note, decode

    def _runs_apply(self) -> bool:
        """Whether the run model is exact under the current budgets (see runs.py)."""
        p = self.problem
        return (self.max_energy_j is None and not p.one_setting_per_device
                and all(role.memory_bytes is None for role in p.roles))

    def _costs(self) -> dict[int, RunCosts]:
        if not self._run_costs:
            p = self.problem
            for r, role in enumerate(p.roles):
                if role.compute:
                    self._run_costs[r] = run_costs(p.table, r, role, p.k, lambda s, e, r=r: p.allowed(s, e, r),
                                                   merge_rule=not p.bundle_sum)
        return self._run_costs

    def _pipeline_start(self) -> list[Assignment] | None:
        """The feasible pipeline (runs.pipelines) with the least evaluated period, or None."""
        p = self.problem
        costs = self._costs()
        best: tuple[float, list[Assignment]] | None = None
        for runs in pipelines(p.table, p.network, [bool(role.energy) for role in p.roles], costs):
            placement = [bundle for a, e, r in runs for bundle in costs[r].bundles(a, e)]
            if self.infeasibility(placement) is None:
                period = p.evaluate(placement).period_s
                if best is None or period < best[0]:
                    best = (period, placement)
        return None if best is None else best[1]

    def infeasibility(self, placement: Sequence[Assignment]) -> str | None:
        """Why `placement` breaks a constraint or budget of this model; None when it meets them all."""
        p = self.problem
        try:
            check_chain(placement, p.table.n_layers)
        except ValueError as e:
            return str(e)
        for a in placement:
            name = p.table.bundle_name(a.start, a.end)
            if not 0 <= a.role < len(p.roles):
                return f"runs {name} on role {a.role}, which does not exist"
            if a.end - a.start + 1 > p.k:
                return f"has bundle {name}, longer than {p.k} layers"
            if not p.allowed(a.start, a.end, a.role):
                return f"runs {name} on {p.roles[a.role].name} (a relay, a private layer or a pin elsewhere)"
            if a.setting not in p.roles[a.role].settings:
                return f"runs {name} at {a.setting}, not a setting of {p.roles[a.role].name}"
        if not p.bundle_sum and merge_violation(placement, p.k) is not None:
            return f"breaks the merge rule at cut {merge_violation(placement, p.k)}"
        if not p.memory_fits(placement):
            return "does not fit the memory limits"
        if p.one_setting_per_device and any(
            len({a.setting for a in placement if a.role == r}) > 1 for r in range(len(p.roles))
        ):
            return "runs a role at more than one setting"
        ev = p.evaluate(placement)
        if self.max_latency_s is not None and ev.latency_s > budget_with_slack(self.max_latency_s):
            return f"takes {ev.latency_s:.6g} s, over the latency budget"
        if self.max_energy_j is not None and not ev.energy_j <= budget_with_slack(self.max_energy_j):
            return f"takes {ev.energy_j:.6g} J, over the energy budget"
        return None

    def _values_of(self, placement: Sequence[Assignment]) -> np.ndarray:
        """The bundle model's point for a feasible `placement` (every variable, continuous ones too)."""
        p = self.problem
        x = np.zeros(self.num_vars)
        holder = p.source
        for a in placement:
            x[self._x_var[(a.start, a.end, a.role, a.setting)]] = 1.0
            x[self._moves[(a.start, holder, a.role)]] = 1.0
            holder = a.role
        x[self._moves[(p.table.n_layers, holder, p.source)]] = 1.0
        cut_bytes = p.table.cut_bytes
        for r, j in self._act_var.items():
            x[j] = max(((cut_bytes[a.start] + cut_bytes[a.end + 1]) * BYTES_SCALE for a in placement if a.role == r),
                       default=0.0)
        for (r, setting), j in self._w_var.items():
            used = {a.setting for a in placement if a.role == r} or {p.roles[r].settings[0]}
            x[j] = 1.0 if setting in used else 0.0
        x[self._period] = max(sum(c * x[j] for j, c in terms.items()) for terms in self._loads)
        return x

    def _warn_over_budget(self, ev: Evaluation) -> None:
        # The solver's tolerances are far below profile noise; this only flags real trouble.
        if self.max_latency_s is not None and ev.latency_s > self.max_latency_s * (1 + 1e-6):
            log.warning("placement latency %.9g s exceeds the budget %.9g s", ev.latency_s, self.max_latency_s)
        if self.max_energy_j is not None and ev.energy_j > self.max_energy_j * (1 + 1e-6):
            log.warning("placement energy %.9g J exceeds the budget %.9g J", ev.energy_j, self.max_energy_j)

    def _least(self, backend: str, time_limit_s: float | None, quantity: str, **budgets: float | None) -> float | None:
        """The least latency/energy under `budgets` (None when even that is infeasible)."""
        m = self.with_budgets(objective=quantity, **budgets)
        raw, used, _ = run_backend(backend, m.linear_model(), time_limit_s, self._auto)
        if raw.values is None:
            return None
        placement = m.placement_from_values(raw.values, used)
        return objective_value(quantity, self.problem.evaluate(placement))

    def _explain_infeasible(self, backend: str, time_limit_s: float | None) -> InfeasibleError:
        lat, en = self.max_latency_s, self.max_energy_j
        least_lat = self._least(backend, time_limit_s, LATENCY, max_latency_s=None, max_energy_j=None)
        if least_lat is None:
            return self._explain_structure(backend, time_limit_s)
        least_en = self._least(backend, time_limit_s, ENERGY, max_latency_s=None, max_energy_j=None) \
            if en is not None and (lat is None or least_lat <= lat) else None
        within = self._least(backend, time_limit_s, LATENCY, max_latency_s=None) \
            if lat is not None and en is not None and least_lat <= lat and least_en is not None and least_en <= en \
            else None
        return infeasible_error(lat, en, least_lat, least_en, within)

    def _explain_structure(self, backend: str, time_limit_s: float | None) -> InfeasibleError:
        """No placement at all, budgets aside: name the device whose memory alone rules them out."""
        p = self.problem
        limited = [r for r, role in enumerate(p.roles) if role.memory_bytes is not None]
        for r in limited:
            only = tuple(
                role if i == r else dataclasses.replace(role, memory_bytes=None) for i, role in enumerate(p.roles)
            )
            m = PlacementModel(dataclasses.replace(p, roles=only, max_latency_s=None, max_energy_j=None))
            if m._least(backend, time_limit_s, LATENCY) is None:
                role = p.roles[r]
                return InfeasibleError(
                    f"no placement fits the memory of {role.name} ({role.memory_bytes} bytes)"
                    + (" with its private layers and pins" if r == p.source and (p.private_layers or p.pin) else "")
                )
        if limited:
            return InfeasibleError(
                "no placement fits the memory limits of " + ", ".join(p.roles[r].name for r in limited) + " together"
            )
        return no_placement_error()

    # -- export -----------------------------------------------------------------------

    def write_lp(self, path: str | os.PathLike) -> None:
        """Write the model (current objective and budgets) as LP, or MPS if `path` ends in .mps.

        Written to a temporary file next to `path` and renamed, so no half file is left.
        """
        from dime.plan.backends._pulp import to_pulp

        try:
            prob, _ = to_pulp(self.linear_model())
        except ImportError:
            raise SolverError("writing LP/MPS files needs PuLP (pip install pulp)") from None
        mps = str(path).lower().endswith(".mps")
        atomic_write(path, lambda tmp: prob.writeMPS(tmp) if mps else prob.writeLP(tmp))


def build_model(problem: PlacementProblem) -> PlacementModel:
    """Build the ILP of `problem` once; re-solve it under other budgets with `with_budgets`."""
    return PlacementModel(problem)


def solve(problem: PlacementProblem, backend: str = "auto", time_limit_s: float | None = None) -> Solution:
    """Build and solve `problem` in one go."""
    return PlacementModel(problem).solve(backend, time_limit_s)
