"""`python -m dime.profile --refine SOLUTION.json [--refine-budget N] PROFILE-FLAGS`: measure the
predicted bundles a solved plan rests on, and re-solve, until it rests on measured ones.

SOLUTION.json is `dime.solve --json`'s output: its `solve_args` say how to solve again (run
from the same folder, so that its relative paths still hold). The profile flags are those of
the `dime.profile` run that made the profile (--out the profile, one of the solution's): this
machine measures the bundles of that device (dime.plan.refine chooses them; the profiler
measures each at the setting the plan uses, then predicts the rest again). Predicted bundles
of other devices are listed, to refine there. SOLUTION.json is rewritten with the last plan
and a `refine` entry: the rounds, what each measured, and why it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path
from typing import Any, Sequence

from dime.cliargs import setup_logging
from dime.core.costs import CostTable
from dime.core.placement import format_placement
from dime.errors import UsageError
from dime.fileio import atomic_write_text, check_output_path
from dime.plan import build_model
from dime.plan.problem import PlacementProblem
from dime.plan.refine import Key, RefineResult, refine
from dime.plan.solve import format_report, problem_from_argv, solution_data
from dime.plan.solution import Solution
from dime.profiling.profiler import build_parser
from dime.profiling.profiler import main as profile_main

log = logging.getLogger("dime.refine")

_OWN_FLAGS = ("--refine", "--refine-budget")


def profile_flags(argv: Sequence[str]) -> list[str]:
    """The profile flags of a refine command line: without --refine and --refine-budget."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in _OWN_FLAGS:
            skip = True
            continue
        if any(a.startswith(f + "=") for f in _OWN_FLAGS):
            continue
        out.append(a)
    return out


def _solve_args(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--refine {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"--refine {path}: not a solution JSON ({e})") from None
    args = data.get("solve_args") if isinstance(data, dict) else None
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise UsageError(f"--refine {path}: no solve_args (solve again with this dime's `dime.solve --json`)")
    return args


def bundles_flag(table: CostTable, keys: Sequence[Key]) -> str:
    """`--bundles` for the profiler: each bundle at its setting, by layer index."""
    return ",".join(f"{s}..{e}@{setting}" for _, setting, s, e in keys)


def refine_entry(result: RefineResult, table: CostTable, roles: Sequence[str], budget: int) -> dict[str, Any]:
    def names(keys: Sequence[Key]) -> list[str]:
        return [f"{table.bundle_name(s, e)}@{d}/{t}" for d, t, s, e in keys]

    return {
        "budget": budget,
        "measured": result.measured,
        "stop": result.stop,
        "left_elsewhere": names(result.elsewhere),
        "rounds": [{
            "placement": format_placement(table.layer_names, r.placement, list(roles)),
            "objective": r.objective,
            "predicted_in_plan": names(r.predicted_in_plan),
            "challenger": format_placement(table.layer_names, r.challenger, list(roles)) if r.challenger else None,
            "measured": names(r.measured),
        } for r in result.rounds],
    }


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else 0)
    if args.out is None:
        raise UsageError("--refine needs --out: the profile to refine (one of the solution's profiles)")
    if args.bundles or args.measure is not None:
        raise UsageError("--refine chooses the bundles to measure; drop --bundles and --measure")
    if args.overwrite:
        raise UsageError("--refine adds to the profile; drop --overwrite")
    solution_path = Path(args.refine)
    solve_argv = _solve_args(solution_path)
    check_output_path(solution_path, "--refine")
    sargs, system, problem = problem_from_argv(solve_argv)
    sources = {os.path.realpath(p) for p in problem.table.sources}
    if os.path.realpath(args.out) not in sources:
        raise UsageError(f"--out {args.out} is not one of the profiles {solution_path} was solved from "
                         f"({', '.join(problem.table.sources)})")
    device = args.device_name or platform.node() or "this-host"
    if device not in problem.table.settings:
        raise UsageError(f"--device-name {device}: not a device of {args.out}; its devices: "
                         f"{', '.join(problem.table.settings)}")
    flags = profile_flags(argv)

    def solve(pr: PlacementProblem) -> Solution:
        return build_model(pr).solve(sargs.solver, sargs.time_limit)

    def measure(keys: Sequence[Key]) -> CostTable:
        code = profile_main([*flags, "--bundles", bundles_flag(problem.table, keys), "-q"])
        if code:
            raise UsageError(f"the profiler stopped with exit code {code}")
        return problem_from_argv(solve_argv)[2].table

    result = refine(problem, solve, measure, args.refine_budget, lambda k: k[0] == device)
    table = result.problem.table
    data = solution_data(system, result.problem, result.solution, solve_argv)
    data["refine"] = refine_entry(result, table, [r.name for r in result.problem.roles], args.refine_budget)
    atomic_write_text(solution_path, json.dumps(data, indent=2) + "\n")
    if not args.quiet:
        print(format_report(result.problem, result.solution, data))
        print(f"refine: {len(result.rounds)} round(s), {result.measured} bundle/setting pair(s) measured on {device}; "
              f"stopped: {result.stop}")
        for key in data["refine"]["left_elsewhere"]:
            print(f"  still predicted: {key}")
        print(f"wrote {solution_path}")
    return 0
