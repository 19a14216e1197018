"""The connection among the devices of a run, every wait bounded.

The source listens at HOST:PORT. Every other device connects there and says which device
it is (`dime.run device NAME 3`, one line on a plain socket, so that a listener that is not
a dime.run source, or never answers, fails in time with one line). Once every device the
plan needs has joined, the source answers each with its rank, the world size and the port
of the rendezvous store it then hosts (`dime.run source 3 RANK WORLD STORE_PORT`); a device
the plan does not need is told so (`... none`) and leaves; if one never joins, the others
are told which (`... abort NAMES`). All ranks then join one gloo process group (rank 0 is
the source) for the control messages and the transfers.

Each message wait is bounded: by --timeout-s until everybody agreed on the plan, by
--op-timeout-s afterwards (Group.wait_s). Errors name the device, not the rank.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import timedelta
from typing import Sequence

import torch

from dime.errors import DimeError
from dime.run.data.wire import CTRL_LEN, CTRL_TAG, DATA_TAG
from dime.run.options import ConnectOptions

log = logging.getLogger("dime.run")

HELLO_VERSION = 3  # 3: re-plans (configs sent whole, the schedule clock, transfer reports)
MAX_HELLO_BYTES = 400
HELLO_WAIT_S = 5.0  # how long a connected client has to say which device it is
_DEVICE_HELLO = re.compile(rb"dime\.run device (\S+) (\d+)\n")
_SOURCE_ANSWER = re.compile(rb"dime\.run source (\d+) (.*)\n")


class PeerError(DimeError):
    """Another device is missing, silent, died or broke the protocol."""


def _short(e: BaseException) -> str:
    """The gist of a gloo/c10d error: no source paths, the first sentence."""
    text = re.sub(r"\[[^\]]*\.(?:cc|cpp|h):\d+\]\s*", "", str(e)).strip()
    text = text.splitlines()[0] if text else type(e).__name__
    return text.split(". ")[0]


@dataclass(frozen=True)
class Membership:
    """What the handshake settled: this device's rank and every rank's device name."""

    rank: int
    names: tuple[str, ...]  # by rank; names[0] is the source


class Group:
    """Point-to-point messages to the other devices of the run (one gloo process group)."""

    def __init__(self, members: Membership, address: str, wait_s: float) -> None:
        self.rank = members.rank
        self.names = members.names
        self.address = address
        self.wait_s = wait_s  # the longest wait for any one message

    @property
    def world(self) -> int:
        return len(self.names)

    def rank_of(self, name: str) -> int:
        return self.names.index(name)

    def who(self, rank: int) -> str:
        if rank == 0 and self.rank != 0:
            return "the source" if self.names[0] == "the source" else f"the source ({self.names[0]!r})"
        return f"device {self.names[rank]!r}"

    def failure(self, e: BaseException, rank: int, sending: bool = False) -> PeerError:
        text = str(e).lower()
        if "timed out" in text or "timeout" in text:
            what = "took no message" if sending else "sent nothing"
            return PeerError(f"{self.who(rank)} {what} for {self.wait_s:g} s")
        return PeerError(f"lost {self.who(rank)}: {_short(e)}")

    def send(self, rank: int, t: torch.Tensor, tag: int) -> None:
        try:
            torch.distributed.isend(t, rank, tag=tag).wait(timedelta(seconds=self.wait_s))
        except RuntimeError as e:
            raise self.failure(e, rank, sending=True) from None

    def recv(self, rank: int, t: torch.Tensor, tag: int) -> None:
        try:
            torch.distributed.irecv(t, rank, tag=tag).wait(timedelta(seconds=self.wait_s))
        except RuntimeError as e:
            raise self.failure(e, rank) from None

    def send_ctrl(self, rank: int, cmd: int, *args: int) -> None:
        msg = torch.zeros(CTRL_LEN, dtype=torch.int64)
        msg[0] = cmd
        if args:
            msg[1 : 1 + len(args)] = torch.tensor(args, dtype=torch.int64)
        self.send(rank, msg, CTRL_TAG)

    def recv_ctrl(self, rank: int, expect: int | None = None) -> list[int]:
        buf = torch.zeros(CTRL_LEN, dtype=torch.int64)
        self.recv(rank, buf, CTRL_TAG)
        msg = [int(v) for v in buf]
        if expect is not None and msg[0] != expect:
            raise PeerError(f"protocol error: expected control message {expect} from {self.names[rank]!r}, "
                            f"got {msg[0]}")
        return msg

    def send_bytes(self, rank: int, data: bytes) -> None:
        self.send(rank, torch.frombuffer(bytearray(data), dtype=torch.uint8), DATA_TAG)

    def recv_bytes(self, rank: int, n: int) -> bytes:
        buf = torch.zeros(n, dtype=torch.uint8)
        self.recv(rank, buf, DATA_TAG)
        return bytes(buf.numpy())


# ---- the handshake ---------------------------------------------------------------------
def _read_line(conn: socket.socket, deadline: float) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < MAX_HELLO_BYTES:
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = conn.recv(MAX_HELLO_BYTES - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _listen(port: int) -> socket.socket:
    if socket.has_dualstack_ipv6():
        return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
    return socket.create_server(("", port))


def _answer(conn: socket.socket, text: str) -> None:
    try:
        conn.sendall(f"dime.run source {HELLO_VERSION} {text}\n".encode())
    except OSError:
        pass  # it left already; nothing to tell


def _hello(conn: socket.socket, who: str, opts: ConnectOptions, deadline: float) -> tuple[str, int] | None:
    """The device's name and protocol version in its first line; None when it is not a dime.run device."""
    try:
        line = _read_line(conn, deadline)
    except (TimeoutError, OSError):
        line = b""
    m = _DEVICE_HELLO.fullmatch(line)
    if not m:
        log.debug("%s connected to %s but sent %r", who, opts.address, line[:40])
        return None
    return m.group(1).decode(errors="replace"), int(m.group(2))


def _turned_away(conn: socket.socket, name: str, source: str, devices: Sequence[str], ranks: Sequence[str],
                 joined: Sequence[str]) -> bool:
    """Answer a device that takes no part (unknown, twice, not needed); False for one that does."""
    if name not in devices or name == source:
        _answer(conn, "unknown " + ",".join(devices))
        log.warning("a device called %r joined; the run has no such device (devices: %s)", name, ", ".join(devices))
    elif name in joined:
        _answer(conn, "twice")
        log.warning("device %r joined twice; the second is turned away", name)
    elif name not in ranks:
        _answer(conn, "none")
        log.info("device %r joined but has no part in this plan; it leaves", name)
    else:
        return False
    return True


class _Doorkeeper:
    """After the handshake: answer devices that join late (the plan does not need them, or they
    came twice), so that none waits for an answer that never comes; until the run ends."""

    def __init__(self, server: socket.socket, opts: ConnectOptions, source: str, devices: Sequence[str],
                 ranks: Sequence[str]) -> None:
        self.server = server
        self._args = (opts, source, tuple(devices), tuple(ranks))
        threading.Thread(target=self._run, name="dime-doorkeeper", daemon=True).start()

    def _run(self) -> None:
        opts, source, devices, ranks = self._args
        self.server.settimeout(None)
        while True:
            try:
                conn, who = self.server.accept()
            except OSError:
                return  # closed at the end of the run
            with closing(conn):
                hello = _hello(conn, who[0], opts, time.monotonic() + 5)
                if hello is not None:
                    _turned_away(conn, hello[0], source, devices, ranks, ranks)

    def close(self) -> None:
        try:
            self.server.close()
        except OSError:
            pass


_doorkeeper: _Doorkeeper | None = None


def source_handshake(opts: ConnectOptions, source: str, devices: Sequence[str], needed: Sequence[str]) -> Membership:
    """Wait at the rendezvous port until every device in `needed` has joined; give each its rank
    and the store's port, then host the store. `devices`: every device name the run knows."""
    import torch.distributed as dist

    global _doorkeeper
    deadline = time.monotonic() + opts.timeout_s
    ranks = [source] + [d for d in needed if d != source]
    joined: dict[str, socket.socket] = {}
    try:
        server = _listen(opts.port)
    except OSError as e:
        raise PeerError(f"cannot listen at {opts.address}: {e.strerror or e}") from None
    with ExitStack() as stack:
        keep_server = stack.enter_context(ExitStack())  # closes the server unless the doorkeeper takes it
        keep_server.callback(server.close)
        while len(joined) < len(ranks) - 1:
            server.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                conn, who = server.accept()
            except TimeoutError:
                missing = [d for d in ranks[1:] if d not in joined]
                for c in joined.values():
                    _answer(c, "abort " + ",".join(missing))
                names = ", ".join(repr(d) for d in missing)
                raise PeerError(f"device{'s' if len(missing) > 1 else ''} {names} did not join at {opts.address} "
                                f"within {opts.timeout_s:g} s (is dime.run running there, with the same "
                                f"--peer?)") from None
            stack.enter_context(closing(conn))
            hello = _hello(conn, who[0], opts, min(deadline, time.monotonic() + HELLO_WAIT_S))
            error = None
            if hello is None:
                error = (f"{who[0]} connected to {opts.address} but is not a dime.run device (it sent no "
                         f"`dime.run device NAME {HELLO_VERSION}` line)")
            elif hello[1] != HELLO_VERSION:
                _answer(conn, f"version {HELLO_VERSION}")
                error = f"device {hello[0]!r} speaks protocol {hello[1]}, this source {HELLO_VERSION}"
            if error is not None:
                for c in joined.values():
                    _answer(c, "failed " + error)
                raise PeerError(error)
            name = hello[0]
            if not _turned_away(conn, name, source, devices, ranks, list(joined)):
                joined[name] = conn
        store = dist.TCPStore(opts.host, 0, len(ranks), True, timedelta(seconds=opts.timeout_s),
                              wait_for_workers=False)
        for name, conn in joined.items():
            _answer(conn, f"{ranks.index(name)} {len(ranks)} {store.port}")
        _doorkeeper = _Doorkeeper(server, opts, source, devices, ranks)
        keep_server.pop_all()
    _init_group(store, 0, len(ranks), opts)
    log.info("%s: %d device(s) joined at %s: %s", source, len(ranks) - 1, opts.address, ", ".join(ranks[1:]))
    return Membership(0, tuple(ranks))


def device_handshake(opts: ConnectOptions, name: str) -> Membership | None:
    """Reach the source at the rendezvous port and join; None when the plan does not need this device."""
    import torch.distributed as dist

    deadline = time.monotonic() + opts.timeout_s
    while True:
        try:
            conn = socket.create_connection((opts.host, opts.port),
                                            timeout=max(0.01, min(1.0, deadline - time.monotonic())))
            break
        except OSError:
            if time.monotonic() >= deadline:
                raise PeerError(f"no source joined at {opts.address} within {opts.timeout_s:g} s (is the "
                                f"source's dime.run running, with the same --peer?)") from None
            time.sleep(0.2)
    with closing(conn):
        try:
            conn.sendall(f"dime.run device {name} {HELLO_VERSION}\n".encode())
            # the source answers once every device has joined, or gives up: within its --timeout-s
            # from when it began to listen, which was before this connection
            line = _read_line(conn, time.monotonic() + opts.timeout_s + 2)
        except (TimeoutError, OSError) as e:
            if isinstance(e, TimeoutError):
                raise PeerError(f"the source at {opts.address} did not answer within {opts.timeout_s:g} s "
                                f"(is a dime.run source listening there?)") from None
            raise PeerError(f"the source at {opts.address} closed the connection: {e.strerror or e}") from None
    m = _SOURCE_ANSWER.fullmatch(line)
    if not m:
        if not line:
            raise PeerError(f"the source at {opts.address} closed the connection before answering")
        raise PeerError(f"{opts.address} is not a dime.run source (it answered {line[:40]!r})")
    if int(m.group(1)) != HELLO_VERSION:
        raise PeerError(f"the source at {opts.address} speaks protocol {int(m.group(1))}, this device {HELLO_VERSION}")
    word, _, rest = m.group(2).decode(errors="replace").partition(" ")
    if word == "none":
        return None
    if word == "abort":
        names = ", ".join(repr(d) for d in rest.split(","))
        raise PeerError(f"the source gave up: {names} did not join at {opts.address} within its timeout")
    if word == "failed":
        raise PeerError(f"the source at {opts.address} gave up: {rest}")
    if word == "unknown":
        raise PeerError(f"the source at {opts.address} has no device {name!r} (its devices: {rest.replace(',', ', ')})")
    if word == "twice":
        raise PeerError(f"device {name!r} already joined the source at {opts.address}")
    try:
        rank, world, store_port = (int(x) for x in [word, *rest.split()])
    except ValueError:
        raise PeerError(f"{opts.address} is not a dime.run source (it answered {line[:40]!r})") from None
    left = max(1.0, deadline + 10 - time.monotonic())
    try:
        store = dist.TCPStore(opts.host, store_port, world, False, timedelta(seconds=left))
    except (RuntimeError, OSError) as e:
        raise PeerError(f"cannot reach the source's store at {opts.host}:{store_port}: {_short(e)}") from None
    _init_group(store, rank, world, opts)
    return Membership(rank, ())


def _init_group(store: object, rank: int, world: int, opts: ConnectOptions) -> None:
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world,
                                timeout=timedelta(seconds=max(opts.timeout_s, opts.op_timeout_s)))
    except (RuntimeError, OSError) as e:
        if "timed out" in str(e).lower() or "timeout" in str(e).lower() or isinstance(e, (TimeoutError, ConnectionError)):
            raise PeerError(f"not every device set up the connection at {opts.address} within "
                            f"{opts.timeout_s:g} s") from None
        raise PeerError(f"cannot set up the connection at {opts.address}: {_short(e)}") from None


def disconnect() -> None:
    import torch.distributed as dist

    global _doorkeeper
    if _doorkeeper is not None:
        _doorkeeper.close()
        _doorkeeper = None
    if dist.is_initialized():
        dist.destroy_process_group()
