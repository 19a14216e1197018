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

This module holds the command lines and the local launcher and does not import torch,
so that the launcher starts fast; the roles themselves live in dime.run.roles.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from dime.cliargs import run_main, setup_logging
from dime.core.costs import ROLE_NAMES
from dime.core.links import parse_links
from dime.errors import DimeError, UsageError
from dime.run.measure import DRIVERS, SCENARIOS, SINGLE_STREAM, resolve_driver
from dime.run.plan import Plan, parse_scenarios, read_solution

log = logging.getLogger("dime.run")

# ---- CLI --------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {text!r}") from None
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v

    return parse


def _non_negative(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(v) and v >= 0):
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return v

    return parse


def _cores(text: str) -> list[int]:
    try:
        cores = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of core numbers: {text!r}") from None
    if not cores or any(c < 0 for c in cores):
        raise argparse.ArgumentTypeError(f"not a comma list of core numbers: {text!r}")
    return cores


def _shape(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of sizes: {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"not a comma list of sizes: {text!r}")
    return dims


def _peer(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"give HOST:PORT, got {text!r}")
    try:
        p = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None
    if not 0 < p < 65536:
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return host.strip("[]"), p


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="torchvision model name or package.module:callable")
    p.add_argument("--weights", help="state-dict file (default: torchvision's local cache, else seeded random init)")
    p.add_argument("--cuts", help="comma list of module/node names to cut after (as when profiling)")
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W", help="input shape (default: the model's)")
    p.add_argument("--inputs", metavar="SPEC", help="model inputs as name:dtype:shape, comma-separated (as profiled)")
    p.add_argument("--layers", type=int, metavar="N", help="about N layers, merged as when profiling")
    p.add_argument("--capture", choices=["auto", "fx", "export"], default="auto", help="graph capture (as profiled)")


def add_connection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout-s", type=_positive(float), default=30.0,
                   help="how long to wait for the other side to join (default 30)")
    p.add_argument("--op-timeout-s", type=_positive(float), default=600.0,
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
    g.add_argument("--uplink-mbps", type=_positive(float), metavar="MBPS", help="uplink rate (overrides the preset's)")
    g.add_argument("--downlink-mbps", type=_positive(float), metavar="MBPS", help="downlink rate (overrides the preset's)")
    g.add_argument("--rtt-ms", type=_non_negative(float), metavar="MS", help="round-trip time; half added per transfer")
    g.add_argument("--probe-s", type=_non_negative(float), default=0.2,
                   help="emulated seconds per link probe transfer, to report the achieved rate (0: no probe)")
    g = p.add_argument_group("measurement")
    g.add_argument("--scenario", default=SINGLE_STREAM, metavar="LIST",
                   help=f"comma list of {', '.join(SCENARIOS)} (default {SINGLE_STREAM})")
    g.add_argument("--min-query-count", type=_positive(int), default=32, help="queries per scenario (default 32)")
    g.add_argument("--min-duration-s", type=_non_negative(float), default=0.0, help="least seconds per scenario")
    g.add_argument("--target-qps", type=_positive(float), help="server arrival rate (default 0.5 / predicted latency)")
    g.add_argument("--warmup", type=_non_negative(int), default=3, help="untimed queries before each placement")
    g.add_argument("--reference-runs", type=_non_negative(int), default=10, metavar="N",
                   help="time the whole model on the edge N times before and after the placements, to show "
                        "drift against the profile (0: skip; default 10)")
    g.add_argument("--driver", choices=DRIVERS, default="auto", help="loadgen (MLPerf LoadGen), plain or auto")
    g.add_argument("--loadgen-logs", type=Path, metavar="DIR", help="keep LoadGen's logs under DIR")
    g.add_argument("--images", type=Path, help="folder of images (default: deterministic generated images)")
    g.add_argument("--count", type=_positive(int), default=8, help="number of sample inputs (default 8)")
    g.add_argument("--verify", action="store_true", help="check the warm-up outputs against the full model")
    g.add_argument("--outputs", type=Path, metavar="FILE", help="save inputs and warm-up outputs (torch.save)")
    g.add_argument("--out", type=Path, metavar="CSV", help="append result rows to this CSV")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m dime.run",
        description="Run split inference across two processes (edge and cloud) and measure it. "
                    "`python -m dime.run local ...` starts both roles on this machine.",
    )
    p.add_argument("--role", choices=ROLE_NAMES, required=True)
    p.add_argument("--peer", type=_peer, required=True, metavar="HOST:PORT",
                   help="rendezvous address; the edge listens there, the cloud connects")
    add_model_arguments(p)
    p.add_argument("--threads", type=_positive(int), default=1, help="torch threads of this role (default 1)")
    p.add_argument("--cores", type=_cores, metavar="LIST", help="pin this role to these CPU cores")
    p.add_argument("--torch-device", default="cpu", metavar="DEV",
                   help="where this role runs its bundles: cpu, cuda or cuda:N (default cpu)")
    add_connection_arguments(p)
    add_edge_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def join_negative_values(argv: Sequence[str], options: Sequence[str] = ("--split", "--splits")) -> list[str]:
    """`--split -1,3` as `--split=-1,3`: argparse takes '-1,3' for an option otherwise."""
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a in options:
            nxt = next(it, None)
            if nxt is not None and re.fullmatch(r"-\d[\w,.-]*", nxt):
                out.append(f"{a}={nxt}")
                continue
            out.append(a)
            if nxt is not None:
                out.append(nxt)
            continue
        out.append(a)
    return out


def precheck_edge(args: argparse.Namespace) -> None:
    """The edge's options that can be checked without torch or the model, so that a
    typo fails at once instead of after model loading or at the peer."""
    parse_scenarios(args.scenario)
    parse_links(args.link, args.uplink_mbps, args.downlink_mbps, args.rtt_ms)
    resolve_driver(args.driver)
    if args.plan is not None:
        if args.solution or args.split:
            raise UsageError("--plan replaces --solution and --split; give one or the other")
        try:
            Plan.from_json(args.plan.read_text(), str(args.plan))
        except FileNotFoundError:
            raise UsageError(f"plan file not found: {args.plan}") from None
    elif not args.solution and not args.split:
        raise UsageError("give a placement: --solution JSON, --split LIST or --plan JSON")
    for path in args.solution:
        if not isinstance(read_solution(path).get("placement"), list):
            raise UsageError(f"{path}: no placement in the solution")
    for path in args.profile:
        if not Path(path).is_file():
            raise UsageError(f"profile file not found: {path}")
    if args.images is not None and not args.images.is_dir():
        raise UsageError(f"image folder not found: {args.images}")
    for flag, path in (("--out", args.out), ("--outputs", args.outputs)):
        if path is not None and path.is_dir():
            raise UsageError(f"{flag} {path} is a folder")


def main(argv: Sequence[str] | None = None) -> int:
    argv = join_negative_values(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "local":
        return main_local(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - (1 if args.quiet else 0))
    if args.role == "edge":
        precheck_edge(args)
    from dime.run.roles import format_row, run_role  # torch: only in the role processes

    rows = run_role(args, None if args.quiet else lambda row: print(format_row(row), flush=True))
    if args.role == "edge" and args.out is not None and not args.quiet:
        print(f"wrote {len(rows)} row(s) to {args.out}")
    return 0


# ---- local: both roles on this machine --------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def build_local_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m dime.run local",
        description="Start the edge and the cloud role as two processes on this machine (loopback), "
                    "each pinned to its own cores with its own torch thread count.",
    )
    add_model_arguments(p)
    p.add_argument("--edge-threads", type=_positive(int), default=1)
    p.add_argument("--cloud-threads", type=_positive(int), default=1)
    p.add_argument("--edge-cores", type=_cores, metavar="LIST", help="default 0 (when there are 2+ cores)")
    p.add_argument("--cloud-cores", type=_cores, metavar="LIST", help="default 1 (when there are 2+ cores)")
    p.add_argument("--edge-torch-device", default="cpu", metavar="DEV", help="the edge's torch device (default cpu)")
    p.add_argument("--cloud-torch-device", default="cpu", metavar="DEV",
                   help="the cloud's torch device: cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--port", type=_positive(int), help="rendezvous port on 127.0.0.1 (default: a free one)")
    add_connection_arguments(p)
    add_edge_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen
    errors: list[str]
    thread: threading.Thread
    stopped: bool = False  # terminated by the launcher: its own errors are not first-hand

    def stop(self) -> None:
        self.stopped = True
        self.proc.terminate()


def _relay(stream: Any, errors: list[str], prefix: str) -> None:
    """Pass a child's stderr on, keeping back its `error:` lines for one final message."""
    for line in iter(stream.readline, ""):
        if line.startswith("error:"):
            errors.append(line[len("error:"):].strip())
        else:
            sys.stderr.write(prefix + line)
            sys.stderr.flush()
    stream.close()


def _spawn(name: str, argv: list[str], env: dict[str, str], prefix: str) -> _Child:
    proc = subprocess.Popen([sys.executable, "-m", "dime.run", *argv], env=env, stderr=subprocess.PIPE,
                            text=True, bufsize=1)
    errors: list[str] = []
    t = threading.Thread(target=_relay, args=(proc.stderr, errors, prefix), daemon=True)
    t.start()
    return _Child(name, proc, errors, t)


def run_local(
    edge_argv: Sequence[str],
    model_argv: Sequence[str],
    edge_threads: int = 1,
    cloud_threads: int = 1,
    edge_cores: Sequence[int] | None = None,
    cloud_cores: Sequence[int] | None = None,
    timeout_s: float = 30.0,
    op_timeout_s: float = 600.0,
    port: int | None = None,
    verbose: int = 0,
    edge_torch_device: str = "cpu",
    cloud_torch_device: str = "cpu",
) -> None:
    """Run the edge (with `edge_argv`: placements, link, measurement options) and the cloud
    as two child processes on 127.0.0.1; raise DimeError with one line if either fails."""
    if edge_cores is None and cloud_cores is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if n >= 2:
            cores = sorted(os.sched_getaffinity(0))
            edge_cores, cloud_cores = [cores[0]], [cores[1]]
        else:
            log.warning("one CPU core only: the edge and the cloud share it, timings will interfere")
    port = port or free_port()
    addr = f"127.0.0.1:{port}"
    env = dict(os.environ)
    # keep gloo's sockets on loopback, whatever the host name resolves to
    if "GLOO_SOCKET_IFNAME" not in env and "lo" in {name for _, name in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"
    common = [*model_argv, "--peer", addr, "--timeout-s", f"{timeout_s:g}", "--op-timeout-s", f"{op_timeout_s:g}"]
    common += ["-v"] * verbose
    edge = [*common, "--role", "edge", "--threads", str(edge_threads), "--torch-device", edge_torch_device,
            *(["--cores", ",".join(map(str, edge_cores))] if edge_cores else []), *edge_argv]
    cloud = [*common, "--role", "cloud", "--threads", str(cloud_threads), "--torch-device", cloud_torch_device, "-q",
             *(["--cores", ",".join(map(str, cloud_cores))] if cloud_cores else [])]
    precheck_edge(build_parser().parse_args(edge))  # bad options fail here, before any process starts
    log.info("local run: edge on cores %s (%d thread(s)), cloud on cores %s (%d thread(s)), rendezvous %s",
             edge_cores or "any", edge_threads, cloud_cores or "any", cloud_threads, addr)
    children = [_spawn("edge", edge, env, ""), _spawn("cloud", cloud, env, "[cloud] ")]
    edge_child, cloud_child = children
    cloud_failed_at: float | None = None
    edge_done_at: float | None = None
    try:
        while None in [c.proc.poll() for c in children]:  # poll every child: it sets returncode
            time.sleep(0.05)
            if edge_child.proc.returncode not in (None, 0) and cloud_child.proc.poll() is None:
                # the edge failed first-hand (or gave up on the cloud): nothing left to serve
                cloud_child.stop()
            if cloud_child.proc.returncode not in (None, 0) and edge_child.proc.poll() is None:
                # the edge notices the closed connection at its next message; this is a backstop
                cloud_failed_at = cloud_failed_at or time.monotonic()
                if time.monotonic() - cloud_failed_at > 5:
                    edge_child.stop()
            if edge_child.proc.returncode == 0 and cloud_child.proc.poll() is None:
                # the edge said goodbye; a cloud still running after that is stuck
                edge_done_at = edge_done_at or time.monotonic()
                if time.monotonic() - edge_done_at > 10:
                    cloud_child.stop()
    except BaseException:
        for c in children:
            if c.proc.poll() is None:
                c.proc.terminate()
        for c in children:
            c.proc.wait()
        raise
    for c in children:
        c.thread.join(timeout=5)
    bad = [c for c in children if c.proc.returncode != 0]
    if not bad:
        return
    # Prefer the side that failed first-hand over the one that only lost its peer.
    first_hand = [c for c in bad if c.errors and not c.stopped and not c.errors[-1].startswith("lost the ")]
    pick = (first_hand or [c for c in bad if c.errors] or bad)[0]
    what = pick.errors[-1] if pick.errors else f"exited with code {pick.proc.returncode}"
    raise DimeError(f"{pick.name}: {what}" if pick.name == "cloud" or not pick.errors else what)


def main_local(argv: Sequence[str]) -> int:
    p = build_local_parser()
    args = p.parse_args(argv)
    setup_logging(args.verbose - (1 if args.quiet else 0))
    model_argv = ["--model", args.model]
    if args.weights:
        model_argv += ["--weights", args.weights]
    if args.cuts:
        model_argv += ["--cuts", args.cuts]
    if args.input_shape:
        model_argv += ["--input-shape", ",".join(map(str, args.input_shape))]
    for flag, value in (("--inputs", args.inputs), ("--layers", args.layers), ("--capture", args.capture)):
        if value is not None:
            model_argv += [flag, str(value)]
    # everything that is not the launcher's own goes to the edge unchanged
    own = {"--model", "--weights", "--cuts", "--input-shape", "--inputs", "--layers", "--capture", "--edge-threads", "--cloud-threads", "--edge-cores",
           "--cloud-cores", "--edge-torch-device", "--cloud-torch-device", "--port", "--timeout-s", "--op-timeout-s",
           "-v", "--verbose"}
    edge_argv = list(_strip_options(argv, own))
    run_local(edge_argv, model_argv, args.edge_threads, args.cloud_threads, args.edge_cores, args.cloud_cores,
              args.timeout_s, args.op_timeout_s, args.port, args.verbose, args.edge_torch_device,
              args.cloud_torch_device)
    return 0


def _strip_options(argv: Sequence[str], names: set[str]) -> Iterator[str]:
    """argv without the options in `names` (and their values)."""
    flags = {"-v", "--verbose"}
    it = iter(argv)
    for a in it:
        key = a.split("=", 1)[0]
        if key in names:
            if key not in flags and "=" not in a:
                next(it, None)
            continue
        if re.fullmatch(r"-v+", a):
            continue
        yield a


if __name__ == "__main__":
    sys.exit(run_main(main))
