"""One device's part of one placement, as threads that pass queries along (the data plane).

For its part of a Program (dime.run.data.program) a device runs:

- a receiver per incoming stream: posts the next receive at once (gloo moves a message only
  once the receiver has posted it, so an eager receiver keeps the link busy), stamps the
  arrival and the time from which the data may be used (arrival + the link's rtt/2 when
  delays are added in user space, the rtt of that moment where a schedule changes it), and
  queues it for its task;
- a worker per task: takes the next query, waits until it may be used, runs the task's
  bundles and packs the result into a buffer of the outgoing stream, or, on a relay, hands
  the received buffer on as it is;
- a sender per outgoing stream: sends buffers in order, paced to the link's wire time when
  the link is emulated in user space (dime.run.links.linkemu: two messages per transfer, at the
  link's rate of the moment, dime.run.links.schedule.LinkView), else as one message (the kernel
  shapes the link).

With `on_transfer` or `report_to` (a run with --adapt) the device also times every transfer
it takes part in, for the source's rate estimates (dime.run.links.estimate), with no extra
traffic on the links:

- a paced direction (user-space emulation) is timed by its sender: the pacer holds the
  direction for the wire time at the rate of that moment, and that is the wire time. Not the
  real send's time where it took longer (an overrun): with queries in flight that is mostly
  gloo waiting for the receiver to post its receive (back-pressure), not a slower link, and
  it sent the estimates of a 1000 Mbps link down to 10 Mbps;
- a kernel-shaped (or real) direction is timed by its receiver: from when the sender began
  (stamped into the header; one CLOCK_MONOTONIC, so every device on this machine, as `dime.run
  local` runs them), or when the receive was posted (gloo sends nothing before), or when the
  direction's previous transfer arrived (a transfer queued behind another), whichever is
  latest, until the receive completes, less the kernel's rtt/2 (netem). gloo's blocking send
  says nothing here: it returns once the bytes are in the socket's buffers, which hold more
  than most cuts. Transfers under MIN_TIMED_BYTES are not timed: a tbf burst leaves at line rate.

The source passes its records to `on_transfer`; every other device sends them to the source
(dime.run.data.reports), whose pipeline receives them (`collect_from`).

Every stream is FIFO and carries the query id, so queries keep their order without any
other coordination; up to `in_flight` queries are in the chain at once (each stream has
that many buffers and one more). The source injects queries (`submit`) and an END after
the last; END travels the chain like a query and stops every thread it passes. The first
error in any thread stops the device: `join` raises it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from dime.core.network import Network
from dime.run.data.compute import CPU, bundle_modules, run_modules, sync, to_device
from dime.run.data.peer import Group, PeerError
from dime.run.data.program import Program, Stream, Task
from dime.run.data.reports import REPORT_BATCH, REPORT_EVERY_S, REPORT_LEN, REPORT_TAG, pack_report, unpack_report
from dime.run.data.wire import DATA_END, DATA_RUN, STREAM_TAG, TAIL_BYTES, CutLayout, sent_ns, stamp
from dime.run.links.estimate import Key, Transfer
from dime.run.links.linkemu import LinkShaper
from dime.run.links.schedule import LinkView

log = logging.getLogger("dime.run")

POLL_S = 0.05  # how often a waiting thread looks whether the device is stopping
MIN_TIMED_BYTES = 16 * 1024  # smaller receiver-timed transfers give no rate sample
_END_OF_RECORDS = None  # the device's streams are done: the reporter sends what it has and ends


class _Stopped(Exception):
    """Another thread failed: this one stops quietly."""


@dataclass
class Frame:
    """One query's data between two threads of a device."""

    kind: int
    qid: int
    buf: torch.Tensor | None = None  # a pooled transfer buffer, or None for the source's input
    values: Sequence[torch.Tensor] | None = None  # the source's input tensors
    ready: float = 0.0  # perf_counter time from which the data may be used
    pool: "BufferPool | None" = None

    def release(self) -> None:
        if self.pool is not None and self.buf is not None:
            self.pool.give(self.buf)
            self.pool = None


class BufferPool:
    """The transfer buffers of one stream at one end."""

    def __init__(self, layout: CutLayout, n: int) -> None:
        self.layout = layout
        self._free: queue.Queue[torch.Tensor] = queue.Queue()
        for _ in range(n):
            self._free.put(layout.new_buffer())

    def give(self, buf: torch.Tensor) -> None:
        self._free.put(buf)

    @property
    def free(self) -> queue.Queue[torch.Tensor]:
        """The buffers not in use (a waiting thread takes the next one from here)."""
        return self._free


@dataclass
class DeviceStats:
    """What one device saw of one config (sent to the source at its end)."""

    queries: int = 0  # queries its first task completed (a device with two tasks counts each query once)
    per_task_s: list[float] = field(default_factory=list)  # time in each task's bundles, summed over queries
    overruns: int = 0  # emulated transfers whose real send took longer than the link's wire time

    @property
    def busy_s(self) -> float:
        return sum(self.per_task_s)

    def to_json(self) -> dict[str, Any]:
        return {"queries": self.queries, "busy_s": self.busy_s, "overruns": self.overruns}


class Pipeline:
    """The threads of one device for one config; `start`, (the source: `submit` ... `finish`), `join`."""

    def __init__(self, program: Program, device: int, model: Any, modules: dict[tuple[int, int], Any],
                 group: Group | None, rank_of: Sequence[int], network: Network, in_flight: int,
                 pace: bool, delay: bool, torch_device: torch.device = CPU, wait_s: float = 600.0,
                 name: str = "", links: LinkView | None = None,
                 on_transfer: Callable[[Transfer], None] | None = None, report_to: int | None = None,
                 collect_from: Sequence[int] = ()) -> None:
        self.program = program
        self.device = device
        self.group = group
        self.rank_of = rank_of
        self.network = network
        self.links = links or LinkView(network)  # the rates and rtts to pace and delay by, now
        self.torch_device = torch_device
        self.wait_s = wait_s
        # the source's last task hands each query's outputs here (dime.run.data.chain sets it)
        self.on_output: Callable[[int, list[torch.Tensor]], None] | None = None
        self.name = name or str(device)
        self.tasks = program.tasks_of(device)
        self.stats = DeviceStats(per_task_s=[0.0] * len(self.tasks))
        # OpenMP's thread count is per thread and a new thread starts at the machine's CPU count:
        # every thread takes the count of the one that builds the pipeline (the device's, see pin)
        self._torch_threads = torch.get_num_threads()
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        n_buf = in_flight + 1
        layouts = {s.sid: CutLayout.of(model.cut_specs(s.cut)) for s in program.streams
                   if device in (s.src, s.dst)}
        self._modules = {i: bundle_modules(model, t.bundles, modules) for i, t in enumerate(self.tasks)}
        # a task reads its input from this queue; the source's first task is fed by submit()
        self._task_in: dict[int, queue.Queue[Frame]] = {i: queue.Queue() for i in range(len(self.tasks))}
        self._recv_pools = {s.sid: BufferPool(layouts[s.sid], n_buf) for s in program.streams_into(device)}
        self._send_pools = {s.sid: BufferPool(layouts[s.sid], n_buf) for s in program.streams_out_of(device)}
        self._send_q: dict[int, queue.Queue[Frame]] = {s.sid: queue.Queue() for s in program.streams_out_of(device)}
        self._layouts = layouts
        self._pace = pace  # user-space pacing: each transfer is two messages (dime.run.links.linkemu)
        self._shapers: dict[tuple[int, str], LinkShaper] = {}
        if pace:
            for s in program.streams_out_of(device):
                key = (s.link, s.direction)
                if key not in self._shapers:
                    self._shapers[key] = LinkShaper(lambda i=s.link, d=s.direction: self.links.rate_mbps(i, d))
        self._delay = delay  # add the links' rtt/2 in user space
        # transfer records: to the source's estimator, or queued for the reporter that sends them there
        self._report_to = report_to
        self._collect_from = tuple(collect_from)
        self._records: queue.Queue[Transfer | None] = queue.Queue()
        self._on_transfer = self._records.put if report_to is not None else on_transfer
        self._busy_until: dict[Key, float] = {}  # receiver-timed directions: when the last transfer arrived
        self._busy_lock = threading.Lock()
        self._streams_left = len(program.streams_into(device)) + len(program.streams_out_of(device))
        self._consumer = {t.inp: i for i, t in enumerate(self.tasks) if t.inp is not None}
        self._source_task = next((i for i, t in enumerate(self.tasks) if t.inp is None), None)

    # ---- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        for s in self.program.streams_into(self.device):
            self._spawn(f"recv-{s.sid}", self._receiver, s)
        for i, t in enumerate(self.tasks):
            self._spawn(f"task-{i}", self._worker, i, t)
        for s in self.program.streams_out_of(self.device):
            self._spawn(f"send-{s.sid}", self._sender, s)
        if self._report_to is not None:
            self._spawn("report", self._reporter)
        for rank in self._collect_from:
            self._spawn(f"reports-{rank}", self._collector, rank)

    def _spawn(self, label: str, fn: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=self._guard, args=(fn, *args), name=f"dime-{self.name}-{label}", daemon=True)
        self._threads.append(t)
        t.start()

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            torch.set_num_threads(self._torch_threads)
            fn(*args)
        except _Stopped:
            pass
        except BaseException as e:  # the first error stops the device; join() raises it
            if self._error is None:
                self._error = e
            self._stop.set()

    def submit(self, qid: int, values: Sequence[torch.Tensor]) -> None:
        """The source: put a query's input into the chain."""
        assert self._source_task is not None, "only the source submits"
        self._check()
        self._task_in[self._source_task].put(Frame(DATA_RUN, qid, values=values))

    def finish(self) -> None:
        """The source: no more queries; END follows the last one through the chain."""
        assert self._source_task is not None, "only the source finishes"
        self._task_in[self._source_task].put(Frame(DATA_END, -1))

    def failed(self) -> BaseException | None:
        return self._error

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> DeviceStats:
        """Wait until END has passed every thread (or one failed: raise its error)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for t in self._threads:
            while t.is_alive():
                t.join(POLL_S)
                self._check()
                if deadline is not None and time.monotonic() > deadline:
                    raise PeerError(f"{self.name}: the config did not end within {timeout_s:g} s")
        self._check()
        self.stats.overruns = sum(sh.stats.overruns for sh in self._shapers.values())
        return self.stats

    # ---- threads --------------------------------------------------------------------
    def _get(self, q: queue.Queue) -> Any:
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    raise _Stopped() from None
                if time.monotonic() > deadline:
                    raise PeerError(f"{self.name}: nothing to do for {self.wait_s:g} s") from None

    def _receiver(self, s: Stream) -> None:
        assert self.group is not None
        pool, rank, tag = self._recv_pools[s.sid], self.rank_of[s.src], STREAM_TAG + s.sid
        consumer = self._task_in[self._consumer[s.sid]]
        layout = self._layouts[s.sid]
        timed = self._on_transfer is not None and not self._pace and layout.payload_bytes >= MIN_TIMED_BYTES
        while True:
            buf = self._get(pool.free)
            posted = time.monotonic()
            if self._pace:
                self.group.recv(rank, buf[:-TAIL_BYTES], tag)
                self.group.recv(rank, buf[-TAIL_BYTES:], tag)
            else:
                self.group.recv(rank, buf, tag)
            arrived = time.monotonic()
            kind, qid, _ = layout.unpack(buf)
            if kind not in (DATA_RUN, DATA_END):
                raise PeerError(f"protocol error: data message {kind} from {self.group.who(rank)}")
            rtt_s = self.links.rtt_ms(s.link) / 1000.0
            if timed and kind == DATA_RUN:
                self._time_arrival(s, layout.payload_bytes, sent_ns(buf) / 1e9, posted,
                                   arrived - (0.0 if self._delay else rtt_s / 2))
            consumer.put(Frame(kind, qid, buf, ready=time.perf_counter() + (rtt_s / 2 if self._delay else 0.0),
                               pool=pool))
            if kind == DATA_END:
                self._stream_done()
                return

    def _time_arrival(self, s: Stream, nbytes: int, sent: float, posted: float, done: float) -> None:
        """A receiver-timed transfer: it held the direction from the latest of its send, the
        posted receive and the direction's previous arrival, until it was done (the kernel's
        delay taken off)."""
        key = (s.link, s.direction)
        with self._busy_lock:
            began = max(sent, posted, self._busy_until.get(key, 0.0))
            self._busy_until[key] = done
        if done > began:
            assert self._on_transfer is not None
            self._on_transfer(Transfer(s.link, s.direction, nbytes, done - began))

    def _stream_done(self) -> None:
        """One of this device's streams passed END; after the last the reporter may end."""
        with self._busy_lock:
            self._streams_left -= 1
            last = self._streams_left == 0
        if last and self._report_to is not None:
            self._records.put(_END_OF_RECORDS)

    def _reporter(self) -> None:
        """Send this device's transfer records to the source, in batches, then the end of them."""
        assert self.group is not None and self._report_to is not None
        pending: list[Transfer] = []
        oldest = 0.0
        while True:
            try:
                rec = self._records.get(timeout=POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    raise _Stopped() from None
            else:
                if rec is _END_OF_RECORDS:
                    for i in range(0, len(pending), REPORT_BATCH):
                        self.group.send(self._report_to, pack_report(pending[i:i + REPORT_BATCH]), REPORT_TAG)
                    self.group.send(self._report_to, pack_report([]), REPORT_TAG)
                    return
                if not pending:
                    oldest = time.monotonic()
                pending.append(rec)
            if pending and (len(pending) >= REPORT_BATCH or time.monotonic() - oldest >= REPORT_EVERY_S):
                self.group.send(self._report_to, pack_report(pending[:REPORT_BATCH]), REPORT_TAG)
                del pending[:REPORT_BATCH]
                oldest = time.monotonic()

    def _collector(self, rank: int) -> None:
        """The source: one device's transfer records, until its last report."""
        assert self.group is not None and self._on_transfer is not None
        buf = torch.zeros(REPORT_LEN, dtype=torch.int64)
        while True:
            self.group.recv(rank, buf, REPORT_TAG)
            records = unpack_report(buf)
            if records is None:
                return
            for rec in records:
                self._on_transfer(rec)

    def _worker(self, index: int, task: Task) -> None:
        inq = self._task_in[index]
        mods = self._modules[index]
        clock = time.perf_counter
        last = -1
        while True:
            frame: Frame = self._get(inq)
            if frame.kind == DATA_END:
                frame.release()
                self._hand_on(task, Frame(DATA_END, frame.qid), None)
                return
            if frame.qid <= last:
                raise PeerError(f"protocol error: query {frame.qid} after {last} on {self.name}")
            last = frame.qid
            wait = frame.ready - clock()
            if wait > 0:
                time.sleep(wait)
            if index == 0:
                self.stats.queries += 1
            if task.relay:  # store and forward: the same buffer goes on
                assert task.out is not None
                self._send_q[task.out].put(frame)
                continue
            if frame.values is not None:
                vals: Sequence[torch.Tensor] = frame.values
            else:
                assert frame.buf is not None and task.inp is not None
                vals = self._layouts[task.inp].views(frame.buf)
            t0 = clock()
            with torch.inference_mode():
                if mods:
                    vals = run_modules(mods, to_device(vals, self.torch_device))
                    sync(self.torch_device)
                self.stats.per_task_s[index] += clock() - t0  # each task's own slot: no lock needed
                self._hand_on(task, Frame(DATA_RUN, frame.qid), vals, frame)

    def _hand_on(self, task: Task, out: Frame, vals: Sequence[torch.Tensor] | None, used: Frame | None = None) -> None:
        """Pass a task's result on: into a buffer of its outgoing stream, or out of the chain."""
        if task.out is None:
            if out.kind == DATA_RUN and self.on_output is not None:
                assert vals is not None
                # received tensors are views of a buffer the next query overwrites: copies, on the CPU
                self.on_output(out.qid, [t.to(CPU, copy=True) for t in vals])
            if used is not None:
                used.release()
            if out.kind == DATA_END and self.on_output is not None:
                self.on_output(-1, [])
            return
        pool = self._send_pools[task.out]
        buf = self._get(pool.free)
        pool.layout.pack(buf, out.kind, out.qid, vals if out.kind == DATA_RUN else None)
        if used is not None:
            used.release()  # packed: the input's views are no longer read
        self._send_q[task.out].put(Frame(out.kind, out.qid, buf, pool=pool))

    def _sender(self, s: Stream) -> None:
        assert self.group is not None
        q, rank, tag = self._send_q[s.sid], self.rank_of[s.dst], STREAM_TAG + s.sid
        layout = self._layouts[s.sid]
        shaper = self._shapers.get((s.link, s.direction))
        group = self.group
        record = self._on_transfer
        while True:
            frame: Frame = self._get(q)
            assert frame.buf is not None
            body, tail = frame.buf[:-TAIL_BYTES], frame.buf[-TAIL_BYTES:]
            if not self._pace:
                if record is not None:
                    stamp(frame.buf, time.monotonic_ns())  # the receiver times this transfer from here
                group.send(rank, frame.buf, tag)  # the kernel shapes: one message
            elif shaper is None or frame.kind == DATA_END:
                group.send(rank, body, tag)
                group.send(rank, tail, tag)
            else:
                sent = shaper.send(layout.payload_bytes, lambda: group.send(rank, body, tag),
                                   lambda: group.send(rank, tail, tag))
                if record is not None:
                    record(Transfer(s.link, s.direction, layout.payload_bytes, sent.target_s))
            frame.release()
            if frame.kind == DATA_END:
                self._stream_done()
                return
