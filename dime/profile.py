"""`python -m dime.profile`: the command lives in `dime.profiling.profiler`."""

import sys

from dime.cliargs import run_main
from dime.profiling.profiler import main

if __name__ == "__main__":
    sys.exit(run_main(main))
