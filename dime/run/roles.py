"""The two roles of a split run: transport, execution, link probes, measurement.

Wire format: each transfer is one flat byte buffer (a 16-byte header, then every live
tensor of the cut at a 64-byte aligned offset), whose shapes both sides know from the
model's traced example run (SplitModel.cut_specs), so only bytes travel. The buffer
goes as two gloo messages, the body and its last 64 bytes, so that the sender's link
emulation (dime.run.linkemu) can hold the release until the emulated time has passed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import re
import socket
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from dime.capture.models import SplitModel, load_model, resolve_torch_device
from dime.core.costs import CLOUD, EDGE, ROLE_NAMES, Assignment, segments, transfers
from dime.core.links import DOWN, UP, Link
from dime.core.placement import format_placement
from dime.errors import DimeError, ModelError, UsageError
from dime.fileio import atomic_write
from dime.run.linkemu import EMULATION, LinkShaper, achieved_mbps
from dime.run.measure import LatencyStats, MeasureSettings, measure, resolve_driver
from dime.run.plan import (
    Plan,
    RunConfig,
    build_plan,
    parse_scenarios,
    parse_solution,
    read_solution,
    rel_err,
    write_rows,
)

log = logging.getLogger("dime.run")

# control messages (int64[6], tag CTRL_TAG): [command, args...]
CTRL_TAG = 1
DATA_TAG = 2
CTRL_LEN = 6
CMD_PLAN = 1  # a: plan JSON length; the JSON follows on DATA_TAG
CMD_PROBE = 2  # a: link index, b: up bytes, c: down bytes, d: repetitions
CMD_CONFIG = 3  # a: config index; data transfers of that placement follow
CMD_QUIT = 4
CMD_PING = 5
CMD_PONG = 6
CMD_INFO = 7  # a: JSON length; the cloud's own description (device, threads, host) follows
# data header (int64[2] at the start of every transfer): [kind, query id]
DATA_RUN = 10
DATA_END = 11  # the edge ends a config; sent in place of the first upload of a query

HEADER_BYTES = 16
ALIGN_BYTES = 64
TAIL_BYTES = 64


CPU = torch.device("cpu")


def _to(vals: Sequence[torch.Tensor], device: torch.device) -> Sequence[torch.Tensor]:
    return vals if device.type == "cpu" else tuple(t.to(device) for t in vals)


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: a phase's time counts only once they are done
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bundle_modules(model: SplitModel, bundles: Sequence[Assignment], cache: dict[tuple[int, int], Any]) -> list[Any]:
    """The modules of `bundles`, each built once and shared through `cache`."""
    for a in bundles:
        if (a.start, a.end) not in cache:
            cache[(a.start, a.end)] = model.bundle(a.start, a.end)
    return [cache[(a.start, a.end)] for a in bundles]


class PeerError(DimeError):
    """The other role is missing, died or broke the protocol."""


# ---- wire format ------------------------------------------------------------------
def _align(n: int) -> int:
    return (n + ALIGN_BYTES - 1) // ALIGN_BYTES * ALIGN_BYTES


@dataclass(frozen=True)
class CutLayout:
    """Where each tensor of a cut sits in the flat transfer buffer."""

    specs: tuple[tuple[tuple[int, ...], torch.dtype], ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]  # bytes of each tensor
    payload_bytes: int  # the tensors' bytes: what the link model charges for
    buffer_bytes: int  # header + padding + tensors, a multiple of ALIGN_BYTES

    @classmethod
    def of(cls, specs: Sequence[tuple[tuple[int, ...], torch.dtype]]) -> "CutLayout":
        offsets, sizes = [], []
        pos = _align(HEADER_BYTES)
        for shape, dtype in specs:
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            offsets.append(pos)
            sizes.append(nbytes)
            pos = _align(pos + nbytes)
        total = max(pos, _align(HEADER_BYTES) + TAIL_BYTES)
        return cls(tuple((tuple(s), d) for s, d in specs), tuple(offsets), tuple(sizes), sum(sizes), total)

    def new_buffer(self) -> torch.Tensor:
        return torch.zeros(self.buffer_bytes, dtype=torch.uint8)

    def views(self, buf: torch.Tensor) -> list[torch.Tensor]:
        return [buf[off : off + n].view(dtype).view(shape)
                for (shape, dtype), off, n in zip(self.specs, self.offsets, self.sizes)]

    def pack(self, buf: torch.Tensor, kind: int, query: int, tensors: Sequence[torch.Tensor] | None) -> None:
        buf[:HEADER_BYTES].view(torch.int64).copy_(torch.tensor([kind, query], dtype=torch.int64))
        if tensors is None:
            return
        if len(tensors) != len(self.specs):
            raise ModelError(f"a cut carries {len(tensors)} tensors, the traced model says {len(self.specs)}")
        for view, t, (shape, dtype) in zip(self.views(buf), tensors, self.specs):
            if tuple(t.shape) != shape or t.dtype != dtype:
                raise ModelError(
                    f"a tensor at a cut is {tuple(t.shape)} {t.dtype}, the traced model says {shape} {dtype} "
                    "(the input differs from the model's example input?)"
                )
            view.copy_(t)

    def unpack(self, buf: torch.Tensor) -> tuple[int, int, list[torch.Tensor]]:
        kind, query = (int(v) for v in buf[:HEADER_BYTES].view(torch.int64))
        return kind, query, self.views(buf)


def _short(e: BaseException) -> str:
    """The gist of a gloo/c10d error: no source paths, the first sentence."""
    text = re.sub(r"\[[^\]]*\.(?:cc|cpp|h):\d+\]\s*", "", str(e)).strip()
    text = text.splitlines()[0] if text else type(e).__name__
    return text.split(". ")[0]


class Peer:
    """The point-to-point connection to the other role (gloo process group of two)."""

    def __init__(self, role: int, address: str) -> None:
        self.role = role
        self.other = 1 - role
        self.address = address
        self._ctrl = torch.zeros(CTRL_LEN, dtype=torch.int64)

    def _fail(self, e: BaseException) -> PeerError:
        return PeerError(f"lost the {ROLE_NAMES[self.other]} peer ({self.address}): {_short(e)}")

    def _send(self, t: torch.Tensor, tag: int) -> None:
        try:
            torch.distributed.send(t, self.other, tag=tag)
        except RuntimeError as e:
            raise self._fail(e) from None

    def _recv(self, t: torch.Tensor, tag: int) -> None:
        try:
            torch.distributed.recv(t, self.other, tag=tag)
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


def _wait_for_port(host: str, port: int, deadline: float) -> None:
    """Block until something listens at host:port (the edge's rendezvous) or the deadline."""
    while True:
        try:
            with closing(socket.create_connection((host, port), timeout=1.0)):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def connect(role: int, host: str, port: int, timeout_s: float, op_timeout_s: float) -> Peer:
    """Join the two-process gloo group; the edge hosts the rendezvous store.

    timeout_s bounds the wait for the other side to show up; op_timeout_s bounds any
    single send/recv afterwards (a peer that dies is noticed at once, by its socket).
    """
    import torch.distributed as dist

    address = f"{host}:{port}"
    deadline = time.monotonic() + timeout_s
    other = ROLE_NAMES[1 - role]
    try:
        if role == EDGE:
            store = dist.TCPStore(host, port, 2, True, timedelta(seconds=timeout_s), wait_for_workers=True)
        else:
            # Wait for the port ourselves: the store client's own retries overrun the
            # timeout and print C++ stack traces.
            _wait_for_port(host, port, deadline)
            left = max(1.0, deadline - time.monotonic())
            store = dist.TCPStore(host, port, 2, False, timedelta(seconds=left))
        dist.init_process_group("gloo", store=store, rank=role, world_size=2, timeout=timedelta(seconds=op_timeout_s))
    except (RuntimeError, OSError) as e:
        if "timed out" in str(e).lower() or "timeout" in str(e).lower() or isinstance(e, (TimeoutError, ConnectionError)):
            raise PeerError(
                f"no {other} peer joined at {address} within {timeout_s:g} s (is the {other} side running, "
                f"with the same --peer?)"
            ) from None
        raise PeerError(f"cannot set up the connection at {address}: {_short(e)}") from None
    log.info("%s connected to the %s at %s", ROLE_NAMES[role], other, address)
    return Peer(role, address)


def disconnect() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# ---- the two roles ----------------------------------------------------------------
@dataclass
class PhaseTimes:
    """Where the edge's time went, summed over queries (for the CSV's per-query means)."""

    queries: int = 0
    edge_compute_s: float = 0.0  # the edge's bundles
    upload_s: float = 0.0  # packing and the emulated upload, until the release is sent
    wait_s: float = 0.0  # from then until the cloud's answer is unpacked: cloud compute + download

    def per_query(self) -> dict[str, float | None]:
        n = self.queries
        return {
            "edge_compute_s": self.edge_compute_s / n if n else None,
            "upload_s": self.upload_s / n if n else None,
            "cloud_wait_s": self.wait_s / n if n else None,
        }


class EdgeRunner:
    """Runs one placement's edge bundles and exchanges cuts with the cloud, query by query."""

    def __init__(self, model: SplitModel, config: RunConfig, peer: Peer, modules: dict[tuple[int, int], Any],
                 device: torch.device = CPU) -> None:
        self.config = config
        self.peer = peer
        self.device = device
        self.segments = segments(config.placement)
        self.shaper = LinkShaper(config.link)
        self.steps: list[tuple[int, Any]] = []
        for role, s, e, bundles in self.segments:
            if role == EDGE:
                self.steps.append((EDGE, bundle_modules(model, bundles, modules)))
            else:
                up = CutLayout.of(model.cut_specs(s))
                down = CutLayout.of(model.cut_specs(e + 1))
                self.steps.append((CLOUD, (up, up.new_buffer(), down, down.new_buffer(), s)))
        self.queries = 0
        self.phases = PhaseTimes()

    def infer(self, x: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        vals: Sequence[torch.Tensor] = x if isinstance(x, tuple) else (x,)
        qid = self.queries
        self.queries += 1
        clock = time.perf_counter
        ph = self.phases
        with torch.inference_mode():
            for role, step in self.steps:
                t0 = clock()
                if role == EDGE:
                    vals = _to(vals, self.device)
                    for mod in step:
                        vals = mod(*vals)
                    _sync(self.device)
                    ph.edge_compute_s += clock() - t0
                else:
                    up, ubuf, down, dbuf, _ = step
                    self.peer.send_cut(up, ubuf, DATA_RUN, qid, vals, self.shaper, UP)
                    t1 = clock()
                    ph.upload_s += t1 - t0
                    kind, got, vals = self.peer.recv_cut(down, dbuf)
                    ph.wait_s += clock() - t1
                    if kind != DATA_RUN or got != qid:
                        raise PeerError(f"protocol error: answer {kind}/{got} to query {qid}")
        ph.queries += 1
        # received tensors are views of a buffer the next query overwrites (and edge
        # bundles may pass them through), so the caller gets copies, on the CPU
        return tuple(t.to(CPU, copy=True) for t in vals)

    def finish(self) -> None:
        for role, step in self.steps:
            if role == CLOUD:
                up, ubuf, *_ = step
                self.peer.send_cut(up, ubuf, DATA_END, self.queries, None, None, UP)
                return


def serve_config(model: SplitModel, config: RunConfig, peer: Peer, modules: dict[tuple[int, int], Any],
                 device: torch.device = CPU) -> int:
    """The cloud's side of one placement: answer queries until the edge ends the config."""
    shaper = LinkShaper(config.link)
    steps = []
    for role, s, e, bundles in segments(config.placement):
        if role != CLOUD:
            continue
        mods = bundle_modules(model, bundles, modules)
        up = CutLayout.of(model.cut_specs(s))
        down = CutLayout.of(model.cut_specs(e + 1))
        steps.append((up, up.new_buffer(), mods, down, down.new_buffer()))
    if not steps:
        return 0
    queries = 0
    while True:
        for i, (up, ubuf, mods, down, dbuf) in enumerate(steps):
            kind, qid, vals = peer.recv_cut(up, ubuf)
            if kind == DATA_END and i == 0:
                st = shaper.stats
                if st.overruns:
                    # a few: scheduling hiccups; many: the real transport is slower than the emulated link
                    log.log(logging.WARNING if st.overruns * 10 > st.transfers else logging.INFO,
                            "%s over %s: %d of %d downloads took longer than the emulated link (by up to %.3g s)",
                            config.label, config.link.name, st.overruns, st.transfers, st.worst_overrun_s)
                return queries
            if kind != DATA_RUN:
                raise PeerError(f"protocol error: data message {kind} in the middle of query {qid}")
            with torch.inference_mode():
                vals = _to(vals, device)
                for mod in mods:
                    vals = mod(*vals)
            # packing copies the results into a CPU buffer (from a GPU: a synchronising copy)
            peer.send_cut(down, dbuf, DATA_RUN, qid, vals, shaper, DOWN)
        queries += 1


@dataclass(frozen=True)
class ProbeResult:
    link: str
    up_bytes: int
    down_bytes: int
    up_s: float  # median transfer time seen by the receiver
    down_s: float
    achieved_up_mbps: float
    achieved_down_mbps: float
    ping_s: float  # unshaped round trip of a control message


def _probe_sizes(link: Link, probe_s: float) -> tuple[int, int]:
    size = [int(max(16 * 1024, min(16 * 2**20, link.rate_mbps(d) * 1e6 * probe_s / 8))) for d in (UP, DOWN)]
    return size[0], size[1]


def probe_edge(peer: Peer, index: int, link: Link, probe_s: float, reps: int = 3) -> ProbeResult:
    """Time emulated transfers both ways; the rate the receiver sees, less the link's rtt/2."""
    up_bytes, down_bytes = _probe_sizes(link, probe_s)
    peer.send_ctrl(CMD_PROBE, index, up_bytes, down_bytes, reps)
    clock = time.perf_counter
    pings = []
    for _ in range(5):
        t0 = clock()
        peer.send_ctrl(CMD_PING)
        peer.recv_ctrl(CMD_PONG)
        pings.append(clock() - t0)
    ping = sorted(pings)[len(pings) // 2]
    shaper = LinkShaper(link)
    up = CutLayout.of([((up_bytes,), torch.uint8)])
    down = CutLayout.of([((down_bytes,), torch.uint8)])
    ubuf, dbuf = up.new_buffer(), down.new_buffer()
    payload = [torch.zeros(up_bytes, dtype=torch.uint8)]
    t_up, t_down = [], []
    for _ in range(reps):
        t0 = clock()
        peer.send_cut(up, ubuf, DATA_RUN, 0, payload, shaper, UP)
        peer.recv_ctrl(CMD_PONG)
        t_up.append(clock() - t0 - ping / 2)
    for _ in range(reps):
        t0 = clock()
        peer.send_ctrl(CMD_PING)
        peer.recv_cut(down, dbuf)
        t_down.append(clock() - t0 - ping / 2)
    up_s, down_s = sorted(t_up)[reps // 2], sorted(t_down)[reps // 2]
    res = ProbeResult(link.name, up_bytes, down_bytes, up_s, down_s,
                      achieved_mbps(up_bytes, up_s, link.rtt_ms), achieved_mbps(down_bytes, down_s, link.rtt_ms), ping)
    log.info(
        "link %s (%s): up %.3f Mbps achieved of %g (%d B in %.4f s), down %.3f of %g (%d B in %.4f s), ping %.0f us",
        link.name, EMULATION, res.achieved_up_mbps, link.uplink_mbps, up_bytes, up_s,
        res.achieved_down_mbps, link.downlink_mbps, down_bytes, down_s, ping * 1e6,
    )
    return res


def probe_cloud(peer: Peer, msg: list[int], links: Sequence[Link]) -> None:
    _, index, up_bytes, down_bytes, reps, _ = msg
    if not 0 <= index < len(links):
        raise PeerError(f"protocol error: probe of link {index}")
    for _ in range(5):
        peer.recv_ctrl(CMD_PING)
        peer.send_ctrl(CMD_PONG)
    shaper = LinkShaper(links[index])
    up = CutLayout.of([((up_bytes,), torch.uint8)])
    down = CutLayout.of([((down_bytes,), torch.uint8)])
    ubuf, dbuf = up.new_buffer(), down.new_buffer()
    payload = [torch.zeros(down_bytes, dtype=torch.uint8)]
    for _ in range(reps):
        peer.recv_cut(up, ubuf)
        peer.send_ctrl(CMD_PONG)
    for _ in range(reps):
        peer.recv_ctrl(CMD_PING)
        peer.send_cut(down, dbuf, DATA_RUN, 0, payload, shaper, DOWN)


# ---- inputs -----------------------------------------------------------------------
def load_samples(model: SplitModel, images: Path | None, count: int, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """The model's inputs (batch of one), one tuple per sample: images or tensor files
    from `images`, else deterministic generated ones (dime.samples' inputs)."""
    from dime.capture.samples import model_samples

    return [vals for _, vals in model_samples(model, images, count, seed)[0]]


def _flat(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flat(o)]
    return []


def check_outputs(label: str, got: Sequence[torch.Tensor], ref: Any, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    want = _flat(ref)
    if len(got) != len(want):
        raise ModelError(f"{label}: the split run returned {len(got)} tensors, the full model {len(want)}")
    for i, (a, b) in enumerate(zip(got, want)):
        if a.shape != b.shape or not torch.allclose(a, b, rtol=rtol, atol=atol):
            diff = (a - b).abs().max().item() if a.shape == b.shape else float("nan")
            raise ModelError(f"{label}: output {i} differs from the full model's (max abs diff {diff:.3g})")


# ---- process set-up ---------------------------------------------------------------
def pin(cores: Sequence[int] | None, threads: int | None) -> None:
    """Pin this process (every thread so far; later threads inherit) and size torch's pools."""
    if cores:
        try:
            for tid in os.listdir("/proc/self/task"):
                os.sched_setaffinity(int(tid), set(cores))
        except (OSError, AttributeError) as e:
            raise UsageError(f"cannot pin to cores {','.join(map(str, cores))}: {e}") from None
    if threads is not None:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already fixed: torch ran parallel work before


def _check_setting(role: int, setting: str, threads: int) -> None:
    m = re.fullmatch(r"threads=(\d+)", setting)
    if m and int(m.group(1)) != threads:
        log.warning("%s runs with %d torch thread(s) but its bundles' setting says %s: the profile's "
                    "prediction is for another setting", ROLE_NAMES[role], threads, setting)


def _distinct_links(plan: Plan) -> list[Link]:
    return list({dataclasses.astuple(c.link): c.link for c in plan.configs}.values())


def run_edge(args: argparse.Namespace, model: SplitModel, device: torch.device = CPU,
             on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Drive the run: send the plan, probe the links, measure every placement; the result rows
    (also appended to `args.out`). `on_row` sees each row as it is measured."""
    plan = build_plan(args, model)
    scenarios = parse_scenarios(args.scenario)
    driver = resolve_driver(args.driver)
    samples = load_samples(model, args.images, args.count)
    if args.outputs is not None and args.outputs.exists() and args.outputs.is_dir():
        raise UsageError(f"--outputs {args.outputs} is a folder")
    for c in plan.configs:
        for a in c.placement:
            if a.role == EDGE:
                _check_setting(EDGE, a.setting, args.threads)
    refs: dict[int, Any] = {}
    saved: dict[str, list[tuple[torch.Tensor, ...]]] = {}
    rows: list[dict[str, Any]] = []
    host, port = args.peer
    peer = connect(EDGE, host, port, args.timeout_s, args.op_timeout_s)
    try:
        text = plan.to_json().encode()
        peer.send_ctrl(CMD_PLAN, len(text))
        peer.send_bytes(text)
        msg = peer.recv_ctrl(CMD_INFO)
        cloud_info = json.loads(peer.recv_bytes(msg[1]).decode())
        log.info("cloud: %s", ", ".join(f"{k} {v}" for k, v in cloud_info.items()))
        links = _distinct_links(plan)
        probes: dict[tuple, Any] = {}
        if args.probe_s > 0:
            for i, link in enumerate(links):
                probes[dataclasses.astuple(link)] = probe_edge(peer, i, link, args.probe_s)
        modules: dict[tuple[int, int], Any] = {}
        edge_info = role_info(args, device)
        ref_start = time_whole_model(model, samples, device, args.reference_runs, modules) if args.reference_runs else None
        for ci, config in enumerate(plan.configs):
            log.info("[%d/%d] %s over %s: %s", ci + 1, len(plan.configs), config.label, config.link.name,
                     format_placement(plan.layer_names, config.placement))
            peer.send_ctrl(CMD_CONFIG, ci)
            runner = EdgeRunner(model, config, peer, modules, device)
            outs = []
            for w in range(args.warmup):
                got = runner.infer(samples[w % len(samples)])
                outs.append(got)
                if args.verify:
                    idx = w % len(samples)
                    if idx not in refs:
                        with torch.inference_mode():
                            refs[idx] = [t.to(CPU) for t in _flat(model.forward_full(*_to(samples[idx], device)))]
                    check_outputs(f"{config.label} over {config.link.name}", got, refs[idx])
            saved[f"{config.label}@{config.link.name}"] = outs
            overruns_before = runner.shaper.stats.overruns
            for scenario in scenarios:
                runner.phases = PhaseTimes()  # warm-up and earlier scenarios excluded
                settings = MeasureSettings(
                    scenario=scenario,
                    min_query_count=args.min_query_count,
                    min_duration_s=args.min_duration_s,
                    target_qps=args.target_qps,
                    expected_latency_s=config.pred_bundle_s,
                )
                log_dir = None
                if args.loadgen_logs is not None:
                    log_dir = args.loadgen_logs / f"{ci:03d}-{config.label}-{config.link.name}-{scenario}"
                stats = measure(lambda i: runner.infer(samples[i]), len(samples), settings, driver, log_dir)
                row = _row(plan, config, stats, probes.get(dataclasses.astuple(config.link)), model, args,
                           runner.shaper.stats.overruns - overruns_before, edge_info, cloud_info)
                row.update(runner.phases.per_query())
                row["edge_whole_start_s"] = ref_start
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                else:
                    log.info("%s", format_row(row))
            runner.finish()
        if args.reference_runs:
            ref_end = time_whole_model(model, samples, device, args.reference_runs, modules)
            log.info("edge whole model, back to back: %.2f ms before the placements, %.2f ms after",
                     (ref_start or 0) * 1e3, ref_end * 1e3)
            for row in rows:
                row["edge_whole_end_s"] = ref_end
        peer.send_ctrl(CMD_QUIT)
    finally:
        disconnect()
    if args.outputs is not None:
        _save_outputs(args.outputs, samples, saved)
    if args.out is not None:
        write_rows(args.out, rows)
    return rows


def time_whole_model(model: SplitModel, samples: Sequence[tuple[torch.Tensor, ...]], device: torch.device, runs: int,
                     cache: dict[tuple[int, int], Any], warmup: int = 2, trim: float = 0.1) -> float:
    """The edge's whole-model bundle, timed as the profiler times it (back to back, trimmed
    mean): set beside the profile's figure it shows how much this machine has drifted."""
    from dime.profiling.reader import trimmed_mean  # pandas: not at the roles' start-up

    (mod,) = bundle_modules(model, [Assignment(0, len(model.layer_names) - 1, EDGE, "")], cache)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            x = _to(samples[i % len(samples)], device)
            t0 = time.perf_counter()
            mod(*x)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return trimmed_mean(times, trim)


def role_info(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """What a role reports about itself (the cloud sends it to the edge for the CSV)."""
    info: dict[str, Any] = {"torch_device": str(device), "threads": args.threads, "host": platform.node()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _row(plan: Plan, config: RunConfig, stats: LatencyStats, probe: ProbeResult | None, model: SplitModel,
         args: argparse.Namespace, overruns: int, edge: dict[str, Any], cloud: dict[str, Any]) -> dict[str, Any]:
    moves = transfers(config.placement, len(plan.layer_names))
    meas = stats.representative_s()
    return {
        "model": plan.model,
        "config": config.label,
        "placement": format_placement(plan.layer_names, config.placement),
        "edge_device": plan.edge_device,
        "cloud_device": plan.cloud_device,
        "link": config.link.name,
        "uplink_mbps": config.link.uplink_mbps,
        "downlink_mbps": config.link.downlink_mbps,
        "rtt_ms": config.link.rtt_ms,
        "emulation": EMULATION,
        "achieved_up_mbps": probe.achieved_up_mbps if probe else None,
        "achieved_down_mbps": probe.achieved_down_mbps if probe else None,
        "scenario": stats.scenario,
        "driver": stats.driver,
        "count": stats.count,
        "mean_s": stats.mean_s,
        "p50_s": stats.p50_s,
        "p90_s": stats.p90_s,
        "p95_s": stats.p95_s,
        "p99_s": stats.p99_s,
        "min_s": stats.min_s,
        "max_s": stats.max_s,
        "throughput_qps": stats.throughput_qps,
        "target_qps": stats.target_qps,
        "valid": stats.valid,
        "measured_s": meas,
        "pred_bundle_s": config.pred_bundle_s,
        "pred_layersum_s": config.pred_layersum_s,
        "solver_latency_s": config.solver_latency_s,
        "err_bundle": rel_err(config.pred_bundle_s, meas),
        "err_layersum": rel_err(config.pred_layersum_s, meas),
        "up_bytes": sum(plan.cut_bytes[c] for c, d in moves if d == UP),
        "down_bytes": sum(plan.cut_bytes[c] for c, d in moves if d == DOWN),
        "transfers": len(moves),
        "up_overruns": overruns,
        "edge_threads": edge.get("threads"),
        "cloud_threads": cloud.get("threads"),
        "edge_torch_device": edge.get("gpu") or edge.get("torch_device"),
        "cloud_torch_device": cloud.get("gpu") or cloud.get("torch_device"),
        "cloud_host": cloud.get("host"),
        "samples": args.count,
        "warmup": args.warmup,
        "host": edge.get("host"),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": stats.note,
    }


def _fmt_s(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1000:.2f} ms"


def _fmt_err(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f}%"


def format_row(row: dict[str, Any]) -> str:
    """One measured row as a line of text."""
    return (
        f"{row['model']} {row['config']} over {row['link']} [{row['scenario']}, {row['driver']}]: "
        f"n={row['count']} mean {_fmt_s(row['mean_s'])} p50 {_fmt_s(row['p50_s'])} p90 {_fmt_s(row['p90_s'])} "
        f"p99 {_fmt_s(row['p99_s'])} {row['throughput_qps']:.3g} q/s; predicted bundle "
        f"{_fmt_s(row['pred_bundle_s'])} ({_fmt_err(row['err_bundle'])}), layer-sum "
        f"{_fmt_s(row['pred_layersum_s'])} ({_fmt_err(row['err_layersum'])})"
    )


def _save_outputs(path: Path, samples: list[tuple[torch.Tensor, ...]], saved: dict[str, list[tuple[torch.Tensor, ...]]]) -> None:
    inputs = [s[0] if len(s) == 1 else s for s in samples]  # one-input models: tensors, as before
    atomic_write(path, lambda tmp: torch.save({"inputs": inputs, "outputs": saved}, tmp))


def run_cloud(args: argparse.Namespace, model: SplitModel, device: torch.device = CPU) -> None:
    host, port = args.peer
    peer = connect(CLOUD, host, port, args.timeout_s, args.op_timeout_s)
    try:
        msg = peer.recv_ctrl(CMD_PLAN)
        plan = Plan.from_json(peer.recv_bytes(msg[1]).decode(), "the edge's plan")
        plan.check_model(model)
        if args.solution:
            for path in args.solution:
                mine = parse_solution(read_solution(path), model.layer_names, str(path), args.edge_device)
                if all(c.placement != mine for c in plan.configs):
                    raise UsageError(f"the edge runs other placements than {path}")
        for c in plan.configs:
            for a in c.placement:
                if a.role == CLOUD:
                    _check_setting(CLOUD, a.setting, args.threads)
        text = json.dumps(role_info(args, device)).encode()
        peer.send_ctrl(CMD_INFO, len(text))
        peer.send_bytes(text)
        links = _distinct_links(plan)
        modules: dict[tuple[int, int], Any] = {}
        while True:
            msg = peer.recv_ctrl()
            if msg[0] == CMD_QUIT:
                break
            if msg[0] == CMD_PROBE:
                probe_cloud(peer, msg, links)
            elif msg[0] == CMD_CONFIG and 0 <= msg[1] < len(plan.configs):
                config = plan.configs[msg[1]]
                n = serve_config(model, config, peer, modules, device)
                log.debug("served %d queries of %s over %s", n, config.label, config.link.name)
            else:
                raise PeerError(f"protocol error: control message {msg[0]}")
    finally:
        disconnect()


def run_role(args: argparse.Namespace,
             on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run one role as parsed by dime.run's parser: pin, load the model, serve or drive.
    The edge returns its result rows, the cloud none."""
    pin(args.cores, args.threads)
    device = resolve_torch_device(args.torch_device)
    model = load_model(args.model, args.weights, args.cuts.split(",") if args.cuts else None, args.input_shape,
                       inputs=args.inputs, layers=args.layers, capture=args.capture)
    if device.type != "cpu":
        # bundles share the captured model's parameters: moving it once moves them all
        model.to(device)
        log.info("%s runs its bundles on %s", args.role, device)
    if args.role == "edge":
        return run_edge(args, model, device, on_row)
    run_cloud(args, model, device)
    return []
