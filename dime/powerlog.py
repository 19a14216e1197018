"""`python -m dime.powerlog`: the command lives in `dime.profiling.power.powerlog`."""

import sys

from dime.cliargs import run_main
from dime.profiling.power.powerlog import main

if __name__ == "__main__":
    sys.exit(run_main(main))
