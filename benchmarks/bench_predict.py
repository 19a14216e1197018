"""Benchmark: measure a fraction of the bundles, predict the rest (dime.profiling.predict), on the
shipped full profiles.

    python benchmarks/bench_predict.py [--fraction 0.25] [--profiles 'profiles/*-xeon-2core.csv'] [--out CSV]

For every profile (every bundle measured) and setting, it keeps the bundles `dime.profile
--measure FRACTION` would measure, hides the rest, predicts them, and reports, side by side for
two choices of what to measure: the first pass's (the single layers and the longest bundles,
then greedily the least certain: dime.profiling.predict.UncertaintyChoice) and the plan-aware
one that `dime.profile --measure` now makes (dime.plan.choose.PlanAwareChoice). The choices
are driven by the profile's own values: a "measurement" reveals the full profile's value.

1. |error| on the hidden bundles (median, p90) of the prediction, of the layer sums (the single
   layers summed) and of the plain pairwise model (single layers and adjacent pairs measured,
   a longer bundle = layer sum + its inner pairs' interactions; its own share of measured
   bundles, and the prediction fitted on that same set for comparison), and the floor that the
   profile's noise leaves (each bundle predicted from all the others);
2. the latency regret of the plan solved from the predicted profile, evaluated on the full one,
   against the full profile's optimum: edge = the device at threads=1, cloud = the device at
   threads=2 (README's worked example), every bundle (K = layers), links 3g, 4g, wifi and
   300/300/1, merge rule and --bundle-sum. For each choice; for the plan-aware one also solved
   with predicted bundles charged mean + k sd (--risk-sd, default 1); after plan-aware
   refinement (dime.plan.refine) from either; and the noise floor of the regret: the full
   profile split into two halves of its runs (even and odd run numbers), the plan of one half
   judged on the other, both ways, averaged;
3. the profiling time saved: each bundle's share of the profile's wall time, from the rows'
   t_start_s/t_end_s (from the end of the bundle before it, so warm-ups and model building
   count), summed over the measured bundles.

Everything is a deterministic computation on the files.

    python benchmarks/bench_predict.py --validation

instead solves another grid of problems (fractions 0.2, 0.3 and 0.4; links 10/10/5, 100/100/1
and 1000/1000/1; edge threads=1 and cloud threads=2, and the other way round; both semantics)
for the choices and the variants of the plan-aware one that were tried: the grid on which its
settings were chosen, kept apart from the benchmark's own grid above.

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
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dime.core.costs import CostTable, Role, evaluate  # noqa: E402
from dime.core.links import parse_link  # noqa: E402
from dime.plan import PlacementProblem, build_model  # noqa: E402
from dime.plan.choose import PlanAwareChoice, Probes  # noqa: E402
from dime.plan.refine import Key, refine, shifted_cost  # noqa: E402
from dime.profiling.predict import BundleModel, Chooser, UncertaintyChoice, budget_for, bundles_upto  # noqa: E402
from dime.profiling.predicted import predict_profile  # noqa: E402
from dime.profiling.reader import load_profiles  # noqa: E402

LINKS = ("3g", "4g", "wifi", "300/300/1")
EDGE_SETTING, CLOUD_SETTING = "threads=1", "threads=2"
FIRST, PLAN = "first pass", "plan-aware"
CHOOSERS: dict[str, Chooser] = {FIRST: UncertaintyChoice(), PLAN: PlanAwareChoice()}
VALIDATION_LINKS = ("10/10/5", "100/100/1", "1000/1000/1")
VALIDATION_FRACTIONS = (0.2, 0.3, 0.4)


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


def measure_choice(full: CostTable, fraction: float, chooser: Chooser) -> set[Key]:
    """What --measure FRACTION with `chooser` measures at every setting, each round's values
    read from the full profile."""
    n, out = full.n_layers, set()
    for device, settings in full.settings.items():
        for t in settings:
            def value(b: tuple[int, int], device: str = device, t: str = t) -> float:
                return full.costs[(device, t, *b)].latency_s

            for chosen in chooser(n, n, full.cut_bytes, budget_for(fraction, n, n), value):
                out |= {(device, t, s, e) for s, e in chosen}
    return out


def cautious(table: CostTable, k: float) -> CostTable:
    """Predicted bundles at mean + k sd (what a risk-aware solve would charge)."""
    return dataclasses.replace(table, costs={key: (shifted_cost(c, k) if c.predicted else c) for key, c in table.costs.items()})


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


def accuracy_rows(model: str, full: CostTable, choices: dict[str, set[Key]]) -> list[dict]:
    guesses = {name: filled(full, m) for name, m in choices.items()}
    measured, (guess, took) = choices[FIRST], guesses[FIRST]
    plan_measured, (plan_guess, plan_took) = choices[PLAN], guesses[PLAN]
    pair_set = {(d, t, s, e) for (d, t, s, e) in full.costs if e - s <= 1}
    pair_guess, _ = filled(full, pair_set)
    out = []
    for device, settings in full.settings.items():
        for t in settings:
            keys = [k for k in full.costs if k[:2] == (device, t)]
            hidden = [k for k in keys if k not in measured]
            plan_hidden = [k for k in keys if k not in plan_measured]
            p_hidden = [k for k in keys if k not in pair_set]
            ours = errors(full, guess, hidden)
            plan = errors(full, plan_guess, plan_hidden)
            sums = [abs(sum(full.costs[(device, t, i, i)].latency_s for i in range(s, e + 1)) - full.costs[k].latency_s)
                    / full.costs[k].latency_s for k in hidden for (_, _, s, e) in [k]]
            pw = [abs(pairwise(full, device, t, s, e) - full.costs[k].latency_s) / full.costs[k].latency_s
                  for k in p_hidden for (_, _, s, e) in [k]]
            ours_on_pairs = errors(full, pair_guess, p_hidden)
            floor = leave_one_out(full, device, t)
            out.append({
                "model": model, "setting": t, "bundles": len(keys), "measured": len(keys) - len(hidden),
                "ours_med": pct(ours, 50), "ours_p90": pct(ours, 90),
                "plan_measured": len(keys) - len(plan_hidden), "plan_med": pct(plan, 50), "plan_p90": pct(plan, 90),
                "sum_med": pct(sums, 50), "sum_p90": pct(sums, 90),
                "pair_measured": len(keys) - len(p_hidden), "pair_med": pct(pw, 50), "pair_p90": pct(pw, 90),
                "ours_pairset_med": pct(ours_on_pairs, 50), "ours_pairset_p90": pct(ours_on_pairs, 90),
                "loo_med": pct(floor, 50), "loo_p90": pct(floor, 90),
                "predict_s": max(took, plan_took),
            })
    return out


def halves(path: str, folder: str) -> tuple[CostTable, CostTable]:
    """The profile read twice: from its even-numbered runs and from its odd-numbered ones."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows, fields = list(reader), reader.fieldnames or []
    out = []
    for parity in (0, 1):
        part = Path(folder) / f"half{parity}-{Path(path).name}"
        with open(part, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            w.writeheader()
            w.writerows(r for r in rows if int(r["run"]) % 2 == parity)
        out.append(load_profiles(part))
    return out[0], out[1]


def solve(problem: PlacementProblem):
    return build_model(problem).solve("auto")


def regret_of(full: CostTable, base: PlacementProblem, table: CostTable, best: float) -> tuple[float, object]:
    sol = solve(dataclasses.replace(base, table=table))
    got = evaluate(full, base.roles, base.link, sol.placement).latency_s
    return (got - best) / best, sol


def refined(full: CostTable, base: PlacementProblem, measured: set[Key], budget: int) -> tuple[CostTable, object]:
    known = set(measured)

    def reveal(keys: Sequence[Key]) -> CostTable:
        known.update(keys)
        return filled(full, known)[0]

    return reveal([]), refine(dataclasses.replace(base, table=reveal([])), solve, reveal, budget)


def regret_rows(model: str, full: CostTable, choices: dict[str, set[Key]], split: tuple[CostTable, CostTable],
                refine_budget: int, risk_sd: float) -> list[dict]:
    device = next(iter(full.settings))
    roles = (Role(device, (EDGE_SETTING,)), Role(device, (CLOUD_SETTING,)))
    guesses = {name: filled(full, m)[0] for name, m in choices.items()}
    out = []
    for link_text in LINKS:
        link = parse_link(link_text)
        for bundle_sum in (False, True):
            base = PlacementProblem(table=full, roles=roles, link=link, max_bundle=full.n_layers, bundle_sum=bundle_sum)
            best = solve(base).evaluation.latency_s
            row = {"model": model, "link": link.name, "semantics": "bundle-sum" if bundle_sum else "merge rule",
                   "optimum_s": best}
            for name, prefix in ((FIRST, ""), (PLAN, "plan_")):
                guess = guesses[name]
                regret, planned = regret_of(full, base, guess, best)
                row[prefix + "regret"] = regret
                row[prefix + "plan_predicted"] = sum(
                    guess.costs[(roles[a.role].device, a.setting, a.start, a.end)].predicted for a in planned.placement)
                row[prefix + "plan_bundles"] = len(planned.placement)
                _, result = refined(full, base, choices[name], refine_budget)
                after = evaluate(full, roles, link, result.solution.placement).latency_s
                row[prefix + "refined_regret"] = (after - best) / best
                row[prefix + "refine_measured"] = result.measured
            row["plan_risk_regret"] = regret_of(full, base, cautious(guesses[PLAN], risk_sd), best)[0]
            floor = []
            for a, b in (split, split[::-1]):
                own = solve(dataclasses.replace(base, table=a)).placement
                other = solve(dataclasses.replace(base, table=b)).evaluation.latency_s
                floor.append((evaluate(b, roles, link, own).latency_s - other) / other)
            row["split_regret"] = float(np.mean(floor))
            out.append(row)
    return out


def validation(files: Sequence[str], risk_sd: float) -> None:
    """The choices and the tried variants of the plan-aware one on the validation grid."""
    variants: dict[str, Chooser] = {
        FIRST: UncertaintyChoice(),
        f"{PLAN} (shipped: at most 16 rounds, z = 2, peers 2x and 4x, 4 links)": PlanAwareChoice(),
        "plan-aware, at most 32 rounds": PlanAwareChoice(Probes(rounds=32)),
        "plan-aware, every wanted bundle in one round": PlanAwareChoice(Probes(rounds=1)),
        "plan-aware, z = 1": PlanAwareChoice(Probes(z=1.0)),
        "plan-aware, z = 3": PlanAwareChoice(Probes(z=3.0)),
        "plan-aware, peers 1.5x and 3x": PlanAwareChoice(Probes(peer_speedups=(1.5, 3.0))),
        "plan-aware, peers 4x and 8x": PlanAwareChoice(Probes(peer_speedups=(4.0, 8.0))),
        "plan-aware, one peer 2x": PlanAwareChoice(Probes(peer_speedups=(2.0,))),
        "plan-aware, a fifth link (move share 3)": PlanAwareChoice(Probes(move_shares=(0.03, 0.1, 0.3, 1.0, 3.0))),
    }
    fulls = [load_profiles(p) for p in files]
    print("## Validation grid: mean regret and plans above 1 % (of 180 per column)\n")
    print(f"| choice | mean regret | above 1% | worst | with mean + {risk_sd:g} sd: mean regret | above 1% | worst "
          "| per model: mean regret |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    per_model: dict[str, dict[str, float]] = {}
    for name, chooser in variants.items():
        res: dict[float, list[float]] = {0.0: [], risk_sd: []}
        per_model[name] = {}
        for full in fulls:
            device = next(iter(full.settings))
            mine = []
            for fraction in VALIDATION_FRACTIONS:
                guess, _ = filled(full, measure_choice(full, fraction, chooser))
                for pair in ((EDGE_SETTING, CLOUD_SETTING), (CLOUD_SETTING, EDGE_SETTING)):
                    roles = (Role(device, (pair[0],)), Role(device, (pair[1],)))
                    for link_text in VALIDATION_LINKS:
                        for bundle_sum in (False, True):
                            base = PlacementProblem(table=full, roles=roles, link=parse_link(link_text),
                                                    max_bundle=full.n_layers, bundle_sum=bundle_sum)
                            best = solve(base).evaluation.latency_s
                            for k in res:
                                res[k].append(regret_of(full, base, cautious(guess, k), best)[0])
                            mine.append(res[0.0][-1])
            per_model[name][full.model] = float(np.mean(mine))
        a, b = res[0.0], res[risk_sd]
        print(f"| {name} | {100 * np.mean(a):.2f}% | {sum(x > 0.01 for x in a)} | {100 * max(a):.1f}% "
              f"| {100 * np.mean(b):.2f}% | {sum(x > 0.01 for x in b)} | {100 * max(b):.1f}% "
              f"| {', '.join(f'{m} {100 * v:.2f}%' for m, v in per_model[name].items())} |", flush=True)
    print("\nLeave one profile out: the variant with the least mean regret on the other profiles, and the "
          "held-out profile's mean regret under it")
    held_out = []
    for held in (f.model for f in fulls):
        pick = min(per_model, key=lambda v: np.mean([x for m, x in per_model[v].items() if m != held]))
        held_out.append(per_model[pick][held])
        print(f"- {held}: {pick} ({100 * per_model[pick][held]:.2f}%)")
    print(f"- mean over the held-out profiles: {100 * np.mean(held_out):.2f}%")


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
    keep = {(d, t, full.bundle_name(s, e)) for d, t, s, e in measure_choice(full, fraction, CHOOSERS[PLAN])}
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


def summary(rows: Sequence[dict], key: str) -> str:
    v = [r[key] for r in rows]
    worst = max(rows, key=lambda r: r[key])
    return (f"{sum(x > 0.01 for x in v)} of {len(v)} above 1%, worst {100 * worst[key]:.2f}% ({worst['model']}, "
            f"{worst['link']}, {worst['semantics']}), mean {100 * float(np.mean(v)):.2f}%")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fraction", type=float, default=0.25)
    p.add_argument("--profiles", default=str(ROOT / "profiles" / "*-xeon-2core.csv"))
    p.add_argument("--refine-budget", type=int, default=20)
    p.add_argument("--risk-sd", type=float, default=1.0, help="k of the mean + k sd column (default 1)")
    p.add_argument("--out", help="also write the per-setting and per-plan rows as CSV (two files: -acc, -regret)")
    p.add_argument("--validation", action="store_true", help="solve the validation grid instead (see above)")
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
    if args.validation:
        validation(files, args.risk_sd)
        return 0
    acc, reg, times = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for path in files:
            full = load_profiles(path)
            choices, took = {}, {}
            for name, chooser in CHOOSERS.items():
                t0 = time.process_time()
                choices[name] = measure_choice(full, args.fraction, chooser)
                took[name] = time.process_time() - t0
            acc += accuracy_rows(full.model, full, choices)
            reg += regret_rows(full.model, full, choices, halves(path, folder), args.refine_budget, args.risk_sd)
            total = time_share(path, full, set())[0]
            times.append((full.model, len(full.costs), {name: (len(m), time_share(path, full, m)[1], took[name])
                                                        for name, m in choices.items()}, total))

    print(f"## Prediction error on the hidden bundles (fraction {args.fraction:g})\n")
    print("| model | setting | bundles | first pass: measured | first pass: median / p90 "
          "| plan-aware: measured | plan-aware: median / p90 | layer sums: median / p90 "
          "| pairwise: measured | pairwise: median / p90 | ours on pairwise's set: median / p90 "
          "| ours with all but one measured: median / p90 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in acc:
        print(f"| {r['model']} | {r['setting']} | {r['bundles']} | {r['measured']} ({100 * r['measured'] / r['bundles']:.0f}%) "
              f"| {fmt(r['ours_med'])}% / {fmt(r['ours_p90'])}% "
              f"| {r['plan_measured']} ({100 * r['plan_measured'] / r['bundles']:.0f}%) "
              f"| {fmt(r['plan_med'])}% / {fmt(r['plan_p90'])}% | {fmt(r['sum_med'])}% / {fmt(r['sum_p90'])}% "
              f"| {r['pair_measured']} ({100 * r['pair_measured'] / r['bundles']:.0f}%) "
              f"| {fmt(r['pair_med'])}% / {fmt(r['pair_p90'])}% "
              f"| {fmt(r['ours_pairset_med'])}% / {fmt(r['ours_pairset_p90'])}% "
              f"| {fmt(r['loo_med'])}% / {fmt(r['loo_p90'])}% |")
    for name, key in ((FIRST, "ours"), (PLAN, "plan")):
        meds, p90s = [r[key + "_med"] for r in acc], [r[key + "_p90"] for r in acc]
        print(f"\n{name}: medians {min(meds):.1f}-{max(meds):.1f}% (median of them {np.median(meds):.1f}%), "
              f"p90s {min(p90s):.1f}-{max(p90s):.1f}% (median {np.median(p90s):.1f}%); "
              f"{sum(m <= 2 and q <= 6 for m, q in zip(meds, p90s))} of {len(acc)} settings meet both targets", end="")
    print("\n\n## Latency regret of the plan from the predicted profile (evaluated on the full profile)\n")
    print(f"| model | link | semantics | optimum (ms) | first pass: regret | predicted in plan | after refine "
          f"| plan-aware: regret | predicted in plan | with mean + {args.risk_sd:g} sd | after refine "
          "| noise floor (split runs) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in reg:
        print(f"| {r['model']} | {r['link']} | {r['semantics']} | {r['optimum_s'] * 1e3:.2f} "
              f"| {100 * r['regret']:.2f}% | {r['plan_predicted']}/{r['plan_bundles']} "
              f"| {100 * r['refined_regret']:.2f}% ({r['refine_measured']}) "
              f"| {100 * r['plan_regret']:.2f}% | {r['plan_plan_predicted']}/{r['plan_plan_bundles']} "
              f"| {100 * r['plan_risk_regret']:.2f}% "
              f"| {100 * r['plan_refined_regret']:.2f}% ({r['plan_refine_measured']}) "
              f"| {100 * r['split_regret']:.2f}% |")
    print()
    for label, key in ((FIRST, "regret"), (PLAN, "plan_regret"), (f"{PLAN}, mean + {args.risk_sd:g} sd", "plan_risk_regret"),
                       (f"{FIRST}, refined", "refined_regret"), (f"{PLAN}, refined", "plan_refined_regret"),
                       ("noise floor (split runs)", "split_regret")):
        print(f"- {label}: {summary(reg, key)}")
    print("\n## Profiling time (from the rows' timing columns)\n")
    print("| model | bundle/setting pairs | full profile wall (s) | first pass: measured | share of the wall time "
          "| plan-aware: measured | share of the wall time | choosing them: CPU s | share with choosing |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model, n_all, per, total in times:
        (m1, share1, _), (m2, share2, cpu2) = per[FIRST], per[PLAN]
        print(f"| {model} | {n_all} | {total:.1f} | {m1} ({100 * m1 / n_all:.0f}%) | {100 * share1:.0f}% "
              f"| {m2} ({100 * m2 / n_all:.0f}%) | {100 * share2:.0f}% | {cpu2:.1f} | {100 * (share2 + cpu2 / total):.0f}% |")
    print(f"\nprediction itself: at most {max(r['predict_s'] for r in acc) * 1e3:.0f} ms per profile; the first "
          f"pass's choice at most {max(p[FIRST][2] for _, _, p, _ in times):.2f} CPU s per profile")
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
