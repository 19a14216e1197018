"""docs/run.md's N-device table, per model, for one or more folders of dime.validate --system rows.

    .venv/bin/python docs/data/nd-2026-12-07/compare.py docs/data/nd-2026-12-02 docs/data/nd-2026-12-07
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

from dime.run.report import RATIO_GOAL, _num, placement_results


def _med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1%}" if xs else "-"


def line(label: str, model: str, rows: list[dict]) -> str:
    res = placement_results(rows)
    lat = [abs(_num(r.latency["err_bundle"])) for r in res if r.latency and _num(r.latency.get("err_bundle")) is not None]
    drift = [abs(_num(r.latency["err_bundle_drift"])) for r in res
             if r.latency and _num(r.latency.get("err_bundle_drift")) is not None]
    one = [abs(e) for r in res if (e := r.fps_err(1)) is not None]
    four = [abs(e) for r in res if (e := r.fps_err(4)) is not None]
    busy = []
    for r in rows:
        if r["scenario"] == "single-stream" and r.get("busy_s") and r.get("pred_bundle_compute_s"):
            b = dict(x.split("=") for x in r["busy_s"].split(";") if "=" in x)
            p = dict(x.split("=") for x in r["pred_bundle_compute_s"].split(";") if "=" in x)
            busy += [float(b[d]) / float(p[d]) for d in p if float(p[d]) > 0 and d in b]
    hoped = [r for r in res if (r.ratio(4, 0) or 0) >= RATIO_GOAL]
    got = [r for r in hoped if (r.ratio(4, 1) or 0) >= RATIO_GOAL]
    return (f"| {label} | {model} | {len(res)} | {_med(lat)} / {_med(drift)} | {_med(one)} | {_med(four)} | "
            f"{statistics.median(busy):.2f} | {len(hoped)} | {len(got)} |")


def main(folders: list[str]) -> int:
    print("| rows | model | placements | median \\|latency error\\|, raw / drift-corrected | median \\|throughput "
          "error\\|, 1 in flight | 4 in flight | busy / profiled compute (median, single-stream) | predicted to gain "
          ">= 1.5x with 4 in flight | did |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for folder in folders:
        everything = []
        for model in ("alexnet", "resnet18", "mobilenet_v2"):
            rows = list(csv.DictReader(open(Path(folder) / f"{model}.csv")))
            everything += rows
            print(line(Path(folder).name, model, rows))
        print(line(Path(folder).name, "**all**", everything))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
