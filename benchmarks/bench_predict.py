"""Benchmark: measure a fraction of the bundles, predict the rest (dime.profiling.predict), on the
shipped full profiles.

    python benchmarks/bench_predict.py [--fraction 0.25] [--profiles 'profiles/*-xeon-2core.csv'] [--out CSV]

For every profile (every bundle measured) and setting, it keeps the bundles `dime.profile
--measure FRACTION` would measure (the single layers and the longest bundles, then greedily
the least certain: dime.profiling.predict.choose_bundles, fed with the profile's own single
layers), hides the rest, predicts them, and reports:

1. |error| on the hidden bundles (median, p90) of the prediction, of the layer sums (the single
   layers summed) and of the plain pairwise model (single layers and adjacent pairs measured,
   a longer bundle = layer sum + its inner pairs' interactions; its own share of measured
   bundles, and the prediction fitted on that same set for comparison);
2. the latency regret of the plan solved from the predicted profile, evaluated on the full one,
   against the full profile's optimum: ILP (dime.plan), edge = the device at threads=1, cloud =
   the device at threads=2 (README's worked example), every bundle (K = layers), links 3g, 4g,
   wifi and 300/300/1, merge rule and --bundle-sum; then the same after plan-aware refinement
   (dime.plan.refine; a "measurement" reveals the full profile's value and the rest is
   predicted again), with the bundle/setting pairs it measured;
3. the profiling time saved: each bundle's share of the profile's wall time, from the rows'
   t_start_s/t_end_s (from the end of the bundle before it, so warm-ups and model building
   count), summed over the measured bundles.

Everything is a deterministic computation on the files.

    python benchmarks/bench_predict.py --against FULL.csv PARTIAL.csv

compares instead a profile made with `dime.profile --measure` (PARTIAL.csv: measured rows and
predicted ones) with a full profile of the same model and device made in another run
(FULL.csv): |error| of the predicted rows against the full run's measurements, beside the
|difference| of the rows both runs measured (the run-to-run noise floor).

    python benchmarks/bench_predict.py --write-partial FULL.csv PARTIAL.csv [--fraction 0.25]

writes the rows of FULL.csv that --measure would have measured (and its .meta.json): a partial
profile of real measurements, to try `dime.predict` on.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dime.core.costs import CostTable, Role, evaluate  # noqa: E402
from dime.core.links import parse_link  # noqa: E402
from dime.plan import PlacementProblem, build_model  # noqa: E402
from dime.plan.refine import Key, refine  # noqa: E402
from dime.profiling.predict import BundleModel, budget_for, bundles_upto, choose_bundles  # noqa: E402
from dime.profiling.predicted import predict_profile  # noqa: E402
from dime.profiling.reader import load_profiles  # noqa: E402

LINKS = ("3g", "4g", "wifi", "300/300/1")
EDGE_SETTING, CLOUD_SETTING = "threads=1", "threads=2"


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 100 if len(values) else math.nan


def subset(table: CostTable, keys: set[Key]) -> CostTable:
    return dataclasses.replace(table, costs={k: c for k, c in table.costs.items() if k in keys})


def filled(full: CostTable, measured: set[Key]) -> tuple[CostTable, float]:
    """The measured bundles of `full` plus the predicted rest, and the seconds the prediction took."""
    part = subset(full, measured)
    t0 = time.perf_counter()
    predicted = predict_profile(part, full.n_layers)
    took = time.perf_counter() - t0
    return dataclasses.replace(part, costs={**part.costs, **predicted.costs}), took


def measure_choice(full: CostTable, fraction: float) -> set[Key]:
    n, out = full.n_layers, set()
    for device, settings in full.settings.items():
        for t in settings:
            singles = [full.costs[(device, t, i, i)].latency_s for i in range(n)]
            out |= {(device, t, s, e) for s, e in choose_bundles(singles, full.cut_bytes, n, budget_for(fraction, n, n))}
    return out


def pairwise(full: CostTable, device: str, setting: str, s: int, e: int) -> float:
    c = {(a, b): full.costs[(device, setting, a, b)].latency_s for a in range(s, e + 1) for b in (a, a + 1)
         if b <= e}
    return sum(c[(i, i)] for i in range(s, e + 1)) + sum(c[(j, j + 1)] - c[(j, j)] - c[(j + 1, j + 1)]
                                                         for j in range(s, e))


def errors(full: CostTable, guess: CostTable, hidden: Sequence[Key]) -> list[float]:
    return [abs(guess.costs[k].latency_s - full.costs[k].latency_s) / full.costs[k].latency_s for k in hidden]


def leave_one_out(full: CostTable, device: str, setting: str) -> list[float]:
    """|error| of each multi-layer bundle predicted from every other bundle: what the noise of the
    measurements leaves to a predictor that has everything else."""
    n = full.n_layers
    values = {(s, e): full.costs[(device, setting, s, e)].latency_s for s, e in bundles_upto(n, n)}
    model = BundleModel([values[(i, i)] for i in range(n)], full.cut_bytes)
    out = []
    for b, v in values.items():
        if b[1] > b[0]:
            fit = model.fit({k: x for k, x in values.items() if k != b})
            out.append(abs(fit.mean(*b) - v) / v)
    return out


def accuracy_rows(model: str, full: CostTable, fraction: float) -> list[dict]:
    measured = measure_choice(full, fraction)
    guess, took = filled(full, measured)
    pair_set = {(d, t, s, e) for (d, t, s, e) in full.costs if e - s <= 1}
    pair_guess, _ = filled(full, pair_set)
    out = []
    for device, settings in full.settings.items():
        for t in settings:
            keys = [k for k in full.costs if k[:2] == (device, t)]
            hidden = [k for k in keys if k not in measured]
            p_hidden = [k for k in keys if k not in pair_set]
            ours = errors(full, guess, hidden)
            sums = [abs(sum(full.costs[(device, t, i, i)].latency_s for i in range(s, e + 1)) - full.costs[k].latency_s)
                    / full.costs[k].latency_s for k in hidden for (_, _, s, e) in [k]]
            pw = [abs(pairwise(full, device, t, s, e) - full.costs[k].latency_s) / full.costs[k].latency_s
                  for k in p_hidden for (_, _, s, e) in [k]]
            ours_on_pairs = errors(full, pair_guess, p_hidden)
            floor = leave_one_out(full, device, t)
            out.append({
                "model": model, "setting": t, "bundles": len(keys), "measured": len(keys) - len(hidden),
                "ours_med": pct(ours, 50), "ours_p90": pct(ours, 90),
                "sum_med": pct(sums, 50), "sum_p90": pct(sums, 90),
                "pair_measured": len(keys) - len(p_hidden), "pair_med": pct(pw, 50), "pair_p90": pct(pw, 90),
                "ours_pairset_med": pct(ours_on_pairs, 50), "ours_pairset_p90": pct(ours_on_pairs, 90),
                "loo_med": pct(floor, 50), "loo_p90": pct(floor, 90),
                "predict_s": took,
            })
    return out


def regret_rows(model: str, full: CostTable, fraction: float, refine_budget: int) -> list[dict]:
    device = next(iter(full.settings))
    roles = (Role(device, (EDGE_SETTING,)), Role(device, (CLOUD_SETTING,)))
    measured = measure_choice(full, fraction)
    guess, _ = filled(full, measured)
    out = []
    for link_text in LINKS:
        link = parse_link(link_text)
        for bundle_sum in (False, True):
            base = PlacementProblem(table=full, roles=roles, link=link, max_bundle=full.n_layers, bundle_sum=bundle_sum)

            def solve(problem: PlacementProblem):
                return build_model(problem).solve("auto")

            best = solve(base).evaluation.latency_s
            planned = solve(dataclasses.replace(base, table=guess))
            got = evaluate(full, roles, link, planned.placement).latency_s
            known = set(measured)

            def reveal(keys: Sequence[Key]) -> CostTable:
                known.update(keys)
                return filled(full, known)[0]

            result = refine(dataclasses.replace(base, table=guess), solve, reveal, refine_budget)
            after = evaluate(full, roles, link, result.solution.placement).latency_s
            n_pred = sum(guess.costs[(roles[a.role].device, a.setting, a.start, a.end)].predicted
                         for a in planned.placement)
            out.append({
                "model": model, "link": link.name, "semantics": "bundle-sum" if bundle_sum else "merge rule",
                "optimum_s": best, "planned_s": got, "regret": (got - best) / best,
                "plan_predicted": n_pred, "plan_bundles": len(planned.placement),
                "refined_s": after, "refined_regret": (after - best) / best, "refine_measured": result.measured,
            })
    return out


def time_share(path: str, full: CostTable, measured: set[Key]) -> tuple[float, float]:
    """(wall seconds of the whole profile, share of them spent on the measured bundles)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    index = {name: i for i, name in enumerate(full.layer_names)}
    spans: dict[Key, float] = {}
    last_end: dict[str, float] = {}
    for r in rows:
        key = (r["device"], r["setting"], index[r["start"]], index[r["end"]])
        start, end = float(r["t_start_s"]), float(r["t_end_s"])
        if key not in spans:
            spans[key] = 0.0
            begin = last_end.get(r["setting"], start)  # from the previous bundle's end: warm-up, building
        else:
            begin = last_end[r["setting"]]
        spans[key] += end - begin
        last_end[r["setting"]] = end
    total = sum(spans.values())
    return total, sum(v for k, v in spans.items() if k in measured) / total


def against(full_path: str, partial_path: str) -> int:
    full, part = load_profiles(full_path), load_profiles(partial_path)
    print("| setting | predicted bundles: median / p90 |error| | measured in both runs: median / p90 |difference| |")
    print("|---|---:|---:|")
    for device, settings in part.settings.items():
        for t in settings:
            keys = [k for k in part.costs if k[:2] == (device, t) and k in full.costs]
            pred = [k for k in keys if part.costs[k].predicted]
            both = [k for k in keys if not part.costs[k].predicted]
            e_pred, e_both = errors(full, part, pred), errors(full, part, both)
            print(f"| {device} ({t}) | {fmt(pct(e_pred, 50))}% / {fmt(pct(e_pred, 90))}% ({len(pred)}) "
                  f"| {fmt(pct(e_both, 50))}% / {fmt(pct(e_both, 90))}% ({len(both)}) |")
    return 0


def write_partial(full_path: str, out_path: str, fraction: float) -> int:
    full = load_profiles(full_path)
    keep = {(d, t, full.bundle_name(s, e)) for d, t, s, e in measure_choice(full, fraction)}
    with open(full_path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if (r["device"], r["setting"], r["bundle"]) in keep]
        fields = reader.fieldnames or []
    with open(out_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    meta = Path(full_path + ".meta.json")
    if meta.is_file():
        Path(out_path + ".meta.json").write_text(meta.read_text())
    print(f"{out_path}: {len(keep)} of {len(full.costs)} bundle/setting pairs of {full_path}")
    return 0


def fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fraction", type=float, default=0.25)
    p.add_argument("--profiles", default=str(ROOT / "profiles" / "*-xeon-2core.csv"))
    p.add_argument("--refine-budget", type=int, default=20)
    p.add_argument("--out", help="also write the per-setting and per-plan rows as CSV (two files: -acc, -regret)")
    p.add_argument("--against", nargs=2, metavar=("FULL.csv", "PARTIAL.csv"),
                   help="compare a --measure profile with a full one made in another run")
    p.add_argument("--write-partial", nargs=2, metavar=("FULL.csv", "PARTIAL.csv"),
                   help="write the rows of FULL.csv that --measure FRACTION would measure")
    args = p.parse_args(argv)
    if args.against:
        return against(*args.against)
    if args.write_partial:
        return write_partial(*args.write_partial, args.fraction)
    files = sorted(glob.glob(args.profiles))
    if not files:
        p.error(f"no profiles match {args.profiles}")
    acc, reg, times = [], [], []
    for path in files:
        full = load_profiles(path)
        model = full.model
        acc += accuracy_rows(model, full, args.fraction)
        reg += regret_rows(model, full, args.fraction, args.refine_budget)
        total, share = time_share(path, full, measure_choice(full, args.fraction))
        times.append((model, len(full.costs), len(measure_choice(full, args.fraction)), total, share))

    print(f"## Prediction error on the hidden bundles (fraction {args.fraction:g})\n")
    print("| model | setting | bundles | measured | ours: median / p90 | layer sums: median / p90 "
          "| pairwise: measured | pairwise: median / p90 | ours on pairwise's set: median / p90 "
          "| ours with all but one measured: median / p90 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in acc:
        print(f"| {r['model']} | {r['setting']} | {r['bundles']} | {r['measured']} ({100 * r['measured'] / r['bundles']:.0f}%) "
              f"| {fmt(r['ours_med'])}% / {fmt(r['ours_p90'])}% | {fmt(r['sum_med'])}% / {fmt(r['sum_p90'])}% "
              f"| {r['pair_measured']} ({100 * r['pair_measured'] / r['bundles']:.0f}%) "
              f"| {fmt(r['pair_med'])}% / {fmt(r['pair_p90'])}% "
              f"| {fmt(r['ours_pairset_med'])}% / {fmt(r['ours_pairset_p90'])}% "
              f"| {fmt(r['loo_med'])}% / {fmt(r['loo_p90'])}% |")
    print("\n## Latency regret of the plan from the predicted profile (evaluated on the full profile)\n")
    print("| model | link | semantics | optimum (ms) | plan (ms) | regret | predicted bundles in plan "
          "| after refine: regret | refine measured |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in reg:
        print(f"| {r['model']} | {r['link']} | {r['semantics']} | {r['optimum_s'] * 1e3:.2f} | {r['planned_s'] * 1e3:.2f} "
              f"| {100 * r['regret']:.2f}% | {r['plan_predicted']}/{r['plan_bundles']} "
              f"| {100 * r['refined_regret']:.2f}% | {r['refine_measured']} |")
    worst = max(reg, key=lambda r: r["regret"])
    print(f"\nworst regret {100 * worst['regret']:.2f}% ({worst['model']}, {worst['link']}, {worst['semantics']}); "
          f"{sum(r['regret'] > 0.01 for r in reg)} of {len(reg)} plans above 1%; after refine: worst "
          f"{100 * max(r['refined_regret'] for r in reg):.2f}%, "
          f"{sum(r['refined_regret'] > 1e-12 for r in reg)} of {len(reg)} above 0")
    print("\n## Profiling time (from the rows' timing columns)\n")
    print("| model | bundle/setting pairs | measured | full profile wall (s) | measured share of the wall time |")
    print("|---|---:|---:|---:|---:|")
    for model, n_all, n_meas, total, share in times:
        print(f"| {model} | {n_all} | {n_meas} ({100 * n_meas / n_all:.0f}%) | {total:.1f} | {100 * share:.0f}% |")
    print(f"\nprediction itself: at most {max(r['predict_s'] for r in acc) * 1e3:.0f} ms per profile")
    if args.out:
        for suffix, table in (("-acc", acc), ("-regret", reg)):
            path = Path(args.out).with_name(Path(args.out).stem + suffix + ".csv")
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(table[0]), lineterminator="\n")
                w.writeheader()
                w.writerows(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
