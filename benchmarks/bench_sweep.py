"""Benchmark: full budget sweeps over 3 links for 4 models, from the shipped CPU profiles.

    python benchmarks/bench_sweep.py [--jobs 2] [--figure-model vit_b_16]

Runs what this command runs, in-process, and times it:

    python -m dime.sweep profiles/{alexnet,vgg11,resnet18,vit_b_16}-xeon-2core.csv \\
        --edge xeon-2core --cloud xeon-2core --cloud-settings threads=2 --assume-edge-power 10,16 \\
        --links 3g,4g,wifi --points 20 --jobs 2 --out results/bench-sweep/sweep.csv \\
        --plot results/bench-sweep/sweep.png

The profiles are real timings on a 2-core Xeon VM at 1 and 2 threads, with no energy: the edge
energy is ASSUMED (10 W at 1 thread, 16 W at 2 threads) and the "cloud" is the same CPU at 2
threads. K is every layer of each model (the profiles cover every bundle). The sweep must
finish in under 60 s on that machine. Also writes docs/figures/sweep-<model>.png.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # before the heavy imports: they are part of the cost

import argparse  # noqa: E402
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


def sweep_argv(jobs: int, out: Path) -> list[str]:
    profiles = [f"profiles/{m}-xeon-2core.csv" for m in MODELS]
    return [
        *profiles,
        "--edge", "xeon-2core", "--cloud", "xeon-2core", "--cloud-settings", "threads=2",
        "--assume-edge-power", "10,16", "--links", "3g,4g,wifi", "--points", "20",
        "--jobs", str(jobs), "--out", str(out / "sweep.csv"), "--plot", str(out / "sweep.png"), "-q",
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="processes for the (model, link) cells (default 2)")
    p.add_argument("--figure-model", default="vit_b_16", choices=MODELS, help="model of docs/figures/sweep-<model>.png")
    p.add_argument("--out", type=Path, default=Path("results/bench-sweep"), help="folder for the CSV and figure")
    opts = p.parse_args()

    os.chdir(ROOT)  # the profile paths in the command are relative to the repository
    missing = [m for m in MODELS if not (ROOT / "profiles" / f"{m}-xeon-2core.csv").exists()]
    if missing:
        print(f"error: no profiles/{missing[0]}-xeon-2core.csv; profile it first (see profiles/)", file=sys.stderr)
        return 2
    argv = sweep_argv(opts.jobs, opts.out)
    args = sweep.build_parser().parse_args(argv)
    res = sweep.run_sweep(sweep.options_from_args(args))
    total = time.perf_counter() - T_START

    print("$ python -m dime.sweep " + " ".join(argv))
    print(f"\nmachine: {os.cpu_count()} CPUs; --jobs {opts.jobs}; {len(res.cells)} cells, {len(res.rows)} rows"
          f"{f', {res.failed} FAILED' if res.failed else ''}")
    print("\n| model | layers | K | ILP variables | ILP rows | cells | solves | cell time [s] | solver time [s] |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in MODELS:
        pairs = [(c, r) for c, r in zip(res.cells, res.results) if c.table.model == model]
        spec = pairs[0][0]
        ilp = build_model(PlacementProblem(spec.table, spec.roles, LINK_PRESETS["wifi"], spec.max_bundle))
        solves = sum(r.solves for _, r in pairs)
        cell_s = sum(r.wall_s for _, r in pairs)
        solver_s = sum(row.solve_time_s or 0.0 for _, r in pairs for row in r.rows)
        print(f"| {model} | {spec.table.n_layers} | {spec.max_bundle} | {ilp.num_vars} | "
              f"{ilp.num_constraints()} | {len(pairs)} | {solves} | {cell_s:.2f} | {solver_s:.2f} |")
    solvers = sorted({row.solver for row in res.rows if row.solver})
    print(f"\nsolver(s): {', '.join(solvers)}")
    print(f"profiles read and checked: {res.load_s:.2f} s; grid: {res.grid_s:.2f} s; "
          f"CSV + figure: {res.write_s:.2f} s")
    print(f"total wall time (imports included): {total:.2f} s "
          f"({'within' if total < BUDGET_S else 'OVER'} the {BUDGET_S:.0f} s budget)")

    fig = ROOT / "docs" / "figures" / f"sweep-{opts.figure_model}.png"
    sweep.plot_rows([r for r in res.rows if r.model == opts.figure_model], fig, dpi=90)
    size = fig.stat().st_size
    print(f"wrote {res.out}, {res.plot} and {fig.relative_to(ROOT)} ({size / 1000:.0f} KB)")
    if size > FIGURE_LIMIT_BYTES:
        print(f"warning: {fig.name} is over {FIGURE_LIMIT_BYTES // 1000} KB", file=sys.stderr)
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
