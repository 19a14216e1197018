"""Shared plumbing for the command-line entry points."""

from __future__ import annotations

import argparse
import logging
import math
import re
import signal
import sys
import threading
from typing import Any, Callable, NoReturn, Sequence

from dime.errors import DimeError, Terminated, UsageError, first_line

log = logging.getLogger("dime")


def setup_logging(verbose: int = 0) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI main; map dime errors to a one-line message and an exit code, never a traceback."""
    previous = _raise_on_sigterm()
    try:
        return main(argv)
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except DimeError as e:
        text = first_line(e)
        if text != str(e).strip():
            log.debug("the whole error: %s", e)
        print(f"error: {text}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"error: {os_error_text(e)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _raise_on_sigterm() -> Any:
    """SIGTERM raises Terminated in the main thread, so `finally` blocks and workers' clean-up run."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def os_error_text(e: OSError) -> str:
    """One line for an OSError: the path(s) it concerns and the reason."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.filename is not None and e.filename2 is not None:
        return f"{e.filename} -> {e.filename2}: {reason}"
    if e.filename is not None:
        return f"{e.filename}: {reason}"
    return reason


class OneLineParser(argparse.ArgumentParser):
    """Argument errors become one-line UsageErrors (exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise UsageError(message)


def _number(kind: type, text: str) -> Any:
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return v


def positive_int(text: str) -> int:
    v = _number(int, text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def non_negative_int(text: str) -> int:
    v = _number(int, text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def positive_float(text: str) -> float:
    v = _number(float, text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def finite_float(text: str) -> float:
    return _number(float, text)


def non_negative_float(text: str) -> float:
    v = _number(float, text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def port_number(text: str) -> int:
    """A TCP port; 0 asks the system for a free one."""
    v = _number(int, text)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port in 0..65535, got {text}")
    return v


def fraction(text: str) -> float:
    """A trim fraction: dropped at each end, so below one half."""
    v = _number(float, text)
    if not 0 <= v < 0.5:
        raise argparse.ArgumentTypeError(f"must be in [0, 0.5), got {text}")
    return v


def core_list(text: str) -> tuple[int, ...]:
    """`0,2,3`: CPU core numbers."""
    try:
        cores = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of core numbers: {text!r}") from None
    if not cores or any(c < 0 for c in cores):
        raise argparse.ArgumentTypeError(f"not a comma list of core numbers: {text!r}")
    return cores


def shape(text: str) -> tuple[int, ...]:
    """`1,3,224,224`: a tensor shape."""
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of sizes: {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"not a comma list of sizes: {text!r}")
    return dims


def host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:29500` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"give HOST:PORT, got {text!r}")
    try:
        p = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None
    if not 0 < p < 65536:
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return host.strip("[]"), p


def join_negative_values(argv: Sequence[str], options: Sequence[str] = ("--split", "--splits")) -> list[str]:
    """`--split -1,3` as `--split=-1,3`: argparse takes '-1,3' for an option otherwise."""
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a in options:
            nxt = next(it, None)
            if nxt is not None and re.fullmatch(r"-\d[\w,.-]*", nxt):
                out.append(f"{a}={nxt}")
                continue
            out.append(a)
            if nxt is not None:
                out.append(nxt)
            continue
        out.append(a)
    return out


def assignments(items: Sequence[str], flag: str) -> list[tuple[str, str]]:
    """`NAME=VALUE` items of a repeatable flag, as (name, value) pairs."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"{flag} {item!r}: give NAME=VALUE")
        out.append((name.strip(), value.strip()))
    return out


def comma_list(text: str | None, what: str) -> list[str] | None:
    """The items of a comma list (None: not given); an empty list is an error, not a default."""
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise UsageError(f"empty {what} list {text!r}")
    return items


def watts(text: str, flag: str) -> tuple[float, ...]:
    """`W[,W...]`: one power, or one per setting, in watts."""
    out = []
    for item in comma_list(text, flag) or []:
        try:
            out.append(float(item))
        except ValueError:
            raise UsageError(f"{flag}: not a number of watts: {item!r}") from None
    return tuple(out)


def add_assumed_power_args(p: argparse.ArgumentParser, source: str = "the source's") -> None:
    """--assume-edge-power W[,W] and --assume-power DEVICE=W[,W] (repeatable)."""
    p.add_argument("--assume-edge-power", metavar="W",
                   help="no edge energy in the profiles: assume W x latency joules, one W or one per edge "
                        f"setting; every output says the energy is assumed (with --system: {source})")
    p.add_argument("--assume-power", action="append", default=[], metavar="DEVICE=W[,W]",
                   help="the same for any device whose energy counts (edge and cloud for two devices), "
                        "repeatable")


def assumed_powers(args: argparse.Namespace) -> tuple[tuple[float, ...] | None, tuple[tuple[str, tuple[float, ...]], ...]]:
    """The edge's assumed power and each named device's, from add_assumed_power_args' flags."""
    power = [(name, watts(value, f"--assume-power {name}"))
             for name, value in assignments(args.assume_power, "--assume-power")]
    if len({name for name, _ in power}) != len(power):
        raise UsageError("--assume-power names a device twice")
    edge = watts(args.assume_edge_power, "--assume-edge-power") if args.assume_edge_power else None
    return edge, tuple(power)
