"""The source device: it drives the run. It builds the plan, waits for the devices the plan
needs, sends them the plan, probes the links, times each device's whole model before every
placement, and measures every placement (one CSV row per scenario)."""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from dime.capture.models import SplitModel
from dime.core.costs import moves
from dime.errors import UsageError
from dime.fileio import atomic_write, atomic_write_text
from dime.run.control.adapt import Adapter, Replanner
from dime.run.control.probe import ProbeResult, probe_first_end, probe_result, probe_second_end, probe_sizes
from dime.run.control.process import build_ahead, check_settings, device_info, load_samples, shaping
from dime.run.control.session import Session, SourceRun
from dime.run.data.chain import QueryTrace
from dime.run.data.compute import CPU, check_outputs, flat_tensors, time_whole_model, to_device
from dime.run.data.peer import Group, disconnect, source_handshake
from dime.run.data.wire import CMD_CLOCK, CMD_INFO, CMD_PLAN, CMD_PROBE, CMD_PROBE_RESULT, CMD_QUIT, CMD_REFERENCE
from dime.run.links.schedule import schedule_text
from dime.run.measure import OFFLINE, SINGLE_STREAM, LatencyStats, MeasureSettings, measure_system, resolve_driver
from dime.run.options import DeviceOptions, RunOptions
from dime.run.placements import ModelShape, adapt_problem, build_plan
from dime.run.plan import Plan, RunConfig, pred_throughput_fps
from dime.run.results import QUERY_COLUMNS, REPLAN_COLUMNS, format_row, map_cell, rel_err, write_rows

if TYPE_CHECKING:
    from dime.plan.problem import PlacementProblem

log = logging.getLogger("dime.run")

Row = dict[str, Any]
PROBE_REPS = 3


def model_shape(model: SplitModel) -> ModelShape:
    return ModelShape(model.name, tuple(model.layer_names), tuple(model.cut_bytes))


def run_source(opts: DeviceOptions, model: SplitModel, device: torch.device = CPU,
               on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Drive the run; the result rows (also appended to the options' `out`). `on_row` sees each
    row as it is measured."""
    run_opts = opts.run
    plan = dataclasses.replace(build_plan(run_opts.plan, model_shape(model)), shaper=opts.shaper)
    problem = None
    if run_opts.adapt.on:
        plan, problem = _adaptive(plan, run_opts, model)
    me = plan.device_names[plan.source]
    if opts.device != me:
        raise UsageError(f"device {opts.device!r} is not the source of the plan ({me!r} is)")
    driver = resolve_driver(run_opts.driver)
    samples = load_samples(model, run_opts.images, run_opts.count)
    check_settings(plan, plan.source, opts.process.threads)
    rank_names = plan.rank_names()
    members = source_handshake(opts.connect, me, plan.device_names, rank_names)
    group = Group(members, opts.connect.address, opts.connect.timeout_s)
    pace, delay = shaping(plan.shaper)
    rows: list[Row] = []
    saved: dict[str, list[list[torch.Tensor]]] = {}
    done = False
    run: SourceRun | None = None
    try:
        infos = _send_plan(group, plan, device_info(opts.process, device))
        group.wait_s = opts.connect.op_timeout_s  # agreed on the plan: the handshake is over
        run = SourceRun(model, device, run_opts, plan, group, plan.rank_of(), samples, driver, infos, [], {}, {}, pace,
                        delay, clock_file=opts.clock_file, problem=problem,
                        transfers=queue.Queue() if problem is not None else None)
        build_ahead(model, run.modules, plan, plan.source)
        if run_opts.probe_s > 0:
            run.probes = _probe_links(run)
        for ci, config in enumerate(plan.configs):
            before = _references(run)
            got, saved[f"{config.label}@{config.network_label}"] = _measure_config(run, ci, config)
            for row in got:
                row["whole_before_s"] = map_cell(before)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                else:
                    log.info("%s", format_row(row))
        end = _references(run)
        for row in rows:
            row["whole_end_s"] = map_cell(end)
        if run_opts.reference_runs and end:
            log.info("whole model, back to back, after the last placement: %s",
                     ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in end.items()))
        for r in range(1, group.world):
            group.send_ctrl(r, CMD_QUIT)
        done = True
    finally:
        if not done and rows and run_opts.out is not None:
            write_rows(run_opts.out, rows)  # the placements measured before the failure are kept
            log.warning("wrote the %d row(s) measured before the failure to %s", len(rows), run_opts.out)
        if run is not None:
            for path, got, columns in ((run_opts.queries_out, run.query_rows, QUERY_COLUMNS),
                                       (run_opts.replans_out, run.replan_rows, REPLAN_COLUMNS)):
                if path is not None and got:
                    write_rows(path, got, columns)
        disconnect()
    if run_opts.outputs is not None:
        if run_opts.outputs_append and run_opts.outputs.exists():
            saved = {**torch.load(run_opts.outputs, weights_only=True)["outputs"], **saved}
        atomic_write(run_opts.outputs, lambda tmp: torch.save({"inputs": _saved_inputs(samples), "outputs": saved}, tmp))
    if run_opts.out is not None:
        write_rows(run_opts.out, rows)
    return rows


def _adaptive(plan: Plan, opts: RunOptions, model: SplitModel) -> tuple[Plan, PlacementProblem]:
    """The plan of a run that re-plans, and the problem it re-solves: one placement, every device
    of the system taking part, the computing ones ready to run any bundle a re-plan may give."""
    if len(plan.configs) != 1:
        raise UsageError(f"--adapt runs one placement over one network through one measurement; the plan has "
                         f"{len(plan.configs)} (give one --solution or --split, one --link)")
    problem = adapt_problem(opts.plan, opts.adapt.objective, model.name)
    if tuple(problem.table.layer_names) != tuple(model.layer_names):
        raise UsageError(f"--adapt: the profiles' layers {','.join(problem.table.layer_names)} are not the model's "
                         f"{','.join(model.layer_names)}")
    if [r.name for r in problem.roles] != list(plan.device_names):
        raise UsageError(f"--adapt: the problem's devices {', '.join(r.name for r in problem.roles)} are not the "
                         f"plan's {', '.join(plan.device_names)}")
    computing = tuple(r for r, role in enumerate(problem.roles) if role.compute)
    return dataclasses.replace(plan, adapt_max_bundle=problem.k, adapt_computing=computing), problem


def _send_plan(group: Group, plan: Plan, own: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Send the plan to every device; their descriptions of themselves, by name."""
    text = plan.to_json().encode()
    infos = {group.names[0]: own}
    for r in range(1, group.world):
        group.send_ctrl(r, CMD_PLAN, len(text))
        group.send_bytes(r, text)
    for r in range(1, group.world):
        msg = group.recv_ctrl(r, CMD_INFO)
        infos[group.names[r]] = json.loads(group.recv_bytes(r, msg[1]).decode())
        log.info("%s: %s", group.names[r], ", ".join(f"{k} {v}" for k, v in infos[group.names[r]].items()))
    return infos


def _probe_links(run: SourceRun) -> list[tuple[tuple[int, int, Any], ProbeResult]]:
    """Probe every link whose ends both take part, one after the other."""
    plan, group, rank_of = run.plan, run.group, run.rank_of
    out = []
    for pi, (a, b, link) in enumerate(plan.probe_links()):
        up, down = probe_sizes(link, run.opts.probe_s)
        for d in (a, b):
            if d != run.me:
                group.send_ctrl(rank_of[d], CMD_PROBE, pi, up, down, PROBE_REPS)
        names = (plan.device_names[a], plan.device_names[b])
        if a == run.me:
            res = probe_first_end(group, rank_of[b], link, up, down, PROBE_REPS, run.pace, run.delay, names)
        else:
            if b == run.me:
                probe_second_end(group, rank_of[a], link, up, down, PROBE_REPS, run.pace, run.delay)
            msg = group.recv_ctrl(rank_of[a], CMD_PROBE_RESULT)
            res = probe_result(names, link, up, down, msg[1] / 1e9, msg[2] / 1e9, msg[3] / 1e9)
        out.append(((a, b, dataclasses.astuple(link)), res))
    return out


def _references(run: SourceRun) -> dict[str, float]:
    """Each computing device's whole model, timed now, one device after the other (empty:
    --reference-runs 0)."""
    n = run.opts.reference_runs
    out: dict[str, float] = {}
    if not n:
        return out
    for d in run.plan.computing_devices():
        name = run.plan.device_names[d]
        if d == run.me:
            out[name] = time_whole_model(run.model, run.samples, run.device, n, run.modules)
        else:
            run.group.send_ctrl(run.rank_of[d], CMD_REFERENCE, n)
            out[name] = run.group.recv_ctrl(run.rank_of[d], CMD_REFERENCE)[1] / 1e9
    return out


def _measure_config(run: SourceRun, ci: int, config: RunConfig) -> tuple[list[Row], list[list[torch.Tensor]]]:
    """Start every device's part, warm up (checking outputs with --verify), measure each
    scenario, end the config; the rows and the warm-up outputs. With a schedule or --adapt the
    clock starts after the warm-up, at a query boundary, and with --adapt the source re-plans
    (and switches) while the measurement runs; with --verify every output is then checked."""
    plan, opts = run.plan, run.opts
    log.info("[%d/%d] %s over %s: %s", ci + 1, len(plan.configs), config.label, config.network_label,
             plan.placement_text(config.placement))
    session = Session(run, opts.in_flight)
    session.start(config, ci)
    adapter: Adapter | None = None
    try:
        chain = session.chain
        assert chain is not None
        outs = []
        for w in range(opts.warmup):
            idx = w % len(run.samples)
            got = chain.infer(idx)
            outs.append(got)
            if opts.verify:
                check_outputs(f"{config.label} over {config.network_label}", got, _reference_outputs(run, idx))
        if plan.schedule or opts.adapt.on:
            session.switch(config, ci, between=lambda: _start_clock(run))
        elif opts.queries_out is not None:
            run.clock.start()  # the queries' times count from the measurement's start
        if opts.adapt.on and opts.verify:
            refs = [_reference_outputs(run, i) for i in range(len(run.samples))]
            chain.check = lambda idx, got: check_outputs(
                f"{plan.device_names[run.me]}: query of sample {idx}", got, refs[idx])
        first = session.plan_no  # the measurement's first placement (the warm-up ran under an earlier number)
        if opts.adapt.on:
            assert run.problem is not None and run.transfers is not None
            adapter = Adapter(session, Replanner(run.problem), opts.adapt, config.network, plan.schedule, run.clock,
                              plan.device_names, run.transfers, config.network_label)
            adapter.start()
        stats_by_scenario = []
        for scenario in opts.scenarios:
            settings = MeasureSettings(scenario=scenario, min_query_count=opts.min_query_count,
                                       min_duration_s=opts.min_duration_s, target_qps=opts.target_qps,
                                       expected_latency_s=config.pred_bundle_s,
                                       expected_qps=pred_throughput_fps(config.bundle, opts.in_flight))
            log_dir = None
            if opts.loadgen_logs is not None:
                log_dir = opts.loadgen_logs / f"{ci:03d}-{config.label}-{config.network_label}-{scenario}"
            if opts.queries_out is not None:
                chain.trace = []
            stats_by_scenario.append(measure_system(chain.issue, len(run.samples), settings, run.driver, log_dir))
            if chain.trace is not None:
                run.query_rows += _query_rows(run, config, scenario, chain.trace, session.placements, first)
        if adapter is not None:
            adapter.stop()
            if adapter.error is not None:
                raise adapter.error
        session.end()
    except BaseException:
        if adapter is not None:
            adapter.stop()
        session.stop()
        raise
    replans = adapter.replans if adapter is not None else []
    rows = []
    for stats in stats_by_scenario:
        row = make_row(run, config, stats, session.device_stats)
        if opts.adapt.on:
            switched = [r for r in replans if r.switched]
            row.update(adapt=opts.adapt.mode, replans=len(replans), switches=len(switched),
                       switch_s=sum(r.switch_s or 0.0 for r in switched))
        rows.append(row)
    run.replan_rows += [{"model": plan.model, "config": config.label, **dataclasses.asdict(r)} for r in replans]
    return rows, outs


def _start_clock(run: SourceRun) -> None:
    """The schedule starts now, on every device (and for the launcher, in the clock file)."""
    for r in range(1, run.group.world):
        run.group.send_ctrl(r, CMD_CLOCK)
    t0 = run.clock.start()
    if run.clock_file is not None:
        atomic_write_text(run.clock_file, f"{t0!r}\n")
    if run.plan.schedule:
        log.info("the link schedule starts: %s", schedule_text(run.plan.link_schedules()))


def _query_rows(run: SourceRun, config: RunConfig, scenario: str, trace: Sequence[QueryTrace],
                placements: Sequence[str], first: int) -> list[Row]:
    """A row per query, its times in seconds from the clock's start; `plan` numbers the
    placements of the measurement from 0 (the session's placement `first`)."""
    t0 = run.clock.t0 or 0.0
    in_flight = 1 if scenario == SINGLE_STREAM else run.opts.in_flight
    lost = [q for q in trace if not q.ok]
    if lost:
        log.warning("%d of %d queries were not answered", len(lost), len(trace))
    return [{"model": run.plan.model, "config": config.label, "scenario": scenario, "in_flight": in_flight,
             "query": q.query, "sample": q.sample, "plan": q.pipeline - first if q.pipeline >= 0 else None,
             "placement": placements[q.pipeline] if 0 <= q.pipeline < len(placements) else "",
             "issued_s": q.issued - t0, "started_s": q.started - t0, "done_s": q.done - t0,
             "latency_s": q.done - q.issued, "ok": q.ok} for q in trace]


def _reference_outputs(run: SourceRun, idx: int) -> list[torch.Tensor]:
    if idx not in run.refs:
        with torch.inference_mode():
            run.refs[idx] = [t.to(CPU) for t in flat_tensors(run.model.forward_full(*to_device(run.samples[idx], run.device)))]
    return run.refs[idx]


def _merged_note(plan: Plan, config: RunConfig) -> str:
    if not config.planned:
        return ""
    return f"planned as {plan.placement_text(config.planned)}; same-setting runs merged"


def network_text(plan: Plan, config: RunConfig) -> str:
    names = plan.device_names
    return "; ".join(f"{names[nl.a]}-{names[nl.b]} {nl.link.uplink_mbps:g}/{nl.link.downlink_mbps:g}/{nl.link.rtt_ms:g}"
                     for nl in config.network.links)


def make_row(run: SourceRun, config: RunConfig, stats: LatencyStats, device_stats: dict[str, dict[str, Any]]) -> Row:
    plan = run.plan
    names = plan.device_names
    program = config.program(plan.cut_bytes)
    used = sorted(program.devices())
    in_flight = 1 if stats.scenario == SINGLE_STREAM else run.opts.in_flight
    # the mean latency; offline with one query in flight: the time per sample, as before
    if stats.scenario == OFFLINE:
        meas = 1.0 / stats.throughput_qps if in_flight == 1 and stats.throughput_qps > 0 else None
    else:
        meas = stats.mean_s
    pred_fps = pred_throughput_fps(config.bundle, in_flight)
    link = config.link
    achieved = {}
    for key, res in run.probes:
        if any((nl.a, nl.b, dataclasses.astuple(nl.link)) == key for nl in config.network.links):
            achieved[f"{res.a}->{res.b}"] = res.achieved_up_mbps
            achieved[f"{res.b}->{res.a}"] = res.achieved_down_mbps
    busy = {n: s["busy_s"] / s["queries"] for n, s in device_stats.items() if s.get("queries")}

    def parts(pred: Any) -> str:
        return map_cell({names[d]: pred.compute_s[d] for d in used}) if pred else ""

    return {
        "model": plan.model,
        "config": config.label,
        "placement": plan.placement_text(config.placement),
        "devices": ",".join(names[d] for d in used),
        "source": names[plan.source],
        "profile_devices": map_cell({names[d]: plan.devices[d].profile_device for d in used}),
        "link": config.network_label,
        "network": network_text(plan, config),
        "uplink_mbps": link.uplink_mbps if link else None,
        "downlink_mbps": link.downlink_mbps if link else None,
        "rtt_ms": link.rtt_ms if link else None,
        "shaper": plan.shaper,
        "achieved_mbps": map_cell(achieved),
        "scenario": stats.scenario,
        "driver": stats.driver,
        "in_flight": in_flight,
        "count": stats.count,
        "mean_s": stats.mean_s,
        "p50_s": stats.p50_s,
        "p90_s": stats.p90_s,
        "p95_s": stats.p95_s,
        "p99_s": stats.p99_s,
        "min_s": stats.min_s,
        "max_s": stats.max_s,
        "throughput_fps": stats.throughput_qps,
        "target_qps": stats.target_qps,
        "valid": stats.valid,
        "measured_s": meas,
        "pred_bundle_s": config.pred_bundle_s,
        "pred_layersum_s": config.pred_layersum_s,
        "solver_latency_s": config.solver_latency_s,
        "err_bundle": rel_err(config.pred_bundle_s, meas),
        "err_layersum": rel_err(config.pred_layersum_s, meas),
        "pred_throughput_fps": pred_fps,
        "pred_period_s": config.bundle.period_s if config.bundle else None,
        "pred_bottleneck": config.bundle.bottleneck if config.bundle else None,
        "solver_throughput_fps": config.solver_throughput_fps,
        "err_throughput": rel_err(pred_fps, stats.throughput_qps) if stats.scenario == OFFLINE else None,
        "pred_comm_s": config.bundle.comm_s if config.bundle else None,
        "pred_bundle_compute_s": parts(config.bundle),
        "pred_layersum_compute_s": parts(config.layersum),
        "busy_s": map_cell(busy),
        "transfers": len(moves(config.placement, len(plan.layer_names), plan.source)),
        "hops": len(program.streams),
        "comm_bytes": sum(plan.cut_bytes[s.cut] for s in program.streams),
        "overruns": sum(s.get("overruns", 0) for s in device_stats.values()),
        "threads": map_cell({names[d]: run.infos.get(names[d], {}).get("threads") for d in used}),
        "torch_devices": map_cell({names[d]: _torch_device(run.infos.get(names[d], {})) for d in used}),
        "hosts": map_cell({names[d]: run.infos.get(names[d], {}).get("host") for d in used}),
        "samples": run.opts.count,
        "warmup": run.opts.warmup,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": "; ".join(n for n in (stats.note, _merged_note(plan, config)) if n),
        "schedule": schedule_text(plan.link_schedules()),
    }


def _torch_device(info: dict[str, Any]) -> Any:
    return info.get("gpu") or info.get("torch_device")


def _saved_inputs(samples: Sequence[tuple[torch.Tensor, ...]]) -> list[Any]:
    return [s[0] if len(s) == 1 else s for s in samples]  # one-input models: tensors, as before

