"""`python -m dime.profile`: the command lives in `dime.profiling.profiler`; with --refine it
also re-solves, in `dime.refine`, and with --measure the planner chooses what to measure
(dime.plan.choose): both are above the planner, which the profiler may not import."""

from __future__ import annotations

import sys
from typing import Sequence

from dime.cliargs import run_main


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--refine" or a.startswith("--refine=") for a in args):
        from dime.refine import main as refine_main

        return refine_main(args)
    from dime.plan.choose import PlanAwareChoice
    from dime.profiling.profiler import main as profile_main

    return profile_main(args, choose=PlanAwareChoice())


if __name__ == "__main__":
    sys.exit(run_main(main))
