"""Host-side logger for an ODROID SmartPower3 on a serial port, driven over TCP.

The SmartPower3 sits between the power supply and the device under test and streams one line
per sample over USB serial. This module runs on the HOST PC the meter is plugged into::

    python -m dime.powerlog serve --serial /dev/ttyUSB0 --baud 115200 \\
        --bind 127.0.0.1 --port 47031 --dir power-logs

Each line is stamped with the host's ``time.monotonic()`` as it arrives, checked (17 fields,
8-bit two's-complement sum and 8-bit xor over everything before the checksum fields) and, while a
recording is active, appended to ``DIR/<name>.csv`` (written as ``DIR/.<name>.csv.part`` and
renamed on stop). Corrupt lines are dropped and counted.

Protocol: one command per line (UTF-8, at most 1024 bytes), one reply line each::

    ping          -> pong
    time          -> time <host monotonic seconds>      (for clock-offset round trips)
    start NAME    -> ok started <sanitized name>          (stops a running recording first;
                                                          an existing NAME.csv is refused
                                                          unless serve --overwrite)
    stop          -> ok stopped <name> lines=<good> corrupt=<bad> file=<name>.csv
    status        -> ok recording=<name or -> lines=<good> corrupt=<bad> serial=<ok or error>
    quit          -> bye (closes the connection)
    anything else -> error <reason>

Names from the network are sanitized: characters outside [A-Za-z0-9._-] become "_", leading
dots/dashes are dropped, ".csv" is implied; an empty or dots-only name is refused. The server
binds loopback unless told otherwise: the device under test reaches it through an SSH tunnel
(``ssh -R 47031:127.0.0.1:47031 device``) or, on a trusted network, ``--bind 0.0.0.0``.

This module needs only the standard library (termios: Linux/macOS hosts).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import select
import signal
import socket
import socketserver
import sys
import threading
import time
from functools import reduce
from pathlib import Path
from typing import Sequence

from dime.cliargs import (
    OneLineParser,
    port_number,
    positive_float,
    positive_int,
    run_main,
    setup_logging,
)
from dime.errors import MeterError, UsageError
from dime.fileio import check_output_dir
from dime.profiling.power.client import DEFAULT_PORT, MAX_COMMAND_BYTES

log = logging.getLogger(__name__)

LINE_BYTES = 81
LINE_FIELDS = 17
CSV_COLUMNS: tuple[str, ...] = (
    "host_time_s", "meter_ms",
    "input_mv", "input_ma", "input_mw", "input_low",
    "ch0_mv", "ch0_ma", "ch0_mw", "ch0_on", "ch0_int",
    "ch1_mv", "ch1_ma", "ch1_mw", "ch1_on", "ch1_int",
)
_NAME_RE = re.compile(r"[^A-Za-z0-9._-]")
DEFAULT_MAX_CLIENTS = 8
DEFAULT_IDLE_TIMEOUT_S = 600.0


# --------------------------------------------------------------------------------------------
# the SmartPower3 line format


def line_checksums(data: bytes) -> tuple[int, int]:
    """(8-bit two's complement of the byte sum, 8-bit xor) of `data`."""
    return (-sum(data)) & 0xFF, reduce(lambda a, b: a ^ b, data, 0)


def format_line(
    ms: int,
    input_mv: int, input_ma: int, input_mw: int, input_low: int,
    ch0: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0),
    ch1: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0),
) -> bytes:
    """A line as the SmartPower3 firmware prints it (81 bytes with CRLF for in-range values).

    `ch0`/`ch1` are (mV, mA, mW, on/off, interrupt flags).
    """
    data = (
        f"{ms:010d},{input_mv:05d},{input_ma:04d},{input_mw:05d},{input_low:1d},"
        f"{ch0[0]:05d},{ch0[1]:04d},{ch0[2]:05d},{ch0[3]:1d},{ch0[4]:02x},"
        f"{ch1[0]:05d},{ch1[1]:04d},{ch1[2]:05d},{ch1[3]:1d},{ch1[4]:02x},"
    ).encode("ascii")
    s, x = line_checksums(data)
    return data + f"{s:02x},{x:02x}\r\n".encode("ascii")


def parse_line(line: bytes) -> tuple[int, ...]:
    """Check and parse one line; returns the 15 data values (meter_ms first).

    Raises ValueError (with the reason) for a corrupt line.
    """
    body = line.rstrip(b"\r\n")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not ASCII") from None
    fields = text.split(",")
    if len(fields) != LINE_FIELDS:
        raise ValueError(f"{len(fields)} fields, expected {LINE_FIELDS}")
    cut = body.rfind(b",", 0, body.rfind(b",")) + 1  # start of the checksum fields
    try:
        want_sum, want_xor = int(fields[15], 16), int(fields[16], 16)
    except ValueError:
        raise ValueError("bad checksum field") from None
    got_sum, got_xor = line_checksums(body[:cut])
    if (got_sum, got_xor) != (want_sum, want_xor):
        raise ValueError(
            f"checksum {got_sum:02x},{got_xor:02x} != {want_sum:02x},{want_xor:02x}"
        )
    try:
        values = [int(f, 16) if i in (9, 14) else int(f) for i, f in enumerate(fields[:15])]
    except ValueError:
        raise ValueError("non-numeric field") from None
    if len(line) != LINE_BYTES:
        log.debug("powerlog: line of %d bytes (expected %d) passed its checksums", len(line),
                  LINE_BYTES)
    return tuple(values)


def sanitize_name(raw: str) -> str:
    """A safe file stem from a name sent over the network; ValueError if none is left."""
    name = raw.strip()
    if name.lower().endswith(".csv"):
        name = name[:-4]
    name = _NAME_RE.sub("_", name).lstrip(".-")[:100]
    if not name or not set(name) - {".", "_", "-"}:
        raise ValueError(f"unusable recording name {raw!r}")
    return name


# --------------------------------------------------------------------------------------------
# serial port


def open_serial(path: str, baud: int) -> int:
    """Open a tty raw (8N1, no flow control, no echo) at `baud`; returns the fd."""
    import termios

    speed = getattr(termios, f"B{baud}", None)
    if speed is None:
        raise UsageError(f"unsupported baud rate {baud}")
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError as e:
        raise MeterError(
            f"permission denied opening {path}: add yourself to the dialout group or run as root"
        ) from e
    except OSError as e:
        raise MeterError(f"cannot open serial port {path}: {e.strerror or e}") from e
    try:
        iflag, oflag, cflag, lflag, _, _, cc = termios.tcgetattr(fd)
        iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                   | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON | termios.IXOFF)
        oflag &= ~termios.OPOST
        lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
        cflag &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB | getattr(termios, "CRTSCTS", 0))
        cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL
        cc[termios.VMIN] = 1
        cc[termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, speed, speed, cc])
    except termios.error as e:
        os.close(fd)
        raise MeterError(f"{path} is not a serial port: {e}") from e
    return fd


# --------------------------------------------------------------------------------------------
# recordings


class _Recording:
    """DIR/.NAME.csv.part while recording, DIR/NAME.csv once closed.

    The part file is created with O_EXCL|O_NOFOLLOW: a file or symbolic link already at that
    name (planted, or left by a crash) is never written through. An existing NAME.csv is
    refused unless `overwrite`.
    """

    def __init__(self, out_dir: Path, name: str, overwrite: bool = False) -> None:
        self.name = name
        self.out_dir = out_dir
        self.overwrite = overwrite
        self.path = out_dir / f"{name}.csv"
        self.part = out_dir / f".{name}.csv.part"
        if self.path.parent.resolve() != out_dir.resolve():  # paranoia: sanitize_name forbids
            raise ValueError(f"recording path {self.path} escapes {out_dir}")
        if os.path.lexists(self.path) and not overwrite:
            raise FileExistsError(f"{self.path.name} exists (serve --overwrite replaces recordings)")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.part, flags, 0o644)
        except FileExistsError:
            raise FileExistsError(f"{self.part.name} is in the way (left by a crash, or planted); "
                                  "move it away") from None
        self.file = os.fdopen(fd, "w", encoding="ascii", newline="")
        self.file.write(",".join(CSV_COLUMNS) + "\n")
        self.good = 0
        self.corrupt = 0

    def write(self, host_t: float, values: tuple[int, ...]) -> None:
        self.file.write(f"{host_t:.6f}," + ",".join(str(v) for v in values) + "\n")
        self.good += 1

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if self.overwrite:
            os.replace(self.part, self.path)
            return
        # no-clobber: a NAME.csv that appeared while recording is kept; this one takes NAME.N.csv
        target, n = self.path, 1
        while True:
            try:
                os.link(self.part, target, follow_symlinks=False)
                os.unlink(self.part)
                break
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system
                if not os.path.lexists(target):
                    os.replace(self.part, target)
                    break
            target = self.out_dir / f"{self.name}.{n}.csv"
            n += 1
        if target != self.path:
            log.warning("powerlog: %s appeared while recording; saved as %s", self.path, target.name)
            self.path = target


# --------------------------------------------------------------------------------------------
# the server


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    powerlog: "PowerLogServer"

    def __init__(self, address: tuple[str, int], handler: type, max_clients: int) -> None:
        super().__init__(address, handler)
        self.max_clients = max_clients
        self._clients = 0
        self._clients_lock = threading.Lock()

    def verify_request(self, request, client_address) -> bool:  # type: ignore[no-untyped-def]
        with self._clients_lock:
            if self._clients < self.max_clients:
                self._clients += 1
                return True
        log.warning("powerlog: refused %s:%s: %d clients connected already", *client_address[:2], self.max_clients)
        try:
            request.settimeout(1.0)
            request.sendall(b"error too many connections\n")
        except OSError:
            pass
        return False

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._clients_lock:
                self._clients -= 1


class _Handler(socketserver.StreamRequestHandler):
    def setup(self) -> None:
        # a client silent for this long is dropped (socket.timeout in handle); the client
        # library reconnects on its next command
        self.timeout = self.server.powerlog.idle_timeout_s  # type: ignore[attr-defined]
        super().setup()
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle(self) -> None:
        server: PowerLogServer = self.server.powerlog  # type: ignore[attr-defined]
        peer = "%s:%s" % self.client_address[:2]
        log.info("powerlog: client %s connected", peer)
        try:
            while True:
                raw = self.rfile.readline(MAX_COMMAND_BYTES + 1)
                if not raw:
                    break
                if len(raw) > MAX_COMMAND_BYTES:
                    self.wfile.write(b"error command too long\n")
                    break
                reply = server.handle_command(raw.decode("utf-8", "replace"))
                self.wfile.write(reply.encode("utf-8") + b"\n")
                self.wfile.flush()
                if reply == "bye":
                    break
        except socket.timeout:
            log.info("powerlog: client %s idle for %g s: dropped", peer, server.idle_timeout_s)
        except (ConnectionError, OSError) as e:
            log.info("powerlog: client %s dropped: %s", peer, e)
        log.info("powerlog: client %s disconnected", peer)


class PowerLogServer:
    """Reads a SmartPower3 serial stream and serves the recording protocol over TCP.

    `serial_fd` (an already-open fd) replaces `serial_path` in tests. `start()` runs everything
    in background threads; `address` is then the bound (host, port); `shutdown()` stops all and
    finalizes an active recording.
    """

    def __init__(
        self,
        serial_path: str | None,
        out_dir: str | os.PathLike,
        baud: int = 115200,
        bind: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        serial_fd: int | None = None,
        overwrite: bool = False,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        if max_clients < 1 or not idle_timeout_s > 0:
            raise UsageError("max_clients must be >= 1 and idle_timeout_s > 0")
        self.overwrite = overwrite
        self.max_clients = int(max_clients)
        self.idle_timeout_s = float(idle_timeout_s)
        self.serial_path = serial_path
        self.baud = int(baud)
        self.out_dir = Path(out_dir)
        self.bind = bind
        self.port = int(port)
        self._fd = serial_fd
        self._own_fd = serial_fd is None
        self._lock = threading.Lock()
        self._recording: _Recording | None = None
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._tcp: _TCPServer | None = None
        self._tcp_thread: threading.Thread | None = None
        self.serial_error: str | None = None
        self.good_lines = 0
        self.corrupt_lines = 0

    # ---- lifecycle

    def start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self._fd is None:
            if not self.serial_path:
                raise UsageError("no serial port given")
            self._fd = open_serial(self.serial_path, self.baud)
        if self.bind not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "powerlog: listening on %s: anyone who can reach this port can start and stop "
                "recordings in %s", self.bind, self.out_dir,
            )
        try:
            self._tcp = _TCPServer((self.bind, self.port), _Handler, self.max_clients)
        except OSError as e:
            if self._own_fd:
                os.close(self._fd)
                self._fd = None
            raise MeterError(f"cannot listen on {self.bind}:{self.port}: {e.strerror or e}") from e
        self._tcp.powerlog = self
        self._reader = threading.Thread(target=self._read_serial, name="powerlog serial",
                                        daemon=True)
        self._reader.start()
        self._tcp_thread = threading.Thread(target=self._tcp.serve_forever,
                                            kwargs={"poll_interval": 0.1},
                                            name="powerlog tcp", daemon=True)
        self._tcp_thread.start()
        log.info("powerlog: reading %s, listening on %s:%d, writing to %s",
                 self.serial_path or f"fd {self._fd}", *self.address, self.out_dir)

    @property
    def address(self) -> tuple[str, int]:
        if self._tcp is None:
            return self.bind, self.port
        host, port = self._tcp.server_address[:2]
        return str(host), int(port)

    def shutdown(self) -> None:
        self._stop.set()
        if self._tcp is not None:
            self._tcp.shutdown()
            self._tcp.server_close()
            self._tcp = None
        if self._reader is not None:
            self._reader.join(timeout=5.0)
            self._reader = None
        with self._lock:
            if self._recording is not None:
                rec = self._recording
                self._recording = None
                rec.close()
                log.info("powerlog: saved %s (%d lines) on shutdown", rec.path, rec.good)
        if self._own_fd and self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "PowerLogServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---- serial side

    def _read_serial(self) -> None:
        fd = self._fd
        assert fd is not None
        buf = b""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.1)
            except (OSError, ValueError) as e:
                self.serial_error = f"select failed: {e}"
                break
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                self.serial_error = f"serial read failed: {e.strerror or e}"
                break
            t = time.monotonic()
            if not chunk:
                self.serial_error = "serial port closed (EOF)"
                break
            buf += chunk
            while True:
                i = buf.find(b"\n")
                if i < 0:
                    break
                line, buf = buf[: i + 1], buf[i + 1 :]
                self._on_line(line, t)
            if len(buf) > 4 * LINE_BYTES:  # no newline in a long while: garbage
                self._count_corrupt("no line end")
                buf = b""
        if self.serial_error:
            log.error("powerlog: %s", self.serial_error)

    def _count_corrupt(self, why: str) -> None:
        with self._lock:
            self.corrupt_lines += 1
            if self._recording is not None:
                self._recording.corrupt += 1
        log.debug("powerlog: dropped a line: %s", why)

    def _on_line(self, line: bytes, t: float) -> None:
        try:
            values = parse_line(line)
        except ValueError as e:
            self._count_corrupt(str(e))
            return
        with self._lock:
            self.good_lines += 1
            if self._recording is not None:
                self._recording.write(t, values)

    # ---- commands

    def handle_command(self, text: str) -> str:
        """One protocol command in, one reply line out. Never raises."""
        try:
            return self._command(text)
        except Exception as e:  # a bad command must not take the server down
            log.exception("powerlog: command %r failed", text[:80])
            return f"error internal: {type(e).__name__}: {e}".replace("\n", " ")

    def _command(self, text: str) -> str:
        parts = text.strip().split()
        if not parts:
            return "error empty command"
        cmd, args = parts[0].lower(), parts[1:]
        if cmd == "ping" and not args:
            return "pong"
        if cmd == "time" and not args:
            return f"time {time.monotonic():.9f}"
        if cmd == "start":
            if len(args) != 1:
                return "error usage: start NAME"
            return self._start(args[0])
        if cmd == "stop" and not args:
            return self._stop_recording()
        if cmd == "status" and not args:
            with self._lock:
                name = self._recording.name if self._recording else "-"
                return (
                    f"ok recording={name} lines={self.good_lines} corrupt={self.corrupt_lines} "
                    f"serial={'error' if self.serial_error else 'ok'}"
                )
        if cmd == "quit" and not args:
            return "bye"
        shown = re.sub(r"[^\x20-\x7e]", "?", parts[0])[:40]
        return f"error unknown command '{shown}' (try: start NAME, stop, time, ping, status, quit)"

    def _start(self, raw_name: str) -> str:
        try:
            name = sanitize_name(raw_name)
        except ValueError as e:
            return f"error {e}"
        if self.serial_error:
            return f"error {self.serial_error}"
        note = ""
        with self._lock:
            if self._recording is not None:
                old = self._recording
                old.close()
                note = f" (stopped {old.name})"
                log.warning("powerlog: start %s while recording %s: stopped it", name, old.name)
            try:
                self._recording = _Recording(self.out_dir, name, self.overwrite)
            except FileExistsError as e:
                self._recording = None
                return f"error {e}"
            except (OSError, ValueError) as e:
                self._recording = None
                return f"error cannot create {name}.csv: {getattr(e, 'strerror', None) or e}"
        log.info("powerlog: recording %s", name)
        return f"ok started {name}{note}"

    def _stop_recording(self) -> str:
        with self._lock:
            rec = self._recording
            if rec is None:
                return "error not recording"
            self._recording = None
            rec.close()
        log.info("powerlog: saved %s (%d lines, %d corrupt)", rec.path, rec.good, rec.corrupt)
        return f"ok stopped {rec.name} lines={rec.good} corrupt={rec.corrupt} file={rec.path.name}"


# --------------------------------------------------------------------------------------------
# the client (device side)


def _build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m dime.powerlog", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="log a SmartPower3 and serve start/stop over TCP")
    s.add_argument("--serial", required=True, help="serial port, e.g. /dev/ttyUSB0")
    s.add_argument("--baud", type=positive_int, default=115200, help="default 115200 (5 ms logs: >=230400)")
    s.add_argument("--bind", default="127.0.0.1", help="address to listen on (default loopback)")
    s.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    s.add_argument("--dir", required=True, help="folder for the CSV recordings")
    s.add_argument("--overwrite", action="store_true",
                   help="let `start NAME` replace an existing NAME.csv (default: refuse)")
    s.add_argument("--max-clients", type=positive_int, default=DEFAULT_MAX_CLIENTS,
                   help=f"connections served at once; more are refused (default {DEFAULT_MAX_CLIENTS})")
    s.add_argument("--idle-timeout-s", type=positive_float, default=DEFAULT_IDLE_TIMEOUT_S,
                   help=f"drop a client silent this long (default {DEFAULT_IDLE_TIMEOUT_S:g} s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    setup_logging(args.verbose)
    check_output_dir(args.dir, "--dir")
    server = PowerLogServer(args.serial, args.dir, baud=args.baud, bind=args.bind, port=args.port,
                            overwrite=args.overwrite, max_clients=args.max_clients,
                            idle_timeout_s=args.idle_timeout_s)
    stop = threading.Event()

    def _on_term(signum: int, frame: object) -> None:
        stop.set()

    prev_term = signal.signal(signal.SIGTERM, _on_term)
    server.start()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, prev_term)
        server.shutdown()
        log.info("powerlog: %d good lines, %d corrupt", server.good_lines, server.corrupt_lines)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
