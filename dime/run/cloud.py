"""The cloud role: serve the edge's plan, placement by placement, until it says goodbye."""

from __future__ import annotations

import json
import logging
from typing import Any

import torch

from dime.capture.models import SplitModel
from dime.core.costs import CLOUD, segments
from dime.core.links import DOWN
from dime.errors import UsageError
from dime.run.compute import (
    CPU,
    bundle_modules,
    run_modules,
    time_whole_model,
    to_device,
)
from dime.run.linkemu import LinkShaper
from dime.run.options import RoleOptions
from dime.run.peer import Peer, PeerError, connect, disconnect
from dime.run.plan import (
    Plan,
    RunConfig,
    check_solution_model,
    parse_solution,
    read_solution,
)
from dime.run.probe import probe_cloud
from dime.run.process import check_settings, load_samples, role_info
from dime.run.wire import (
    CMD_CONFIG,
    CMD_INFO,
    CMD_PLAN,
    CMD_PROBE,
    CMD_QUIT,
    CMD_REFERENCE,
    DATA_END,
    DATA_RUN,
    CutLayout,
)

log = logging.getLogger("dime.run")


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
                _log_overruns(config, shaper)
                return queries
            if kind != DATA_RUN:
                raise PeerError(f"protocol error: data message {kind} in the middle of query {qid}")
            with torch.inference_mode():
                vals = run_modules(mods, to_device(vals, device))
            # packing copies the results into a CPU buffer (from a GPU: a synchronising copy)
            peer.send_cut(down, dbuf, DATA_RUN, qid, vals, shaper, DOWN)
        queries += 1


def _log_overruns(config: RunConfig, shaper: LinkShaper) -> None:
    st = shaper.stats
    if st.overruns:
        # a few: scheduling hiccups; many: the real transport is slower than the emulated link
        log.log(logging.WARNING if st.overruns * 10 > st.transfers else logging.INFO,
                "%s over %s: %d of %d downloads took longer than the emulated link (by up to %.3g s)",
                config.label, config.link.name, st.overruns, st.transfers, st.worst_overrun_s)


def _receive_plan(peer: Peer, model: SplitModel, opts: RoleOptions) -> Plan:
    msg = peer.recv_ctrl(CMD_PLAN)
    plan = Plan.from_json(peer.recv_bytes(msg[1]).decode(), "the edge's plan")
    plan.check_model(model)
    for path in opts.run.plan.solutions:
        data = read_solution(path)
        check_solution_model(data, str(path), model.name, model.layer_names, model.cut_bytes)
        mine = parse_solution(data, model.layer_names, str(path), opts.run.plan.edge_device)
        if all(c.placement != mine for c in plan.configs):
            raise UsageError(f"the edge runs other placements than {path}")
    return plan


def run_cloud(opts: RoleOptions, model: SplitModel, device: torch.device = CPU) -> None:
    peer = connect(CLOUD, opts.connect)
    try:
        plan = _receive_plan(peer, model, opts)
        check_settings(CLOUD, plan, opts.process.threads)
        text = json.dumps(role_info(opts.process, device)).encode()
        peer.send_ctrl(CMD_INFO, len(text))
        peer.send_bytes(text)
        peer.wait_s = opts.connect.op_timeout_s  # agreed on the plan: the handshake is over
        links = plan.links()
        modules: dict[tuple[int, int], Any] = {}
        samples: list[torch.Tensor] | None = None
        while True:
            msg = peer.recv_ctrl()
            if msg[0] == CMD_QUIT:
                break
            if msg[0] == CMD_PROBE:
                probe_cloud(peer, msg, links)
            elif msg[0] == CMD_REFERENCE and msg[1] > 0:
                samples = samples or load_samples(model, None, 2)
                whole_s = time_whole_model(model, samples, device, msg[1], modules)
                peer.send_ctrl(CMD_REFERENCE, round(whole_s * 1e9))
            elif msg[0] == CMD_CONFIG and 0 <= msg[1] < len(plan.configs):
                config = plan.configs[msg[1]]
                n = serve_config(model, config, peer, modules, device)
                log.debug("served %d queries of %s over %s", n, config.label, config.link.name)
            else:
                raise PeerError(f"protocol error: control message {msg[0]}")
    finally:
        disconnect()
