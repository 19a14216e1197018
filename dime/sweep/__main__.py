"""`python -m dime.sweep`."""

import sys

from dime.cliargs import run_main
from dime.sweep.cli import main

sys.exit(run_main(main))
