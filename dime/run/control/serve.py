"""A device that is not the source: it joins, takes the source's plan, and does its part of
each placement (its bundles, its relays) until the source says goodbye."""

from __future__ import annotations

import json
import logging
from typing import Any

import torch

from dime.capture.models import SplitModel
from dime.core.placement import check_placement
from dime.errors import UsageError
from dime.run.control.probe import probe_first_end, probe_second_end
from dime.run.control.process import build_ahead, check_settings, device_info, load_samples, shaping
from dime.run.data.compute import CPU, time_whole_model
from dime.run.data.peer import Group, Membership, PeerError, device_handshake, disconnect
from dime.run.data.pipeline import Pipeline
from dime.run.data.wire import (
    CMD_CLOCK,
    CMD_CONFIG,
    CMD_CONFIG_JSON,
    CMD_INFO,
    CMD_PING,
    CMD_PLAN,
    CMD_PROBE,
    CMD_PROBE_RESULT,
    CMD_QUIT,
    CMD_REFERENCE,
    CMD_STATS,
)
from dime.run.links.schedule import Clock, LinkView
from dime.run.options import DeviceOptions
from dime.run.placements import check_solution_model, parse_solution, read_solution
from dime.run.plan import Plan, RunConfig

log = logging.getLogger("dime.run")


def _receive_plan(group: Group, model: SplitModel, opts: DeviceOptions) -> Plan:
    msg = group.recv_ctrl(0, CMD_PLAN)
    plan = Plan.from_json(group.recv_bytes(0, msg[1]).decode(), "the source's plan")
    plan.check_model(model.name, model.layer_names, model.cut_bytes)
    names = plan.rank_names()
    if group.rank >= len(names) or names[group.rank] != opts.device:
        raise PeerError(f"protocol error: the source's plan gives rank {group.rank} to another device than "
                        f"{opts.device!r}")
    group.names = names
    for path in opts.run.plan.solutions:
        data = read_solution(path)
        check_solution_model(data, str(path), model.name, model.layer_names, model.cut_bytes)
        mine = parse_solution(data, model.layer_names, str(path), opts.run.plan.edge_device, plan.device_names)
        if all(c.placement != mine and c.planned != mine for c in plan.configs):
            raise UsageError(f"the source runs other placements than {path}")
    return plan


def serve(opts: DeviceOptions, model: SplitModel, device: torch.device = CPU) -> None:
    members = device_handshake(opts.connect, opts.device)
    if members is None:
        log.info("%s: the plan does not need this device; leaving", opts.device)
        return
    # until the plan names every rank, the only device to talk to is the source
    group = Group(Membership(members.rank, ("the source",) * (members.rank + 1)), opts.connect.address,
                  opts.connect.timeout_s)
    try:
        plan = _receive_plan(group, model, opts)
        me = plan.device_names.index(opts.device)
        check_settings(plan, me, opts.process.threads)
        text = json.dumps(device_info(opts.process, device)).encode()
        group.send_ctrl(0, CMD_INFO, len(text))
        group.send_bytes(0, text)
        group.wait_s = opts.connect.op_timeout_s  # agreed on the plan: the handshake is over
        _serve(plan, me, group, model, device)
    finally:
        disconnect()


def _serve(plan: Plan, me: int, group: Group, model: SplitModel, device: torch.device) -> None:
    names = plan.device_names
    rank_of = plan.rank_of()
    pace, delay = shaping(plan.shaper)
    probe_links = plan.probe_links()
    modules: dict[tuple[int, int], Any] = {}
    build_ahead(model, modules, plan, me)
    samples = None
    clock = Clock()  # the schedule's start, once the source says so
    while True:
        msg = group.recv_ctrl(0)
        cmd = msg[0]
        if cmd == CMD_QUIT:
            return
        if cmd == CMD_PING:  # a placement without this device began: nothing to do
            continue
        if cmd == CMD_CLOCK:
            clock.start()
            continue
        if cmd == CMD_PROBE and 0 <= msg[1] < len(probe_links):
            a, b, link = probe_links[msg[1]]
            up, down, reps = msg[2], msg[3], msg[4]
            if me == a:
                res = probe_first_end(group, rank_of[b], link, up, down, reps, pace, delay, (names[a], names[b]))
                group.send_ctrl(0, CMD_PROBE_RESULT, round(res.up_s * 1e9), round(res.down_s * 1e9),
                                round(res.ping_s * 1e9))
            elif me == b:
                probe_second_end(group, rank_of[a], link, up, down, reps, pace, delay)
            else:
                raise PeerError(f"protocol error: {names[me]!r} asked to probe link {names[a]}-{names[b]}")
        elif cmd == CMD_REFERENCE and msg[1] > 0:
            samples = samples or load_samples(model, None, 2)
            whole_s = time_whole_model(model, samples, device, msg[1], modules)
            group.send_ctrl(0, CMD_REFERENCE, round(whole_s * 1e9))
        elif (cmd == CMD_CONFIG and 0 <= msg[1] < len(plan.configs) or cmd == CMD_CONFIG_JSON and msg[1] > 0) \
                and msg[2] >= 1:
            if cmd == CMD_CONFIG:
                config = plan.configs[msg[1]]
            else:
                config = _received_config(plan, group.recv_bytes(0, msg[1]))
            pipeline = Pipeline(config.program(plan.cut_bytes), me, model, modules, group, rank_of, config.network,
                                msg[2], pace, delay, device, group.wait_s, name=names[me],
                                links=LinkView(config.network, plan.schedule, clock),
                                report_to=0 if plan.adapt_max_bundle else None)
            pipeline.start()
            try:
                stats = pipeline.join()
            except BaseException:
                pipeline.stop()
                raise
            text = json.dumps(stats.to_json()).encode()
            group.send_ctrl(0, CMD_STATS, len(text))
            group.send_bytes(0, text)
            log.debug("%s: %d queries of %s over %s", names[me], stats.queries, config.label, config.network_label)
        else:
            raise PeerError(f"protocol error: control message {msg[:3]} from the source")


def _received_config(plan: Plan, data: bytes) -> RunConfig:
    """A config the source sends whole (a re-plan), checked as the plan's own are."""
    try:
        config = RunConfig.from_json(json.loads(data.decode()))
        config.program(plan.cut_bytes)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as e:
        raise PeerError(f"protocol error: the source sent a config that is not one ({type(e).__name__}: {e})") from None
    check_placement(plan.layer_names, config.placement, plan.device_names, "the source's config")
    return config
