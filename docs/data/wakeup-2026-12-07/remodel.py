"""Which wake-up model: the same measured runs predicted by each candidate, side by side.

    .venv/bin/python docs/data/wakeup-2026-12-07/remodel.py DIR MODEL[,MODEL...]

DIR holds what run.sh wrote (MODEL-xeon-2core.csv, MODEL-user.csv, MODEL-netns.csv). For every
split placement measured, the prediction of each candidate model of wake-up, from the same
profile and the same measured rows (nothing re-run), and its compute-only error (dime.validate's
definition, raw and drift-corrected):

  none         no wake-up (the cost model before)
  curve        the per-setting curve only (median over the bundles at each idle time), extended
               as measured up to the longest idle time
  own-scaled   each bundle's own extra after 0.1 s, scaled by the curve at any idle time
  own-capped   the same up to 0.1 s, then the bundle's own extra (dime.core.costs.WakeUp)

Per link, and over all (user-space and kernel-shaped links together).
"""

from __future__ import annotations

import csv
import dataclasses
import statistics
import sys
from pathlib import Path

from dime.core.costs import Role, WakeUp, evaluate
from dime.core.links import Link
from dime.core.placement import parse_placement
from dime.profiling.reader import load_profiles
from dime.run.report import add_drift_columns, map_cell, parse_map


class _Curve(WakeUp):
    def bundle_extra(self, idle_s: float, own_s: float | None) -> float:
        return self.extra(idle_s)


class _Scaled(WakeUp):
    def bundle_extra(self, idle_s: float, own_s: float | None) -> float:
        at_ref = self.extra(self.ref_idle_s) if self.ref_idle_s is not None else 0.0
        if own_s is None or at_ref <= 0:
            return self.extra(idle_s)
        return own_s * self.extra(idle_s) / at_ref


VARIANTS = {
    "none": lambda w: None,
    "curve": lambda w: _Curve(w.idle_s, w.extra_s, w.ref_idle_s),
    "own-scaled": lambda w: _Scaled(w.idle_s, w.extra_s, w.ref_idle_s),
    "own-capped": lambda w: w,
}


def main(argv: list[str]) -> int:
    folder, models = Path(argv[0]), argv[1].split(",")
    errs: dict[tuple[str, str], dict[str, list[float]]] = {}
    for model in models:
        table = load_profiles(folder / f"{model}-xeon-2core.csv")
        for shaper in ("user", "netns"):
            with open(folder / f"{model}-{shaper}.csv", newline="") as f:
                rows = [r for r in csv.DictReader(f) if r["config"].startswith("split@")]
            for row in rows:
                roles = (Role("xeon-2core", ("threads=1",)), Role("xeon-2core", ("threads=1",)))
                link = Link(row["link"], float(row["uplink_mbps"]), float(row["downlink_mbps"]),
                            rtt_ms=float(row["rtt_ms"]))
                placement = parse_placement(table.layer_names, row["placement"])
                for name, make in VARIANTS.items():
                    wake = {k: c for k, c in ((k, make(w)) for k, w in table.wakeup.items()) if c is not None}
                    ev = evaluate(dataclasses.replace(table, wakeup=wake), roles, link, placement)
                    r2 = dict(row)
                    r2["pred_bundle_s"] = ev.latency_s
                    r2["pred_bundle_compute_s"] = map_cell(dict(zip(("edge", "cloud"), ev.device_compute_s)))
                    add_drift_columns(r2, parse_map(row["whole_profiled_s"]))
                    for key in ((name, row["link"]), (name, "all")):
                        e = errs.setdefault(key, {"raw": [], "drift": []})
                        e["raw"].append(abs(r2["err_bundle_compute"]))
                        e["drift"].append(abs(r2["err_bundle_compute_drift"]))
    links = [link for link in dict.fromkeys(link for _, link in errs) if link != "all"] + ["all"]
    print("| wake-up model | " + " | ".join(f"{link}: splits, compute-only \\|error\\| raw / drift-corrected"
                                          for link in links) + " |")
    print("|---|" + "---:|" * len(links))
    for name in VARIANTS:
        cells = [f"{len(e['raw'])}, {statistics.median(e['raw']):.1%} / {statistics.median(e['drift']):.1%}"
                 for e in (errs[(name, link)] for link in links)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
