"""The connection between the two roles, every wait bounded.

The edge listens at HOST:PORT. The cloud connects there and the two exchange one line
each (a handshake on a plain socket, bounded by --timeout-s, so that a listener that is
not a dime.run edge, or never answers, fails in time with one line); the edge's answer
names the port of the rendezvous store it already hosts. Both then join a gloo process
group of two for the transfers. Each message wait is bounded: by --timeout-s until the
two sides agree on the plan, by --op-timeout-s afterwards (Peer.wait_s).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from contextlib import closing
from datetime import timedelta
from typing import Sequence

import torch

from dime.core.costs import EDGE, ROLE_NAMES
from dime.errors import DimeError
from dime.run.linkemu import LinkShaper
from dime.run.options import ConnectOptions
from dime.run.wire import CTRL_LEN, CTRL_TAG, DATA_TAG, TAIL_BYTES, CutLayout

log = logging.getLogger("dime.run")

HELLO_VERSION = 1
MAX_HELLO_BYTES = 200


class PeerError(DimeError):
    """The other role is missing, silent, died or broke the protocol."""


def _short(e: BaseException) -> str:
    """The gist of a gloo/c10d error: no source paths, the first sentence."""
    text = re.sub(r"\[[^\]]*\.(?:cc|cpp|h):\d+\]\s*", "", str(e)).strip()
    text = text.splitlines()[0] if text else type(e).__name__
    return text.split(". ")[0]


class Peer:
    """The point-to-point connection to the other role (gloo process group of two)."""

    def __init__(self, role: int, address: str, wait_s: float) -> None:
        self.role = role
        self.other = 1 - role
        self.address = address
        self.wait_s = wait_s  # the longest wait for any one message
        self._ctrl = torch.zeros(CTRL_LEN, dtype=torch.int64)

    def _fail(self, e: BaseException) -> PeerError:
        text = str(e).lower()
        if "timed out" in text or "timeout" in text:
            return PeerError(f"the {ROLE_NAMES[self.other]} peer ({self.address}) sent nothing for "
                             f"{self.wait_s:g} s")
        return PeerError(f"lost the {ROLE_NAMES[self.other]} peer ({self.address}): {_short(e)}")

    def _send(self, t: torch.Tensor, tag: int) -> None:
        try:
            torch.distributed.isend(t, self.other, tag=tag).wait(timedelta(seconds=self.wait_s))
        except RuntimeError as e:
            raise self._fail(e) from None

    def _recv(self, t: torch.Tensor, tag: int) -> None:
        try:
            torch.distributed.irecv(t, self.other, tag=tag).wait(timedelta(seconds=self.wait_s))
        except RuntimeError as e:
            raise self._fail(e) from None

    def send_ctrl(self, cmd: int, *args: int) -> None:
        msg = torch.zeros(CTRL_LEN, dtype=torch.int64)
        msg[0] = cmd
        msg[1 : 1 + len(args)] = torch.tensor(args, dtype=torch.int64)
        self._send(msg, CTRL_TAG)

    def recv_ctrl(self, expect: int | None = None) -> list[int]:
        self._recv(self._ctrl, CTRL_TAG)
        msg = [int(v) for v in self._ctrl]
        if expect is not None and msg[0] != expect:
            raise PeerError(f"protocol error: expected control message {expect}, got {msg[0]}")
        return msg

    def send_bytes(self, data: bytes) -> None:
        self._send(torch.frombuffer(bytearray(data), dtype=torch.uint8), DATA_TAG)

    def recv_bytes(self, n: int) -> bytes:
        buf = torch.zeros(n, dtype=torch.uint8)
        self._recv(buf, DATA_TAG)
        return bytes(buf.numpy())

    def send_cut(
        self,
        layout: CutLayout,
        buf: torch.Tensor,
        kind: int,
        query: int,
        tensors: Sequence[torch.Tensor] | None,
        shaper: LinkShaper | None,
        direction: str,
    ) -> None:
        layout.pack(buf, kind, query, tensors)
        body, tail = buf[:-TAIL_BYTES], buf[-TAIL_BYTES:]
        if shaper is None:
            self._send(body, DATA_TAG)
            self._send(tail, DATA_TAG)
        else:
            shaper.send(layout.payload_bytes, direction, lambda: self._send(body, DATA_TAG),
                        lambda: self._send(tail, DATA_TAG))

    def recv_cut(self, layout: CutLayout, buf: torch.Tensor) -> tuple[int, int, list[torch.Tensor]]:
        self._recv(buf[:-TAIL_BYTES], DATA_TAG)
        self._recv(buf[-TAIL_BYTES:], DATA_TAG)
        return layout.unpack(buf)


def _hello(role: int, extra: str = "") -> bytes:
    return f"dime.run {ROLE_NAMES[role]} {HELLO_VERSION}{' ' + extra if extra else ''}\n".encode()


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


def edge_handshake(opts: ConnectOptions, store_port: int, deadline: float) -> None:
    """Wait for the cloud at the rendezvous port and tell it where the store is."""
    other = "cloud"
    try:
        server = _listen(opts.port)
    except OSError as e:
        raise PeerError(f"cannot listen at {opts.address}: {e.strerror or e}") from None
    with closing(server):
        server.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            conn, who = server.accept()
        except TimeoutError:
            raise PeerError(f"no {other} peer joined at {opts.address} within {opts.timeout_s:g} s (is the "
                            f"{other} side running, with the same --peer?)") from None
        with closing(conn):
            try:
                line = _read_line(conn, deadline)
            except (TimeoutError, OSError):
                line = b""
            if line != _hello(1 - EDGE):
                raise PeerError(f"{who[0]} connected to {opts.address} but is not a dime.run {other} "
                                f"(it sent {line[:40]!r} within {opts.timeout_s:g} s)")
            conn.sendall(_hello(EDGE, str(store_port)))


def cloud_handshake(opts: ConnectOptions, deadline: float) -> int:
    """Reach the edge at the rendezvous port; the port of its store."""
    other = "edge"
    while True:
        try:
            conn = socket.create_connection((opts.host, opts.port), timeout=max(0.01, min(1.0, deadline - time.monotonic())))
            break
        except OSError:
            if time.monotonic() >= deadline:
                raise PeerError(f"no {other} peer joined at {opts.address} within {opts.timeout_s:g} s (is the "
                                f"{other} side running, with the same --peer?)") from None
            time.sleep(0.2)
    with closing(conn):
        try:
            conn.sendall(_hello(1 - EDGE))
            line = _read_line(conn, deadline)
        except (TimeoutError, OSError) as e:
            if isinstance(e, TimeoutError) or time.monotonic() >= deadline:
                raise PeerError(f"the {other} peer at {opts.address} did not answer within {opts.timeout_s:g} s "
                                f"(is a dime.run {other} listening there?)") from None
            raise PeerError(f"the {other} peer at {opts.address} closed the connection: {e.strerror or e}") from None
    m = re.fullmatch(rb"dime\.run edge (\d+) (\d+)\n", line)
    if not m:
        raise PeerError(f"{opts.address} is not a dime.run {other} (it answered {line[:40]!r})")
    if int(m.group(1)) != HELLO_VERSION:
        raise PeerError(f"the {other} at {opts.address} speaks protocol {int(m.group(1))}, this side {HELLO_VERSION}")
    return int(m.group(2))


def connect(role: int, opts: ConnectOptions) -> Peer:
    """The handshake, then the two-process gloo group; the edge hosts the store."""
    import torch.distributed as dist

    deadline = time.monotonic() + opts.timeout_s
    other = ROLE_NAMES[1 - role]
    try:
        if role == EDGE:
            store = dist.TCPStore(opts.host, 0, 2, True, timedelta(seconds=opts.timeout_s), wait_for_workers=False)
            edge_handshake(opts, store.port, deadline)
        else:
            store_port = cloud_handshake(opts, deadline)
            left = max(1.0, deadline - time.monotonic())
            store = dist.TCPStore(opts.host, store_port, 2, False, timedelta(seconds=left))
        dist.init_process_group("gloo", store=store, rank=role, world_size=2,
                                timeout=timedelta(seconds=max(opts.timeout_s, opts.op_timeout_s)))
    except (RuntimeError, OSError) as e:
        if "timed out" in str(e).lower() or "timeout" in str(e).lower() or isinstance(e, (TimeoutError, ConnectionError)):
            raise PeerError(f"the {other} peer at {opts.address} did not join within {opts.timeout_s:g} s") from None
        raise PeerError(f"cannot set up the connection at {opts.address}: {_short(e)}") from None
    log.info("%s connected to the %s at %s", ROLE_NAMES[role], other, opts.address)
    return Peer(role, opts.address, opts.timeout_s)


def disconnect() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
