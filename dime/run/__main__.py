"""`python -m dime.run`."""

import sys

from dime.cliargs import run_main
from dime.run.cli import main

sys.exit(run_main(main))
