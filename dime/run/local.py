"""Both roles on this machine: the local launcher of `python -m dime.run local` (no torch).

Each role runs as its own `python -m dime.run` process, pinned to its own cores, and
gets its RoleOptions as a JSON file; they meet on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from dime.errors import DimeError
from dime.fileio import atomic_write_text
from dime.run.options import (
    CLOUD_ROLE,
    EDGE_ROLE,
    ConnectOptions,
    LocalOptions,
    ProcessOptions,
    RoleOptions,
)
from dime.run.plan import precheck_edge

log = logging.getLogger("dime.run")

ROLE_OPTIONS_FLAG = "--role-options"  # the launcher's private way to start a role process


def free_port(host: str = "127.0.0.1") -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen
    errors: list[str]
    thread: threading.Thread
    stopped: bool = False  # terminated by the launcher: its own errors are not first-hand

    def stop(self) -> None:
        self.stopped = True
        self.proc.terminate()


def _relay(stream: Any, errors: list[str], prefix: str) -> None:
    """Pass a child's stderr on, keeping back its `error:` lines for one final message."""
    for line in iter(stream.readline, ""):
        if line.startswith("error:"):
            errors.append(line[len("error:"):].strip())
        else:
            sys.stderr.write(prefix + line)
            sys.stderr.flush()
    stream.close()


def _spawn(name: str, options: Path, verbose: int, env: dict[str, str], prefix: str) -> _Child:
    level = ["-q"] if verbose < 0 else ["-v"] * verbose
    proc = subprocess.Popen([sys.executable, "-m", "dime.run", ROLE_OPTIONS_FLAG, str(options), *level], env=env,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    errors: list[str] = []
    t = threading.Thread(target=_relay, args=(proc.stderr, errors, prefix), daemon=True)
    t.start()
    return _Child(name, proc, errors, t)


def default_cores(edge: ProcessOptions, cloud: ProcessOptions) -> tuple[ProcessOptions, ProcessOptions]:
    """Core 0 for the edge and 1 for the cloud when neither is pinned and there are two."""
    if edge.cores is not None or cloud.cores is not None:
        return edge, cloud
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if len(cores) < 2:
        log.warning("one CPU core only: the edge and the cloud share it, timings will interfere")
        return edge, cloud
    return (ProcessOptions(edge.threads, (cores[0],), edge.torch_device),
            ProcessOptions(cloud.threads, (cores[1],), cloud.torch_device))


def role_options(opts: LocalOptions, port: int) -> tuple[RoleOptions, RoleOptions]:
    edge_proc, cloud_proc = default_cores(opts.edge, opts.cloud)
    conn = ConnectOptions("127.0.0.1", port, opts.timeout_s, opts.op_timeout_s)
    return (RoleOptions(EDGE_ROLE, opts.model, conn, edge_proc, opts.run),
            RoleOptions(CLOUD_ROLE, opts.model, conn, cloud_proc))


def run_local(opts: LocalOptions) -> None:
    """Run the edge and the cloud as two child processes on 127.0.0.1; raise DimeError with
    one line if either fails."""
    precheck_edge(opts.run, opts.model.name)  # bad options fail here, before any process starts
    edge, cloud = role_options(opts, opts.port or free_port())
    env = dict(os.environ)
    # keep gloo's sockets on loopback, whatever the host name resolves to
    if "GLOO_SOCKET_IFNAME" not in env and "lo" in {name for _, name in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"
    log.info("local run: edge on cores %s (%d thread(s)), cloud on cores %s (%d thread(s)), rendezvous %s",
             edge.process.cores or "any", edge.process.threads, cloud.process.cores or "any",
             cloud.process.threads, edge.connect.address)
    with tempfile.TemporaryDirectory(prefix="dime-run-") as tmp:
        paths = []
        for o in (edge, cloud):
            path = Path(tmp) / f"{o.role}.json"
            atomic_write_text(path, o.to_json())
            paths.append(path)
        children = [_spawn("edge", paths[0], opts.verbose, env, ""),
                    _spawn("cloud", paths[1], opts.verbose - 1, env, "[cloud] ")]  # the edge reports
        _supervise(children)
    _raise_first_failure(children)


def _supervise(children: Sequence[_Child]) -> None:
    """Wait for both; stop one whose peer failed or finished, so that none is left hanging."""
    edge_child, cloud_child = children
    cloud_failed_at: float | None = None
    edge_done_at: float | None = None
    try:
        while None in [c.proc.poll() for c in children]:  # poll every child: it sets returncode
            time.sleep(0.05)
            if edge_child.proc.returncode not in (None, 0) and cloud_child.proc.poll() is None:
                # the edge failed first-hand (or gave up on the cloud): nothing left to serve
                cloud_child.stop()
            if cloud_child.proc.returncode not in (None, 0) and edge_child.proc.poll() is None:
                # the edge notices the closed connection at its next message; this is a backstop
                cloud_failed_at = cloud_failed_at or time.monotonic()
                if time.monotonic() - cloud_failed_at > 5:
                    edge_child.stop()
            if edge_child.proc.returncode == 0 and cloud_child.proc.poll() is None:
                # the edge said goodbye; a cloud still running after that is stuck
                edge_done_at = edge_done_at or time.monotonic()
                if time.monotonic() - edge_done_at > 10:
                    cloud_child.stop()
    except BaseException:
        for c in children:
            if c.proc.poll() is None:
                c.proc.terminate()
        for c in children:
            c.proc.wait()
        raise
    for c in children:
        c.thread.join(timeout=5)


def _raise_first_failure(children: Sequence[_Child]) -> None:
    bad = [c for c in children if c.proc.returncode != 0]
    if not bad:
        return
    # Prefer the side that failed first-hand over the one that only lost its peer.
    first_hand = [c for c in bad if c.errors and not c.stopped and not c.errors[-1].startswith("lost the ")]
    pick = (first_hand or [c for c in bad if c.errors] or bad)[0]
    what = pick.errors[-1] if pick.errors else f"exited with code {pick.proc.returncode}"
    raise DimeError(f"{pick.name}: {what}" if pick.name == "cloud" or not pick.errors else what)
