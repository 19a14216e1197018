"""Shared plumbing for the command-line entry points."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Sequence

from dime.errors import DimeError

log = logging.getLogger("dime")


def setup_logging(verbose: int = 0) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI main; map dime errors to a one-line message and an exit code, never a traceback."""
    try:
        return main(argv)
    except DimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except FileNotFoundError as e:
        print(f"error: file not found: {e.filename}", file=sys.stderr)
        return 2
    except PermissionError as e:
        print(f"error: permission denied: {e.filename}", file=sys.stderr)
        return 2
