"""The placement ILP: what to decide, built once into a solver-neutral linear model.

Decision: binary x[s,e,r,t] = bundle (layers s..e, at most K of them) runs on role r
(0 edge, 1 cloud) at setting t of that role. The chosen bundles form a chain:

    flow   sum_{e} x[0,e,.,.] = 1;  for cut k in 1..n-1: sum x ending at k-1 = sum x starting at k;
           sum_{s} x[s,n-1,.,.] = 1.

For cut k, L[k,r] = sum x of bundles ending at k-1 on role r (the left side; cut 0's left
side is the edge, which holds the input) and R[k,r] = sum x of bundles starting at k on
role r (cut n's right side is the edge, which gets the output). Transfer binaries are
exact products:  up[k] = L[k,edge] * R[k,cloud],  down[k] = L[k,cloud] * R[k,edge],
linearised as  up <= L, up <= R, up >= L + R - 1.

    latency     = sum x * latency + sum_k up[k] * (8 bytes_k / uplink + rtt/2) + down likewise
    edge energy = sum x(edge) * energy + sum_k up[k] * P_up * 8 bytes_k / uplink + down likewise

Inside the model seconds and joules are scaled to ms and mJ (per-layer costs can be
1e-5 s, which would sit at solver tolerance in SI units); every reported number comes
from re-evaluating the chosen placement with dime.core.costs.evaluate.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dime.core.costs import (
    CLOUD,
    EDGE,
    ROLE_NAMES,
    Assignment,
    CostTable,
    Evaluation,
    Role,
    bundles,
    check_chain,
    evaluate,
)
from dime.core.links import DOWN, UP, Link
from dime.errors import InfeasibleError, SolverError, UsageError
from dime.fileio import atomic_write
from dime.plan.backends import AutoChoice, run_backend
from dime.plan.linear import ERROR, INF, INFEASIBLE, LinearModel, ModelBuilder

log = logging.getLogger(__name__)

LATENCY = "latency"
ENERGY = "energy"
OBJECTIVES: tuple[str, ...] = (LATENCY, ENERGY)
SCALE = 1e3  # model units per SI unit: ms per s, mJ per J


def budget_with_slack(budget: float) -> float:
    """A budget plus a hair of slack, so that a placement meeting it exactly stays feasible
    after solvers round coefficients (CBC's preprocessing otherwise drops it)."""
    return budget + max(1e-9 * budget, 1e-12)

_KEEP: Any = object()  # "leave this budget as it is"


def _check_budget(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise UsageError(f"{name} must be a positive number, got {value}")


@dataclass(frozen=True)
class PlacementProblem:
    """Where to run each bundle of `table`'s model, on two roles joined by `link`."""

    table: CostTable
    roles: tuple[Role, Role]  # (edge, cloud)
    link: Link
    max_bundle: int
    objective: str = LATENCY  # "latency" | "energy" (edge energy)
    max_latency_s: float | None = None
    max_energy_j: float | None = None
    private_layers: int = 0  # the first N layers must run on the edge
    one_setting_per_device: bool = False  # each role runs all its bundles at one setting

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", tuple(self.roles))
        if len(self.roles) != 2:
            raise UsageError(f"a placement needs two roles (edge, cloud), got {len(self.roles)}")
        if self.objective not in OBJECTIVES:
            raise UsageError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not (isinstance(self.max_bundle, int) and self.max_bundle >= 1):
            raise UsageError(f"max bundle must be a whole number >= 1, got {self.max_bundle}")
        n = self.table.n_layers
        if n < 1:
            raise UsageError("the model has no layers")
        if not (0 <= self.private_layers <= n):
            raise UsageError(f"private layers must be in 0..{n}, got {self.private_layers}")
        _check_budget("max latency", self.max_latency_s)
        _check_budget("max energy", self.max_energy_j)
        for name, role in zip(ROLE_NAMES, self.roles):
            if role.device not in self.table.settings:
                raise UsageError(
                    f"unknown {name} device {role.device!r}; known devices: {', '.join(self.table.settings)}"
                )
            if not role.settings:
                raise UsageError(f"the {name} role has no settings")
            unknown = [s for s in role.settings if s not in self.table.settings[role.device]]
            if unknown:
                raise UsageError(f"device {role.device} has no setting {unknown[0]!r}")

    @property
    def k(self) -> int:
        """The effective max bundle: no bundle is longer than the model."""
        return min(self.max_bundle, self.table.n_layers)


@dataclass(frozen=True)
class Solution:
    """A solved placement; every number comes from dime.core.costs.evaluate on `placement`."""

    status: str  # "optimal" or "time_limit" (best found, not proven optimal)
    objective: float  # value of the objective, in SI units (s or J)
    objective_name: str  # "latency" | "energy"
    evaluation: Evaluation
    solver: str
    solve_time_s: float
    placement: tuple[Assignment, ...]  # chosen bundles in chain order
    note: str = ""  # why `auto` passed over a backend, or other remarks

    def to_json_dict(self, table: CostTable, roles: Sequence[Role]) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "status": self.status,
            "objective": _num(self.objective),
            "objective_name": self.objective_name,
            "latency_s": _num(ev.latency_s),
            "compute_latency_s": _num(ev.compute_latency_s),
            "comm_latency_s": _num(ev.comm_latency_s),
            "energy_j": _num(ev.energy_j),
            "compute_energy_j": _num(ev.compute_energy_j),
            "comm_energy_j": _num(ev.comm_energy_j),
            "energy_assumed": ev.energy_assumed,
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
                    "role": ROLE_NAMES[a.role],
                    "latency_s": table.cost(roles[a.role].device, a.setting, a.start, a.end).latency_s,
                    "energy_j": _bundle_energy(table, roles, a),
                }
                for a in self.placement
            ],
        }


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _bundle_energy(table: CostTable, roles: Sequence[Role], a: Assignment) -> float | None:
    """Edge bundles' measured energy; the cloud's energy is not the edge's concern."""
    if a.role != EDGE:
        return None
    return table.cost(roles[a.role].device, a.setting, a.start, a.end).energy_j


class PlacementModel:
    """The ILP of a PlacementProblem, built once.

    `with_budgets` returns a model that shares the constraint matrix and differs only in
    the objective and the budget rows' right-hand sides, so sweeps re-solve cheaply.
    """

    def __init__(self, problem: PlacementProblem) -> None:
        self.problem = problem
        self.objective = problem.objective
        self.max_latency_s = problem.max_latency_s
        self.max_energy_j = problem.max_energy_j
        self._auto = AutoChoice()
        self._build()

    # -- building ---------------------------------------------------------------------

    def _build(self) -> None:
        p = self.problem
        table, roles, link = p.table, p.roles, p.link
        n, K = table.n_layers, p.k
        b = ModelBuilder(name=f"dime_{table.model}".replace(" ", "_"))
        lat: dict[int, float] = {}
        en: dict[int, float] = {}
        energy_missing: str | None = None

        # x variables, first, so that their indices are 0..nx-1.
        self._x: list[tuple[int, int, int, str]] = []
        starts: list[list[int]] = [[] for _ in range(n)]  # cut k -> x starting at layer k
        ends: list[list[int]] = [[] for _ in range(n)]  # layer e -> x ending there
        left: list[list[dict[int, float]]] = [[{}, {}] for _ in range(n + 1)]  # L[k][r] as {var: 1}
        right: list[list[dict[int, float]]] = [[{}, {}] for _ in range(n + 1)]  # R[k][r]
        by_setting: dict[tuple[int, str], list[int]] = {}
        for s, e in bundles(n, K):
            for r, role in enumerate(roles):
                if r == CLOUD and s < p.private_layers:
                    continue  # the bundle holds a private layer
                for ti, setting in enumerate(role.settings):
                    j = b.add_var(f"x_{s}_{e}_{ROLE_NAMES[r]}_{ti}")
                    self._x.append((s, e, r, setting))
                    c = table.cost(role.device, setting, s, e)
                    lat[j] = c.latency_s * SCALE
                    if r == EDGE:
                        if c.energy_j is None:
                            if energy_missing is None:
                                energy_missing = (
                                    f"the edge profile has no energy for {role.device} ({setting}), "
                                    f"e.g. bundle {table.bundle_name(s, e)}"
                                )
                        else:
                            en[j] = c.energy_j * SCALE
                    starts[s].append(j)
                    ends[e].append(j)
                    left[e + 1][r][j] = 1.0
                    right[s][r][j] = 1.0
                    by_setting.setdefault((r, setting), []).append(j)
        self.num_x = len(self._x)

        # Flow: the chosen bundles chain from layer 0 to layer n-1.
        b.add_row("flow_0", {j: 1.0 for j in starts[0]}, 1.0, 1.0)
        for k in range(1, n):
            terms = {j: 1.0 for j in ends[k - 1]}
            terms.update({j: -1.0 for j in starts[k]})
            b.add_row(f"flow_{k}", terms, 0.0, 0.0)
        b.add_row(f"flow_{n}", {j: 1.0 for j in ends[n - 1]}, 1.0, 1.0)

        # Transfers. None stands for a side fixed to the edge (cut 0's left, cut n's right);
        # an empty sum means that side can never be on that role.
        for k in range(n + 1):
            for direction, src, dst in ((UP, EDGE, CLOUD), (DOWN, CLOUD, EDGE)):
                lhs = None if (k == 0 and src == EDGE) else left[k][src]
                rhs = None if (k == n and dst == EDGE) else right[k][dst]
                if lhs == {} or rhs == {}:
                    continue  # no transfer possible at this cut in this direction
                t = b.add_var(f"{direction}_{k}")
                nbytes = table.cut_bytes[k]
                lat[t] = link.transfer_latency_s(nbytes, direction) * SCALE
                en[t] = link.transfer_energy_j(nbytes, direction) * SCALE
                self._add_product(b, f"{direction}_{k}", t, lhs, rhs)

        # One setting per role: y[r,t] picks the setting; x at other settings is off.
        # Aggregated (sum x <= n y) rather than x <= y per bundle: far fewer rows, and the
        # exact optimum is the same.
        if p.one_setting_per_device:
            for r, role in enumerate(roles):
                if len(role.settings) < 2:
                    continue
                ys = []
                for ti, setting in enumerate(role.settings):
                    y = b.add_var(f"y_{ROLE_NAMES[r]}_{ti}")
                    ys.append(y)
                    xs = by_setting.get((r, setting), [])
                    if xs:
                        terms = {j: 1.0 for j in xs}
                        terms[y] = -float(n)
                        b.add_row(f"one_setting_{ROLE_NAMES[r]}_{ti}", terms, -INF, 0.0)
                b.add_row(f"one_setting_{ROLE_NAMES[r]}", {y: 1.0 for y in ys}, 1.0, 1.0)

        nv = b.num_vars
        self._lat_obj = np.zeros(nv)
        for j, c in lat.items():
            self._lat_obj[j] = c
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
    def _add_product(
        b: ModelBuilder, name: str, t: int, lhs: dict[int, float] | None, rhs: dict[int, float] | None
    ) -> None:
        """Rows making t = lhs * rhs for 0/1 sums of variables; None is the constant 1."""
        if lhs is None and rhs is None:  # cannot happen for two roles, kept for completeness
            b.add_row(f"{name}_fix", {t: 1.0}, 1.0, 1.0)
            return
        if lhs is None or rhs is None:  # t equals the other side
            other = rhs if lhs is None else lhs
            assert other is not None
            b.add_row(f"{name}_eq", {t: 1.0, **{j: -c for j, c in other.items()}}, 0.0, 0.0)
            return
        b.add_row(f"{name}_le_l", {t: 1.0, **{j: -c for j, c in lhs.items()}}, -INF, 0.0)
        b.add_row(f"{name}_le_r", {t: 1.0, **{j: -c for j, c in rhs.items()}}, -INF, 0.0)
        terms = {j: -c for j, c in lhs.items()}
        for j, c in rhs.items():
            terms[j] = terms.get(j, 0.0) - c
        terms[t] = 1.0
        b.add_row(f"{name}_ge", terms, -1.0, INF)

    # -- budgets and objective --------------------------------------------------------

    @property
    def has_energy(self) -> bool:
        """Whether every edge bundle in the model has a measured (or assumed) energy."""
        return self._en_obj is not None

    @property
    def num_vars(self) -> int:
        return self._base.num_vars

    def num_constraints(self) -> int:
        """Rows given to the solver under the current budgets."""
        return self.linear_model().num_active_rows

    def with_budgets(
        self, *, objective: str = _KEEP, max_latency_s: float | None = _KEEP, max_energy_j: float | None = _KEEP
    ) -> "PlacementModel":
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
            raise UsageError(
                f"{self._energy_missing}; --objective energy and --max-energy need edge energy: "
                "profile with an energy meter or with --assume-power"
            )

    def linear_model(self) -> LinearModel:
        """The neutral model under the current objective and budgets."""
        self._check_energy()
        row_upper = self._base.row_upper.copy()
        if self.max_latency_s is not None:
            row_upper[self._lat_row] = budget_with_slack(self.max_latency_s) * SCALE
        if self.max_energy_j is not None and self._en_row is not None:
            row_upper[self._en_row] = budget_with_slack(self.max_energy_j) * SCALE
        obj = self._lat_obj if self.objective == LATENCY else self._en_obj
        assert obj is not None
        return self._base.with_changes(objective=obj, row_upper=row_upper)

    # -- solving ----------------------------------------------------------------------

    def solve(self, backend: str = "auto", time_limit_s: float | None = None) -> Solution:
        """Solve under the current objective and budgets.

        Raises InfeasibleError (naming the budget and the least feasible value) when no
        placement meets the budgets, SolverError when the backend fails.
        """
        raw, used, note = run_backend(backend, self.linear_model(), time_limit_s, self._auto)
        if raw.status == INFEASIBLE:
            raise self._explain_infeasible(used, time_limit_s)
        if raw.status == ERROR:
            raise SolverError(f"{used}: {raw.message or 'failed'}")
        if raw.values is None:
            raise SolverError(f"{used}: stopped at the time limit of {time_limit_s} s before finding a placement")
        placement = self.placement_from_values(raw.values, used)
        ev = evaluate(self.problem.table, self.problem.roles, self.problem.link, placement)
        self._warn_over_budget(ev)
        if raw.status != "optimal":
            remark = f"{used} {raw.message or raw.status}: best found, not proven optimal"
            note = f"{note}; {remark}" if note else remark
        return Solution(
            status=raw.status,
            objective=ev.latency_s if self.objective == LATENCY else ev.energy_j,
            objective_name=self.objective,
            evaluation=ev,
            solver=used,
            solve_time_s=raw.solve_time_s,
            placement=tuple(placement),
            note=note,
        )

    def placement_from_values(self, values: np.ndarray, solver: str = "solver") -> list[Assignment]:
        chosen = [self._x[j] for j in range(self.num_x) if values[j] > 0.5]
        placement = [Assignment(s, e, r, t) for s, e, r, t in sorted(chosen)]
        try:
            check_chain(placement, self.problem.table.n_layers)
        except ValueError as e:
            raise SolverError(f"{solver} returned an invalid placement: {e}") from None
        return placement

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
        ev = evaluate(self.problem.table, self.problem.roles, self.problem.link, placement)
        return ev.latency_s if quantity == LATENCY else ev.energy_j

    def _explain_infeasible(self, backend: str, time_limit_s: float | None) -> InfeasibleError:
        lat, en = self.max_latency_s, self.max_energy_j
        if lat is not None:
            best = self._least(backend, time_limit_s, LATENCY, max_latency_s=None, max_energy_j=None)
            if best is not None and best > lat:
                return InfeasibleError(
                    f"no placement meets --max-latency {lat:g} s; the least feasible latency is {best:.6g} s"
                )
        if en is not None:
            best = self._least(backend, time_limit_s, ENERGY, max_latency_s=None, max_energy_j=None)
            if best is not None and best > en:
                return InfeasibleError(
                    f"no placement meets --max-energy {en:g} J; the least feasible energy is {best:.6g} J"
                )
        if lat is not None and en is not None:
            best = self._least(backend, time_limit_s, LATENCY, max_latency_s=None)
            if best is not None:
                return InfeasibleError(
                    f"no placement meets both --max-latency {lat:g} s and --max-energy {en:g} J; "
                    f"the least latency within --max-energy {en:g} J is {best:.6g} s"
                )
        return InfeasibleError("no placement meets the constraints")

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
