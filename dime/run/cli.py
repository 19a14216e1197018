"""Run placements for real and measure them: `python -m dime.run`.

Every device runs its own bundles (SplitModel.bundle) and passes the live tensors of each
cut to the next device over torch.distributed (gloo backend, point-to-point send and recv),
hop by hop along the transfer's route; a device in between only forwards. They meet at
HOST:PORT, a TCP rendezvous that the source (the device holding the input) hosts. The
source drives: it sends every device the plan (placements and networks), probes each link,
then measures every placement with MLPerf LoadGen (dime.run.measure) and writes one CSV row
per (placement, network, scenario).

    # two devices: on the edge machine (the rendezvous is on its address), then the cloud
    python -m dime.run --role edge --peer EDGE_HOST:29500 --model alexnet \\
        --solution sol.json --link 4g --out results/run.csv
    python -m dime.run --role cloud --peer EDGE_HOST:29500 --model alexnet

    # N devices: on each machine, its name in the system file
    python -m dime.run --system sys.toml --device camera --peer CAMERA_HOST:29500 --solution sol.json
    python -m dime.run --system sys.toml --device jetson --peer CAMERA_HOST:29500

    # every device on this machine, each pinned to a core
    python -m dime.run local --model alexnet --solution sol.json --link 4g
    python -m dime.run local --system sys.toml --solution sol.json --shaper netns --in-flight 4

This module holds the command lines: it turns flags into typed options (dime.run.options)
and does not import torch, so that the launcher starts fast; the devices live in
dime.run.control.roles, the launcher in dime.run.control.local.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from dime.cliargs import (
    OneLineParser,
    assignments,
    core_list,
    host_port,
    join_negative_values,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_main,
    setup_logging,
    shape,
)
from dime.core.costs import ROLE_NAMES
from dime.core.links import parse_links
from dime.errors import UsageError
from dime.fileio import read_input_text
from dime.run.control.local import DEVICE_OPTIONS_FLAG, SHAPER_CHOICES, run_local
from dime.run.links import SHAPER_USER
from dime.run.links.schedule import parse_link_schedule
from dime.run.measure import DRIVERS, SCENARIOS, SINGLE_STREAM, parse_scenarios
from dime.run.options import (
    ADAPT_MEASURED,
    ADAPT_MODES,
    ADAPT_OBJECTIVES,
    CLOUD_ROLE,
    EDGE_ROLE,
    AdaptOptions,
    ConnectOptions,
    DeviceOptions,
    LocalOptions,
    ModelSpec,
    PlanOptions,
    ProcessOptions,
    RunOptions,
)
from dime.run.placements import precheck_source

log = logging.getLogger("dime.run")


# ---- flags ------------------------------------------------------------------------
def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="torchvision model name or package.module:callable (default: the system "
                                    "file's model)")
    p.add_argument("--weights", help="state-dict file (default: torchvision's local cache, else seeded random init)")
    p.add_argument("--cuts", help="comma list of module/node names to cut after (as when profiling)")
    p.add_argument("--input-shape", type=shape, metavar="N,C,H,W", help="input shape (default: the model's)")
    p.add_argument("--inputs", metavar="SPEC", help="model inputs as name:dtype:shape, comma-separated (as profiled)")
    p.add_argument("--layers", type=positive_int, metavar="N", help="about N layers, merged as when profiling")
    p.add_argument("--capture", choices=["auto", "fx", "export"], default="auto", help="graph capture (as profiled)")


def add_connection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout-s", type=positive_float, default=30.0,
                   help="how long to wait for the devices to join and agree on the plan (default 30)")
    p.add_argument("--op-timeout-s", type=positive_float, default=600.0,
                   help="longest wait for any single message once the plan is agreed (default 600)")


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """What the source (the device that drives) needs; shared by the device and local modes."""
    g = p.add_argument_group("placements (at least one)")
    g.add_argument("--solution", action="append", type=Path, default=[], metavar="JSON",
                   help="a `python -m dime.solve --json` file (repeatable)")
    g.add_argument("--system", type=Path, metavar="TOML",
                   help="N devices: the system file the solutions were solved for (devices, links, profiles)")
    g.add_argument("--split", metavar="LIST",
                   help="single split points: comma list of k (layers 0..k on the edge, -1 = all cloud) "
                        "or last-edge-layer names, or 'all'")
    g.add_argument("--plan", type=Path, metavar="JSON", help="a run plan written by dime.validate")
    g.add_argument("--edge-device", metavar="NAME",
                   help="profiled edge device: maps solution entries without a role; names the edge in predictions")
    g.add_argument("--cloud-device", metavar="NAME", help="profiled cloud device, for predictions of --split")
    g.add_argument("--edge-setting", metavar="S", help="edge setting of --split placements (default: first profiled)")
    g.add_argument("--cloud-setting", metavar="S", help="cloud setting of --split placements (default: first profiled)")
    g.add_argument("--profile", action="extend", nargs="+", default=[], metavar="CSV",
                   help="profiles for the bundle and layer-sum predictions")
    g = p.add_argument_group("link")
    g.add_argument("--link", metavar="LIST",
                   help="comma list of presets (3g, 4g, wifi) or UP/DOWN[/RTT] in Mbps and ms (default 4g)")
    g.add_argument("--uplink-mbps", type=positive_float, metavar="MBPS", help="uplink rate (overrides the preset's)")
    g.add_argument("--downlink-mbps", type=positive_float, metavar="MBPS", help="downlink rate (overrides the preset's)")
    g.add_argument("--rtt-ms", type=non_negative_float, metavar="MS", help="round-trip time; half added per transfer")
    g.add_argument("--probe-s", type=non_negative_float, default=0.2,
                   help="emulated seconds per link probe transfer, to report the achieved rate (0: no probe)")
    g.add_argument("--link-schedule", action="append", default=[], metavar="LINK=T:RATE,...",
                   help="change a link's rates T seconds into the measurement (RATE as UP/DOWN[/RTT]; LINK as a-b "
                        "by its ends, edge-cloud for two devices; at most one change per second; repeatable, one "
                        "per link). The kernel's tbf (--shaper netns) or the pacing (user) follows it")
    g = p.add_argument_group("measurement")
    g.add_argument("--scenario", default=SINGLE_STREAM, metavar="LIST",
                   help=f"comma list of {', '.join(SCENARIOS)} (default {SINGLE_STREAM})")
    g.add_argument("--min-query-count", type=positive_int, default=32, help="queries per scenario (default 32)")
    g.add_argument("--min-duration-s", type=non_negative_float, default=0.0, help="least seconds per scenario")
    g.add_argument("--target-qps", type=positive_float, help="server arrival rate (default 0.5 / predicted latency)")
    g.add_argument("--warmup", type=non_negative_int, default=3, help="untimed queries before each placement")
    g.add_argument("--in-flight", type=positive_int, default=1, metavar="N",
                   help="queries in the chain at once in the server and offline scenarios: each device works "
                        "on the next while the others work on earlier ones (default 1)")
    g.add_argument("--reference-runs", type=non_negative_int, default=10, metavar="N",
                   help="time the whole model on each computing device N times before every placement and after the last, to show "
                        "drift against the profile (0: skip; default 10)")
    g.add_argument("--driver", choices=DRIVERS, default="auto", help="loadgen (MLPerf LoadGen), plain or auto")
    g.add_argument("--loadgen-logs", type=Path, metavar="DIR", help="keep LoadGen's logs under DIR")
    g.add_argument("--images", type=Path, help="folder of images (default: deterministic generated images)")
    g.add_argument("--count", type=positive_int, default=8, help="number of sample inputs (default 8)")
    g.add_argument("--verify", action="store_true", help="check the warm-up outputs against the full model")
    g.add_argument("--outputs", type=Path, metavar="FILE", help="save inputs and warm-up outputs (torch.save)")
    g.add_argument("--out", type=Path, metavar="CSV", help="append result rows to this CSV")
    g.add_argument("--queries-out", type=Path, metavar="CSV",
                   help="write a row per measured query: when it was issued, started and done (seconds into the "
                        "schedule), and the placement it ran under")
    g = p.add_argument_group("re-planning while queries flow (one placement, one scenario)")
    g.add_argument("--adapt", nargs="?", const=ADAPT_MEASURED, choices=ADAPT_MODES, metavar="{measured,schedule}",
                   help="re-plan when the link rates estimated from the run's own transfers move (measured, the "
                        "default), or at each step of --link-schedule (schedule: an oracle that knows it); switch at "
                        "a query boundary. Needs the profiles: --system, or --profile with the two devices")
    g.add_argument("--objective", choices=ADAPT_OBJECTIVES, default="latency",
                   help="what re-plans minimise: latency (the exact DP) or the pipelined period (the ILP)")
    g.add_argument("--adapt-threshold", type=positive_float, default=0.2, metavar="F",
                   help="re-solve when a direction's estimate moves by more than this share (default 0.2)")
    g.add_argument("--adapt-margin", type=non_negative_float, default=0.05, metavar="F",
                   help="switch only when the new plan is predicted this share better than the current one under "
                        "the new rates (hysteresis; default 0.05)")
    g.add_argument("--adapt-window", type=positive_int, default=5, metavar="N",
                   help="transfers in each direction's median estimate (default 5; 3 make an estimate)")
    g.add_argument("--adapt-explore-s", type=positive_float, default=2.0, metavar="S",
                   help="a direction the plan left idle for this long is assumed back at its configured rate, so "
                        "the plan that uses it is tried again (default 2)")
    g.add_argument("--replans-out", type=Path, metavar="CSV", help="write a row per re-plan")


def add_process_arguments(p: argparse.ArgumentParser) -> None:
    """How each device's process runs on this machine, by device name (dime.run local, dime.validate):
    the repeatable --threads/--cores/--torch-device NAME=VALUE, beside --edge-*/--cloud-* of two devices."""
    p.add_argument("--threads", action="append", default=[], metavar="NAME=N",
                   help="a device's torch threads (repeatable; default 1)")
    p.add_argument("--cores", action="append", default=[], metavar="NAME=LIST",
                   help="a device's CPU cores (repeatable; default one core each, round robin)")
    p.add_argument("--torch-device", action="append", default=[], metavar="NAME=DEV",
                   help="a device's torch device (repeatable; default cpu)")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m dime.run",
        description="Run one device of a placement (its bundles and relays) and, on the source, measure it. "
                    "`python -m dime.run local ...` starts every device on this machine.",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--role", choices=ROLE_NAMES, help="two devices: this is the edge (the source) or the cloud")
    who.add_argument("--device", metavar="NAME", help="N devices: this device's name in --system")
    p.add_argument("--peer", type=host_port, required=True, metavar="HOST:PORT",
                   help="rendezvous address; the source listens there, every other device connects")
    add_model_arguments(p)
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads of this device (default 1)")
    p.add_argument("--cores", type=core_list, metavar="LIST", help="pin this device to these CPU cores")
    p.add_argument("--torch-device", default="cpu", metavar="DEV",
                   help="where this device runs its bundles: cpu, cuda or cuda:N (default cpu)")
    add_connection_arguments(p)
    add_source_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def build_local_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m dime.run local",
        description="Start every device as its own process on this machine, each pinned to its own cores "
                    "with its own torch thread count: the edge and the cloud, or the devices of --system.",
    )
    add_model_arguments(p)
    p.add_argument("--edge-threads", type=positive_int, default=1)
    p.add_argument("--cloud-threads", type=positive_int, default=1)
    p.add_argument("--edge-cores", type=core_list, metavar="LIST", help="default 0 (when there are 2+ cores)")
    p.add_argument("--cloud-cores", type=core_list, metavar="LIST", help="default 1 (when there are 2+ cores)")
    p.add_argument("--edge-torch-device", default="cpu", metavar="DEV", help="the edge's torch device (default cpu)")
    p.add_argument("--cloud-torch-device", default="cpu", metavar="DEV",
                   help="the cloud's torch device: cpu, cuda or cuda:N (default cpu)")
    add_process_arguments(p)
    p.add_argument("--shaper", choices=SHAPER_CHOICES, default="auto",
                   help="links shaped by the kernel (netns: a network namespace per device, tc on veth pairs; "
                        "root on Linux) or emulated in user space (user); auto: netns where possible (default)")
    p.add_argument("--port", type=positive_int, help="rendezvous port (default: a free one)")
    add_connection_arguments(p)
    add_source_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


# ---- flags to options ---------------------------------------------------------------
def _system_model(args: argparse.Namespace) -> str:
    """--model, else the system file's model."""
    if args.model:
        return str(args.model)
    if getattr(args, "system", None) is not None:
        from dime.plan.system import load_system

        model = load_system(args.system).model
        if model:
            return model
        raise UsageError(f"{args.system}: names no model; give --model")
    raise UsageError("the following arguments are required: --model")


def model_spec(args: argparse.Namespace) -> ModelSpec:
    return ModelSpec(_system_model(args), args.weights,
                     tuple(c.strip() for c in args.cuts.split(",")) if args.cuts else None,
                     args.input_shape, args.inputs, args.layers, args.capture)


def run_options(args: argparse.Namespace) -> RunOptions:
    plan = PlanOptions(
        solutions=tuple(args.solution), system=args.system, split=args.split, plan=args.plan,
        edge_device=args.edge_device, cloud_device=args.cloud_device, edge_setting=args.edge_setting,
        cloud_setting=args.cloud_setting, profiles=tuple(args.profile),
        links=tuple(parse_links(args.link, args.uplink_mbps, args.downlink_mbps, args.rtt_ms, "--link")),
        schedule=tuple(parse_link_schedule(s) for s in args.link_schedule),
    )
    return RunOptions(
        plan=plan, scenarios=parse_scenarios(args.scenario), min_query_count=args.min_query_count,
        min_duration_s=args.min_duration_s, target_qps=args.target_qps, warmup=args.warmup,
        reference_runs=args.reference_runs, in_flight=args.in_flight, driver=args.driver,
        loadgen_logs=args.loadgen_logs, images=args.images, count=args.count, verify=args.verify,
        outputs=args.outputs, out=args.out, probe_s=args.probe_s,
        adapt=AdaptOptions(args.adapt or "", args.objective, args.adapt_threshold, args.adapt_margin,
                           args.adapt_window, min(3, args.adapt_window), args.adapt_explore_s),
        queries_out=args.queries_out, replans_out=args.replans_out,
    )


# two-device flags that a system file replaces
_TWO_DEVICE_FLAGS = (("link", "--link"), ("uplink_mbps", "--uplink-mbps"), ("downlink_mbps", "--downlink-mbps"),
                     ("rtt_ms", "--rtt-ms"), ("profile", "--profile"), ("split", "--split"),
                     ("edge_device", "--edge-device"), ("cloud_device", "--cloud-device"),
                     ("edge_setting", "--edge-setting"), ("cloud_setting", "--cloud-setting"))


def _system_devices(args: argparse.Namespace) -> tuple[list[str], str]:
    """The device names and the source: the system file's, a plan file's, or edge and cloud."""
    if args.system is not None:
        from dime.plan.system import load_system

        given = [flag for attr, flag in _TWO_DEVICE_FLAGS if getattr(args, attr, None)]
        if given:
            raise UsageError(f"{given[0]} is for two devices; {args.system} gives the devices, links and profiles")
        system = load_system(args.system)
        return [d.name for d in system.devices], system.source
    if getattr(args, "plan", None) is not None:
        from dime.run.placements import read_plan

        plan = read_plan(args.plan)
        return list(plan.device_names), plan.device_names[plan.source]
    return [EDGE_ROLE, CLOUD_ROLE], EDGE_ROLE


def device_options(args: argparse.Namespace) -> DeviceOptions:
    host, port = args.peer
    names, source = _system_devices(args)
    name = args.role or args.device
    if args.role and args.system is not None:
        raise UsageError("--role is for two devices; with --system give --device NAME")
    if args.device and args.system is None:
        raise UsageError("--device NAME needs --system (two devices: --role edge|cloud)")
    if name not in names:
        raise UsageError(f"--device {name!r}: {args.system} has no such device (devices: {', '.join(names)})")
    return DeviceOptions(
        device=name, model=model_spec(args), connect=ConnectOptions(host, port, args.timeout_s, args.op_timeout_s),
        process=ProcessOptions(args.threads, args.cores, args.torch_device), run=run_options(args),
        source=name == source, shaper=SHAPER_USER,
    )


def _per_device(items: Sequence[str], flag: str, names: Sequence[str], parse: Any) -> dict[str, Any]:
    out = {}
    for name, value in assignments(items, flag):
        if name not in names:
            raise UsageError(f"{flag} {name}=...: no device {name!r} (devices: {', '.join(names)})")
        try:
            out[name] = parse(value)
        except (argparse.ArgumentTypeError, ValueError) as e:
            raise UsageError(f"{flag} {name}={value}: {e}") from None
    return out


def process_options(args: argparse.Namespace, names: Sequence[str]) -> tuple[tuple[str, ProcessOptions], ...]:
    """Each device's ProcessOptions from the flags of add_process_arguments and the two-device
    --edge-*/--cloud-* ones (a NAME=VALUE flag wins); UsageError on a device not in `names`."""
    threads = {EDGE_ROLE: args.edge_threads, CLOUD_ROLE: args.cloud_threads}
    cores = {EDGE_ROLE: args.edge_cores, CLOUD_ROLE: args.cloud_cores}
    devs = {EDGE_ROLE: args.edge_torch_device, CLOUD_ROLE: args.cloud_torch_device}
    threads.update(_per_device(args.threads, "--threads", names, positive_int))
    cores.update(_per_device(args.cores, "--cores", names, core_list))
    devs.update(_per_device(args.torch_device, "--torch-device", names, str))
    return tuple((n, ProcessOptions(threads.get(n, 1), cores.get(n), devs.get(n, "cpu"))) for n in names)


def local_options(args: argparse.Namespace) -> LocalOptions:
    names, source = _system_devices(args)
    devices = process_options(args, names)
    return LocalOptions(
        model=model_spec(args), run=run_options(args), devices=devices, source=source, port=args.port,
        timeout_s=args.timeout_s, op_timeout_s=args.op_timeout_s, shaper=args.shaper,
        verbose=args.verbose - (1 if args.quiet else 0),
    )


# ---- main ---------------------------------------------------------------------------
def _read_device_options(argv: Sequence[str]) -> tuple[DeviceOptions, int]:
    """`--device-options FILE [-q|-v...]`, as the local launcher starts a device."""
    p = OneLineParser(prog="python -m dime.run " + DEVICE_OPTIONS_FLAG)
    p.add_argument(DEVICE_OPTIONS_FLAG, type=Path, required=True)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    path = args.device_options
    text = read_input_text(path, "device options file")
    return DeviceOptions.from_json(text, str(path)), args.verbose - (1 if args.quiet else 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = join_negative_values(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "local":
        return main_local(argv[1:])
    if argv and argv[0].split("=", 1)[0] == DEVICE_OPTIONS_FLAG:
        opts, verbose = _read_device_options(argv)
    else:
        args = build_parser().parse_args(argv)
        opts, verbose = device_options(args), args.verbose - (1 if args.quiet else 0)
    setup_logging(verbose)
    if opts.source:
        precheck_source(opts.run, opts.model.name)
    from dime.run.results import format_row
    from dime.run.control.roles import run_device  # torch: only in the device processes

    rows = run_device(opts, None if verbose < 0 else lambda row: print(format_row(row), flush=True))
    if opts.source and opts.run.out is not None and verbose >= 0:
        print(f"wrote {len(rows)} row(s) to {opts.run.out}")
    return 0


def main_local(argv: Sequence[str]) -> int:
    args = build_local_parser().parse_args(argv)
    setup_logging(args.verbose - (1 if args.quiet else 0))
    run_local(local_options(args))
    return 0


def device_main() -> int:
    """The device processes' exit: a device that failed leaves at once, even with pipeline
    threads still blocked in a transfer (they would hold up the interpreter's exit)."""
    code = run_main(main)
    if code != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(device_main())
