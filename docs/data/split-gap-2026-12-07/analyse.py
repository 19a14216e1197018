"""The split-placement figures of docs/run.md from dime.validate CSVs.

    .venv/bin/python docs/data/split-gap-2026-12-07/analyse.py LABEL=CSV[,CSV...] ...

Per label, model and link: the split placements' median |compute-only error| (raw and
drift-corrected, as dime.validate defines it: against the measured latency less the link
model's transfer time) and median signed one; their devices' measured time in their bundles
(`busy_s`) over the predicted compute (median over placements and devices: compute alone, no
link in it); and the solver's placement's signed error.
"""

from __future__ import annotations

import sys

import pandas as pd


def _map(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in (x.split("=") for x in str(text).split(";") if "=" in x)}


def busy_ratio(s: pd.DataFrame) -> float:
    if "busy_s" not in s.columns or "pred_bundle_compute_s" not in s.columns:
        return float("nan")  # rows written before dime.run timed each device's bundles
    ratios = []
    for _, r in s.iterrows():
        pred, busy = _map(r.pred_bundle_compute_s), _map(r.busy_s)
        ratios += [busy[d] / p for d, p in pred.items() if p > 0 and d in busy]
    return float(pd.Series(ratios).median()) if ratios else float("nan")


def _ratio_text(x: float) -> str:
    return "-" if x != x else f"{x:.2f}"  # NaN: rows without busy_s


def table(label: str, d: pd.DataFrame) -> list[str]:
    out = []
    for (model, link), g in list(d.groupby(["model", "link"], sort=False)) + [(("all", ""), d)]:
        s = g[g.config.str.startswith("split@")]
        solver = g[g.config == "solver"]
        solver_err = (f"{solver.err_bundle.median():+.1%} / {solver.err_bundle_drift.median():+.1%}"
                      if len(solver) else "")
        placement = solver.placement.iloc[0].replace(" | ", "; ") if len(solver) and model != "all" else ""
        out.append(f"| {label} | {model} | {link} | {len(s)} | {s.err_bundle_compute.abs().median():.1%} / "
                   f"{s.err_bundle_compute_drift.abs().median():.1%} | {s.err_bundle_compute.median():+.1%} | "
                   f"{_ratio_text(busy_ratio(s))} | "
                   f"{placement} | {solver_err} |")
    return out


def main(argv: list[str]) -> int:
    lines = ["| links | model | link | splits | compute-only \\|error\\|, raw / drift-corrected | signed (raw) | "
             "busy / predicted compute | solver's placement | solver's error, raw / drift-corrected |",
             "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for arg in argv:
        label, files = arg.split("=", 1)
        d = pd.concat([pd.read_csv(f) for f in files.split(",")], ignore_index=True)
        lines += table(label, d)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
