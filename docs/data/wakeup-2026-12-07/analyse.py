"""The wake-up measurement's tables in docs/run.md, from dime.validate CSVs.

    .venv/bin/python docs/data/wakeup-2026-12-07/analyse.py LABEL=CSV[,CSV...] ...

Per label, model and link, over the split placements (every single split): the median
|compute-only error| raw and drift-corrected (dime.validate's: against the measured latency less
the link model's transfer time) and the median signed one; their devices' measured time in their
bundles (`busy_s`) over the predicted compute, wake-up included (median over placements and
devices); what the run spent outside the bundles and the link model per transfer (measured
latency less busy time less predicted transfer time, over the transfers; median); and the
solver's placement with its signed error, raw and drift-corrected. Last, per label: how many of
the solver's placements are within ±5%.
"""

from __future__ import annotations

import sys

import pandas as pd


def _map(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in (x.split("=") for x in str(text).split(";") if "=" in x)}


def busy_ratio(s: pd.DataFrame) -> float:
    ratios = []
    for _, r in s.iterrows():
        pred, busy = _map(r.pred_bundle_compute_s), _map(r.busy_s)
        ratios += [busy[d] / p for d, p in pred.items() if p > 0 and d in busy]
    return float(pd.Series(ratios).median()) if ratios else float("nan")


def per_transfer_ms(s: pd.DataFrame) -> float:
    """(measured - busy - predicted transfers) / transfers, in ms: what the link model and the
    profile leave out per transfer (serialising, the runtime's messages, waking the receiver)."""
    out = [(r.mean_s - sum(_map(r.busy_s).values()) - r.pred_comm_s) / r.transfers * 1e3
           for _, r in s.iterrows() if r.transfers > 0]
    return float(pd.Series(out).median()) if out else float("nan")


def table(label: str, d: pd.DataFrame) -> tuple[list[str], int, int]:
    out = []
    within = total = 0
    for (model, link), g in list(d.groupby(["model", "link"], sort=False)) + [(("all", ""), d)]:
        s = g[g.config.str.startswith("split@")]
        solver = g[g.config == "solver"]
        err = solver.err_bundle.median() if len(solver) else float("nan")
        err_d = solver.err_bundle_drift.median() if len(solver) else float("nan")
        if model != "all" and len(solver):
            total += 1
            within += abs(err) <= 0.05
        placement = solver.placement.iloc[0].replace(" | ", "; ") if len(solver) and model != "all" else ""
        out.append(f"| {label} | {model} | {link} | {len(s)} | {s.err_bundle_compute.abs().median():.1%} / "
                   f"{s.err_bundle_compute_drift.abs().median():.1%} | {s.err_bundle_compute.median():+.1%} | "
                   f"{busy_ratio(s):.2f} | {per_transfer_ms(s):.2f} | {placement} | {err:+.1%} / {err_d:+.1%} |")
    return out, within, total


def main(argv: list[str]) -> int:
    lines = ["| links | model | link | splits | compute-only \\|error\\|, raw / drift-corrected | signed (raw) | "
             "busy / predicted compute | unmodelled per transfer (ms) | solver's placement | "
             "solver's error, raw / drift-corrected |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---:|"]
    counts = []
    for arg in argv:
        label, files = arg.split("=", 1)
        d = pd.concat([pd.read_csv(f) for f in files.split(",")], ignore_index=True)
        rows, within, total = table(label, d)
        lines += rows
        counts.append(f"{label}: the solver's placement within ±5% (raw) in {within} of {total}")
    print("\n".join(lines + [""] + counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
