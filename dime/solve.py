"""`python -m dime.solve`: the command lives in `dime.plan.solve`."""

import sys

from dime.cliargs import run_main
from dime.plan.solve import main

if __name__ == "__main__":
    sys.exit(run_main(main))
