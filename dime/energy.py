"""`python -m dime.energy`: the command lives in `dime.profiling.power.join`."""

import sys

from dime.cliargs import run_main
from dime.profiling.power.join import main

if __name__ == "__main__":
    sys.exit(run_main(main))
