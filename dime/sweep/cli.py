"""Constraint sweeps, baselines and Pareto fronts: `python -m dime.sweep`.

For every (model, link) *cell* the placement ILP is built once and re-solved under a
series of budgets (PlacementModel.with_budgets):

* ``energy-budget``: minimise latency with edge energy <= b, for `points` values of b
  evenly spaced from the least feasible energy to the energy of the latency optimum;
* ``latency-budget``: minimise edge energy with latency <= b, from the least latency to
  the latency of the energy optimum.

With ``--system sys.toml`` the devices, links and profiles come from a system file, the
energy is that of its energy-counted devices, and a cell is a (model, link setting): the
file's links as they are, or each combination of the rates given for named links
(``--links camera-jetson=4g,wifi``). Two devices are the same code on a two-device system.
``--bundle-sum`` (or the file's ``bundle_sum = true``) sweeps DIME's semantics.

Both endpoints are taken lexicographically (the least energy among the fastest
placements and the least latency among the most frugal ones), so that the two sweeps
span exactly the Pareto front. Baselines are written to the same CSV with
``sweep=baseline:<name>``. Every number in a row is `dime.core.costs.evaluate` of the row's
placement; baselines that reason with per-layer costs (the layer-sum estimate) also get
`bundle_latency_s`/`bundle_energy_j`: the same decisions re-evaluated with the bundle
profiles, to show how far off the layer-sum estimate is.

Example:
    python -m dime.sweep profiles/alexnet-xeon-2core.csv --edge xeon-2core \\
        --cloud xeon-2core --cloud-settings threads=2 --assume-edge-power 10,16 \\
        --links 3g,4g,wifi --points 20 --out results/alexnet.csv --plot results/alexnet.png
    python -m dime.sweep --system examples/edge-router-cloud.toml --models alexnet \\
        --assume-edge-power 10 --links edge-router=wifi,100/100/1 --out results/erc.csv
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dime.cliargs import (
    OneLineParser,
    add_assumed_power_args,
    assignments,
    assumed_powers,
    comma_list,
    fraction,
    positive_float,
    positive_int,
    run_main,
    setup_logging,
)
from dime.core.links import Link, parse_links
from dime.errors import Terminated, UsageError
from dime.fileio import atomic_write_text, check_output_path
from dime.plan import BACKEND_NAMES
from dime.sweep.grid import cell_path, run_grid
from dime.sweep.inputs import SweepOptions, build_cells
from dime.sweep.plot import check_plot_path, plot_rows
from dime.sweep.rows import SweepRow, rows_to_csv
from dime.sweep.spec import CellResult, CellSpec

log = logging.getLogger(__name__)

EXIT_CELLS_FAILED = 3  # the grid finished, but some cells failed (see their `error`)


DEFAULT_LINKS = "3g,4g,wifi"  # two devices, without --links


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog or "python -m dime.sweep",
        description="Sweep latency and energy budgets over links and models; write the points, "
        "the baselines and their Pareto fronts to a CSV (and a figure).",
        epilog=f"Exit status: 0 done; 2 bad input; {EXIT_CELLS_FAILED} the grid finished but some "
        "(model, link) cells failed (their error is in the CSV).",
    )
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help="profile CSV files")
    p.add_argument("--system", metavar="FILE",
                   help="a system file (TOML, as dime.solve --system): N devices, their profiles and links; "
                        "replaces the profiles, --edge, --cloud and their settings")
    p.add_argument("--profile", dest="profile_opts", action="extend", nargs="+", default=[],
                   metavar="PROFILE", help="profile CSV files (same as the positional ones)")
    p.add_argument("--models", "--model", dest="models", metavar="LIST",
                   help="comma list of models to sweep (default: every model in the files)")
    p.add_argument("--edge", metavar="DEV", help="edge device (holds the input, gets the output back)")
    p.add_argument("--cloud", metavar="DEV", help="cloud device")
    p.add_argument("--edge-settings", metavar="LIST", help="comma list of edge settings (default: all)")
    p.add_argument("--cloud-settings", metavar="LIST", help="comma list of cloud settings (default: all)")
    p.add_argument("--links", action="append", metavar="LIST",
                   help=f"comma list of links: presets (3g, 4g, wifi) or UP/DOWN[/RTT] in Mbps and ms (default "
                        f"{DEFAULT_LINKS}); with --system NAME=LIST, the rates swept for the file's link NAME "
                        "(its ends, as a-b), repeatable: every combination is a cell (default: the file's links)")
    p.add_argument("--max-bundle", type=positive_int, metavar="K",
                   help="longest bundle in layers (default: the largest K profiled for every chosen setting)")
    p.add_argument("--points", type=positive_int, default=20, metavar="N",
                   help="budgets per sweep (default 20)")
    add_assumed_power_args(p)
    p.add_argument("--bundle-sum", action="store_true",
                   help="DIME's semantics: any partition into bundles, costs summed; by default two same-setting "
                        "bundles in a row on one device are merged when their union is profiled")
    p.add_argument("--trim", type=fraction, default=0.1, metavar="F",
                   help="fraction of runs dropped at each end before averaging (default 0.1)")
    p.add_argument("--solver", choices=BACKEND_NAMES, default="auto",
                   help="auto (gurobi if licensed and the model fits, else cbc), gurobi, cbc or highs")
    p.add_argument("--time-limit", type=positive_float, metavar="S", help="solver time limit per solve, seconds")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="(model, link) cells run in N processes (default 1)")
    p.add_argument("--out", metavar="CSV", help="the CSV to write (required)")
    p.add_argument("--plot", metavar="PNG", help="also draw the fronts (needs matplotlib)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the cells an interrupted run of the same sweep left next to --out")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less output")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more output")
    return p


def options_from_args(args: argparse.Namespace) -> SweepOptions:
    paths = tuple(args.profiles) + tuple(args.profile_opts)
    link_texts = list(args.links or [])
    if args.system:
        given = [f for f, v in (("PROFILE", paths), ("--edge", args.edge), ("--cloud", args.cloud),
                                ("--edge-settings", args.edge_settings),
                                ("--cloud-settings", args.cloud_settings)) if v]
        if given:
            raise UsageError(f"--system describes the devices; drop {given[0]}")
        for text in link_texts:
            if "=" not in text:
                raise UsageError(f"--links {text}: with --system give NAME=LIST, the rates of a link of the file "
                                 "named by its ends (e.g. camera-jetson=4g,wifi)")
    elif not paths:
        raise UsageError("give one or more profile files (or --system FILE)")
    if not args.out:
        raise UsageError("--out CSV is required")
    links: list[Link] = []
    rates: list[tuple[str, tuple[Link, ...]]] = []
    if args.system:
        for name, value in assignments(link_texts, "--links"):
            if any(name == n for n, _ in rates):
                raise UsageError(f"--links names {name} twice; give all its rates in one list")
            comma_list(value, f"--links {name}")  # an empty list is an error, not the default
            rates.append((name, tuple(parse_links(value))))
    else:
        named = [t for t in link_texts if "=" in t]
        if named:
            raise UsageError(f"--links {named[0]}: NAME=LIST names a link of a system file; give --system FILE")
        text = ",".join(link_texts) if link_texts else DEFAULT_LINKS
        comma_list(text, "--links")
        links = parse_links(text)
        if len({lk.name for lk in links}) != len(links):
            raise UsageError(f"--links names a link twice: {text}")
    edge_w, power = assumed_powers(args)

    def items(text: str | None, what: str) -> tuple[str, ...] | None:
        got = comma_list(text, what)
        return None if got is None else tuple(got)

    return SweepOptions(
        profiles=paths,
        out=Path(args.out),
        edge=args.edge,
        cloud=args.cloud,
        edge_settings=items(args.edge_settings, "--edge-settings"),
        cloud_settings=items(args.cloud_settings, "--cloud-settings"),
        models=items(args.models, "--models"),
        links=tuple(links),
        system=Path(args.system) if args.system else None,
        link_rates=tuple(rates),
        max_bundle=args.max_bundle,
        points=args.points,
        assume_edge_power_w=edge_w,
        assume_power_w=power,
        bundle_sum=args.bundle_sum,
        trim=args.trim,
        solver=args.solver,
        time_limit_s=args.time_limit,
        jobs=args.jobs,
        plot=Path(args.plot) if args.plot else None,
        resume=args.resume,
        progress=args.quiet == 0,
    )


def _summary(res: CellResult) -> str:
    rows = res.rows
    if res.failed:
        return f"{rows[0].model:<14} {rows[0].link:<5} FAILED: {rows[0].error}"
    front = [r for r in rows if r.pareto]
    if not front:
        return f"{rows[0].model:<14} {rows[0].link:<5} no feasible sweep point (see the error column)"
    lat = [r.latency_s for r in front]
    en = [r.energy_j for r in front]
    uniq = len({(r.latency_s, r.energy_j) for r in front})
    return (f"{rows[0].model:<14} {rows[0].link:<5} latency {min(lat):.4g}..{max(lat):.4g} s, "
            f"energy {min(en):.4g}..{max(en):.4g} J, {uniq} front points, "
            f"{res.solves} solves in {res.wall_s:.2f} s{' (reused)' if res.reused else ''}")


@dataclass
class SweepOutcome:
    """What `run_sweep` did, with where the time went (seconds)."""

    cells: list[CellSpec]
    results: list[CellResult]
    rows: list[SweepRow]
    out: Path
    plot: Path | None
    load_s: float  # reading and checking the profiles
    grid_s: float  # running the cells
    write_s: float  # the CSV and the figure
    partial: Path | None = None  # where an interrupted run left its finished cells

    @property
    def failed(self) -> int:
        return sum(res.failed for res in self.results)


def partial_dir(out: Path) -> Path:
    """Where finished cells wait for the final CSV (and for --resume)."""
    return out.parent / f".{out.name}.partial"


def run_sweep(opts: SweepOptions) -> SweepOutcome:
    """Everything `python -m dime.sweep` does but printing: check, run, write the CSV and the plot."""
    t0 = time.perf_counter()
    check_output_path(opts.out, "--out")
    if opts.plot:
        check_output_path(opts.plot, "--plot")
        check_plot_path(opts.plot)  # fail now, not after the whole grid
    cells = build_cells(opts)

    t1 = time.perf_counter()
    partial = partial_dir(opts.out)
    results = run_grid(cells, jobs=opts.jobs, partial_dir=partial, resume=opts.resume, progress=opts.progress)
    t2 = time.perf_counter()
    rows = [r for res in results for r in res.rows]
    if opts.plot:  # before the CSV: a figure that cannot be drawn leaves the partial cells in place
        plot_rows(rows, opts.plot)
    atomic_write_text(opts.out, rows_to_csv(rows))
    for spec in cells:  # the final CSV holds them now
        p = cell_path(partial, spec)
        if p.exists():
            p.unlink()
    try:
        partial.rmdir()
    except OSError:
        pass
    return SweepOutcome(cells=cells, results=results, rows=rows, out=opts.out, plot=opts.plot,
                        load_s=t1 - t0, grid_s=t2 - t1, write_s=time.perf_counter() - t2)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    if args.verbose < 2:
        logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache notes are noise here
    opts = options_from_args(args)
    try:
        res = run_sweep(opts)
    except (KeyboardInterrupt, Terminated):
        partial = partial_dir(opts.out)
        if partial.is_dir() and any(partial.iterdir()):
            print(f"interrupted: finished cells kept in {partial}; rerun with --resume to reuse them",
                  file=sys.stderr)
        raise
    if args.quiet == 0:
        for cell in res.results:
            print(_summary(cell))
    failed = res.failed
    print(f"wrote {res.out}: {len(res.rows)} rows, {len(res.results)} cells"
          f"{f', {failed} failed' if failed else ''} in {res.load_s + res.grid_s + res.write_s:.1f} s")
    if res.plot:
        print(f"wrote {res.plot}")
    if failed:
        log.warning("%d of %d cells failed; see the error column of %s", failed, len(res.results), res.out)
        return EXIT_CELLS_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
