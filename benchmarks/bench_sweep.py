"""Benchmark: full budget sweeps over 3 links for 4 models, from the shipped CPU profiles.

    python benchmarks/bench_sweep.py [--jobs 2] [--figure-model vit_b_16] [--solvers auto,cbc]

Runs what this command runs, in-process, and times it:

    python -m dime.sweep profiles/{alexnet,vgg11,resnet18,vit_b_16}-xeon-2core.csv \\
        --edge xeon-2core --cloud xeon-2core --cloud-settings threads=2 --assume-edge-power 10,16 \\
        --links 3g,4g,wifi --points 20 --jobs 2 --out results/bench-sweep/sweep.csv \\
        --plot results/bench-sweep/sweep.png

The profiles are real timings on a 2-core Xeon VM at 1 and 2 threads, with no energy: the edge
energy is ASSUMED (10 W at 1 thread, 16 W at 2 threads) and the "cloud" is the same CPU at 2
threads. K is every layer of each model (the profiles cover every bundle). The sweep must
finish in under 60 s on that machine. Also writes docs/figures/sweep-<model>.png.

With --solvers auto,cbc (the default) the grid runs once per solver, side by side in one run:
`auto` reads each cell's points off the DP's whole front, `cbc` re-solves the ILP per budget.
Every row's latency, energy and status must agree between the runs (exit 1 otherwise).
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # before the heavy imports: they are part of the cost
T_FIRST = T_START  # the end of the first solver's run

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dime.core.links import LINK_PRESETS
from dime.plan import PlacementProblem, build_model  # noqa: E402
from dime import sweep  # noqa: E402

MODELS = ("alexnet", "vgg11", "resnet18", "vit_b_16")
BUDGET_S = 60.0
FIGURE_LIMIT_BYTES = 300_000


def sweep_argv(jobs: int, out: Path, solver: str = "auto") -> list[str]:
    profiles = [f"profiles/{m}-xeon-2core.csv" for m in MODELS]
    return [
        *profiles,
        "--edge", "xeon-2core", "--cloud", "xeon-2core", "--cloud-settings", "threads=2",
        "--assume-edge-power", "10,16", "--links", "3g,4g,wifi", "--points", "20",
        "--jobs", str(jobs), "--out", str(out / "sweep.csv"), "--plot", str(out / "sweep.png"), "-q",
        "--solver", solver,
    ]


def _values(rows: list[sweep.SweepRow]) -> dict[tuple, list[tuple]]:
    """Each (model, link, sweep)'s rows as sorted (point, status, latency, energy) tuples."""
    out: dict[tuple, list[tuple]] = {}
    for r in rows:
        out.setdefault((r.model, r.link, r.sweep), []).append(
            (-1 if r.point is None else r.point, r.status, r.latency_s, r.energy_j))
    return {k: sorted(v, key=lambda t: (t[0], t[1], t[2] or 0.0, t[3] or 0.0)) for k, v in out.items()}


def _same(x: float | None, y: float | None) -> bool:
    return (x is None and y is None) or (x is not None and y is not None and math.isclose(x, y, rel_tol=1e-6))


def _differences(a: list[sweep.SweepRow], b: list[sweep.SweepRow]) -> list[str]:
    """The (model, link, sweep) groups whose rows' latency, energy or status differ between two runs."""
    va, vb = _values(a), _values(b)
    bad = []
    for key in sorted(set(va) | set(vb)):
        x, y = va.get(key, []), vb.get(key, [])
        if len(x) != len(y) or not all(p[0] == q[0] and p[1] == q[1] and _same(p[2], q[2]) and _same(p[3], q[3])
                                       for p, q in zip(x, y)):
            bad.append(" ".join(map(str, key)))
    return bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="processes for the (model, link) cells (default 2)")
    p.add_argument("--figure-model", default="vit_b_16", choices=MODELS, help="model of docs/figures/sweep-<model>.png")
    p.add_argument("--out", type=Path, default=Path("results/bench-sweep"), help="folder for the CSV and figure")
    p.add_argument("--solvers", default="auto,cbc",
                   help="run the grid once per solver and compare (default auto,cbc: the DP's fronts, then CBC)")
    opts = p.parse_args()

    os.chdir(ROOT)  # the profile paths in the command are relative to the repository
    missing = [m for m in MODELS if not (ROOT / "profiles" / f"{m}-xeon-2core.csv").exists()]
    if missing:
        print(f"error: no profiles/{missing[0]}-xeon-2core.csv; profile it first (see profiles/)", file=sys.stderr)
        return 2
    global T_FIRST
    solvers = [x.strip() for x in opts.solvers.split(",") if x.strip()]
    runs = []
    for solver in solvers:
        argv = sweep_argv(opts.jobs, opts.out / solver, solver)
        t0 = time.perf_counter()
        res = sweep.run_sweep(sweep.options_from_args(sweep.build_parser().parse_args(argv)))
        runs.append((solver, argv, res, time.perf_counter() - t0))
        if len(runs) == 1:
            T_FIRST = time.perf_counter()
    total = time.perf_counter() - T_START

    for solver, argv, res, wall in runs:
        print("$ python -m dime.sweep " + " ".join(argv))
        print(f"\nmachine: {os.cpu_count()} CPUs; --jobs {opts.jobs}; {len(res.cells)} cells, {len(res.rows)} rows"
              f"{f', {res.failed} FAILED' if res.failed else ''}")
        print("\n| model | layers | K | ILP variables | ILP rows | cells | solves | cell time [s] |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for model in MODELS:
            pairs = [(c, r) for c, r in zip(res.cells, res.results) if c.table.model == model]
            spec = pairs[0][0]
            ilp = build_model(PlacementProblem(spec.table, spec.roles, LINK_PRESETS["wifi"], spec.max_bundle))
            solves = sum(r.solves for _, r in pairs)
            cell_s = sum(r.wall_s for _, r in pairs)
            print(f"| {model} | {spec.table.n_layers} | {spec.max_bundle} | {ilp.num_vars} | "
                  f"{ilp.num_constraints()} | {len(pairs)} | {solves} | {cell_s:.2f} |")
        used = sorted({row.solver for row in res.rows if row.solver})
        print(f"\nsolver(s) in the rows: {', '.join(used)}")
        print(f"profiles read and checked: {res.load_s:.2f} s; grid: {res.grid_s:.2f} s; "
              f"CSV + figure: {res.write_s:.2f} s; this run: {wall:.2f} s\n")
    if len(runs) > 1:
        print("| --solver | cells | rows | solves | grid [s] | run [s] | vs first |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for solver, _, res, wall in runs:
            print(f"| {solver} | {len(res.cells)} | {len(res.rows)} | {sum(r.solves for r in res.results)} | "
                  f"{res.grid_s:.2f} | {wall:.2f} | {wall / runs[0][3]:.1f}x |")
    first = T_FIRST - T_START
    print(f"\nwall time of the first run, imports included: {first:.2f} s "
          f"({'within' if first < BUDGET_S else 'OVER'} the {BUDGET_S:.0f} s budget); all runs: {total:.2f} s")
    bad = [d for _, _, res, _ in runs[1:] for d in _differences(runs[0][2].rows, res.rows)]
    if bad:
        print(f"error: {len(bad)} rows differ between --solver {solvers[0]} and the others, e.g. {bad[0]}",
              file=sys.stderr)
        return 1
    res = runs[0][2]

    fig = ROOT / "docs" / "figures" / f"sweep-{opts.figure_model}.png"
    sweep.plot_rows([r for r in res.rows if r.model == opts.figure_model], fig, dpi=90)
    size = fig.stat().st_size
    print(f"wrote {res.out}, {res.plot} and {fig.relative_to(ROOT)} ({size / 1000:.0f} KB)")
    if size > FIGURE_LIMIT_BYTES:
        print(f"warning: {fig.name} is over {FIGURE_LIMIT_BYTES // 1000} KB", file=sys.stderr)
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
