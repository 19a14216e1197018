"""Energy for solves and sweeps: measured, or assumed as W x latency and labelled so.

Two devices: the edge's energy counts. A system file: every device whose energy counts
(the source's by default). Profiles are keyed by the profiled device, so two devices that
stand in for the same (device, setting) share its costs, and an assumed power with them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Sequence

from dime.core.costs import CostTable, Role
from dime.errors import UsageError
from dime.plan.statement import PlacementProblem


def assume_edge_power(table: CostTable, edge: Role, watts: Sequence[float]) -> tuple[CostTable, str]:
    """A copy of `table` whose edge bundles cost W x latency joules, labelled as assumed.

    `watts` holds one value for every edge setting or one per setting in `edge.settings`
    order. Profiles that already carry edge energy are refused rather than overwritten.
    Returns the new table and the label for the rows' energy_source.
    """
    table, labels = assume_power(table, [dataclasses.replace(edge, name="edge")], {"edge": watts},
                                 "--assume-edge-power")
    return table, labels["edge"]


def assume_power(
    table: CostTable, roles: Sequence[Role], watts: Mapping[str, Sequence[float]], flag: str = "--assume-power"
) -> tuple[CostTable, dict[str, str]]:
    """A copy of `table` whose bundles on the named roles cost W x latency joules.

    `watts[name]` holds one value for every setting of that role or one per setting, in
    its settings' order. Returns the new table and each named role's energy_source label
    (``assumed:W``, or ``assumed:W@setting,...`` when the settings differ).
    """
    by_name = {r.name: r for r in roles if r.compute}
    power: dict[tuple[str, str], tuple[float, str]] = {}  # (device, setting) -> (W, role that set it)
    labels: dict[str, str] = {}
    for name, ws in watts.items():
        role = by_name.get(name)
        if role is None:
            raise UsageError(f"{flag}: no computing device {name!r}; devices: {', '.join(by_name)}")
        if len(ws) not in (1, len(role.settings)):
            raise UsageError(
                f"{flag}: give one power or one per {name} setting ({len(role.settings)}: "
                f"{', '.join(role.settings)}), got {len(ws)}"
            )
        for w in ws:
            if not (math.isfinite(w) and w > 0):
                raise UsageError(f"{flag}: powers must be positive numbers of watts, got {w:g}")
        mine = {s: float(ws[0] if len(ws) == 1 else ws[i]) for i, s in enumerate(role.settings)}
        for s, w in mine.items():
            other = power.get((role.device, s))
            if other is not None and other[0] != w:
                raise UsageError(
                    f"{flag}: {other[1]} and {name} both stand in for {role.device} ({s}), "
                    f"which cannot cost {other[0]:g} W and {w:g} W at once"
                )
            power[(role.device, s)] = (w, name)
        if len(set(mine.values())) == 1:
            labels[name] = f"assumed:{next(iter(mine.values())):g}"
        else:
            labels[name] = "assumed:" + ",".join(f"{w:g}@{s}" for s, w in mine.items())
    costs = dict(table.costs)
    for (device, setting, s, e), c in table.costs.items():
        if (device, setting) not in power:
            continue
        w, name = power[(device, setting)]
        if c.energy_j is not None:
            raise UsageError(
                f"{profiles_label(table)}: the profiles already have {name} energy "
                f"({c.energy_source or 'measured'}) for {device} ({setting}); drop {flag}"
            )
        costs[(device, setting, s, e)] = dataclasses.replace(
            c, energy_j=w * c.latency_s, energy_source=f"assumed:{w:g}"
        )
    return dataclasses.replace(table, costs=costs), labels


def edge_energy_source(table: CostTable, edge: Role, max_bundle: int) -> str:
    """The label of the edge energy; raises UsageError when some edge bundle lacks it."""
    return role_energy_source(table, edge, max_bundle)


def role_energy_source(table: CostTable, role: Role, max_bundle: int) -> str:
    """The label of a role's energy; raises UsageError when one of its bundles lacks it."""
    sources: dict[str, None] = {}
    n = table.n_layers
    for setting in role.settings:
        for s in range(n):
            for e in range(s, min(n, s + max_bundle)):
                c = table.costs.get((role.device, setting, s, e))
                if c is None:
                    continue  # require_bundles reports missing bundles
                if c.energy_j is None:
                    raise UsageError(_no_energy(table, role, setting, table.bundle_name(s, e)))
                sources[c.energy_source or "measured"] = None
    assumed = [x for x in sources if x.startswith("assumed")]
    if assumed:
        return "assumed:" + ",".join(x.split(":", 1)[1] for x in assumed) if len(assumed) > 1 else assumed[0]
    return ",".join(sources)


def _no_energy(table: CostTable, role: Role, setting: str, bundle: str) -> str:
    if role.name in ("", "edge"):
        return (f"{profiles_label(table)}: no edge energy for {role.device} ({setting}), e.g. bundle {bundle}; "
                "energy sweeps need it: profile the edge with an energy meter (or dime.profile --assume-power W), "
                "or pass --assume-edge-power W")
    return (f"{profiles_label(table)}: no energy for {role.name} ({role.device}, {setting}), e.g. bundle {bundle}; "
            f"its energy counts and energy sweeps need it: profile it with an energy meter (or dime.profile "
            f"--assume-power W), or pass --assume-power {role.name}=W")


def energy_source(table: CostTable, roles: Sequence[Role], max_bundle: int,
                  assumed: Mapping[str, str] | None = None, where: str = "") -> str:
    """The label of the counted energy: one role's label, or ``name label; ...`` for several.

    `assumed` holds the labels assume_power gave; raises UsageError when a counted role's
    bundle has no energy, or when no device's energy counts (there is nothing to trade).
    """
    assumed = assumed or {}
    counted = [r for r in roles if r.energy]
    if not counted:
        raise UsageError(f"{where or 'the system'}: no device's energy counts, so a sweep has nothing to trade "
                         "latency for; set energy = true on a device")
    labels = {r.name: assumed.get(r.name) or role_energy_source(table, r, max_bundle)
              for r in counted if r.compute}
    labels.update({r.name: "radio" for r in counted if not r.compute})  # a relay's energy is its links'
    if len(labels) == 1:
        return next(iter(labels.values()))
    return "; ".join(f"{name} {label}" for name, label in labels.items())


def profiles_label(table: CostTable) -> str:
    src = list(table.sources)
    if not src:
        return f"model {table.model}"
    return ", ".join(src) if len(src) <= 2 else f"{src[0]} and {len(src) - 1} more files"


def _watts_text(label: str) -> str:
    """``10 W at threads=1, 16 W at threads=2`` from an assumed label's ``10@threads=1,16@threads=2``."""
    return ", ".join(f"{w.replace('@', ' W at ', 1)}" if "@" in w else f"{w} W" for w in label.split(","))


def energy_note(sources: Iterable[str], what: str = "edge energy") -> str:
    """How the counted energy was obtained, for plot titles."""
    srcs = sorted({s for s in sources if s})
    assumed: list[str] = []
    measured: list[str] = []
    for src in srcs:
        parts = src.split("; ")
        for part in parts:
            # several devices: "camera assumed:3; jetson nvml" (labels hold no spaces)
            name, _, label = part.rpartition(" ") if len(parts) > 1 else ("", "", part)
            if label.startswith("assumed:"):
                assumed.append(f"{name + ' ' if name else ''}{_watts_text(label.split(':', 1)[1])}")
            else:
                measured.append(f"{name} {label}" if name else label)
    if assumed:
        note = f"{what} ASSUMED = W × latency ({'; '.join(assumed)}), not measured"
        return note + (f"; measured: {', '.join(measured)}" if measured else "")
    return f"{what} measured ({', '.join(measured)})" if measured else ""


def with_assumed_power(
    problem: PlacementProblem, edge_w: Sequence[float] | None, power_w: Iterable[tuple[str, Sequence[float]]],
) -> tuple[PlacementProblem, dict[str, str]]:
    """The problem with assumed powers in its table (`edge_w`: the source's, `power_w`: by
    device name), and their labels by device; unchanged when no power is given."""
    watts = dict(power_w)
    flag = "--assume-power"
    if edge_w is not None:
        source = problem.roles[problem.source].name
        if source in watts:
            raise UsageError(f"--assume-edge-power and --assume-power {source}=... both give the power of {source}")
        watts[source] = edge_w
        if len(watts) == 1:
            flag = "--assume-edge-power"
    if not watts:
        return problem, {}
    table, labels = assume_power(problem.table, problem.roles, watts, flag)
    return dataclasses.replace(problem, table=table), labels
