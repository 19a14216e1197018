"""The typed options of a run (no torch, no argparse).

The command lines (dime.run.cli, dime.run.validate) build these frozen dataclasses;
the library takes them. The local launcher hands each device process its DeviceOptions as
a JSON file (to_json/from_json), so nothing is turned back into command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dime.core.links import Link, parse_links
from dime.errors import UsageError
from dime.run.links import SHAPER_USER, SHAPERS
from dime.run.links.schedule import LinkSchedule
from dime.run.measure import SINGLE_STREAM

EDGE_ROLE, CLOUD_ROLE = "edge", "cloud"  # the two devices' names when there is no system file
ADAPT_MEASURED = "measured"  # --adapt: re-plan when the rates estimated from the run's transfers move
ADAPT_SCHEDULE = "schedule"  # --adapt schedule: re-plan at each step of the link schedule (the oracle)
ADAPT_MODES = (ADAPT_MEASURED, ADAPT_SCHEDULE)
ADAPT_OBJECTIVES = ("latency", "throughput")


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load, cut the same way on every device."""

    name: str
    weights: str | None = None
    cuts: tuple[str, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    inputs: str | None = None  # name:dtype:shape,... for models that take tensors
    layers: int | None = None  # about N layers, merged as when profiling
    capture: str = "auto"  # auto | fx | export


@dataclass(frozen=True)
class PlanOptions:
    """Where the source's placements come from: a run plan, a system file and its solutions, or
    two-device solutions and splits over links."""

    solutions: tuple[Path, ...] = ()
    system: Path | None = None  # N devices: the system file (devices, network, profiles)
    split: str | None = None
    plan: Path | None = None
    edge_device: str | None = None
    cloud_device: str | None = None
    edge_setting: str | None = None
    cloud_setting: str | None = None
    profiles: tuple[str, ...] = ()
    links: tuple[Link, ...] = field(default_factory=lambda: tuple(parse_links(None)))
    schedule: tuple[LinkSchedule, ...] = ()  # --link-schedule: rate changes during the run


@dataclass(frozen=True)
class AdaptOptions:
    """--adapt: re-plan while the measurement runs (dime.run.control.adapt)."""

    mode: str = ""  # "" (off), ADAPT_MEASURED or ADAPT_SCHEDULE
    objective: str = "latency"  # what the re-plans minimise: latency, or the period (throughput)
    threshold: float = 0.2  # re-solve when an estimate moves this much from the rate planned for
    margin: float = 0.05  # switch when the new plan's prediction beats the current one's by this much
    window: int = 5  # transfers in each direction's median
    min_samples: int = 3  # transfers before a direction has an estimate
    explore_s: float = 2.0  # an idle direction's low estimate is forgotten after this long

    def __post_init__(self) -> None:
        if self.mode not in ("", *ADAPT_MODES):
            raise UsageError(f"--adapt {self.mode!r}: choose from {', '.join(ADAPT_MODES)}")
        if self.objective not in ADAPT_OBJECTIVES:
            raise UsageError(f"--objective {self.objective!r}: choose from {', '.join(ADAPT_OBJECTIVES)}")

    @property
    def on(self) -> bool:
        return bool(self.mode)


@dataclass(frozen=True)
class RunOptions:
    """What the source (the device that drives) measures, and where it writes."""

    plan: PlanOptions = field(default_factory=PlanOptions)
    scenarios: tuple[str, ...] = (SINGLE_STREAM,)
    min_query_count: int = 32
    min_duration_s: float = 0.0
    target_qps: float | None = None
    warmup: int = 3
    reference_runs: int = 10  # whole-model timings before every placement and at the end
    in_flight: int = 1  # queries in the chain at once
    driver: str = "auto"
    loadgen_logs: Path | None = None
    images: Path | None = None
    count: int = 8
    verify: bool = False
    outputs: Path | None = None
    outputs_append: bool = False  # add to the outputs an earlier run of this launch saved (one run per network)
    out: Path | None = None
    probe_s: float = 0.2
    adapt: AdaptOptions = field(default_factory=AdaptOptions)
    queries_out: Path | None = None  # a row per query: its times and the placement it ran under
    replans_out: Path | None = None  # a row per re-plan


@dataclass(frozen=True)
class ProcessOptions:
    """How one role's process runs: torch threads, pinned cores, torch device."""

    threads: int = 1
    cores: tuple[int, ...] | None = None
    torch_device: str = "cpu"


@dataclass(frozen=True)
class ConnectOptions:
    """The rendezvous: the source listens at host:port, every other device connects."""

    host: str
    port: int
    timeout_s: float = 30.0  # connection and handshake
    op_timeout_s: float = 600.0  # any single message once every device agreed on the plan

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class DeviceOptions:
    """Everything one device process needs."""

    device: str  # its name: edge or cloud for two devices, else a device of the system file
    model: ModelSpec
    connect: ConnectOptions
    process: ProcessOptions = field(default_factory=ProcessOptions)
    run: RunOptions = field(default_factory=RunOptions)  # the source's; another device checks run.plan.solutions
    source: bool = False  # it holds the input, gets the output back and drives the run
    shaper: str = SHAPER_USER  # the source's choice; every device follows the plan's
    # the source writes the schedule's start here (CLOCK_MONOTONIC seconds), for the launcher that
    # shapes the links by the schedule (dime.run local --shaper netns)
    clock_file: Path | None = None

    def __post_init__(self) -> None:
        if self.shaper not in SHAPERS:
            raise UsageError(f"shaper {self.shaper!r} is not one of {', '.join(SHAPERS)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "device options") -> "DeviceOptions":
        try:
            return _decode(cls, json.loads(text))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{where}: not dime.run device options ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class LocalOptions:
    """Every device on this machine (dime.run local)."""

    model: ModelSpec
    run: RunOptions
    devices: tuple[tuple[str, ProcessOptions], ...] = ((EDGE_ROLE, ProcessOptions()), (CLOUD_ROLE, ProcessOptions()))
    source: str = EDGE_ROLE
    port: int | None = None
    timeout_s: float = 30.0
    op_timeout_s: float = 600.0
    shaper: str = "auto"  # auto | user | netns
    verbose: int = 0  # the device processes' log level, as -v counts (-1: quiet)


def _decode(tp: Any, value: Any) -> Any:
    """Rebuild a value of type `tp` from its dataclasses.asdict/JSON form."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner, value)
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        item = typing.get_args(tp)[0]
        return tuple(_decode(item, v) for v in value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"expected an object for {tp.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _decode(hints[f.name], value[f.name]) for f in dataclasses.fields(tp)
                     if f.name in value})
    if tp is Path:
        return Path(value)
    return value
