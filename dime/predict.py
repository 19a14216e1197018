"""`python -m dime.predict`: the command lives in `dime.profiling.predictcli`."""

import sys

from dime.cliargs import run_main
from dime.profiling.predictcli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
