"""The source's placements behind one chain of queries: start one, switch at a query boundary, end.

A switch is the simple correct one: the chain stops admitting queries (they wait in its queue),
the queries in flight finish under the old placement, END follows the last of them through every
device of the old placement, each device reports its account of it, and only then does every
device of the new placement get its part and the chain admit queries again. No query is lost,
none runs twice, none meets two placements. What it costs is measured: the drain (the queries in
flight finishing) and the whole switch (drain, END, accounts, the new placement started).
"""

from __future__ import annotations

import json
import logging
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from dime.capture.models import SplitModel
from dime.run.control.probe import ProbeResult
from dime.run.data.chain import Chain
from dime.run.data.peer import Group
from dime.run.data.pipeline import Pipeline
from dime.run.data.wire import CMD_CONFIG, CMD_CONFIG_JSON, CMD_PING, CMD_STATS
from dime.run.links.estimate import Transfer
from dime.run.links.schedule import Clock, LinkView
from dime.run.options import RunOptions
from dime.run.plan import Plan, RunConfig

if TYPE_CHECKING:
    from dime.plan.problem import PlacementProblem

log = logging.getLogger("dime.run")


@dataclass
class SourceRun:
    """What the source carries from placement to placement."""

    model: SplitModel
    device: torch.device
    opts: RunOptions
    plan: Plan
    group: Group
    rank_of: list[int]  # by device index; -1: not in the run
    samples: list[tuple[torch.Tensor, ...]]
    driver: str
    infos: dict[str, dict[str, Any]]  # by device name
    probes: list[tuple[tuple[int, int, Any], ProbeResult]]
    modules: dict[tuple[int, int], Any]
    refs: dict[int, list[torch.Tensor]]  # the full model's outputs, by sample
    pace: bool
    delay: bool
    clock: Clock = field(default_factory=Clock)  # the schedule's start
    clock_file: Path | None = None  # where to write the schedule's start for the launcher
    problem: PlacementProblem | None = None  # --adapt: what re-plans solve
    transfers: queue.Queue[Transfer] | None = None  # --adapt: every transfer of the run, for the estimates
    query_rows: list[dict[str, Any]] = field(default_factory=list)  # --queries-out
    replan_rows: list[dict[str, Any]] = field(default_factory=list)  # --replans-out

    @property
    def me(self) -> int:
        return self.plan.source

    def links(self, config: RunConfig) -> LinkView:
        """The links as the pacers realise them: the config's network, with the plan's schedule."""
        return LinkView(config.network, self.plan.schedule, self.clock)


@dataclass(frozen=True)
class SwitchCost:
    drain_s: float  # the queries in flight finishing under the old placement
    switch_s: float  # from the stop of admissions until the new placement takes queries
    first_query: int  # the first query under the new placement


class Session:
    """One chain of queries over the placements the source runs one after another."""

    def __init__(self, run: SourceRun, in_flight: int) -> None:
        self.run = run
        self.in_flight = in_flight
        self.chain: Chain | None = None
        self.pipeline: Pipeline | None = None
        self.config: RunConfig | None = None
        self.plan_no = -1  # the placements started so far, less one (0: the first)
        self.placements: list[str] = []  # the text of each placement started, by number
        self._others: list[int] = []
        self.device_stats: dict[str, dict[str, float]] = {}  # summed over the placements, by device name

    def start(self, config: RunConfig, index: int | None = None) -> None:
        """Start `config` on every device it involves (by its index in the plan, or sent whole)
        and behind the chain."""
        run, group = self.run, self.run.group
        program = config.program(run.plan.cut_bytes)
        others = [run.rank_of[d] for d in sorted(program.devices()) if d != run.me]
        text = b"" if index is not None else json.dumps(config.to_json()).encode()
        for r in others:
            if index is not None:
                group.send_ctrl(r, CMD_CONFIG, index, self.in_flight)
            else:
                group.send_ctrl(r, CMD_CONFIG_JSON, len(text), self.in_flight)
                group.send_bytes(r, text)
        for r in set(range(1, group.world)) - set(others):
            group.send_ctrl(r, CMD_PING)  # idle in this placement: its wait for the next message starts again
        pipeline = Pipeline(program, run.me, run.model, run.modules, group, run.rank_of, config.network,
                            self.in_flight, run.pace, run.delay, run.device, group.wait_s,
                            name=run.plan.device_names[run.me], links=run.links(config),
                            on_transfer=run.transfers.put if run.transfers is not None else None,
                            collect_from=others if run.transfers is not None else ())
        pipeline.start()
        self.plan_no += 1
        self.placements.append(run.plan.placement_text(config.placement))
        self.pipeline, self.config, self._others = pipeline, config, others
        if self.chain is None:
            self.chain = Chain(pipeline, run.samples, self.in_flight)
        else:
            self.chain.resume(pipeline, self.plan_no)

    def _finish(self) -> None:
        """END through the drained placement; every device's account of it."""
        assert self.pipeline is not None
        run, group = self.run, self.run.group
        pipeline = self.pipeline
        try:
            own = pipeline.join(group.wait_s)
        except BaseException:
            pipeline.stop()
            raise
        self._add(run.plan.device_names[run.me], own.to_json())
        for r in self._others:
            msg = group.recv_ctrl(r, CMD_STATS)
            self._add(group.names[r], json.loads(group.recv_bytes(r, msg[1]).decode()))

    def _add(self, name: str, stats: dict[str, Any]) -> None:
        got = self.device_stats.setdefault(name, {"queries": 0, "busy_s": 0.0, "overruns": 0})
        for k in got:
            got[k] += stats.get(k, 0)

    def switch(self, config: RunConfig, index: int | None = None,
               between: Callable[[], None] | None = None) -> SwitchCost:
        """Run `config` from the next query on: drain, end the current placement, call `between`
        (nothing runs then), start `config`."""
        assert self.chain is not None and self.pipeline is not None
        t0 = time.perf_counter()
        self.chain.pause()
        drained = time.perf_counter()
        self.pipeline.finish()
        self._finish()
        if between is not None:
            between()
        self.start(config, index)
        return SwitchCost(drained - t0, time.perf_counter() - t0, self.chain.next_query)

    def end(self) -> None:
        """Every query issued is done; end the current placement."""
        assert self.chain is not None and self.pipeline is not None
        try:
            self.chain.close()
        except BaseException:
            self.pipeline.stop()
            raise
        self._finish()

    def fail(self, error: BaseException) -> None:
        """Fail every query now and to come (a switch that failed)."""
        if self.chain is not None:
            self.chain.fail(error)

    def stop(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()
