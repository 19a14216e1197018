"""Edge energy for sweeps: measured, or assumed as W x latency and labelled so."""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

from dime.core.costs import CostTable, Role
from dime.errors import UsageError


def assume_edge_power(table: CostTable, edge: Role, watts: Sequence[float]) -> tuple[CostTable, str]:
    """A copy of `table` whose edge bundles cost W x latency joules, labelled as assumed.

    `watts` holds one value for every edge setting or one per setting in `edge.settings`
    order. Profiles that already carry edge energy are refused rather than overwritten.
    Returns the new table and the label for the rows' energy_source.
    """
    if len(watts) not in (1, len(edge.settings)):
        raise UsageError(
            f"--assume-edge-power: give one power or one per edge setting ({len(edge.settings)}: "
            f"{', '.join(edge.settings)}), got {len(watts)}"
        )
    for w in watts:
        if not (math.isfinite(w) and w > 0):
            raise UsageError(f"--assume-edge-power: powers must be positive numbers of watts, got {w:g}")
    power = {s: float(watts[0] if len(watts) == 1 else watts[i]) for i, s in enumerate(edge.settings)}
    costs = dict(table.costs)
    for (device, setting, s, e), c in table.costs.items():
        if device != edge.device or setting not in power:
            continue
        if c.energy_j is not None:
            raise UsageError(
                f"{profiles_label(table)}: the profiles already have edge energy "
                f"({c.energy_source or 'measured'}) for {device} ({setting}); drop --assume-edge-power"
            )
        w = power[setting]
        costs[(device, setting, s, e)] = dataclasses.replace(
            c, energy_j=w * c.latency_s, energy_source=f"assumed:{w:g}"
        )
    if len(set(power.values())) == 1:
        label = f"assumed:{watts[0]:g}"
    else:
        label = "assumed:" + ",".join(f"{w:g}@{s}" for s, w in power.items())
    return dataclasses.replace(table, costs=costs), label


def edge_energy_source(table: CostTable, edge: Role, max_bundle: int) -> str:
    """The label of the edge energy; raises UsageError when some edge bundle lacks it."""
    sources: dict[str, None] = {}
    n = table.n_layers
    for setting in edge.settings:
        for s in range(n):
            for e in range(s, min(n, s + max_bundle)):
                c = table.costs.get((edge.device, setting, s, e))
                if c is None:
                    continue  # require_bundles reports missing bundles
                if c.energy_j is None:
                    raise UsageError(
                        f"{profiles_label(table)}: no edge energy for {edge.device} ({setting}), e.g. bundle "
                        f"{table.bundle_name(s, e)}; energy sweeps need it: profile the edge with an "
                        "energy meter (or dime.profile --assume-power W), or pass --assume-edge-power W"
                    )
                sources[c.energy_source or "measured"] = None
    assumed = [x for x in sources if x.startswith("assumed")]
    if assumed:
        return "assumed:" + ",".join(x.split(":", 1)[1] for x in assumed) if len(assumed) > 1 else assumed[0]
    return ",".join(sources)


def profiles_label(table: CostTable) -> str:
    src = list(table.sources)
    if not src:
        return f"model {table.model}"
    return ", ".join(src) if len(src) <= 2 else f"{src[0]} and {len(src) - 1} more files"


def energy_note(sources: Iterable[str]) -> str:
    """How the edge energy was obtained, for plot titles."""
    srcs = sorted({s for s in sources if s})
    assumed = [s.split(":", 1)[1] for s in srcs if s.startswith("assumed:")]
    if assumed:
        watts = "; ".join(", ".join(f"{w.replace('@', ' W at ')}" if "@" in w else f"{w} W" for w in a.split(","))
                          for a in assumed)
        return f"edge energy ASSUMED = W × latency ({watts}), not measured"
    return f"edge energy measured ({', '.join(srcs)})" if srcs else ""
