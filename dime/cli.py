"""`dime SUBCOMMAND ...`: the same commands as `python -m dime.SUBCOMMAND`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Sequence

from dime.cliargs import run_main

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "samples": ("dime.capture.samples", "save every layer's input tensors for sample images"),
    "profile": ("dime.profile", "profile every bundle of consecutive layers (--measure: a fraction, the rest predicted)"),
    "predict": ("dime.profiling.predictcli", "fill in unmeasured bundles of a partial profile with predictions"),
    "solve": ("dime.plan.solve", "choose bundles, devices and settings (exact DP or ILP)"),
    "sweep": ("dime.sweep.cli", "sweep budgets and links into CSV and plots"),
    "run": ("dime.run.cli", "run a split for real (edge and cloud processes) and measure it"),
    "validate": ("dime.run.validate", "measure the solver's and every single split against the predictions"),
    "energy": ("dime.profiling.power.join", "join timing rows with power logs"),
    "powerlog": ("dime.profiling.power.powerlog", "host-side SmartPower3 logger"),
}


def _usage() -> str:
    lines = ["usage: dime SUBCOMMAND [ARGS...]", "", "subcommands:"]
    for name, (mod, text) in SUBCOMMANDS.items():
        if importlib.util.find_spec(mod) is not None:
            lines.append(f"  {name:<10} {text}")
    lines.append("\n`dime SUBCOMMAND --help` for its options.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS or importlib.util.find_spec(SUBCOMMANDS[name][0]) is None:
        print(f"error: unknown subcommand {name!r}\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return run_main(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
