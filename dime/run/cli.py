"""Run a chosen split for real and measure it: `python -m dime.run`.

The edge and the cloud each run their own bundles (SplitModel.bundle) and pass the
live tensors between them over torch.distributed (gloo backend, point-to-point send
and recv; rank 0 = edge, rank 1 = cloud). They meet at HOST:PORT, a TCP rendezvous
that the edge hosts. The edge drives: it sends the cloud the plan (placements and
links), probes each emulated link (dime.run.linkemu), then measures every placement with
MLPerf LoadGen (dime.run.measure) and writes one CSV row per (placement, link, scenario).

    # on the edge machine (the rendezvous is on its address)
    python -m dime.run --role edge --peer EDGE_HOST:29500 --model alexnet \\
        --solution sol.json --link 4g --out results/run.csv
    # on the cloud machine
    python -m dime.run --role cloud --peer EDGE_HOST:29500 --model alexnet

    # both roles on this machine, pinned to cores 0 and 1
    python -m dime.run local --model alexnet --solution sol.json --link 4g

This module holds the command lines: it turns flags into typed options (dime.run.options)
and does not import torch, so that the launcher starts fast; the roles live in
dime.run.roles, the launcher in dime.run.local.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from dime.cliargs import (
    OneLineParser,
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
from dime.run.local import ROLE_OPTIONS_FLAG, run_local
from dime.run.measure import DRIVERS, SCENARIOS, SINGLE_STREAM, parse_scenarios
from dime.run.options import (
    EDGE_ROLE,
    ConnectOptions,
    LocalOptions,
    ModelSpec,
    PlanOptions,
    ProcessOptions,
    RoleOptions,
    RunOptions,
)
from dime.run.plan import precheck_edge

log = logging.getLogger("dime.run")


# ---- flags ------------------------------------------------------------------------
def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="torchvision model name or package.module:callable")
    p.add_argument("--weights", help="state-dict file (default: torchvision's local cache, else seeded random init)")
    p.add_argument("--cuts", help="comma list of module/node names to cut after (as when profiling)")
    p.add_argument("--input-shape", type=shape, metavar="N,C,H,W", help="input shape (default: the model's)")
    p.add_argument("--inputs", metavar="SPEC", help="model inputs as name:dtype:shape, comma-separated (as profiled)")
    p.add_argument("--layers", type=positive_int, metavar="N", help="about N layers, merged as when profiling")
    p.add_argument("--capture", choices=["auto", "fx", "export"], default="auto", help="graph capture (as profiled)")


def add_connection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout-s", type=positive_float, default=30.0,
                   help="how long to wait for the other side to join (default 30)")
    p.add_argument("--op-timeout-s", type=positive_float, default=600.0,
                   help="longest wait for any single message once connected (default 600)")


def add_edge_arguments(p: argparse.ArgumentParser) -> None:
    """What the edge (the driving side) needs; shared by the role and local modes."""
    g = p.add_argument_group("placements (at least one)")
    g.add_argument("--solution", action="append", type=Path, default=[], metavar="JSON",
                   help="a `python -m dime.solve --json` file (repeatable)")
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
    g = p.add_argument_group("measurement")
    g.add_argument("--scenario", default=SINGLE_STREAM, metavar="LIST",
                   help=f"comma list of {', '.join(SCENARIOS)} (default {SINGLE_STREAM})")
    g.add_argument("--min-query-count", type=positive_int, default=32, help="queries per scenario (default 32)")
    g.add_argument("--min-duration-s", type=non_negative_float, default=0.0, help="least seconds per scenario")
    g.add_argument("--target-qps", type=positive_float, help="server arrival rate (default 0.5 / predicted latency)")
    g.add_argument("--warmup", type=non_negative_int, default=3, help="untimed queries before each placement")
    g.add_argument("--reference-runs", type=non_negative_int, default=10, metavar="N",
                   help="time the whole model on the edge N times before and after the placements, to show "
                        "drift against the profile (0: skip; default 10)")
    g.add_argument("--driver", choices=DRIVERS, default="auto", help="loadgen (MLPerf LoadGen), plain or auto")
    g.add_argument("--loadgen-logs", type=Path, metavar="DIR", help="keep LoadGen's logs under DIR")
    g.add_argument("--images", type=Path, help="folder of images (default: deterministic generated images)")
    g.add_argument("--count", type=positive_int, default=8, help="number of sample inputs (default 8)")
    g.add_argument("--verify", action="store_true", help="check the warm-up outputs against the full model")
    g.add_argument("--outputs", type=Path, metavar="FILE", help="save inputs and warm-up outputs (torch.save)")
    g.add_argument("--out", type=Path, metavar="CSV", help="append result rows to this CSV")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m dime.run",
        description="Run split inference across two processes (edge and cloud) and measure it. "
                    "`python -m dime.run local ...` starts both roles on this machine.",
    )
    p.add_argument("--role", choices=ROLE_NAMES, required=True)
    p.add_argument("--peer", type=host_port, required=True, metavar="HOST:PORT",
                   help="rendezvous address; the edge listens there, the cloud connects")
    add_model_arguments(p)
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads of this role (default 1)")
    p.add_argument("--cores", type=core_list, metavar="LIST", help="pin this role to these CPU cores")
    p.add_argument("--torch-device", default="cpu", metavar="DEV",
                   help="where this role runs its bundles: cpu, cuda or cuda:N (default cpu)")
    add_connection_arguments(p)
    add_edge_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def build_local_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m dime.run local",
        description="Start the edge and the cloud role as two processes on this machine (loopback), "
                    "each pinned to its own cores with its own torch thread count.",
    )
    add_model_arguments(p)
    p.add_argument("--edge-threads", type=positive_int, default=1)
    p.add_argument("--cloud-threads", type=positive_int, default=1)
    p.add_argument("--edge-cores", type=core_list, metavar="LIST", help="default 0 (when there are 2+ cores)")
    p.add_argument("--cloud-cores", type=core_list, metavar="LIST", help="default 1 (when there are 2+ cores)")
    p.add_argument("--edge-torch-device", default="cpu", metavar="DEV", help="the edge's torch device (default cpu)")
    p.add_argument("--cloud-torch-device", default="cpu", metavar="DEV",
                   help="the cloud's torch device: cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--port", type=positive_int, help="rendezvous port on 127.0.0.1 (default: a free one)")
    add_connection_arguments(p)
    add_edge_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p



# ---- flags to options ---------------------------------------------------------------
def model_spec(args: argparse.Namespace) -> ModelSpec:
    return ModelSpec(args.model, args.weights, tuple(c.strip() for c in args.cuts.split(",")) if args.cuts else None,
                     args.input_shape, args.inputs, args.layers, args.capture)


def run_options(args: argparse.Namespace) -> RunOptions:
    plan = PlanOptions(
        solutions=tuple(args.solution), split=args.split, plan=args.plan, edge_device=args.edge_device,
        cloud_device=args.cloud_device, edge_setting=args.edge_setting, cloud_setting=args.cloud_setting,
        profiles=tuple(args.profile),
        links=tuple(parse_links(args.link, args.uplink_mbps, args.downlink_mbps, args.rtt_ms)),
    )
    return RunOptions(
        plan=plan, scenarios=parse_scenarios(args.scenario), min_query_count=args.min_query_count,
        min_duration_s=args.min_duration_s, target_qps=args.target_qps, warmup=args.warmup,
        reference_runs=args.reference_runs, driver=args.driver, loadgen_logs=args.loadgen_logs, images=args.images,
        count=args.count, verify=args.verify, outputs=args.outputs, out=args.out, probe_s=args.probe_s,
    )


def role_options(args: argparse.Namespace) -> RoleOptions:
    host, port = args.peer
    return RoleOptions(
        role=args.role, model=model_spec(args), connect=ConnectOptions(host, port, args.timeout_s, args.op_timeout_s),
        process=ProcessOptions(args.threads, args.cores, args.torch_device), run=run_options(args),
    )


def local_options(args: argparse.Namespace) -> LocalOptions:
    return LocalOptions(
        model=model_spec(args), run=run_options(args),
        edge=ProcessOptions(args.edge_threads, args.edge_cores, args.edge_torch_device),
        cloud=ProcessOptions(args.cloud_threads, args.cloud_cores, args.cloud_torch_device),
        port=args.port, timeout_s=args.timeout_s, op_timeout_s=args.op_timeout_s,
        verbose=args.verbose - (1 if args.quiet else 0),
    )


# ---- main ---------------------------------------------------------------------------
def _read_role_options(argv: Sequence[str]) -> tuple[RoleOptions, int]:
    """`--role-options FILE [-q|-v...]`, as the local launcher starts a role."""
    p = OneLineParser(prog="python -m dime.run " + ROLE_OPTIONS_FLAG)
    p.add_argument(ROLE_OPTIONS_FLAG, type=Path, required=True)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    path = args.role_options
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"role options {path}: {e.strerror or e}") from None
    return RoleOptions.from_json(text, str(path)), args.verbose - (1 if args.quiet else 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = join_negative_values(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "local":
        return main_local(argv[1:])
    if argv and argv[0].split("=", 1)[0] == ROLE_OPTIONS_FLAG:
        opts, verbose = _read_role_options(argv)
    else:
        args = build_parser().parse_args(argv)
        opts, verbose = role_options(args), args.verbose - (1 if args.quiet else 0)
    setup_logging(verbose)
    if opts.role == EDGE_ROLE:
        precheck_edge(opts.run, opts.model.name)
    from dime.run.results import format_row
    from dime.run.roles import run_role  # torch: only in the role processes

    rows = run_role(opts, None if verbose < 0 else lambda row: print(format_row(row), flush=True))
    if opts.role == EDGE_ROLE and opts.run.out is not None and verbose >= 0:
        print(f"wrote {len(rows)} row(s) to {opts.run.out}")
    return 0


def main_local(argv: Sequence[str]) -> int:
    args = build_local_parser().parse_args(argv)
    setup_logging(args.verbose - (1 if args.quiet else 0))
    run_local(local_options(args))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
