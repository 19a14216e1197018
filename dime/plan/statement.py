"""The placement problem's statement: what to place where, the objectives and the budgets.

The ILP (problem.py) and the label-setting DP (dp.py) both solve a PlacementProblem; the
helpers here (budget comparisons, objective values, the messages of an infeasible or
energy-less problem) are shared so that both answer alike.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from dime.core.costs import (
    Assignment,
    CostTable,
    Evaluation,
    Role,
    as_network,
    evaluate,
    memory_use,
    resolve_roles,
)
from dime.core.links import Link
from dime.core.network import Network
from dime.errors import InfeasibleError, UsageError

LATENCY = "latency"
ENERGY = "energy"
THROUGHPUT = "throughput"
OBJECTIVES: tuple[str, ...] = (LATENCY, ENERGY, THROUGHPUT)


def budget_with_slack(budget: float) -> float:
    """A budget plus a hair of slack, so that a placement meeting it exactly stays feasible
    after solvers round coefficients (CBC's preprocessing otherwise drops it)."""
    return budget + max(1e-9 * budget, 1e-12)


def _check_budget(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise UsageError(f"{name} must be a positive number, got {value}")


def objective_value(objective: str, ev: Evaluation) -> float:
    """The objective of an evaluated placement, in SI units (throughput: the period in s)."""
    return {LATENCY: ev.latency_s, ENERGY: ev.energy_j, THROUGHPUT: ev.period_s}[objective]


@dataclass(frozen=True)
class PlacementProblem:
    """Where to run each bundle of `table`'s model, on roles joined by `link`.

    `link` is the one edge-cloud Link of two roles, or a Network of any number of roles;
    `roles` are resolved on construction (names, energy flags: see core.costs.Role).
    """

    table: CostTable
    roles: tuple[Role, ...]  # (edge, cloud) for a Link
    link: Link | Network
    max_bundle: int
    objective: str = LATENCY  # "latency" | "energy" (of energy-counted roles) | "throughput"
    max_latency_s: float | None = None
    max_energy_j: float | None = None
    private_layers: int = 0  # the first N layers must run on the source
    one_setting_per_device: bool = False  # each role runs all its bundles at one setting
    pin: tuple[tuple[int, int], ...] = ()  # (layer, role): that layer runs on that role
    bundle_sum: bool = False  # DIME's semantics: any partition, costs summed (no merge rule)

    def __post_init__(self) -> None:
        net = as_network(self.link)
        if len(self.roles) != net.n_devices:
            what = "two roles (edge, cloud)" if isinstance(self.link, Link) else f"{net.n_devices} roles"
            raise UsageError(f"a placement needs {what}, got {len(self.roles)}")
        object.__setattr__(self, "roles", resolve_roles(self.roles, net.source))
        object.__setattr__(self, "pin", tuple(sorted(dict(self.pin).items())))
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
        names = [r.name for r in self.roles]
        if len(set(names)) != len(names):
            raise UsageError(f"two roles share a name: {', '.join(names)}")
        for r, role in enumerate(self.roles):
            name = role.name
            if not role.compute:
                self._check_relay(r, role, net)
                continue
            if role.device not in self.table.settings:
                raise UsageError(
                    f"unknown {name} device {role.device!r}; known devices: {', '.join(self.table.settings)}"
                )
            if not role.settings:
                raise UsageError(f"the {name} role has no settings")
            unknown = [s for s in role.settings if s not in self.table.settings[role.device]]
            if unknown:
                raise UsageError(f"device {role.device} has no setting {unknown[0]!r}")
            if role.memory_bytes is not None:
                if not (isinstance(role.memory_bytes, int) and role.memory_bytes > 0):
                    raise UsageError(f"memory of {name} must be a positive number of bytes, got {role.memory_bytes}")
                if not self.table.param_bytes:
                    raise UsageError(
                        f"a memory limit on {name} needs the profiles' param_bytes column; "
                        "profile again with this version of dime.profile"
                    )
        for layer, r in self.pin:
            if not (0 <= layer < n and 0 <= r < len(self.roles)):
                raise UsageError(f"pin: layer {layer} or role {r} out of range")
            if not self.roles[r].compute:
                raise UsageError(f"pin: {self.table.layer_names[layer]} is pinned to {self.roles[r].name}, "
                                 "a relay that runs no layer")
            if layer < self.private_layers and r != net.source:
                raise UsageError(
                    f"pin: {self.table.layer_names[layer]} is a private layer, it runs on {self.roles[net.source].name}"
                )
        unreachable = net.unreachable()
        if unreachable:
            raise UsageError(f"{self.roles[unreachable[0]].name} is not linked to {self.roles[net.source].name}")

    @staticmethod
    def _check_relay(r: int, role: Role, net: Network) -> None:
        """A role without compute: no settings, no memory, not the source, and a name."""
        if not role.name:
            raise UsageError(f"relay role {r} (compute False) needs a name")
        if r == net.source:
            raise UsageError(f"the source {role.name} must compute: it holds the input and gets the output back")
        if role.settings:
            raise UsageError(f"{role.name} is a relay (compute False) and has settings {', '.join(role.settings)}")
        if role.memory_bytes is not None:
            raise UsageError(f"{role.name} is a relay (compute False) and has a memory limit")

    @property
    def k(self) -> int:
        """The effective max bundle: no bundle is longer than the model."""
        return min(self.max_bundle, self.table.n_layers)

    @functools.cached_property
    def network(self) -> Network:
        # cached: the DP asks for it (through `source`) once per bundle and role
        return as_network(self.link)

    @property
    def source(self) -> int:
        return self.network.source

    def allowed(self, start: int, end: int, role: int) -> bool:
        """Whether a bundle may run on a role: it computes, private layers stay on the
        source, pins hold."""
        if not self.roles[role].compute:
            return False
        if role != self.source and start < self.private_layers:
            return False
        return all(r == role for layer, r in self.pin if start <= layer <= end)

    def evaluate(self, placement: Sequence[Assignment]) -> Evaluation:
        return evaluate(self.table, self.roles, self.network, placement)

    @property
    def counts_wakeup(self) -> bool:
        """Whether some computing role's profile measured wake-up after idling at one of its
        settings (dime.core.costs.WakeUp): then costs depend on the idle before each segment."""
        return any((r.device, t) in self.table.wakeup for r in self.roles if r.compute for t in r.settings)

    def memory_fits(self, placement: Sequence[Assignment]) -> bool:
        return all(
            memory_use(self.table, placement, r) <= role.memory_bytes
            for r, role in enumerate(self.roles) if role.memory_bytes is not None
        )


def energy_needed_error(missing: str) -> UsageError:
    """The objective or a budget needs energy that `missing` says a profile lacks."""
    return UsageError(
        f"{missing}; --objective energy and --max-energy need edge energy: "
        "profile with an energy meter or with --assume-power"
    )


def no_placement_error() -> InfeasibleError:
    return InfeasibleError("no placement meets the constraints (private layers and pins)")


def infeasible_error(
    max_latency_s: float | None, max_energy_j: float | None,
    least_latency_s: float | None, least_energy_j: float | None, least_latency_within_energy_s: float | None,
) -> InfeasibleError:
    """Why no placement meets the budgets, naming the least feasible value: the least latency
    and least energy without budgets, and the least latency within the energy budget (None: unknown)."""
    lat, en = max_latency_s, max_energy_j
    if lat is not None and least_latency_s is not None and least_latency_s > lat:
        return InfeasibleError(
            f"no placement meets --max-latency {lat:g} s; the least feasible latency is {least_latency_s:.6g} s"
        )
    if en is not None and least_energy_j is not None and least_energy_j > en:
        return InfeasibleError(
            f"no placement meets --max-energy {en:g} J; the least feasible energy is {least_energy_j:.6g} J"
        )
    if lat is not None and en is not None and least_latency_within_energy_s is not None:
        return InfeasibleError(
            f"no placement meets both --max-latency {lat:g} s and --max-energy {en:g} J; "
            f"the least latency within --max-energy {en:g} J is {least_latency_within_energy_s:.6g} s"
        )
    return InfeasibleError("no placement meets the constraints")
