"""What a sweep is asked to do, and the cells it makes: one per (model, link setting).

Two devices (profiles, --edge, --cloud, a list of links) become the system they describe
(plan.system.two_devices), so both forms build the same PlacementProblem per model and
the same cells. With a system file, a link setting is one choice of rates for the links
named in --links (every combination), or the file's links as they are.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from dime.core.links import Link
from dime.core.network import Network
from dime.errors import UsageError
from dime.fileio import MAX_TABLE_BYTES, input_problem
from dime.plan import PlacementProblem
from dime.plan.system import Constraints, build_problem, load_system, two_devices
from dime.profiling.reader import load_profiles
from dime.plan.energy import energy_source, with_assumed_power
from dime.sweep.spec import CellSpec

log = logging.getLogger(__name__)

AS_GIVEN = "as-given"  # the link setting of a system file swept without --links


@dataclass(frozen=True)
class SweepOptions:
    """What a sweep is asked to do (the CLI's flags, parsed and checked)."""

    profiles: tuple[str, ...]
    out: Path
    edge: str | None = None
    cloud: str | None = None
    edge_settings: tuple[str, ...] | None = None
    cloud_settings: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None  # None: every model in the files (or the system's model)
    links: tuple[Link, ...] = ()  # two devices: the links swept
    system: Path | None = None  # a system file instead of profiles, --edge and --cloud
    link_rates: tuple[tuple[str, tuple[Link, ...]], ...] = ()  # system: (link name "a-b", its rates swept)
    max_bundle: int | None = None  # None: the largest K profiled for every chosen setting
    points: int = 20
    assume_edge_power_w: tuple[float, ...] | None = None  # the edge's (the source's) power
    assume_power_w: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (device, watts)
    bundle_sum: bool = False  # DIME's semantics instead of the merge rule
    trim: float = 0.1
    solver: str = "auto"
    time_limit_s: float | None = None
    jobs: int = 1
    plot: Path | None = None
    resume: bool = False
    progress: bool = True


def build_cells(opts: SweepOptions) -> list[CellSpec]:
    """Read and check every model's profiles; one CellSpec per (model, link setting). Raises on bad input."""
    cells: list[CellSpec] = []
    for problem, where in _problems(opts):
        problem, assumed = with_assumed_power(problem, opts.assume_edge_power_w, opts.assume_power_w)
        source = energy_source(problem.table, problem.roles, problem.max_bundle, assumed, where)
        if opts.system is not None:
            settings = link_settings(problem, opts.link_rates, where)
        else:
            settings = [("", link) for link in opts.links]
        for label, link in settings:
            cells.append(CellSpec.from_problem(
                dataclasses.replace(problem, link=link), label, points=opts.points, solver=opts.solver,
                time_limit_s=opts.time_limit_s, energy_source=source))
    return cells


def link_names(problem: PlacementProblem) -> list[str]:
    """Each link of the problem's network named by its ends, ``a-b`` (up is a -> b)."""
    roles = problem.roles
    return [f"{roles[nl.a].name}-{roles[nl.b].name}" for nl in problem.network.links]


def link_settings(
    problem: PlacementProblem, rates: Sequence[tuple[str, Sequence[Link]]], where: str = "the system"
) -> list[tuple[str, Network]]:
    """(label, network) of every combination of the given rates of named links; the network
    as it is (labelled AS_GIVEN) when no link is named."""
    net = problem.network
    if not rates:
        return [(AS_GIVEN, net)]
    names = link_names(problem)
    index = []
    for name, links in rates:
        if name not in names:
            raise UsageError(f"--links {name}: {where} has no link {name!r}; its links: {', '.join(names)}")
        if names.count(name) > 1:
            raise UsageError(f"--links {name}: {where} has {names.count(name)} links {name!r}; "
                             "--links cannot tell them apart")
        if not links:
            raise UsageError(f"--links {name}: empty list")
        index.append(names.index(name))
    out = []
    for combo in itertools.product(*(links for _, links in rates)):
        new = list(net.links)
        for i, link in zip(index, combo):
            new[i] = dataclasses.replace(new[i], link=link)
        label = ", ".join(f"{name}={link.name}" for (name, _), link in zip(rates, combo))
        out.append((label, dataclasses.replace(net, links=tuple(new))))
    return out


def _problems(opts: SweepOptions) -> Iterator[tuple[PlacementProblem, str]]:
    """(the problem of each model, where it comes from for messages)."""
    if opts.system is not None:
        yield from _system_problems(opts.system, opts)
        return
    by_file = {p: _models_in(p) for p in opts.profiles}
    for p, models in by_file.items():
        if models is None:
            load_profiles([p])  # raises the profile reader's own message
    available = list(dict.fromkeys(m for ms in by_file.values() for m in (ms or []) if m))
    wanted = list(opts.models) if opts.models else available
    for m in wanted:
        if m not in available:
            raise UsageError(f"no profiles of model {m!r}; models in the files: {', '.join(available)}")
    for model in wanted:
        files = [p for p, ms in by_file.items() if ms and model in ms]
        for flag, value in (("--edge", opts.edge), ("--cloud", opts.cloud)):
            if value is None:
                devices = load_profiles(files, model=model, trim=opts.trim).settings
                raise UsageError(f"{flag} DEV is required; devices in the profiles: {', '.join(devices)}")
        if not opts.links:
            raise UsageError("give one or more links to sweep")
        assert opts.edge is not None and opts.cloud is not None
        system = two_devices(files, opts.edge, opts.cloud, opts.links[0], opts.edge_settings, opts.cloud_settings,
                             model, opts.max_bundle, Constraints(bundle_sum=opts.bundle_sum))
        yield build_problem(system, trim=opts.trim), "the profiles"


def _system_problems(path: Path, opts: SweepOptions) -> Iterator[tuple[PlacementProblem, str]]:
    system = load_system(path)
    c = system.constraints
    ignored = [k for k, v in (("objective", c.objective != "latency"), ("max_latency_s", c.max_latency_s),
                              ("max_energy_j", c.max_energy_j)) if v]
    if ignored:
        log.info("%s: constraints %s ignored: the sweep sets the objective and budgets", path, ", ".join(ignored))
    changes: dict = {}
    if opts.bundle_sum:
        changes["constraints"] = dataclasses.replace(c, bundle_sum=True)
    if opts.max_bundle is not None:
        changes["max_bundle"] = opts.max_bundle
    system = dataclasses.replace(system, **changes)
    if opts.models:
        models: Sequence[str | None] = opts.models
    elif system.model is not None:
        models = (system.model,)
    else:  # every model the profiles hold, as with two devices
        found = [_models_in(p) for p in system.profiles]
        models = list(dict.fromkeys(m for ms in found for m in (ms or []) if m)) or [None]
    for model in models:
        yield build_problem(dataclasses.replace(system, model=model), trim=opts.trim), str(path)


def _models_in(path: str) -> list[str] | None:
    """The models named in a profile CSV, read cheaply; None when it cannot be read."""
    if input_problem(path, "profile file", MAX_TABLE_BYTES) is not None:
        return None  # a FIFO or a device would block or never end here
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "model" not in (reader.fieldnames or []):
                return None
            return list(dict.fromkeys((rec.get("model") or "").strip() for rec in reader))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
