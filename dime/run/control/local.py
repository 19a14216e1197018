"""Every device on this machine: the local launcher of `python -m dime.run local` (no torch).

Each device runs as its own `python -m dime.run` process, pinned to its own cores, and gets
its DeviceOptions as a JSON file. With `--shaper user` they meet on 127.0.0.1 and the links
are emulated in user space; with `--shaper netns` each runs in a network namespace of its
own, joined to its neighbours by veth pairs whose rates the kernel sets (dime.run.links.netns),
one topology per network (a two-device run over several links runs once per link, each run
appending its rows to --out and its outputs to --outputs).

Interrupted (SIGINT, SIGTERM), the launcher ends every device (SIGTERM, then SIGKILL after
GRACE_ON_EXIT_S) and removes its namespaces, ending whatever still runs inside them first;
killed outright, it leaves both to the next kernel-shaped run (dime.run.links.netns.cleanup_stale).

A --link-schedule over kernel-shaped links is the launcher's to apply: the source writes the
schedule's start into a clock file once it has warmed up (CLOCK_MONOTONIC, which every process on
this machine shares, namespaces or not), and a thread of the launcher changes the tbf qdiscs in
place at the scheduled seconds from then (`tc qdisc change`). Scheduled rtts are added in user
space by the devices (netns+user-delay), which follow the schedule from the same start.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from dime.errors import DimeError, UsageError
from dime.fileio import atomic_write_text, check_input_file
from dime.run.links import SHAPER_NETNS, SHAPER_USER
from dime.run.links.schedule import Schedule, resolve_named
from dime.run.options import ConnectOptions, DeviceOptions, LocalOptions, ProcessOptions, RunOptions
from dime.run.placements import precheck_plan, precheck_source, read_plan

log = logging.getLogger("dime.run")

DEVICE_OPTIONS_FLAG = "--device-options"  # the launcher's private way to start a device process
SHAPER_CHOICES = ("auto", SHAPER_USER, SHAPER_NETNS)
# after the source finished, or a device failed: how long the others get to end by themselves
GRACE_AFTER_SOURCE_S = 10.0
GRACE_AFTER_FAILURE_S = 5.0
GRACE_ON_EXIT_S = 3.0  # the launcher interrupted: how long the devices get to end after SIGTERM


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
    stopped_at: float | None = None  # when the launcher terminated it: its own errors are not first-hand
    killed: bool = False

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    def stop(self) -> None:
        """SIGTERM once; SIGKILL when it is still there GRACE_ON_EXIT_S later (a wait in C++)."""
        if self.proc.poll() is not None:
            return
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
            self.proc.terminate()
        elif not self.killed and time.monotonic() - self.stopped_at > GRACE_ON_EXIT_S:
            log.warning("%s did not end within %g s of SIGTERM: killed", self.name, GRACE_ON_EXIT_S)
            self.killed = True
            self.proc.kill()


def _relay(stream: Any, errors: list[str], prefix: str) -> None:
    """Pass a child's stderr on, keeping back its `error:` lines for one final message."""
    for line in iter(stream.readline, ""):
        if line.startswith("error:"):
            errors.append(line[len("error:"):].strip())
        else:
            sys.stderr.write(prefix + line)
            sys.stderr.flush()
    stream.close()


def _spawn(name: str, options: Path, verbose: int, env: dict[str, str], prefix: str,
           exec_prefix: Sequence[str] = ()) -> _Child:
    level = ["-q"] if verbose < 0 else ["-v"] * verbose
    proc = subprocess.Popen([*exec_prefix, sys.executable, "-m", "dime.run", DEVICE_OPTIONS_FLAG, str(options), *level],
                            env=env, stderr=subprocess.PIPE, text=True, bufsize=1)
    errors: list[str] = []
    t = threading.Thread(target=_relay, args=(proc.stderr, errors, prefix), daemon=True)
    t.start()
    return _Child(name, proc, errors, t)


def default_cores(devices: Sequence[tuple[str, ProcessOptions]], computing: set[str] | None = None
                  ) -> list[tuple[str, ProcessOptions]]:
    """When no device is pinned: one core each for the devices that compute, round robin (edge on
    core 0 and cloud on core 1 for two devices on two cores); devices that only relay stay unpinned."""
    if any(p.cores is not None for _, p in devices):
        return list(devices)
    pinned = [name for name, _ in devices if computing is None or name in computing]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if len(cores) < 2:
        log.warning("one CPU core only: the devices share it, timings will interfere")
        return list(devices)
    if len(pinned) > len(cores):
        log.warning("%d computing devices on %d cores: some share a core (give --cores NAME=LIST to choose)",
                    len(pinned), len(cores))
    return [(name, dataclasses.replace(p, cores=(cores[pinned.index(name) % len(cores)],)) if name in pinned else p)
            for name, p in devices]


def computing_devices(opts: LocalOptions) -> set[str] | None:
    """The devices that run a bundle in this run, where that is known without the model (a plan
    file, or a system file's relays); None: all of them may."""
    plan_opts = opts.run.plan
    if plan_opts.plan is not None:
        plan = read_plan(plan_opts.plan)
        return {plan.device_names[d] for d in plan.computing_devices()}
    if plan_opts.system is not None:
        from dime.plan.system import load_system

        return {d.name for d in load_system(plan_opts.system).devices if d.compute}
    return None


def choose_shaper(requested: str) -> str:
    """`user` or `netns` for --shaper auto|user|netns; netns asked for where it cannot run is an error."""
    if requested not in SHAPER_CHOICES:
        raise UsageError(f"--shaper {requested!r}: choose from {', '.join(SHAPER_CHOICES)}")
    if requested == SHAPER_USER:
        return SHAPER_USER
    from dime.run.links.netns import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return SHAPER_NETNS
    if requested == SHAPER_NETNS:
        raise UsageError(f"--shaper netns: {reason}")
    log.warning("links emulated in user space (--shaper user): %s", reason)
    return SHAPER_USER


def run_local(opts: LocalOptions) -> None:
    """Run every device as a child process on this machine; raise DimeError with one line if
    one fails."""
    precheck_source(opts.run, opts.model.name)  # bad options fail here, before any process starts
    precheck_plan(opts.run.plan, opts.model.name)
    if opts.model.weights is not None:
        check_input_file(opts.model.weights, "weights file")  # each device reads it, after starting
    names = [name for name, _ in opts.devices]
    if opts.source not in names:
        raise UsageError(f"the source {opts.source!r} is not one of the devices ({', '.join(names)})")
    shaper = choose_shaper(opts.shaper)
    with tempfile.TemporaryDirectory(prefix="dime-run-") as tmp:
        for i, run in enumerate(_runs_per_network(opts, shaper, Path(tmp))):
            # rows are appended to --out; the outputs of every run go to the same --outputs file
            run = dataclasses.replace(run, outputs_append=i > 0)
            _run_once(dataclasses.replace(opts, run=run), shaper, Path(tmp) / f"run-{i}")


def _runs_per_network(opts: LocalOptions, shaper: str, tmp: Path) -> Iterator[RunOptions]:
    """The runs to make: one, or with kernel shaping one per network (a topology has one set of rates)."""
    plan_opts = opts.run.plan
    if shaper != SHAPER_NETNS or plan_opts.system is not None:
        yield opts.run
        return
    if plan_opts.plan is not None:
        plan = read_plan(plan_opts.plan)
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(plan.configs):
            groups.setdefault(repr(c.network), []).append(i)
        if len(groups) == 1:
            yield opts.run
            return
        for k, idx in enumerate(groups.values()):
            path = tmp / f"plan-{k}.json"
            atomic_write_text(path, dataclasses.replace(plan, configs=tuple(plan.configs[i] for i in idx)).to_json())
            yield dataclasses.replace(opts.run, plan=dataclasses.replace(plan_opts, plan=path))
        return
    for link in plan_opts.links:
        yield dataclasses.replace(opts.run, plan=dataclasses.replace(plan_opts, links=(link,)))


class _ScheduleDriver:
    """The launcher's thread that changes kernel-shaped links at the scheduled times."""

    def __init__(self, topo: Any, schedule: Schedule, clock_file: Path) -> None:
        self.topo, self.schedule, self.clock_file = topo, schedule, clock_file
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dime-schedule", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self.clock_file.exists():
                if self._stop.wait(0.02):
                    return
            t0 = float(self.clock_file.read_text())
            steps = sorted((c.at_s, i, c) for i, changes in self.schedule for c in changes)
            for at_s, i, change in steps:
                if self._stop.wait(max(0.0, t0 + at_s - time.monotonic())):
                    return
                self.topo.change_link(i, change.uplink_mbps, change.downlink_mbps, change.rtt_ms)
                log.info("schedule: %.3f s in, link %s now %s", time.monotonic() - t0, "-".join(self.topo.links[i].ends),
                         change.text().split(":", 1)[1])
        except BaseException as e:  # the supervisor ends the run with it
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _network_of(opts: LocalOptions) -> tuple[list[str], list[Any]]:
    """The devices and the netns links of the (one) network a run uses."""
    from dime.run.links.netns import NetLink

    plan_opts = opts.run.plan
    names = [name for name, _ in opts.devices]
    if plan_opts.system is not None:
        from dime.plan.system import load_system

        system = load_system(plan_opts.system)
        return names, [NetLink.from_link(lk.ends[0], lk.ends[1], lk.link) for lk in system.links]
    if plan_opts.plan is not None:
        plan = read_plan(plan_opts.plan)
        net = plan.configs[0].network
        return names, [NetLink.from_link(names[nl.a], names[nl.b], nl.link) for nl in net.links]
    (link,) = plan_opts.links
    return names, [NetLink.from_link(names[0], names[1], link)]


def _run_once(opts: LocalOptions, shaper: str, tmp: Path) -> None:
    tmp.mkdir()
    env = dict(os.environ)
    driver: _ScheduleDriver | None = None
    clock_file = tmp / "clock"
    with ExitStack() as stack:
        if shaper == SHAPER_NETNS:
            from dime.run.links.netns import GLOO_IFNAME, Topology

            names, links = _network_of(opts)
            schedule = resolve_named(opts.run.plan.schedule, ["-".join(lk.ends) for lk in links])
            # a scheduled rtt: the devices add the delays, from the schedule (the kernel's netem cannot start late)
            rtts = any(c.rtt_ms is not None for _, changes in schedule for c in changes)
            topo = stack.enter_context(Topology(names, links, delay="user" if rtts else "auto"))
            if schedule:
                driver = _ScheduleDriver(topo, schedule, clock_file)
                stack.callback(driver.stop)
            host, device_shaper = topo.address(opts.source), topo.shaper
            port = opts.port or 29500
            env["GLOO_SOCKET_IFNAME"] = GLOO_IFNAME
            exec_prefix = {name: topo.exec_prefix(name) for name in names}
            log.info("local run: kernel-shaped links (%s), devices in namespaces %s-*", device_shaper, topo.prefix)
        else:
            host, device_shaper, port = "127.0.0.1", SHAPER_USER, opts.port or free_port()
            # keep gloo's sockets on loopback, whatever the host name resolves to
            if "GLOO_SOCKET_IFNAME" not in env and "lo" in {name for _, name in socket.if_nameindex()}:
                env["GLOO_SOCKET_IFNAME"] = "lo"
            exec_prefix = {}
        children = _start(opts, ConnectOptions(host, port, opts.timeout_s, opts.op_timeout_s), device_shaper,
                          env, exec_prefix, tmp, clock_file if driver is not None else None)
        _supervise(children, opts.source, driver)
        _raise_first_failure(children, opts.source)


def _start(opts: LocalOptions, conn: ConnectOptions, shaper: str, env: dict[str, str],
           exec_prefix: dict[str, list[str]], tmp: Path, clock_file: Path | None = None) -> list[_Child]:
    devices = default_cores(opts.devices, computing_devices(opts))
    log.info("local run: %s; rendezvous %s", ", ".join(
        f"{name} on cores {p.cores or 'any'} ({p.threads} thread(s))" for name, p in devices), conn.address)
    children: list[_Child] = []
    try:
        # the source first: it reports; the others are quieter and say who they are
        for name, proc in sorted(devices, key=lambda d: d[0] != opts.source):
            source = name == opts.source
            options = DeviceOptions(name, opts.model, conn, proc, opts.run if source else RunOptions(), source,
                                    shaper, clock_file if source else None)
            path = tmp / f"{name}.json"
            atomic_write_text(path, options.to_json())
            children.append(_spawn(name, path, opts.verbose if source else opts.verbose - 1, env,
                                   "" if source else f"[{name}] ", exec_prefix.get(name, ())))
    except BaseException:
        _end_all(children)  # a device that could not be started: none of the others is left running
        raise
    return children


def _supervise(children: Sequence[_Child], source: str, driver: _ScheduleDriver | None = None) -> None:
    """Wait for every device; stop the others when the source failed or finished, or a device
    failed, so that none is left hanging; stop them all when the links cannot follow the schedule."""
    src = next(c for c in children if c.name == source)
    others = [c for c in children if c is not src]
    failed_at: float | None = None
    done_at: float | None = None
    try:
        while None in [c.proc.poll() for c in children]:  # poll every child: it sets returncode
            time.sleep(0.05)
            if driver is not None and driver.error is not None:
                _end_all(children)
                raise DimeError(f"the link schedule: {driver.error}")
            if src.proc.returncode not in (None, 0):
                # the source failed first-hand (or gave up on a device): nothing left to serve
                for c in others:
                    c.stop()
            if any(c.proc.returncode not in (None, 0) for c in others):
                # the source notices a lost device at its next message; this is a backstop
                failed_at = failed_at or time.monotonic()
                if time.monotonic() - failed_at > GRACE_AFTER_FAILURE_S:
                    for c in children:
                        c.stop()
            if src.proc.returncode == 0:
                # the source said goodbye; a device still running after that is stuck
                done_at = done_at or time.monotonic()
                if time.monotonic() - done_at > GRACE_AFTER_SOURCE_S:
                    for c in others:
                        c.stop()
    except BaseException:
        _end_all(children)
        raise
    for c in children:
        c.thread.join(timeout=5)


def _end_all(children: Sequence[_Child], grace_s: float = GRACE_ON_EXIT_S) -> None:
    """Terminate every device still running; kill those that outlive `grace_s`."""
    for c in children:
        if c.proc.poll() is None:
            c.proc.terminate()
    deadline = time.monotonic() + grace_s
    for c in children:
        try:
            c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not end within %g s of SIGTERM: killed", c.name, grace_s)
            c.proc.kill()
            c.proc.wait()


def _raise_first_failure(children: Sequence[_Child], source: str) -> None:
    bad = [c for c in children if c.proc.returncode != 0]
    if not bad:
        return
    if next(c for c in children if c.name == source).proc.returncode == 0:
        # the source measured everything and said goodbye: a device that ended badly after that (one the
        # plan did not need, which found the rendezvous closed) changes no result
        for c in bad:
            log.warning("%s ended with code %s after the source finished%s", c.name, c.proc.returncode,
                        f": {c.errors[-1]}" if c.errors else "")
        return
    # A device killed by a signal the launcher did not send writes no line; its neighbours then each
    # report losing the next one, so its own death is the first failure. Then prefer the device that
    # failed first-hand over those that only lost a peer or gave up.
    killed = [c for c in bad if c.proc.returncode < 0 and not c.stopped]
    second_hand = ("lost device", "the source gave up", "lost the source")
    first_hand = [c for c in bad if c.errors and not c.stopped and not c.errors[-1].startswith(second_hand)]
    pick = (killed or first_hand or [c for c in bad if c.errors] or bad)[0]
    if pick in killed or not pick.errors:
        raise DimeError(f"{pick.name}: {exit_text(pick.proc.returncode)}")
    what = pick.errors[-1]
    raise DimeError(f"{pick.name}: {what}" if pick.name != source else what)


def exit_text(returncode: int) -> str:
    """`exited with code 3`, or `exited by signal 9 (SIGKILL)` for a negative return code."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = f" ({signal.Signals(-returncode).name})"
    except ValueError:
        name = ""
    return f"exited by signal {-returncode}{name}"
