"""Links shaped by the Linux kernel: a network namespace per device, a veth pair per link.

A :class:`Topology` (a context manager) builds, for a list of devices and links:

* one network namespace per device, named ``<prefix>-<index>-<device>`` where the prefix
  (``dime-<pid>-<random>``) is unique per run;
* one host address per device (``10.77.0.<i+1>/32`` on the namespace's ``lo``, which keeps
  no other IPv4 address, so that gloo, bound to ``GLOO_SOCKET_IFNAME=lo``, binds to it): the
  address every other device reaches it at, over the link graph;
* one veth pair per link, ``l<k>`` at both ends, with the two addresses of ``10.77.<k+1>.0/30``;
* the rate of each direction as a ``tbf`` qdisc on the sending end's egress (``ends[0]``
  sends at ``up_mbps``, ``ends[1]`` at ``down_mbps``);
* static ``/32`` routes to every reachable device along a shortest path (fewest hops), with
  ``src`` set to the device's own host address so that replies take the same path, and
  ``net.ipv4.ip_forward=1`` in every namespace that relays (two or more links). The veth
  addresses themselves are on-link only: use :meth:`Topology.address`.

Only addresses inside these namespaces are used; the host's own network is not touched.

Rates. The configured rate is the TCP payload rate of a bulk transfer, which is what the
cost model charges (bytes / rate). ``tbf`` counts every byte of the Ethernet frame, so its
rate is set above the configured one by the header share of a full segment
(``(mtu + 14) / (mtu - 52)``: Ethernet, IPv4 and TCP with timestamps, Linux's default).
A burst (the bytes that leave at line rate after an idle spell) is half a millisecond of the
rate, at least two frames: with one frame, every late tbf timer loses tokens (2-20% below
the rate at 4-100 Mbps on a 2-core VM), and without the time floor 1 Gbps fell 25% short;
every byte of burst is time the cost model charges (8B/rate) and the kernel does not, so a
transfer of a few KB on a slow link takes less than its model time (see
``benchmarks/README.md``: a 4 KB transfer on 4g up in 1.9 ms instead of 5.6). The queue
holds 100 ms of the rate so that TCP is not pushed into loss recovery by its own qdisc. The probe
(:func:`probe_rate`) checks the result; ``benchmarks/netns_probe.py`` prints it.

Delay. Where the kernel has ``netem`` (checked once per topology by adding one to ``lo``),
half the link's rtt is added on each end's egress (netem at the root, tbf as its child).
Otherwise :attr:`Topology.delay_mode` is ``"user"``, :attr:`Topology.shaper` reads
``"netns+user-delay"`` and :meth:`Topology.user_delay_s` gives the one-way delay that the
runtime must add itself; a warning says so.

Lifecycle. Before anything is created a state file (``/run/dime-netns/<prefix>.json``:
the pid, its start time and the namespace names) is written; the namespaces are removed,
with their veths and qdiscs, on every exit from the ``with`` block: normal, exception,
SIGINT and SIGTERM. A signal first removes them, then goes to the handler that was there
before (``KeyboardInterrupt`` for SIGINT; under ``dime.cliargs.run_main`` SIGTERM raises
``dime.errors.Terminated``, exit 143), or else ends with ``SystemExit(128 + signal)``. A run killed
outright (SIGKILL, a crash) leaves its state file; the next :class:`Topology` (or
:func:`cleanup_stale`) removes the namespaces of every state file whose process is gone.
Whatever still runs inside a namespace (``ip netns pids``: the device processes of a killed
launcher) is ended before the namespace is removed, on every exit (SIGTERM, then SIGKILL
after :data:`KILL_GRACE_S`): deleting a namespace only unlinks its name, and a process left
in it would live on, unreachable, until its own timeout.

Why ``ip``/``tc`` subprocesses and not pyroute2 (which does install here): iproute2 is
present wherever network namespaces are usable, so this adds no dependency; every step
is a command that is logged at debug level and can be replayed by hand; and pyroute2's
namespace support works through forked helper processes, which would have to be kept
alive and cleaned up next to the namespaces themselves, in signal handlers too. The
set-up runs a few dozen short commands (well under a second for a few devices).
"""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Iterable, Sequence

from dime.core.links import Link
from dime.errors import ShaperError, UsageError
from dime.fileio import atomic_write_text
from dime.run.links import SHAPER_NETNS, SHAPER_NETNS_USER_DELAY

log = logging.getLogger(__name__)

STATE_DIR = Path("/run/dime-netns")
NS_PREFIX = "dime-"
SUBNET = ipaddress.IPv4Network("10.77.0.0/16")
MTU = 1500
# Bytes of a full TCP segment that are not payload and bytes tbf counts beyond the IP packet.
ETH_HEADER_BYTES = 14
IP_TCP_HEADER_BYTES = 20 + 20 + 12  # IPv4, TCP, TCP timestamps option
BURST_S = 0.0005
MIN_BURST_FRAMES = 2
QUEUE_S = 0.1
MIN_QUEUE_BYTES = 256 * 1024
GLOO_IFNAME = "lo"  # the interface that holds a namespace's host address
KILL_GRACE_S = 2.0  # processes left inside a namespace: SIGTERM, then SIGKILL after this
_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]")
_TERM_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class NetLink:
    """A link between two devices: ends[0] sends at up_mbps, ends[1] at down_mbps."""

    ends: tuple[str, str]
    up_mbps: float
    down_mbps: float
    rtt_ms: float = 0.0

    def __post_init__(self) -> None:
        if len(self.ends) != 2 or self.ends[0] == self.ends[1]:
            raise UsageError(f"link {self.ends}: give two different devices")
        for attr in ("up_mbps", "down_mbps"):
            v = getattr(self, attr)
            if not (isinstance(v, (int, float)) and 0 < v < float("inf")):
                raise UsageError(f"link {self.ends[0]}-{self.ends[1]}: {attr} must be a positive number, got {v}")
        if not self.rtt_ms >= 0:
            raise UsageError(f"link {self.ends[0]}-{self.ends[1]}: rtt_ms must be >= 0, got {self.rtt_ms}")

    @classmethod
    def from_link(cls, a: str, b: str, link: Link) -> "NetLink":
        """`link`'s uplink from a to b, its downlink from b to a."""
        return cls((a, b), link.uplink_mbps, link.downlink_mbps, link.rtt_ms)

    def rate_mbps(self, src: str) -> float:
        """Configured payload rate of the direction `src` sends in."""
        if src not in self.ends:
            raise UsageError(f"{src!r} is not an end of link {self.ends[0]}-{self.ends[1]}")
        return self.up_mbps if src == self.ends[0] else self.down_mbps


@dataclass(frozen=True)
class TbfParams:
    """tbf settings for one direction of a link."""

    payload_mbps: float
    rate_bit: int  # tc's rate: the payload rate plus the headers of full-size frames
    burst_bytes: int
    limit_bytes: int

    def tc_args(self) -> list[str]:
        return ["tbf", "rate", f"{self.rate_bit}bit", "burst", str(self.burst_bytes), "limit", str(self.limit_bytes)]


def tbf_params(payload_mbps: float, mtu: int = MTU) -> TbfParams:
    """tbf settings under which TCP carries `payload_mbps` of payload (see the module doc)."""
    frame = mtu + ETH_HEADER_BYTES
    rate_bit = round(payload_mbps * 1e6 * frame / (mtu - IP_TCP_HEADER_BYTES))
    burst = max(MIN_BURST_FRAMES * frame, round(rate_bit / 8 * BURST_S))
    limit = max(MIN_QUEUE_BYTES, round(rate_bit / 8 * QUEUE_S))
    return TbfParams(payload_mbps, rate_bit, burst, limit)


def _cmd(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    log.debug("netns: %s", " ".join(args))
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise ShaperError(f"{args[0]} not found (install iproute2)") from None
    if check and proc.returncode != 0:
        raise ShaperError(f"`{' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def unavailable_reason() -> str | None:
    """Why kernel shaping cannot run here, or None when it can (tried for real, then undone)."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) not found"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    name = f"{NS_PREFIX}check-{os.getpid()}-{secrets.token_hex(2)}"
    try:
        made = _cmd(["ip", "netns", "add", name], check=False)
        if made.returncode != 0:
            return f"cannot create a network namespace: {made.stderr.strip()}"
        tbf = _cmd(["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", *tbf_params(10).tc_args()], check=False)
        if tbf.returncode != 0:
            return f"tc tbf not usable: {tbf.stderr.strip()}"
    finally:
        _cmd(["ip", "netns", "del", name], check=False)
    return None


def available() -> bool:
    """True when kernel shaping can run here; otherwise logs the one-line reason."""
    reason = unavailable_reason()
    if reason is not None:
        log.warning("kernel link shaping unavailable: %s; use --shaper user", reason)
        return False
    return True


def list_namespaces() -> list[str]:
    """Names of the network namespaces `ip netns` knows."""
    out = _cmd(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _process_start(pid: int) -> str | None:
    """The start time of `pid` (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _state_alive(state: dict[str, Any]) -> bool:
    pid = state.get("pid")
    return isinstance(pid, int) and _process_start(pid) is not None and _process_start(pid) == state.get("start")


def namespace_pids(name: str) -> list[int]:
    """The processes running inside namespace `name` (``ip netns pids``; none when it is gone)."""
    out = _cmd(["ip", "netns", "pids", name], check=False).stdout
    return sorted(int(x) for x in out.split() if x.isdigit())


def _running(pid: int, start: str | None) -> bool:
    """`pid` is the process that started at `start` and has not ended (a zombie has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X") and fields[19] == start


def end_processes(pids: Iterable[int], grace_s: float = KILL_GRACE_S) -> list[int]:
    """SIGTERM `pids`, SIGKILL those still running after `grace_s`; the pids that were running."""
    procs = {pid: _process_start(pid) for pid in pids if pid != os.getpid()}
    procs = {pid: start for pid, start in procs.items() if _running(pid, start)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, start in procs.items():
            if _running(pid, start):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 1.0)
        while any(_running(p, s) for p, s in procs.items()) and time.monotonic() < deadline:
            time.sleep(0.02)
    return sorted(procs)


def _delete_namespaces(names: Iterable[str]) -> list[str]:
    """End what runs inside the namespaces `names`, then remove them; the names removed."""
    present = set(list_namespaces())
    names = [n for n in dict.fromkeys(names) if n in present]
    pids = {n: namespace_pids(n) for n in names}
    ended = end_processes(p for ps in pids.values() for p in ps)
    if ended:
        log.warning("netns: ended %d processes still running in %s: %s", len(ended),
                    ", ".join(n for n, ps in pids.items() if ps), " ".join(map(str, ended)))
    for name in names:
        _cmd(["ip", "netns", "del", name], check=False)
    return names


def cleanup_stale(state_dir: str | os.PathLike = STATE_DIR) -> list[str]:
    """Remove the namespaces of runs whose process is gone; return the names removed."""
    removed: list[str] = []
    for path in sorted(Path(state_dir).glob("[!.]*.json")):  # not another run's temporary file
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("netns: unreadable state file %s; removing it", path)
            path.unlink(missing_ok=True)
            continue
        if _state_alive(state):
            continue
        gone = _delete_namespaces(state.get("namespaces", []))
        if gone:
            log.warning("netns: removed %d namespaces left by run %s (pid %s): %s",
                        len(gone), state.get("prefix"), state.get("pid"), ", ".join(gone))
        removed += gone
        path.unlink(missing_ok=True)
    return removed


def _shortest_next_hops(devices: Sequence[str], links: Sequence[NetLink]) -> dict[str, dict[str, str]]:
    """next_hop[src][dst]: the neighbour of src on a fewest-hops path to dst (reachable dsts only)."""
    adj: dict[str, list[str]] = {d: [] for d in devices}
    for link in links:
        a, b = link.ends
        adj[a].append(b)
        adj[b].append(a)
    hops: dict[str, dict[str, str]] = {}
    for src in devices:
        first: dict[str, str] = {}
        queue = collections.deque()
        for n in adj[src]:
            if n not in first:
                first[n] = n
                queue.append(n)
        while queue:
            u = queue.popleft()
            for n in adj[u]:
                if n != src and n not in first:
                    first[n] = first[u]
                    queue.append(n)
        hops[src] = first
    return hops


class Topology:
    """Namespaces, veths, qdiscs and routes for `devices` and `links`, for one `with` block."""

    def __init__(self, devices: Sequence[str], links: Sequence[NetLink], *, delay: str = "auto",
                 state_dir: str | os.PathLike = STATE_DIR, subnet: str | ipaddress.IPv4Network = SUBNET,
                 handle_signals: bool = True) -> None:
        if delay not in ("auto", "netem", "user"):
            raise UsageError(f"delay must be auto, netem or user, got {delay!r}")
        self.devices = list(devices)
        self.links = list(links)
        if len(set(self.devices)) != len(self.devices) or not self.devices:
            raise UsageError(f"devices must be distinct and at least one: {self.devices}")
        pairs = set()
        for link in self.links:
            for end in link.ends:
                if end not in self.devices:
                    raise UsageError(f"link {link.ends[0]}-{link.ends[1]}: unknown device {end!r}")
            pair = frozenset(link.ends)
            if pair in pairs:
                raise UsageError(f"two links between {link.ends[0]} and {link.ends[1]}")
            pairs.add(pair)
        net = ipaddress.IPv4Network(subnet)
        blocks = list(net.subnets(new_prefix=24)) if net.prefixlen <= 24 else []
        if len(blocks) < len(self.links) + 1 or len(self.devices) > 254:
            raise UsageError(f"subnet {net} too small for {len(self.devices)} devices and {len(self.links)} links")
        self._host = {d: blocks[0][i + 1] for i, d in enumerate(self.devices)}
        self._veth = [(blocks[k + 1][1], blocks[k + 1][2]) for k in range(len(self.links))]
        self.prefix = f"{NS_PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
        self._ns = {d: f"{self.prefix}-{i}-{_NAME_OK.sub('_', d)[:24]}" for i, d in enumerate(self.devices)}
        self._next_hop = _shortest_next_hops(self.devices, self.links)
        self._delay_request = delay
        self.delay_mode = "none"
        self.state_path = Path(state_dir) / f"{self.prefix}.json"
        self._handle_signals = handle_signals
        self._old_handlers: dict[int, Any] = {}
        self._open = False
        # Re-entrant: a signal handled inside close() runs close() again, which finishes the job.
        self._closing = threading.RLock()

    # --- what callers read ------------------------------------------------------------

    def namespace(self, device: str) -> str:
        return self._ns[device]

    def address(self, device: str) -> str:
        """The address at which every device connected to `device` reaches it."""
        return str(self._host[device])

    def exec_prefix(self, device: str) -> list[str]:
        """Command prefix that runs a program inside `device`'s namespace."""
        return ["ip", "netns", "exec", self._ns[device]]

    def link_between(self, a: str, b: str) -> NetLink:
        for link in self.links:
            if set(link.ends) == {a, b}:
                return link
        raise UsageError(f"no link between {a} and {b}")

    def path(self, src: str, dst: str) -> list[str]:
        """Devices from src to dst along the routes (src and dst included)."""
        if src == dst:
            return [src]
        if dst not in self._next_hop[src]:
            raise UsageError(f"{dst} cannot be reached from {src}: the links do not connect them")
        hops = [src]
        while hops[-1] != dst:
            hops.append(self._next_hop[hops[-1]][dst])
        return hops

    def user_delay_s(self, src: str, dst: str) -> float:
        """One-way delay the runtime must add itself from src to dst (0 when netem does it)."""
        if self.delay_mode != "user":
            return 0.0
        hops = self.path(src, dst)
        return sum(self.link_between(a, b).rtt_ms for a, b in zip(hops, hops[1:])) / 2000.0

    @property
    def shaper(self) -> str:
        """The value of the runtime's `shaper` column."""
        return SHAPER_NETNS_USER_DELAY if self.delay_mode == "user" else SHAPER_NETNS

    def tbf(self, src: str, dst: str) -> TbfParams:
        """tbf settings of the direction src -> dst of their link."""
        return tbf_params(self.link_between(src, dst).rate_mbps(src))

    def change_link(self, k: int, up_mbps: float, down_mbps: float, rtt_ms: float | None = None) -> NetLink:
        """Change link k's rates in place (`tc qdisc change`: no packet is dropped, the queue
        stays) and, with netem, its delay; None keeps the rtt. A link made without delay gets
        none from here: with delays in user space (`delay_mode` user) the runtime adds them."""
        old = self.links[k]
        new = NetLink(old.ends, up_mbps, down_mbps, old.rtt_ms if rtt_ms is None else rtt_ms)
        netem = self.delay_mode == "netem" and old.rtt_ms > 0
        if self.delay_mode == "netem" and new.rtt_ms != old.rtt_ms and not netem:
            raise ShaperError(f"link {old.ends[0]}-{old.ends[1]} was made without delay; its rtt cannot change")
        dev = f"l{k}"
        for end in old.ends:
            ns = self._ns[end]
            tbf = tbf_params(new.rate_mbps(end)).tc_args()
            if netem:
                _cmd(["tc", "-n", ns, "qdisc", "change", "dev", dev, "parent", "1:1", "handle", "10:", *tbf])
                if new.rtt_ms != old.rtt_ms:
                    _cmd(["tc", "-n", ns, "qdisc", "change", "dev", dev, "root", "handle", "1:", "netem",
                          "delay", f"{new.rtt_ms / 2:g}ms", "limit", "100000"])
            else:
                _cmd(["tc", "-n", ns, "qdisc", "change", "dev", dev, "root", "handle", "1:", *tbf])
        self.links[k] = new
        log.info("netns: link %s-%s now %g/%g Mbps, rtt %g ms", *new.ends, new.up_mbps, new.down_mbps, new.rtt_ms)
        return new

    # --- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> "Topology":
        cleanup_stale(self.state_path.parent)
        atomic_write_text(self.state_path, json.dumps({
            "prefix": self.prefix, "pid": os.getpid(), "start": _process_start(os.getpid()),
            "namespaces": list(self._ns.values()), "created_unix_s": time.time()}, indent=1) + "\n")
        self._open = True
        self._install_handlers()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the namespaces (their veths and qdiscs go with them) and the state file."""
        # A second signal during clean-up must not interrupt it half-way.
        blocked = threading.current_thread() is threading.main_thread()
        if blocked:
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _TERM_SIGNALS)
        try:
            with self._closing:
                if not self._open:
                    return
                ours = [n for n in list_namespaces() if n.startswith(self.prefix + "-")]
                _delete_namespaces(dict.fromkeys([*self._ns.values(), *ours]))
                self.state_path.unlink(missing_ok=True)
                self._open = False
                self._restore_handlers()
                log.info("netns: removed %d namespaces of %s", len(self._ns), self.prefix)
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _install_handlers(self) -> None:
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in _TERM_SIGNALS:
            old = signal.getsignal(sig)
            if old is signal.SIG_IGN:
                continue
            self._old_handlers[sig] = old
            signal.signal(sig, self._on_signal)

    def _restore_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        old = self._old_handlers.get(signum)
        log.warning("netns: %s: removing the namespaces of %s", signal.Signals(signum).name, self.prefix)
        self.close()
        if callable(old):
            old(signum, frame)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    # --- set-up -----------------------------------------------------------------------

    def _create(self) -> None:
        for d in self.devices:
            ns = self._ns[d]
            _cmd(["ip", "netns", "add", ns])
            _cmd(["ip", "-n", ns, "link", "set", "lo", "up"])
            # gloo binds to the first address of GLOO_SOCKET_IFNAME: with 127.0.0.1 gone, the host address
            _cmd(["ip", "-n", ns, "addr", "del", "127.0.0.1/8", "dev", "lo"])
            _cmd(["ip", "-n", ns, "addr", "add", f"{self._host[d]}/32", "dev", "lo"])
        self.delay_mode = self._choose_delay()
        for k, link in enumerate(self.links):
            self._create_link(k, link)
        for d in self.devices:
            self._create_routes(d)
        log.info("netns: %d namespaces (%s), %d links, delay %s", len(self.devices), self.prefix,
                 len(self.links), self.delay_mode)

    def _choose_delay(self) -> str:
        if self._delay_request == "user":
            mode = "user"  # asked for: also where every rtt is 0 now (a schedule may change them)
        elif not any(link.rtt_ms > 0 for link in self.links):
            return "none"
        else:
            ns = self._ns[self.devices[0]]
            probe = _cmd(["tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], check=False)
            if probe.returncode == 0:
                _cmd(["tc", "-n", ns, "qdisc", "del", "dev", "lo", "root"])
                mode = "netem"
            elif self._delay_request == "netem":
                raise ShaperError(f"netem is not in this kernel: {probe.stderr.strip()}")
            else:
                mode = "user"
        if mode == "user":
            log.warning("netns: link delays are added in user space (%s), not by the kernel",
                        "asked for" if self._delay_request == "user" else "this kernel has no netem")
        return mode

    def _create_link(self, k: int, link: NetLink) -> None:
        dev = f"l{k}"
        ns = [self._ns[e] for e in link.ends]
        _cmd(["ip", "link", "add", dev, "netns", ns[0], "mtu", str(MTU), "type", "veth",
              "peer", "name", dev, "netns", ns[1], "mtu", str(MTU)])
        for i, end in enumerate(link.ends):
            _cmd(["ip", "-n", ns[i], "addr", "add", f"{self._veth[k][i]}/30", "dev", dev])
            _cmd(["ip", "-n", ns[i], "link", "set", dev, "up"])
            tbf = tbf_params(link.rate_mbps(end)).tc_args()
            if self.delay_mode == "netem" and link.rtt_ms > 0:
                # netem delays, then hands packets to its child, the tbf that sets the rate.
                _cmd(["tc", "-n", ns[i], "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem",
                      "delay", f"{link.rtt_ms / 2:g}ms", "limit", "100000"])
                _cmd(["tc", "-n", ns[i], "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", *tbf])
            else:
                _cmd(["tc", "-n", ns[i], "qdisc", "add", "dev", dev, "root", "handle", "1:", *tbf])

    def _create_routes(self, device: str) -> None:
        ns = self._ns[device]
        own = self._host[device]
        relays = sum(device in link.ends for link in self.links) >= 2
        if relays:
            _cmd(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for dst, via in self._next_hop[device].items():
            k = self.links.index(self.link_between(device, via))
            gateway = self._veth[k][self.links[k].ends.index(via)]
            _cmd(["ip", "-n", ns, "route", "add", f"{self._host[dst]}/32", "via", str(gateway),
                  "dev", f"l{k}", "src", str(own)])


# --- the probe -------------------------------------------------------------------------

PROBE_PORT = 5201
# The rate is taken over the bytes after this share of the transfer: the tbf burst and
# TCP's slow start are over by then.
PROBE_SKIP_SHARE = 0.1


@dataclass(frozen=True)
class ProbeResult:
    """Achieved payload rate of one TCP transfer src -> dst."""

    src: str
    dst: str
    configured_mbps: float  # the bottleneck of the route
    payload_bytes: int
    achieved_mbps: float  # payload rate after the first PROBE_SKIP_SHARE of the bytes
    total_s: float  # first to last byte at the receiver

    @property
    def error(self) -> float:
        return self.achieved_mbps / self.configured_mbps - 1.0


def _receive(port: int, host: str) -> dict[str, float]:
    """Accept one connection; time its bytes. Runs inside the receiving namespace."""
    with socket.create_server((host, port)) as server:
        print("ready", flush=True)
        server.settimeout(60)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(60)
            got = 0
            marks: list[tuple[float, int]] = []
            buf = bytearray(1 << 16)
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                got += n
                marks.append((time.perf_counter(), got))
    if not marks:
        return {"bytes": 0, "mbps": 0.0, "total_s": 0.0}
    skip = next(i for i, (_, b) in enumerate(marks) if b >= PROBE_SKIP_SHARE * got)
    (t0, b0), (t1, b1) = marks[skip], marks[-1]
    mbps = (b1 - b0) * 8 / ((t1 - t0) * 1e6) if t1 > t0 else 0.0
    return {"bytes": got, "mbps": mbps, "total_s": t1 - marks[0][0]}


def _send(host: str, port: int, nbytes: int) -> None:
    """Send `nbytes` to host:port. Runs inside the sending namespace."""
    chunk = bytes(1 << 16)
    with socket.create_connection((host, port), timeout=60) as s:
        left = nbytes
        while left > 0:
            n = min(left, len(chunk))
            s.sendall(chunk[:n] if n < len(chunk) else chunk)
            left -= n


def _worker_cmd(topo: Topology, device: str, *args: str) -> list[str]:
    return [*topo.exec_prefix(device), sys.executable, "-m", "dime.run.links.netns", *args]


def probe_rate(topo: Topology, src: str, dst: str, nbytes: int, port: int = PROBE_PORT) -> ProbeResult:
    """Send `nbytes` over TCP from src to dst (separate processes in their namespaces)."""
    hops = topo.path(src, dst)
    configured = min(topo.link_between(a, b).rate_mbps(a) for a, b in zip(hops, hops[1:]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_repo_root(), os.environ.get("PYTHONPATH")]))}
    recv = subprocess.Popen(_worker_cmd(topo, dst, "_recv", topo.address(dst), str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        if recv.stdout is None or recv.stdout.readline().strip() != "ready":
            raise ShaperError(f"probe receiver in {dst} did not start: {recv.stderr.read().strip() if recv.stderr else ''}")
        send = subprocess.run(_worker_cmd(topo, src, "_send", topo.address(dst), str(port), str(nbytes)),
                              capture_output=True, text=True, env=env, timeout=300)
        if send.returncode != 0:
            raise ShaperError(f"probe sender in {src} failed: {send.stderr.strip()}")
        out, err = recv.communicate(timeout=60)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    if recv.returncode != 0:
        raise ShaperError(f"probe receiver in {dst} failed: {err.strip()}")
    res = json.loads(out)
    if res["bytes"] != nbytes:
        raise ShaperError(f"probe {src}->{dst}: received {res['bytes']} of {nbytes} bytes")
    return ProbeResult(src, dst, configured, nbytes, res["mbps"], res["total_s"])


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[3])


def _worker_main(argv: Sequence[str]) -> int:
    if argv[:1] == ["_recv"] and len(argv) == 3:
        print(json.dumps(_receive(int(argv[2]), argv[1])), flush=True)
        return 0
    if argv[:1] == ["_send"] and len(argv) == 4:
        _send(argv[1], int(argv[2]), int(argv[3]))
        return 0
    print("usage: python -m dime.run.links.netns _recv HOST PORT | _send HOST PORT BYTES", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
