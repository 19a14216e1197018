"""The client of `dime.powerlog serve`: start/stop recordings and estimate the clock offset."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

from dime.errors import MeterError
from dime.profiling.power.clock import estimate_offset_s

log = logging.getLogger(__name__)

DEFAULT_PORT = 47031
MAX_COMMAND_BYTES = 1024


@dataclass(frozen=True)
class RoundTrip:
    t_send_s: float  # device monotonic time before sending "time"
    t_host_s: float  # host monotonic time in the reply
    t_recv_s: float  # device monotonic time after the reply


class _Dropped(Exception):
    """The server closed the connection before replying."""


class PowerLogClient:
    """Talks to a `PowerLogServer` from the device under test. One connection, reused."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 timeout_s: float = 5.0) -> None:
        self.host = host
        self.port = int(port)
        self.timeout_s = float(timeout_s)
        self._sock: socket.socket | None = None
        self._rfile = None

    def connect(self) -> None:
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as e:
            raise MeterError(
                f"cannot reach the power logger at {self.host}:{self.port} ({e.strerror or e}); "
                "start it on the host: python -m dime.powerlog serve --serial PORT --dir DIR"
            ) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._rfile = sock.makefile("rb")

    def _drop(self) -> None:
        if self._rfile is not None:
            self._rfile.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._rfile = None

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.sendall(b"quit\n")
            except OSError:
                pass
        self._drop()

    def __enter__(self) -> "PowerLogClient":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, command: str) -> str:
        """Send one command, return the reply line; an ``error ...`` reply raises MeterError.

        The server drops clients that stay silent (serve --idle-timeout-s) before reading
        anything more from them, so a reused connection found closed is reopened and the
        command sent once more: it cannot have been carried out.
        """
        reused = self._sock is not None
        try:
            return self._request_once(command)
        except _Dropped:
            if not reused:
                raise MeterError(f"power logger at {self.host}:{self.port} closed the connection") from None
            log.info("powerlog client: %s:%d had closed the idle connection; reconnecting", self.host, self.port)
        try:
            return self._request_once(command)
        except _Dropped:
            raise MeterError(f"power logger at {self.host}:{self.port} closed the connection") from None

    def _request_once(self, command: str) -> str:
        self.connect()
        assert self._sock is not None and self._rfile is not None
        try:
            self._sock.sendall(command.encode("utf-8") + b"\n")
            reply = self._rfile.readline(MAX_COMMAND_BYTES + 1)
        except (BrokenPipeError, ConnectionResetError):
            self._drop()
            raise _Dropped() from None
        except OSError as e:
            self._drop()
            raise MeterError(f"power logger at {self.host}:{self.port}: {e}") from e
        if not reply:
            self._drop()
            raise _Dropped()
        text = reply.decode("utf-8", "replace").strip()
        if text.startswith("error"):
            raise MeterError(f"power logger: {text}")
        return text

    def ping(self) -> float:
        """Round-trip time in seconds."""
        t0 = time.monotonic()
        self.request("ping")
        return time.monotonic() - t0

    def round_trip(self) -> RoundTrip:
        self.connect()
        t0 = time.monotonic()
        reply = self.request("time")
        t1 = time.monotonic()
        try:
            host = float(reply.split()[1])
        except (IndexError, ValueError) as e:
            raise MeterError(f"power logger: bad time reply {reply!r}") from e
        return RoundTrip(t0, host, t1)

    def estimate_offset_s(self, rounds: int = 20) -> float:
        """host monotonic time minus device monotonic time, from the fastest of `rounds` trips."""

        trips = [self.round_trip() for _ in range(max(1, rounds))]
        offset, rtt = estimate_offset_s([(r.t_send_s, r.t_host_s, r.t_recv_s) for r in trips])
        log.info("powerlog: clock offset %.6f s (best round trip %.3f ms)", offset, 1000 * rtt)
        return offset

    def start(self, name: str) -> str:
        """Start recording to NAME.csv on the host; returns the name the host used."""
        reply = self.request(f"start {name}")
        return reply.split()[2]

    def stop(self) -> dict[str, str]:
        """Stop recording; returns {'name':..., 'lines':..., 'corrupt':..., 'file':...}."""
        reply = self.request("stop")
        parts = reply.split()
        out = {"name": parts[2]}
        out.update(p.split("=", 1) for p in parts[3:] if "=" in p)  # type: ignore[arg-type]
        return out

    def status(self) -> dict[str, str]:
        parts = self.request("status").split()
        return dict(p.split("=", 1) for p in parts[1:] if "=" in p)


# --------------------------------------------------------------------------------------------
# CLI
