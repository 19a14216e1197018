"""`python -m dime.run`."""

import sys

from dime.run.cli import device_main

sys.exit(device_main())
