"""`python -m dime.validate`: the command lives in `dime.run.validate`."""

import sys

from dime.cliargs import run_main
from dime.run.validate import main

if __name__ == "__main__":
    sys.exit(run_main(main))
