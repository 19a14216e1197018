"""Plans that follow the network, measured (issue 19): one link schedule, three ways.

For each case (a model on a system) the same schedule runs three ways, each twice (single-stream
for latency, offline with 4 queries in flight for throughput), all with `dime.run local`:

- static: the placement solved for the first phase's rates, kept throughout;
- adapt: the same start, `--adapt` (re-plans from the rates its own transfers show);
- oracle: the same start, `--adapt schedule` (re-plans at the instant of each step, from the
  schedule itself).

Per phase it reports P50 and P95 latency, throughput, queries lost (must be 0), re-plans made
(switches), the time from the step to the first query under the new plan, and the adaptive run's
P50 once settled (from max(1 s, 10 queries) into the phase) against the oracle's; and it draws
latency per query over time with the steps marked (docs/figures/adapt-<case>.png).

Cases (STAND-IN devices: both are this 2-core VM's profiles, the edge at threads=1 on core 0,
the cloud at threads=2 on cores 0-1, so that the cloud is the faster one; the link rates are
assumed):

- `<model>-2dev`: edge and cloud, one link (rtt 1 ms), 100 -> 5 -> 100 Mbps for alexnet and
  1000 -> 5 -> 1000 Mbps for resnet18 (its best plan offloads only at the higher rate);
- `<model>-3dev`: examples/edge-router-cloud.toml (edge, a router that only forwards, cloud;
  rtts 1 and 4 ms) with the cloud at threads=2 and both links at 1000 Mbps; the first hop
  1000 -> 5 -> 1000 Mbps.

    python benchmarks/adapt_schedule.py --cases alexnet-2dev --phase-s 20 --out-dir docs/data/adapt

Needs root for --shaper netns (the default); writes every run's CSVs under --out-dir.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = {"static": [], "adapt": ["--adapt"], "oracle": ["--adapt", "schedule"]}
SLOW_MBPS = 5.0
SETTLE_S, SETTLE_QUERIES = 1.0, 10  # the adaptive run is compared with the oracle from this far into a phase


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    system: str  # TOML text; {root} stands for the repository
    link: str  # the scheduled link, a-b
    fast_mbps: float  # its rate in the first and last phase (SLOW_MBPS between)


def _two_devices(model: str, mbps: float) -> str:
    prof = f"{{root}}/profiles/{model}-xeon-2core.csv"
    return (f'model = "{model}"\nsource = "edge"\n\n'
            f'[[device]]\nname = "edge"\nprofile_device = "xeon-2core"\nprofiles = ["{prof}"]\nsettings = ["threads=1"]\n\n'
            f'[[device]]\nname = "cloud"\nprofile_device = "xeon-2core"\nprofiles = ["{prof}"]\n'
            f'settings = ["threads=2"]\n\n'
            f'[[link]]\nends = ["edge", "cloud"]\nup_mbps = {mbps:g}\ndown_mbps = {mbps:g}\nrtt_ms = 1\n')


def _example(model: str, mbps: float) -> str:
    """examples/edge-router-cloud.toml with the cloud at threads=2 and both links at `mbps`."""
    text = (ROOT / "examples" / "edge-router-cloud.toml").read_text().replace("../profiles", "{root}/profiles")
    head, edge, router, cloud = text.split("[[device]]")
    cloud = cloud.replace('settings = ["threads=1"]', 'settings = ["threads=2"]')
    text = "[[device]]".join([f'model = "{model}"\n' + head, edge, router, cloud])
    return re.sub(r"(up|down)_mbps = \d+", lambda m: f"{m.group(1)}_mbps = {mbps:g}", text)


CASES = {c.name: c for c in (
    Case("alexnet-2dev", "alexnet", _two_devices("alexnet", 100), "edge-cloud", 100),
    Case("resnet18-2dev", "resnet18", _two_devices("resnet18", 1000), "edge-cloud", 1000),
    Case("alexnet-3dev", "alexnet", _example("alexnet", 1000), "edge-router", 1000),
    Case("resnet18-3dev", "resnet18", _example("resnet18", 1000), "edge-router", 1000),
)}


def _py(*args: str, env: dict[str, str] | None = None, log: Path | None = None) -> None:
    cmd = [sys.executable, *args]
    print("$", " ".join(cmd), flush=True)
    with open(log, "w") if log else open(os.devnull, "w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}" + (f"; see {log}" if log else ""))


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _best_plans(system: Path, case: Case, steps: list[tuple[float, float]]) -> list[str]:
    """The solver's placement for each phase (as the oracle will choose it)."""
    import dataclasses

    from dime.core.placement import format_placement
    from dime.plan.problem import solve
    from dime.plan.system import build_problem, load_system

    problem = build_problem(load_system(system))
    names = [r.name for r in problem.roles]
    i = [f"{names[nl.a]}-{names[nl.b]}" for nl in problem.network.links].index(case.link)
    out = []
    for _, mbps in steps:
        net = problem.network
        nl = net.links[i]
        links = list(net.links)
        links[i] = dataclasses.replace(nl, link=dataclasses.replace(nl.link, uplink_mbps=mbps, downlink_mbps=mbps))
        sol = solve(dataclasses.replace(problem, link=dataclasses.replace(net, links=tuple(links))))
        out.append(format_placement(problem.table.layer_names, sol.placement, names))
    return out


def run_case(case: Case, out: Path, phase_s: float, shaper: str, quiet: bool, offline_factor: float) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    system = out / "system.toml"
    system.write_text(case.system.format(root=ROOT))
    steps = [(0.0, case.fast_mbps), (phase_s, SLOW_MBPS), (2 * phase_s, case.fast_mbps)]
    schedule = f"{case.link}=" + ",".join(f"{t:g}:{r:g}/{r:g}" for t, r in steps[1:])
    best = _best_plans(system, case, steps)
    print(f"{case.name}: best plan per phase: " + " | ".join(best), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    sol = out / "static.json"
    _py("-m", "dime.solve", "--system", str(system), "--json", str(sol), "-q", env=env)
    total_s = 3 * phase_s
    procs = ["--cores", "edge=0", "--cores", "cloud=0,1", "--threads", "edge=1", "--threads", "cloud=2"]
    offline = _offline_count(system, case, steps, total_s, offline_factor)
    for mode, flags in MODES.items():
        for scenario in ("single-stream", "offline"):
            tag = f"{mode}-{scenario}"
            for f in (out / f"{tag}-queries.csv", out / f"{tag}-replans.csv", out / f"{tag}-run.csv"):
                f.unlink(missing_ok=True)
            count = ["--min-query-count", "16"] if scenario == "single-stream" else \
                ["--in-flight", "4", "--min-query-count", str(offline)]
            _py("-m", "dime.run", "local", "--system", str(system), "--solution", str(sol), "--shaper", shaper,
                "--link-schedule", schedule, *flags, "--scenario", scenario, *count,
                "--min-duration-s", f"{total_s:g}", "--warmup", "3", "--reference-runs", "0", "--probe-s", "0",
                "--verify", *procs, "--out", str(out / f"{tag}-run.csv"), "--queries-out",
                str(out / f"{tag}-queries.csv"), *(["--replans-out", str(out / f"{tag}-replans.csv")] if flags else []),
                "-q" if quiet else "-v", env=env, log=out / f"{tag}.log")
    return summarize(case, out, steps, best)


def _offline_count(system: Path, case: Case, steps: list[tuple[float, float]], total_s: float,
                   factor: float) -> int:
    """`factor` x the schedule's seconds x the best plans' highest predicted throughput (4 in
    flight): offline issues them all at once and ends when they are done, past the schedule's
    end where the machine is slower than predicted (the last phase then lasts longer)."""
    from dime.core.placement import parse_placement
    from dime.plan.system import build_problem, load_system

    problem = build_problem(load_system(system))
    names = [r.name for r in problem.roles]
    fps = []
    for plan in _best_plans(system, case, steps):
        ev = problem.evaluate(parse_placement(problem.table.layer_names, plan, names))
        fps.append(min(4 / ev.latency_s, 1 / ev.period_s))
    return int(math.ceil(factor * total_s * max(fps)))


def _phase(t: float, steps: list[tuple[float, float]]) -> int:
    return sum(1 for s, _ in steps[1:] if s <= t)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]  # nearest rank


def summarize(case: Case, out: Path, steps: list[tuple[float, float]], best: list[str]) -> list[dict]:
    """One row per (mode, phase)."""
    table = []
    ends = [t for t, _ in steps[1:]] + [math.inf]
    settled: dict[tuple[str, int], float | None] = {}
    for mode in MODES:
        lat = _rows(out / f"{mode}-single-stream-queries.csv")
        tput = _rows(out / f"{mode}-offline-queries.csv")
        replans = _rows(out / f"{mode}-single-stream-replans.csv")
        for i, (start, mbps) in enumerate(steps):
            end = ends[i]
            qs = [q for q in lat if start <= float(q["issued_s"]) < end and q["ok"] == "True"]
            ls = [float(q["latency_s"]) for q in qs]
            done = [q for q in tput if start <= float(q["done_s"]) < end]
            span = (end if end < math.inf else max((float(q["done_s"]) for q in tput), default=start)) - start
            plans = [q["placement"] for q in lat if start <= float(q["started_s"]) < end]
            before = [q["placement"] for q in lat if float(q["started_s"]) < start]
            first_new = None
            if i > 0 and before:
                new = next((q for q in lat if float(q["started_s"]) >= start and q["placement"] != before[-1]), None)
                if new is not None and float(new["started_s"]) < end:
                    first_new = float(new["started_s"]) - start
            skip = max(SETTLE_QUERIES, sum(1 for q in qs if float(q["issued_s"]) < start + SETTLE_S))
            settled[(mode, i)] = _pct([float(q["latency_s"]) for q in qs[skip:]], 50)
            table.append({
                "case": case.name, "mode": mode, "phase": i, "from_s": start, "mbps": mbps, "best": best[i],
                "queries": len(ls), "p50_ms": _ms(_pct(ls, 50)), "p95_ms": _ms(_pct(ls, 95)),
                "fps_x4": len(done) / span if span > 0 else None,
                # issued in the phase, never answered (or answered wrong), in either run
                "lost": sum(q["ok"] != "True" for q in lat + tput if start <= float(q["issued_s"]) < end),
                "replans": sum(1 for r in replans if start <= float(r["at_s"] or 0) < end),
                "switches": sum(1 for r in replans if r["switched"] == "True" and start <= float(r["at_s"] or 0) < end),
                "to_new_plan_s": first_new, "plan_at_end": plans[-1] if plans else "",
                "solve_ms_max": _ms(max((float(r["solve_s"]) for r in replans if start <= float(r["at_s"] or 0) < end),
                                        default=None)),
            })
    for row in table:
        a, o = settled.get(("adapt", row["phase"])), settled.get(("oracle", row["phase"]))
        row["settled_p50_vs_oracle"] = a / o - 1 if row["mode"] == "adapt" and a and o else None
    with open(out / "phases.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(table)
    return table


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1e3


def markdown(table: list[dict]) -> str:
    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    lines = ["| case | mode | phase (from) | Mbps | P50 / P95 (ms) | frames/s x4 | lost | re-plans (switches) "
             "| longest solve (ms) | step to new plan (s) | settled P50 vs oracle | plan at the end of the phase |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in table:
        lines.append(f"| {r['case']} | {r['mode']} | {r['phase']} ({r['from_s']:g} s) | {r['mbps']:g} "
                     f"| {f(r['p50_ms'])} / {f(r['p95_ms'])} | {f(r['fps_x4'])} | {r['lost']} "
                     f"| {r['replans']} ({r['switches']}) | {f(r['solve_ms_max'])} | {f(r['to_new_plan_s'], '{:.2f}')} "
                     f"| {f(r['settled_p50_vs_oracle'], '{:+.1%}')} | {r['plan_at_end'].replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def plot(case: Case, out: Path, steps: list[tuple[float, float]], figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for mode, style in zip(MODES, ("o", "x", "+")):
        qs = _rows(out / f"{mode}-single-stream-queries.csv")
        ax.plot([float(q["issued_s"]) for q in qs], [float(q["latency_s"]) * 1e3 for q in qs], style, ms=3,
                label=mode, alpha=0.7)
    for t, mbps in steps[1:]:
        ax.axvline(t, color="grey", ls="--", lw=1)
        ax.text(t, ax.get_ylim()[1], f" {mbps:g} Mbps", va="top", fontsize=8)
    ax.set_xlabel("seconds into the schedule")
    ax.set_ylabel("latency per query (ms)")
    ax.set_title(f"{case.name}: {case.link} {steps[0][1]:g} -> {steps[1][1]:g} -> {steps[2][1]:g} Mbps")
    ax.legend()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    p.add_argument("--phase-s", type=float, default=20.0, help="seconds per phase of the schedule (default 20)")
    p.add_argument("--shaper", default="netns", choices=("netns", "user"))
    p.add_argument("--out-dir", type=Path, required=True, help="every run's CSVs and logs, phases.csv, summary.md")
    p.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures", help="where the plots go")
    p.add_argument("--offline-factor", type=float, default=1.0,
                   help="offline queries = F x schedule seconds x the best plans' highest predicted frames/s at 4 in "
                        "flight (default 1.0)")
    p.add_argument("-q", "--quiet", action="store_true", help="the runs' logs at -q (default -v, into each log)")
    args = p.parse_args()
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [n for n in names if n not in CASES]
    if bad:
        raise SystemExit(f"error: unknown case {bad[0]!r}; cases: {', '.join(CASES)}")
    t0 = time.monotonic()
    table = []
    for name in names:
        case = CASES[name]
        out = args.out_dir / name
        table += run_case(case, out, args.phase_s, args.shaper, args.quiet, args.offline_factor)
        steps = [(0.0, case.fast_mbps), (args.phase_s, SLOW_MBPS), (2 * args.phase_s, case.fast_mbps)]
        plot(case, out, steps, args.figures / f"adapt-{name}.png")
    text = markdown(table)
    (args.out_dir / "summary.md").write_text(text + "\n")
    (args.out_dir / "meta.json").write_text(json.dumps({"cases": names, "phase_s": args.phase_s,
                                                        "shaper": args.shaper, "wall_s": time.monotonic() - t0,
                                                        "argv": sys.argv}, indent=1) + "\n")
    print(text)
    print(f"\n{time.monotonic() - t0:.0f} s; CSVs under {args.out_dir}, plots in {args.figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
