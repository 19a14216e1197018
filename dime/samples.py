"""`python -m dime.samples`: the command lives in `dime.capture.samples`."""

import sys

from dime.capture.samples import main
from dime.cliargs import run_main

if __name__ == "__main__":
    sys.exit(run_main(main))
