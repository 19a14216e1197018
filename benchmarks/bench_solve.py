"""Solve time of the placement ILP per backend, on synthetic instances (seeded random costs).

Instances (all SYNTHETIC costs, not measurements):
  vit15_k15   15 layers (the size of vit_b_16's bundle chain), K = 15, 10 edge settings + 1 cloud
  chain60_k10 60 layers, K = 10, 10 edge settings + 1 cloud
  chain60_k60 60 layers, K = 60 (every bundle), 10 edge settings + 1 cloud

Each instance is solved for two objectives: min latency (no budget), and min edge energy
under a latency budget of 1.2 x the least latency (the harder, sweep-like case).
Solve time is the backend call's wall time: translating the model for the solver and solving.

    python benchmarks/bench_solve.py [--repeats 3] [--solvers cbc,highs,gurobi] [--out results.csv]

With --scaling, N devices instead (SYNTHETIC costs): devices 2, 3, 4, 6 on a chain of links
(4g, wifi, then fast wired hops) plus a slow direct link from the source to the last device;
10 settings on each of the first two devices, 1 on the others; layers 15, 30, 60 at K = 8,
then K and settings varied at 4 devices and 60 layers. Objectives: latency, energy (of the
first two devices) under 1.2 x the least latency, throughput. Merge rule on (the default).

    python benchmarks/bench_solve.py --scaling [--solvers cbc] [--repeats 1]

With --throughput, the min-period objective only, before and after the run model (dime/plan/
runs.py), side by side in one run on the --scaling instances (--grid, default 2 and 4 devices x
60 layers x K = 8 x 10 settings): "before" is the bundle model as `linear_model()` gives it,
solved cold; "after" is `PlacementModel.solve` (run costs, pipeline start, cutoff, run model),
timed from the model's build. Both are checked to reach the same period. --variants adds the
steps one at a time (see VARIANTS).

    python benchmarks/bench_solve.py --throughput [--solvers cbc] [--time-limit 120] [--variants]

With --dp, the label-setting DP against the ILP backends on the same scaling_problem instances
(SYNTHETIC costs), in one run: devices 2, 3, 4, 6 x layers 15, 30, 60 x K 4, 8 x settings 2, 10
(narrow with --devices/--layers/--ks/--settings). Objectives: least latency, and least energy
within 1.2 x the least latency. DP time is end to end from the PlacementProblem (arrays, DP,
evaluation); ILP time is the backend call as above (the ILP's build, reported apart, excluded).
A DP objective that differs from an ILP's (relative 1e-9) is an error (exit 1). Then the time
of the whole latency-energy front of 4 devices x 60 layers x K=8 x 10 settings.

    python benchmarks/bench_solve.py --dp [--solvers cbc,highs] [--devices 4 --layers 60 --ks 8 --settings 10]

With --wakeup, the cost of counting wake-up after idling (dime/plan/wakeup.py) on the same grid
as --dp: each device gets the wake-up curve measured for alexnet at one thread on this VM
(profiles/wakeup/alexnet-xeon-2core.csv, 0..2.2 ms over 0..0.1 s of idle) and every bundle its
own extra, the curve's value at 0.1 s times a SYNTHETIC random factor in [0.5, 2]. Per instance and
objective: the DP alone (without wake-up) against the DP plus the search, end to end from the
PlacementProblem, the partial chains searched, and whether the search proved its optimum
(it stops at 2 million).

    python benchmarks/bench_solve.py --wakeup [--devices 2,4 --layers 15,60 --ks 8 --settings 2,10]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import logging
import math
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from dime.core.costs import BundleCost, CostTable, Role, WakeUp, bundles
from dime.core.links import Link, get_link
from dime.core.network import NetLink, Network
from dime.errors import InfeasibleError, SolverError
from dime.plan import PlacementProblem, build_model, solve_front
from dime.plan.backends import BackendUnavailableError, get_backend
from dime.plan.moves import SCALE
from dime.plan.runs import RunModel
from dime.plan.dp import DpSolver

INSTANCES = {"vit15_k15": (15, 15), "chain60_k10": (60, 10), "chain60_k60": (60, 60)}


def synthetic_table(n_layers: int, edge_settings: int, seed: int) -> CostTable:
    """Random but plausible costs: edge DVFS settings trade speed for power; the cloud is ~10x faster."""
    rng = random.Random(seed)
    names = tuple(f"synthetic_layer{i}" for i in range(n_layers))
    cut_bytes = tuple([3 * 224 * 224 * 4] + [rng.choice([150_528, 301_056, 605_184, 4_000]) for _ in range(n_layers)])
    base = [rng.uniform(2e-4, 2e-2) for _ in range(n_layers)]
    costs: dict[tuple[str, str, int, int], BundleCost] = {}
    edge = tuple(f"f{i}" for i in range(edge_settings))
    for i, setting in enumerate(edge):
        slow = 1.0 + 2.0 * i / max(1, edge_settings - 1)  # f0 fastest
        watts = 12.0 / slow**1.5
        for s, e in bundles(n_layers, n_layers):
            lat = sum(base[s : e + 1]) * slow * rng.uniform(0.75, 1.05)
            costs[("edge_synth", setting, s, e)] = BundleCost(lat, lat * watts * rng.uniform(0.9, 1.1), "synthetic", 10)
    for s, e in bundles(n_layers, n_layers):
        costs[("cloud_synth", "default", s, e)] = BundleCost(sum(base[s : e + 1]) * 0.1 * rng.uniform(0.75, 1.05), None, "", 10)
    return CostTable("synthetic", names, cut_bytes, {"edge_synth": edge, "cloud_synth": ("default",)}, costs)


@dataclass
class Row:
    solver: str
    instance: str
    objective: str
    variables: int
    constraints: int
    median_solve_s: float | None
    value: float | None
    status: str


def run(instances: list[str], solvers: list[str], repeats: int, time_limit_s: float | None, seed: int) -> list[Row]:
    rows: list[Row] = []
    link = get_link("4g")
    for inst in instances:
        n, k = INSTANCES[inst]
        table = synthetic_table(n, 10, seed)
        roles = (Role("edge_synth", table.settings["edge_synth"]), Role("cloud_synth", ("default",)))
        t0 = time.perf_counter()
        model = build_model(PlacementProblem(table, roles, link, k))
        logging.info("%s: model built in %.3f s", inst, time.perf_counter() - t0)
        least = model.solve("highs", time_limit_s).objective
        cases = {"latency": model, "energy@1.2xlat": model.with_budgets(objective="energy", max_latency_s=1.2 * least)}
        for objective, m in cases.items():
            rows += _solve_rows(m, solvers, inst, objective, repeats, time_limit_s)
    return rows


SCALING = [(d, n, 8, 10) for d in (2, 3, 4, 6) for n in (15, 30, 60)] + [
    (4, 60, 4, 10), (4, 60, 15, 10), (4, 60, 8, 2), (4, 60, 8, 5)]


def scaling_problem(n_devices: int, n_layers: int, k: int, settings: int, seed: int) -> PlacementProblem:
    """A synthetic N-device problem: two DVFS devices, then ever faster ones further away."""
    rng = random.Random(seed)
    names = tuple(f"synthetic_layer{i}" for i in range(n_layers))
    cut_bytes = tuple([3 * 224 * 224 * 4] + [rng.choice([150_528, 301_056, 605_184, 4_000]) for _ in range(n_layers)])
    base = [rng.uniform(2e-4, 2e-2) for _ in range(n_layers)]
    costs: dict[tuple[str, str, int, int], BundleCost] = {}
    table_settings: dict[str, tuple[str, ...]] = {}
    roles = []
    for d in range(n_devices):
        dev = f"dev{d}"
        count = settings if d < 2 else 1
        table_settings[dev] = tuple(f"f{i}" for i in range(count))
        speed = 1.0 / (1 + 2 * d)  # later devices are faster
        for i, setting in enumerate(table_settings[dev]):
            slow = speed * (1.0 + 2.0 * i / max(1, count - 1))
            watts = 12.0 / (1.0 + 2.0 * i / max(1, count - 1)) ** 1.5
            for s, e in bundles(n_layers, k):
                lat = sum(base[s : e + 1]) * slow * rng.uniform(0.75, 1.05)
                costs[(dev, setting, s, e)] = BundleCost(lat, lat * watts * rng.uniform(0.9, 1.1), "synthetic", 10)
        roles.append(Role(dev, table_settings[dev], name=dev, energy=d < 2))
    table = CostTable("synthetic", names, cut_bytes, table_settings, costs)
    hops = [get_link("4g"), get_link("wifi")] + [Link(f"wired{i}", 1000.0, 1000.0, rtt_ms=2.0) for i in range(4)]
    links = [NetLink(d, d + 1, hops[d]) for d in range(n_devices - 1)]
    if n_devices > 2:
        links.append(NetLink(0, n_devices - 1, Link("direct", 2.0, 5.0, 400.0, 60.0, 900.0, rtt_ms=1.0)))
    return PlacementProblem(table, tuple(roles), Network(n_devices, tuple(links), 0), k)


def run_scaling(solvers: list[str], repeats: int, time_limit_s: float | None, seed: int,
                grid: list[tuple[int, int, int, int]] = SCALING) -> list[Row]:
    rows: list[Row] = []
    for d, n, k, settings in grid:
        inst = f"dev{d}_n{n}_k{k}_s{settings}"
        t0 = time.perf_counter()
        model = build_model(scaling_problem(d, n, k, settings, seed))
        logging.info("%s: model built in %.3f s", inst, time.perf_counter() - t0)
        least = model.solve(solvers[0], time_limit_s).objective
        cases = {"latency": model,
                 "energy@1.2xlat": model.with_budgets(objective="energy", max_latency_s=1.2 * least),
                 "throughput": model.with_budgets(objective="throughput")}
        for objective, m in cases.items():
            rows += _solve_rows(m, solvers, inst, objective, repeats, time_limit_s)
    return rows


def _solve_rows(m, solvers: list[str], inst: str, objective: str, repeats: int,
                time_limit_s: float | None) -> list[Row]:
    rows = []
    lm = m.linear_model()
    for solver in solvers:
        backend = get_backend(solver)
        times, value, status = [], None, ""
        try:
            for _ in range(repeats):
                raw = backend.solve(lm, time_limit_s)
                times.append(raw.solve_time_s)
                status = raw.status
            value = m.solve(solver, time_limit_s).objective
        except BackendUnavailableError as e:
            status = e.reason
        except SolverError as e:
            status = f"error: {e}"
        rows.append(Row(solver, inst, objective, lm.num_vars, lm.num_active_rows,
                        statistics.median(times) if times else None, value, status))
        logging.info("%s", rows[-1])
    return rows


def markdown(rows: list[Row]) -> str:
    out = ["| solver | instance | objective | variables | constraints | median solve s | objective value | status |",
           "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        t = f"{r.median_solve_s:.3f}" if r.median_solve_s is not None else "-"
        v = f"{r.value:.6g}" if r.value is not None else "-"
        out.append(f"| {r.solver} | {r.instance} | {r.objective} | {r.variables} | {r.constraints} | {t} | {v} | {r.status} |")
    return "\n".join(out)


# -- the min-period objective: before and after the run model ---------------------------------

THROUGHPUT_GRID = [(2, 60, 8, 10), (4, 60, 8, 10)]
# name -> (model, cutoff from the pipeline start, branching priorities, the start as a MIP start)
VARIANTS = {
    "bundles": ("bundles", False, False, False),
    "bundles+cutoff": ("bundles", True, False, False),
    "runs": ("runs", False, False, False),
    "runs+cutoff": ("runs", True, False, False),
    "runs+cutoff+priority": ("runs", True, True, False),
    "runs+cutoff+priority+start": ("runs", True, True, True),
}


@dataclass
class PeriodRow:
    solver: str
    instance: str
    variant: str
    variables: int
    constraints: int
    wall_s: float | None
    cpu_s: float | None  # this process and its children (CBC runs as a child)
    period_s: float | None
    status: str


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_throughput(solvers: list[str], time_limit_s: float | None, seed: int,
                   grid: list[tuple[int, int, int, int]], variants: bool) -> list[PeriodRow]:
    rows: list[PeriodRow] = []
    for d, n, k, settings in grid:
        inst = f"dev{d}_n{n}_k{k}_s{settings}"
        problem = dataclasses.replace(scaling_problem(d, n, k, settings, seed), objective="throughput")
        for solver in solvers:
            names = ["bundles", "after"] + ([v for v in VARIANTS if v != "bundles"] if variants else [])
            for name in names:
                rows.append(_period_row(problem, solver, inst, name, time_limit_s))
                logging.info("%s", rows[-1])
    return rows


def _period_row(problem: PlacementProblem, solver: str, inst: str, variant: str,
                time_limit_s: float | None) -> PeriodRow:
    """One solve of the min period; "after" is PlacementModel.solve, the rest are VARIANTS."""
    t0, c0 = time.perf_counter(), _cpu_s()
    model = build_model(problem)
    try:
        if variant == "after":
            sol = model.solve(solver, time_limit_s)
            wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
            return PeriodRow(solver, inst, variant, 0, 0, wall, cpu, sol.objective, sol.status)
        kind, cutoff, priority, start = VARIANTS[variant]
        placement = model._pipeline_start() if cutoff or start else None
        bound = None if placement is None else problem.evaluate(placement).period_s * SCALE * (1 + 1e-9)
        if kind == "runs":
            rm = RunModel(problem.table, problem.roles, problem.network, model._costs(),
                          cutoff=bound if cutoff else None)
            lm = rm.model if priority else dataclasses.replace(rm.model, var_priority=None)
            initial = rm.values_of(placement, problem.table.n_layers, problem.source) if start else None
            decode = rm.placement_from_values
        else:
            lm = model.linear_model()
            if cutoff:
                lm = lm.with_changes(var_upper=np.where(model._load_coef > bound, 0.0, lm.var_upper))
            initial = model._values_of(placement) if start else None
            decode = model.placement_from_values
        raw = get_backend(solver).solve(lm, time_limit_s, initial)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
        period = problem.evaluate(decode(raw.values)).period_s if raw.values is not None else None
        return PeriodRow(solver, inst, variant, lm.num_vars, lm.num_active_rows, wall, cpu, period, raw.status)
    except BackendUnavailableError as e:
        return PeriodRow(solver, inst, variant, 0, 0, None, None, None, e.reason)


def period_markdown(rows: list[PeriodRow]) -> str:
    out = ["| solver | instance | variant | variables | constraints | wall s | CPU s | period s | status | "
           "faster than before |",
           "|---|---|---|---:|---:|---:|---:|---:|---|---:|"]
    before = {(r.solver, r.instance): r for r in rows if r.variant == "bundles"}
    for r in rows:
        ref = before.get((r.solver, r.instance))
        ratio = same = ""
        if ref and r is not ref and ref.wall_s and r.wall_s and r.status == "optimal":
            # a "before" stopped at the time limit only bounds the ratio from below
            ratio = ("" if ref.status == "optimal" else ">= ") + f"{ref.wall_s / r.wall_s:.1f}x"
            if ref.status == "optimal" and not math.isclose(ref.period_s, r.period_s, rel_tol=1e-6):
                same = " (differs)"
        t = "-" if r.wall_s is None else f"{r.wall_s:.2f}"
        c = "-" if r.cpu_s is None else f"{r.cpu_s:.2f}"
        v = "-" if r.period_s is None else f"{r.period_s:.7g}"
        size = f"{r.variables} | {r.constraints}" if r.variables else "- | -"
        out.append(f"| {r.solver} | {r.instance} | {r.variant} | {size} | {t} | {c} | "
                   f"{v}{same} | {r.status} | {ratio or '-'} |")
    return "\n".join(out)


# -- wake-up after idling: the search's cost ---------------------------------------------------------

# alexnet, threads=1, this VM (profiles/wakeup/alexnet-xeon-2core.csv): idle s -> extra s
WAKEUP_CURVE = ((0.0, 0.003, 0.01, 0.03, 0.1), (0.0, 0.000154, 0.000154, 0.000575, 0.002178))


@dataclass
class WakeRow:
    instance: str
    objective: str
    dp_s: float
    with_wakeup_s: float
    nodes: int
    proven: bool
    changed: bool  # the plan differs from the DP's without wake-up


def with_wakeup(problem: PlacementProblem, seed: int) -> PlacementProblem:
    rng = random.Random(seed)
    curve = WakeUp(*WAKEUP_CURVE, ref_idle_s=0.1)
    table = problem.table
    costs = {k: dataclasses.replace(c, wakeup_s=curve.extra(0.1) * rng.uniform(0.5, 2.0)) for k, c in table.costs.items()}
    wake = {(d, t): curve for d, settings in table.settings.items() for t in settings}
    return dataclasses.replace(problem, table=dataclasses.replace(table, costs=costs, wakeup=wake))


def run_wakeup(repeats: int, seed: int, grid: list[tuple[int, int, int, int]]) -> list[WakeRow]:
    rows: list[WakeRow] = []
    for d, n, k, settings in grid:
        inst = f"dev{d}_n{n}_k{k}_s{settings}"
        plain = scaling_problem(d, n, k, settings, seed)
        woken = with_wakeup(plain, seed)
        least = DpSolver(plain).solve("latency").objective
        for objective, budget in (("latency", None), ("energy@1.2xlat", 1.2 * least)):
            name = objective.split("@")[0]
            dp_s, base = _median_time(lambda: DpSolver(plain).solve(name, max_latency_s=budget), repeats)
            try:
                wake_s, sol = _median_time(lambda: build_model(dataclasses.replace(woken, objective=name,
                                                                                   max_latency_s=budget)).solve("dp"),
                                           repeats)
            except InfeasibleError:
                logging.info("%s %s: infeasible with wake-up", inst, objective)
                continue
            nodes = int(sol.note.split("counted: ")[1].split()[0])
            rows.append(WakeRow(inst, objective, dp_s, wake_s, nodes, sol.status == "optimal",
                                sol.placement != base.placement))
            logging.info("%s", rows[-1])
    return rows


def wakeup_markdown(rows: list[WakeRow]) -> str:
    out = ["| instance | objective | dp s (no wake-up) | dp + search s | ratio | partial chains | proven | plan changed |",
           "|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        out.append(f"| {r.instance} | {r.objective} | {r.dp_s:.4f} | {r.with_wakeup_s:.4f} | "
                   f"{r.with_wakeup_s / r.dp_s:.1f}x | {r.nodes} | {'yes' if r.proven else 'no'} | "
                   f"{'yes' if r.changed else 'no'} |")
    return "\n".join(out)


# -- the DP against the ILP backends ---------------------------------------------------------------

DP_GRID = {"devices": (2, 3, 4, 6), "layers": (15, 30, 60), "ks": (4, 8), "settings": (2, 10)}
FRONT_INSTANCE = (4, 60, 8, 10)


@dataclass
class DpRow:
    instance: str
    objective: str
    dp_s: float
    dp_value: float
    ilp: dict[str, tuple[float | None, float | None, str]]  # solver -> (median solve s, value, status)
    ilp_build_s: float

    def mismatches(self) -> list[str]:
        """The ILP backends that proved a different optimum."""
        return [name for name, (_, v, status) in self.ilp.items()
                if status == "optimal" and v is not None
                and not math.isclose(v, self.dp_value, rel_tol=1e-9, abs_tol=1e-12)]


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run_dp(solvers: list[str], repeats: int, time_limit_s: float | None, seed: int,
           grid: list[tuple[int, int, int, int]]) -> list[DpRow]:
    rows: list[DpRow] = []
    for d, n, k, settings in grid:
        inst = f"dev{d}_n{n}_k{k}_s{settings}"
        problem = scaling_problem(d, n, k, settings, seed)
        least = DpSolver(problem).solve("latency").objective
        t0 = time.perf_counter()
        model = build_model(problem)
        model.linear_model()  # builds the ILP
        build_s = time.perf_counter() - t0
        for objective, budget in (("latency", None), ("energy@1.2xlat", 1.2 * least)):
            name = objective.split("@")[0]
            dp_s, sol = _median_time(lambda: DpSolver(problem).solve(name, max_latency_s=budget), repeats)
            m = model.with_budgets(objective=name, max_latency_s=budget)
            ilp = {solver: _ilp_solve(m, solver, repeats, time_limit_s) for solver in solvers}
            rows.append(DpRow(inst, objective, dp_s, sol.objective, ilp, build_s))
            logging.info("%s", rows[-1])
    return rows


def _ilp_solve(m, solver: str, repeats: int, time_limit_s: float | None) -> tuple[float | None, float | None, str]:
    """(median backend time, objective, status) of `repeats` solves by one ILP backend."""
    times, value, status = [], None, ""
    try:
        for _ in range(repeats):
            sol = m.solve(solver, time_limit_s)
            times.append(sol.solve_time_s)
            value, status = sol.objective, sol.status
    except BackendUnavailableError as e:
        status = e.reason
    except SolverError as e:
        status = f"error: {e}"
    return (statistics.median(times) if times else None), value, status


def dp_markdown(rows: list[DpRow], solvers: list[str]) -> str:
    head = "| instance | objective | dp s |" + "".join(f" {s} s | {s}/dp |" for s in solvers) + \
        " ILP build s | objective value | equal |"
    out = [head, "|---|---|---:|" + "---:|---:|" * len(solvers) + "---:|---:|---|"]
    for r in rows:
        cells = []
        for s in solvers:
            t, _, status = r.ilp[s]
            cells += [f"{t:.3f}" if t is not None else "-",
                      f"{t / r.dp_s:.0f}x" if t is not None and status == "optimal" else status or "-"]
        bad = r.mismatches()
        out.append(f"| {r.instance} | {r.objective} | {r.dp_s:.4f} | " + " | ".join(cells) +
                   f" | {r.ilp_build_s:.3f} | {r.dp_value:.6g} | {'MISMATCH ' + ','.join(bad) if bad else 'yes'} |")
    return "\n".join(out)


def front_line(repeats: int, seed: int) -> str:
    problem = scaling_problem(*FRONT_INSTANCE, seed)
    t, front = _median_time(lambda: solve_front(problem), repeats)
    d, n, k, s = FRONT_INSTANCE
    return (f"front dev{d}_n{n}_k{k}_s{s}: {len(front.points)} points, whole latency-energy front in {t:.3f} s "
            f"(median of {repeats})")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", default=",".join(INSTANCES), help=f"comma list of {', '.join(INSTANCES)}")
    p.add_argument("--solvers", default="cbc,highs,gurobi")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--time-limit", type=float, default=None, help="per solve, seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scaling", action="store_true", help="the N-device scaling grid instead")
    p.add_argument("--grid", help="with --scaling/--throughput: only these DEVICES:LAYERS:K:SETTINGS, comma separated")
    p.add_argument("--throughput", action="store_true", help="the min period before/after the run model")
    p.add_argument("--variants", action="store_true", help="with --throughput: each step of the run model")
    p.add_argument("--dp", action="store_true", help="the DP against the ILP backends (--solvers), and a front's time")
    for key, values in DP_GRID.items():
        p.add_argument(f"--{key}", default=",".join(map(str, values)), help="with --dp: comma list (default %(default)s)")
    p.add_argument("--no-front", action="store_true", help="with --dp: skip the front's timing")
    p.add_argument("--wakeup", action="store_true", help="the cost of counting wake-up, on --dp's grid")
    p.add_argument("--out", help="also write the rows as CSV")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)
    if a.throughput:
        period_rows = run_throughput(a.solvers.split(","), a.time_limit, a.seed, _grid(a.grid, THROUGHPUT_GRID),
                                     a.variants)
        print(period_markdown(period_rows))
        if a.out:
            _write_rows(a.out, period_rows)
        return 0
    if a.wakeup:
        grid = list(itertools.product(_ints(a.devices), _ints(a.layers), _ints(a.ks), _ints(a.settings)))
        wake_rows = run_wakeup(a.repeats, a.seed, grid)
        print(wakeup_markdown(wake_rows))
        if a.out:
            _write_rows(a.out, wake_rows)
        return 0
    if a.dp:
        solvers = a.solvers.split(",")
        grid = list(itertools.product(_ints(a.devices), _ints(a.layers), _ints(a.ks), _ints(a.settings)))
        rows_dp = run_dp(solvers, a.repeats, a.time_limit, a.seed, grid)
        print(dp_markdown(rows_dp, solvers))
        if not a.no_front:
            print()
            print(front_line(a.repeats, a.seed))
        bad = [f"{r.instance} {r.objective}" for r in rows_dp if r.mismatches()]
        if bad:
            print(f"error: the DP's objective differs from an ILP's on {', '.join(bad)}", file=sys.stderr)
            return 1
        return 0
    if a.scaling:
        rows = run_scaling(a.solvers.split(","), a.repeats, a.time_limit, a.seed, _grid(a.grid, SCALING))
    else:
        rows = run(a.instances.split(","), a.solvers.split(","), a.repeats, a.time_limit, a.seed)
    print(markdown(rows))
    if a.out:
        _write_rows(a.out, rows)
    return 0


def _grid(text: str | None, default: list) -> list:
    """--grid's `a:b:c,...` as tuples of ints, or `default`."""
    return [tuple(int(x) for x in g.split(":")) for g in text.split(",")] if text else default


def _write_rows(path: str, rows: list) -> None:
    """Result rows (dataclasses of one kind) as CSV, one column per field."""
    fields = list(type(rows[0]).__dataclass_fields__) if rows else []
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in rows:
            w.writerow([getattr(r, c) for c in fields])


if __name__ == "__main__":
    sys.exit(main())
