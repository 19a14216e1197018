"""The edge role: it drives the run (sends the plan, probes the links, times each role's
whole model before every placement) and measures every placement."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import torch

from dime.capture.models import SplitModel
from dime.core.costs import CLOUD, EDGE, segments, transfers
from dime.core.links import DOWN, UP
from dime.core.placement import format_placement
from dime.errors import UsageError
from dime.fileio import atomic_write
from dime.run.compute import (
    CPU,
    bundle_modules,
    check_outputs,
    flat_tensors,
    run_modules,
    sync,
    time_whole_model,
    to_device,
)
from dime.run.linkemu import EMULATION, LinkShaper
from dime.run.measure import LatencyStats, MeasureSettings, measure, resolve_driver
from dime.run.options import RoleOptions, RunOptions
from dime.run.peer import Peer, PeerError, connect, disconnect
from dime.run.plan import Plan, RunConfig, build_plan
from dime.run.probe import ProbeResult, probe_edge
from dime.run.process import check_settings, load_samples, role_info
from dime.run.results import format_row, rel_err, write_rows
from dime.run.wire import (
    CMD_CONFIG,
    CMD_INFO,
    CMD_PLAN,
    CMD_QUIT,
    CMD_REFERENCE,
    DATA_END,
    DATA_RUN,
    CutLayout,
)

log = logging.getLogger("dime.run")

Row = dict[str, Any]


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

    def infer(self, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        vals: Sequence[torch.Tensor] = x
        qid = self.queries
        self.queries += 1
        clock = time.perf_counter
        ph = self.phases
        with torch.inference_mode():
            for role, step in self.steps:
                t0 = clock()
                if role == EDGE:
                    vals = run_modules(step, to_device(vals, self.device))
                    sync(self.device)
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


@dataclass
class _EdgeRun:
    """What the edge carries from placement to placement."""

    model: SplitModel
    device: torch.device
    opts: RunOptions
    plan: Plan
    peer: Peer
    samples: list[torch.Tensor]
    driver: str
    edge_info: dict[str, Any]
    cloud_info: dict[str, Any]
    probes: dict[int, ProbeResult]  # by link index in plan.links()
    modules: dict[tuple[int, int], Any]
    refs: dict[int, list[torch.Tensor]]  # the full model's outputs, by sample


def run_edge(role: RoleOptions, model: SplitModel, device: torch.device = CPU,
             on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Drive the run: send the plan, probe the links, measure every placement; the result rows
    (also appended to the options' `out`). `on_row` sees each row as it is measured."""
    opts = role.run
    plan = build_plan(opts.plan, model)
    driver = resolve_driver(opts.driver)
    samples = load_samples(model, opts.images, opts.count)
    if opts.outputs is not None and opts.outputs.is_dir():
        raise UsageError(f"--outputs {opts.outputs} is a folder")
    check_settings(EDGE, plan, role.process.threads)
    rows: list[Row] = []
    saved: dict[str, list[tuple[torch.Tensor, ...]]] = {}
    peer = connect(EDGE, role.connect)
    try:
        cloud_info = _send_plan(peer, plan)
        peer.wait_s = role.connect.op_timeout_s  # agreed on the plan: the handshake is over
        probes = {i: probe_edge(peer, i, link, opts.probe_s) for i, link in enumerate(plan.links())} \
            if opts.probe_s > 0 else {}
        run = _EdgeRun(model, device, opts, plan, peer, samples, driver, role_info(role.process, device), cloud_info,
                       probes, {}, {})
        for ci, config in enumerate(plan.configs):
            before = _references(run)
            got, saved[f"{config.label}@{config.link.name}"] = _measure_config(run, ci, config)
            for row in got:
                row["edge_whole_before_s"], row["cloud_whole_before_s"] = before
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                else:
                    log.info("%s", format_row(row))
        end = _references(run)
        for row in rows:
            row["edge_whole_end_s"], row["cloud_whole_end_s"] = end
        if opts.reference_runs:
            log.info("whole model, back to back: edge %s ms before the first placement, %s ms after the last",
                     _ms(rows[0]["edge_whole_before_s"] if rows else None), _ms(end[0]))
        peer.send_ctrl(CMD_QUIT)
    finally:
        disconnect()
    if opts.outputs is not None:
        atomic_write(opts.outputs, lambda tmp: torch.save({"inputs": _saved_inputs(samples), "outputs": saved}, tmp))
    if opts.out is not None:
        write_rows(opts.out, rows)
    return rows


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.2f}"


def _send_plan(peer: Peer, plan: Plan) -> dict[str, Any]:
    """Send the plan; the cloud's description of itself, its answer."""
    text = plan.to_json().encode()
    peer.send_ctrl(CMD_PLAN, len(text))
    peer.send_bytes(text)
    msg = peer.recv_ctrl(CMD_INFO)
    cloud_info = json.loads(peer.recv_bytes(msg[1]).decode())
    log.info("cloud: %s", ", ".join(f"{k} {v}" for k, v in cloud_info.items()))
    return cloud_info


def _references(run: _EdgeRun) -> tuple[float | None, float | None]:
    """Each role's whole model, timed now, one role after the other (None: --reference-runs 0)."""
    n = run.opts.reference_runs
    if not n:
        return None, None
    edge_s = time_whole_model(run.model, run.samples, run.device, n, run.modules)
    run.peer.send_ctrl(CMD_REFERENCE, n)
    msg = run.peer.recv_ctrl(CMD_REFERENCE)
    return edge_s, msg[1] / 1e9


def _measure_config(run: _EdgeRun, ci: int, config: RunConfig) -> tuple[list[Row], list[tuple[torch.Tensor, ...]]]:
    """Warm up (checking outputs with --verify), then measure each scenario: the rows and
    the warm-up outputs."""
    plan, opts = run.plan, run.opts
    log.info("[%d/%d] %s over %s: %s", ci + 1, len(plan.configs), config.label, config.link.name,
             format_placement(plan.layer_names, config.placement))
    run.peer.send_ctrl(CMD_CONFIG, ci)
    runner = EdgeRunner(run.model, config, run.peer, run.modules, run.device)
    outs = []
    for w in range(opts.warmup):
        idx = w % len(run.samples)
        got = runner.infer(run.samples[idx])
        outs.append(got)
        if opts.verify:
            check_outputs(f"{config.label} over {config.link.name}", got, _reference_outputs(run, idx))
    overruns_before = runner.shaper.stats.overruns
    probe = run.probes.get(plan.links().index(config.link))
    rows = []
    for scenario in opts.scenarios:
        runner.phases = PhaseTimes()  # warm-up and earlier scenarios excluded
        settings = MeasureSettings(scenario=scenario, min_query_count=opts.min_query_count,
                                   min_duration_s=opts.min_duration_s, target_qps=opts.target_qps,
                                   expected_latency_s=config.pred_bundle_s)
        log_dir = None
        if opts.loadgen_logs is not None:
            log_dir = opts.loadgen_logs / f"{ci:03d}-{config.label}-{config.link.name}-{scenario}"
        stats = measure(lambda i: runner.infer(run.samples[i]), len(run.samples), settings, run.driver, log_dir)
        row = make_row(run, config, stats, probe, runner.shaper.stats.overruns - overruns_before)
        row.update(runner.phases.per_query())
        rows.append(row)
    runner.finish()
    return rows, outs


def _reference_outputs(run: _EdgeRun, idx: int) -> list[torch.Tensor]:
    if idx not in run.refs:
        with torch.inference_mode():
            run.refs[idx] = [t.to(CPU) for t in flat_tensors(run.model.forward_full(*to_device(run.samples[idx], run.device)))]
    return run.refs[idx]


def _merged_note(layer_names: Sequence[str], config: RunConfig) -> str:
    if not config.planned:
        return ""
    return f"planned as {format_placement(layer_names, config.planned)}; same-setting runs merged"


def make_row(run: _EdgeRun, config: RunConfig, stats: LatencyStats, probe: ProbeResult | None,
             overruns: int) -> Row:
    plan = run.plan
    moves = transfers(config.placement, len(plan.layer_names))
    meas = stats.representative_s()
    edge, cloud = run.edge_info, run.cloud_info
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
        "pred_bundle_edge_s": config.pred_bundle_edge_s,
        "pred_bundle_cloud_s": config.pred_bundle_cloud_s,
        "pred_layersum_edge_s": config.pred_layersum_edge_s,
        "pred_layersum_cloud_s": config.pred_layersum_cloud_s,
        "up_bytes": sum(plan.cut_bytes[c] for c, d in moves if d == UP),
        "down_bytes": sum(plan.cut_bytes[c] for c, d in moves if d == DOWN),
        "transfers": len(moves),
        "up_overruns": overruns,
        "edge_threads": edge.get("threads"),
        "cloud_threads": cloud.get("threads"),
        "edge_torch_device": edge.get("gpu") or edge.get("torch_device"),
        "cloud_torch_device": cloud.get("gpu") or cloud.get("torch_device"),
        "cloud_host": cloud.get("host"),
        "samples": run.opts.count,
        "warmup": run.opts.warmup,
        "host": edge.get("host"),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": "; ".join(n for n in (stats.note, _merged_note(plan.layer_names, config)) if n),
    }


def _saved_inputs(samples: Sequence[tuple[torch.Tensor, ...]]) -> list[Any]:
    return [s[0] if len(s) == 1 else s for s in samples]  # one-input models: tensors, as before
