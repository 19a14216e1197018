"""Choose where each bundle of layers runs (edge or cloud, or N devices) from profiles: `python -m dime.solve`.

Examples:
    python -m dime.solve profiles/vit_b_16_*.csv --edge jetson --cloud a100 --link 4g \\
        --objective energy --max-latency 0.2 --json placement.json
    python -m dime.solve --system examples/camera-jetson-server-cloud.toml --objective throughput
    python -m dime.solve --system sys.toml --front --json front.json   # the latency-energy Pareto front
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Sequence

from dime.cliargs import (
    OneLineParser,
    add_assumed_power_args,
    assumed_powers,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
    run_main,
    setup_logging,
)
from dime.core.links import Link, get_link, parse_link
from dime.core.placement import bundle_text, format_placement
from dime.errors import UsageError
from dime.fileio import atomic_write_text, check_output_path
from dime.plan import BACKEND_NAMES, OBJECTIVES, Front, PlacementProblem, Solution, build_model, solve_front
from dime.plan.energy import with_assumed_power
from dime.plan.report import device_details, transfer_details
from dime.plan.system import (
    Constraints,
    System,
    build_problem,
    load_system,
    two_devices,
)
from dime.profiling.reader import isolated_chains, load_profiles, timing_contexts

log = logging.getLogger("dime.solve")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The solve options, for this CLI and for a `dime solve` subcommand."""
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help="profile CSV files")
    p.add_argument("--system", metavar="FILE",
                   help="a system file (TOML): devices, their profiles, links and constraints; "
                        "replaces the profiles, --edge/--cloud and the link flags")
    p.add_argument("--profile", dest="profile_opts", action="extend", nargs="+", default=[],
                   metavar="PROFILE", help="profile CSV files (same as the positional ones)")
    p.add_argument("--model", help="the model to place, when the files hold several")
    p.add_argument("--edge", metavar="DEV", help="edge device (holds the input, gets the output back)")
    p.add_argument("--cloud", metavar="DEV", help="cloud device")
    p.add_argument("--edge-settings", metavar="LIST", help="comma list of edge settings (default: all)")
    p.add_argument("--cloud-settings", metavar="LIST", help="comma list of cloud settings (default: all)")
    p.add_argument("--link", metavar="LINK", help="link preset (3g, 4g, wifi) or UP/DOWN[/RTT] in Mbps and ms")
    p.add_argument("--uplink-mbps", type=positive_float, metavar="MBPS",
                   help="uplink rate (overrides the preset's)")
    p.add_argument("--downlink-mbps", type=positive_float, metavar="MBPS",
                   help="downlink rate (overrides the preset's)")
    p.add_argument("--rtt-ms", type=float, metavar="MS", help="round-trip time; half of it is added per transfer")
    p.add_argument("--max-bundle", type=positive_int, metavar="K",
                   help="longest bundle in layers (default: the largest K profiled for every chosen setting)")
    p.add_argument("--objective", choices=OBJECTIVES,
                   help="what to minimise (default latency; throughput: the pipelined period)")
    p.add_argument("--max-latency", type=positive_float, metavar="S", help="latency budget in seconds")
    p.add_argument("--max-energy", type=positive_float, metavar="J", help="edge energy budget in joules")
    p.add_argument("--private-layers", type=non_negative_int, metavar="N",
                   help="the first N layers must run on the edge (the source)")
    p.add_argument("--one-setting-per-device", action="store_true",
                   help="each device runs all its bundles at one setting")
    p.add_argument("--bundle-sum", action="store_true",
                   help="DIME's semantics: any partition into bundles, costs summed; by default two same-setting "
                        "bundles in a row on one device are merged when their union is profiled")
    add_assumed_power_args(p, "the source's; energy counts for the source unless the file says otherwise")
    p.add_argument("--trim", type=fraction, default=0.1, metavar="F",
                   help="fraction of runs dropped at each end before averaging (default 0.1)")
    p.add_argument("--solver", choices=BACKEND_NAMES, default="auto",
                   help="auto (the exact dp solver where it applies: no memory limits, one setting per device "
                        "or throughput objective; else gurobi if licensed and the model fits, else cbc), "
                        "dp, gurobi, cbc or highs")
    p.add_argument("--front", action="store_true",
                   help="the whole latency-energy Pareto front (by the dp solver, within the budgets; the objective "
                        "plays no part): print each point, and write them all with --json")
    p.add_argument("--time-limit", type=positive_float, metavar="S", help="solver time limit in seconds")
    p.add_argument("--json", metavar="FILE", help="write the solution as JSON")
    p.add_argument("--write-lp", metavar="FILE", help="write the ILP as LP (or MPS, for a .mps name)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less output")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more output")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog or "python -m dime.solve",
        description="Choose where each bundle of layers runs, edge or cloud, by an exact DP or ILP over bundle "
                    "profiles.",
    )
    add_arguments(p)
    return p


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise UsageError(f"empty settings list {text!r}")
    return items


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.6g}{' ' + unit if unit else ''}"


def _link_text(link: Link) -> str:
    return (f"{link.name} (up {link.uplink_mbps:g} Mbps, down {link.downlink_mbps:g} Mbps, "
            f"rtt {link.rtt_ms:g} ms)")


def _network_text(problem: PlacementProblem) -> str:
    net, roles = problem.network, problem.roles
    if len(net.links) == 1:
        return f"link {_link_text(net.links[0].link)}"
    parts = []
    for nl in net.links:
        ends = f"{roles[nl.a].name}-{roles[nl.b].name}"
        text = _link_text(nl.link)
        parts.append(text if nl.link.name == ends else f"{ends} {text}")
    return "links: " + "; ".join(parts)


def format_header(problem: PlacementProblem, goal: str) -> list[str]:
    """The problem in two lines and a blank one: model, roles; network, `goal` and constraints."""
    table = problem.table
    lines = [
        f"model {table.model}: {table.n_layers} layers; "
        + "; ".join(f"{r.name} {r.device} ({', '.join(r.settings)})" if r.compute else f"{r.name} (relay)"
                    for r in problem.roles)
    ]
    budgets = [goal, f"max bundle {problem.k}"]
    if problem.max_latency_s is not None:
        budgets.append(f"max latency {problem.max_latency_s:g} s")
    if problem.max_energy_j is not None:
        budgets.append(f"max energy {problem.max_energy_j:g} J")
    if problem.private_layers:
        budgets.append(f"private layers {problem.private_layers}")
    if problem.pin:
        budgets.append("pin " + ", ".join(
            f"{table.layer_names[layer]}@{problem.roles[r].name}" for layer, r in problem.pin))
    if problem.one_setting_per_device:
        budgets.append("one setting per device")
    if problem.bundle_sum:
        budgets.append("bundle sums (DIME semantics, no merge rule)")
    memory = [f"{r.name} {r.memory_bytes} B" for r in problem.roles if r.memory_bytes is not None]
    if memory:
        budgets.append("memory " + ", ".join(memory))
    lines.append(f"{_network_text(problem)}; {'; '.join(budgets)}")
    lines.append("")
    return lines


def format_report(problem: PlacementProblem, sol: Solution, data: dict, header: bool = True) -> str:
    """The human-readable result; every number is taken from `data` (the JSON dict)."""
    table = problem.table
    counted = [r.name for r in problem.roles if r.energy]
    lines = format_header(problem, f"min {problem.objective}") if header else []
    rows = [("#", "layers", "bundle", "role", "device", "setting", "latency_s", "energy_j")]
    for i, (a, entry) in enumerate(zip(sol.placement, data["placement"]), 1):
        rows.append((
            str(i),
            f"{a.start}" if a.start == a.end else f"{a.start}-{a.end}",
            bundle_text(table.layer_names, a.start, a.end),
            entry["role"],
            entry["device"],
            entry["setting"],
            _fmt(entry["latency_s"]),
            _fmt(entry["energy_j"]),
        ))
    lines += _columns(rows, right={0, 6, 7})
    lines.append("")
    if data["transfers"]:
        lines.append("transfers:")
        rows = [("cut", "route", "bytes", "latency_s", "energy_j")]
        for t in data["transfers"]:
            where = f"before {t['before']}" if t["before"] is not None else "of the output"
            rows.append((where, " -> ".join(t["route"]), str(t["bytes"]), _fmt(t["latency_s"]), _fmt(t["energy_j"])))
        lines += ["  " + line for line in _columns(rows, right={2, 3, 4})]
    else:
        lines.append(f"transfers: none (all on the {problem.roles[problem.source].name})")
    wake = f" (of which wake-up after idling {_fmt(data['wakeup_s'], 's')})" if data.get("wakeup_s") else ""
    lines.append(
        f"latency: {_fmt(data['latency_s'], 's')} = compute {_fmt(data['compute_latency_s'], 's')}{wake} "
        f"+ communication {_fmt(data['comm_latency_s'], 's')}"
    )
    what = f"{' + '.join(counted)} energy" if counted else "energy"
    if not counted:
        lines.append("energy: no device's energy counts")
    elif data["energy_j"] is None:
        lines.append(f"{what}: not measured")
    else:
        assumed = " (assumed power)" if data["energy_assumed"] else ""
        lines.append(
            f"{what}: {_fmt(data['energy_j'], 'J')} = compute {_fmt(data['compute_energy_j'], 'J')} "
            f"+ communication {_fmt(data['comm_energy_j'], 'J')}{assumed}"
        )
    lines.append(
        f"throughput: {_fmt(data['throughput_fps'], 'frames/s')} pipelined (period {_fmt(data['period_s'], 's')}, "
        f"bottleneck {data['bottleneck']})"
    )
    if data.get("profile_predicted"):
        chosen = data["placement"]
        guessed = [e for e in chosen if e.get("latency_source") == "predicted"]
        lines.append(f"predicted: {len(guessed)} of the {len(chosen)} chosen bundles are predicted, not measured"
                     + (f" ({', '.join(e['bundle'] + ' sd ' + _fmt(e['latency_sd_s'], 's') for e in guessed)})"
                        if guessed else ""))
    for note in data.get("profile_notes", []):
        lines.append(f"note: {note}")
    solver = f"solver: {data['solver']}, {data['status']}, {data['solve_time_s']:.3g} s"
    if data["note"]:
        solver += f" ({data['note']})"
    lines.append(solver)
    return "\n".join(lines)


def _columns(rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return [
        "  ".join(r[c].rjust(widths[c]) if c in right else r[c].ljust(widths[c]) for c in range(len(r))).rstrip()
        for r in rows
    ]


def _system_from_args(args: argparse.Namespace) -> System:
    """The system file, or the two-device flags as a system; explicit flags override the file."""
    paths = list(args.profiles) + list(args.profile_opts)
    given = {k: v for k, v in (
        ("objective", args.objective), ("max_latency_s", args.max_latency), ("max_energy_j", args.max_energy),
        ("private_layers", args.private_layers),
        ("one_setting_per_device", args.one_setting_per_device or None), ("bundle_sum", args.bundle_sum or None),
    ) if v is not None}
    if args.system:
        two_device = [f for f, v in (("PROFILE", paths), ("--edge", args.edge), ("--cloud", args.cloud),
                                     ("--link", args.link), ("--edge-settings", args.edge_settings),
                                     ("--cloud-settings", args.cloud_settings)) if v]
        if two_device:
            raise UsageError(f"--system describes the devices; drop {two_device[0]}")
        system = load_system(args.system)
        changes: dict = {"constraints": dataclasses.replace(system.constraints, **given)}
        if args.model:
            changes["model"] = args.model
        if args.max_bundle:
            changes["max_bundle"] = args.max_bundle
        return dataclasses.replace(system, **changes)
    if not paths:
        raise UsageError("give one or more profile files (or --system FILE)")
    if args.edge is None or args.cloud is None:
        devices = ", ".join(load_profiles(paths, model=args.model, trim=args.trim).settings)
        flag = "--edge" if args.edge is None else "--cloud"
        raise UsageError(f"{flag} DEV is required; devices in the profiles: {devices}")
    if args.rtt_ms is not None and not (math.isfinite(args.rtt_ms) and args.rtt_ms >= 0):
        raise UsageError(f"--rtt-ms must be >= 0, got {args.rtt_ms}")
    if args.link:
        link = parse_link(args.link, args.uplink_mbps, args.downlink_mbps, args.rtt_ms)
    else:
        link = get_link(None, args.uplink_mbps, args.downlink_mbps, args.rtt_ms)
    return two_devices(paths, args.edge, args.cloud, link, _split(args.edge_settings), _split(args.cloud_settings),
                       args.model, args.max_bundle, Constraints(**given))


def problem_from_argv(argv: Sequence[str]) -> tuple[argparse.Namespace, System, PlacementProblem]:
    """The problem a solve command line describes (as recorded in its JSON's solve_args)."""
    args = build_parser().parse_args(list(argv))
    system = _system_from_args(args)
    edge_w, power_w = assumed_powers(args)
    problem, _ = with_assumed_power(build_problem(system, trim=args.trim), edge_w, power_w)
    return args, system, problem


def solution_data(system: System, problem: PlacementProblem, sol: Solution, argv: Sequence[str]) -> dict:
    """The solution as solve's JSON: the placement, its details, and the command line that made it."""
    table = problem.table
    data = sol.to_json_dict(table, problem.roles)
    data.update(
        model=table.model,
        layer_names=list(table.layer_names),
        cut_bytes=list(table.cut_bytes),
        bundle_sum=problem.bundle_sum,
        devices=device_details(problem, sol.placement),
        transfers=transfer_details(problem, sol.placement),
        profile_predicted=any(c.predicted for c in table.costs.values()),
        predicted_bundles=sum(e["latency_source"] == "predicted" for e in data["placement"]),
        solve_args=list(argv),
    )
    data["profile_notes"] = [
        f"{len(run)} {problem.roles[run[0].role].name} bundles in a row "
        f"({' | '.join(table.bundle_name(a.start, a.end) for a in run)}) were each profiled in isolation; "
        "run back to back they can cost more than their sum (profile with --context chain)"
        for run in isolated_chains(sol.placement, problem.roles, timing_contexts(system.profiles))
    ]
    return data


def format_front(problem: PlacementProblem, front: Front, header: bool = True) -> str:
    """Each point of the front in a row: latency, energy, period and placement."""
    counted = [r.name for r in problem.roles if r.energy]
    lines = format_header(problem, "latency-energy front") if header else []
    for note in dict.fromkeys(p.note for p in front.points if p.note):
        lines.append(f"note: {note}")
    what = f"{' + '.join(counted)} energy" if counted else "energy"
    lines.append(f"front: {len(front.points)} point{'s' if len(front.points) != 1 else ''}, latency ascending; "
                 f"each has the least {what} within its latency")
    names = [r.name for r in problem.roles]
    rows = [("#", "latency_s", "energy_j", "period_s", "placement")]
    for i, p in enumerate(front.points, 1):
        ev = p.evaluation
        rows.append((str(i), _fmt(ev.latency_s), _fmt(ev.energy_j), _fmt(ev.period_s),
                     format_placement(problem.table.layer_names, p.placement, names)))
    lines += _columns(rows, right={0, 1, 2, 3})
    if any(p.evaluation.energy_assumed for p in front.points):
        lines.append("energy: assumed power (W x latency), not measured")
    if front.points:
        lines.append(f"solver: dp, the front in {front.points[0].solve_time_s:.3g} s")
    return "\n".join(lines)


def _front(args: argparse.Namespace, system: System, problem: PlacementProblem, argv: Sequence[str]) -> None:
    if args.solver not in ("auto", "dp"):
        raise UsageError(f"--front is computed by the dp solver; drop --solver {args.solver}")
    front = solve_front(problem)
    print(format_front(problem, front, header=args.quiet == 0))
    if args.json:
        data = {
            "model": problem.table.model,
            "front": "latency-energy",
            "energy_roles": [r.name for r in problem.roles if r.energy],
            "solver": "dp",
            "solve_time_s": front.points[0].solve_time_s if front.points else 0.0,
            "points": [solution_data(system, problem, p, argv) for p in front.points],
        }
        _write_json(args.json, data)


def _write_json(path: str, data: dict) -> None:
    replaced = os.path.exists(path)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    if replaced:  # said even with -q: a solution someone kept is gone
        log.warning("note: replaced the existing %s", path)
    else:
        log.info("wrote %s", path)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    for flag, target in (("--json", args.json), ("--write-lp", args.write_lp)):
        if target is not None:
            check_output_path(target, flag)
    args, system, problem = problem_from_argv(argv)
    model = build_model(problem)  # the ILP is built only if a backend or --write-lp needs it
    if args.write_lp:
        model.write_lp(args.write_lp)
        log.info("wrote the ILP to %s", args.write_lp)
    if args.front:
        _front(args, system, problem, argv)
        return 0
    sol = model.solve(args.solver, args.time_limit)
    data = solution_data(system, problem, sol, argv)
    print(format_report(problem, sol, data, header=args.quiet == 0))
    if args.json:
        _write_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
