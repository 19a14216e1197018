"""Achieved vs configured rates of links shaped by the kernel (dime.run.links.netns), as root.

    .venv/bin/python benchmarks/netns_probe.py [--links 4g,wifi,100/100] [--via tcp,dime]
        [--seconds 3] [--repeats 3] [--sizes 4096,40960,409600] [--burst-frames N --burst-ms MS]

For each link, two namespaces (edge, cloud) joined by a tbf-shaped veth pair, and in each
direction a transfer of about --seconds worth of the configured rate, measured:

* ``--via tcp``: a TCP sender in one namespace, a receiver in the other
  (dime.run.links.netns.probe_rate: payload rate after the first 10% of the bytes); the median of
  --repeats transfers;
* ``--via dime``: dime.run's own link probe, gloo over the veth pairs, as a run makes it
  (``python -m dime.run local --shaper netns --split cloud-only --probe-s SECONDS`` on the
  toy model of tests/toy_models.py; the median of the probe's 3 transfers per direction,
  rate = bytes / (time - ping/2 - rtt/2), the `achieved_mbps` column).

--sizes also times single transfers of those sizes on an idle TCP connection (the tbf
bucket full, as before a query's transfer): one-way time, first byte sent to last byte
received, against the cost model's 8B/rate + rtt/2 (rtt: the link's, added in user space
where the kernel has no netem, so not part of these times). --burst-frames and --burst-ms
override dime.run.links.netns.MIN_BURST_FRAMES and BURST_S for the tcp and size measurements
(the dime probe always uses the defaults). Exits 1 when a rate is more than --tolerance off.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dime.cliargs import run_main  # noqa: E402
from dime.core.links import Link, parse_links  # noqa: E402
from dime.errors import ShaperError  # noqa: E402
from dime.run.links import netns  # noqa: E402

SIZES_PORT = 5202
IDLE_S = 0.2  # between timed transfers: the bucket refills, TCP is idle as between queries
TOY = ["--model", "toy_models:skipnet", "--cuts", "conv1,conv2,pool", "--input-shape", "1,3,16,16"]


def _link_spec(link: Link) -> str:
    return f"{link.uplink_mbps:g}/{link.downlink_mbps:g}/{link.rtt_ms:g}"


def tcp_rates(topo: netns.Topology, nl: netns.NetLink, seconds: float, repeats: int) -> dict[str, list[float]]:
    out = {}
    for src, dst, label in (("edge", "cloud", "up"), ("cloud", "edge", "down")):
        nbytes = int(nl.rate_mbps(src) * 1e6 / 8 * seconds)
        out[label] = [netns.probe_rate(topo, src, dst, nbytes).achieved_mbps for _ in range(repeats)]
    return out


def dime_rates(link: Link, seconds: float) -> dict[str, list[float]]:
    """dime.run's own probe over a kernel-shaped link: one `dime.run local` run."""
    path = [str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")]  # tests/: the toy model
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    with tempfile.TemporaryDirectory(prefix="dime-netns-probe-") as tmp:
        out = Path(tmp) / "run.csv"
        proc = subprocess.run([sys.executable, "-m", "dime.run", "local", *TOY, "--shaper", "netns", "--split",
                               "cloud-only", "--link", _link_spec(link), "--probe-s", f"{seconds:g}", "--warmup", "0",
                               "--min-query-count", "1", "--reference-runs", "0", "--driver", "plain", "--out",
                               str(out), "-q"], capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            raise ShaperError(f"dime.run local over {link.name}: {proc.stderr.strip().splitlines()[-1:]}")
        with open(out, newline="") as f:
            row = next(csv.DictReader(f))
    achieved = dict(kv.split("=", 1) for kv in row["achieved_mbps"].split(";"))
    return {"up": [float(achieved["edge->cloud"])], "down": [float(achieved["cloud->edge"])]}


def one_way_times(topo: netns.Topology, src: str, dst: str, sizes: list[int], repeats: int) -> dict[int, list[float]]:
    """One-way seconds of single transfers src -> dst on an idle connection, by size."""
    order = [1] + [s for _ in range(repeats) for s in sizes]  # 1 byte first: the connection is open
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [topo.address(dst), str(SIZES_PORT), ",".join(map(str, order))]
    me = [sys.executable, str(Path(__file__).resolve()), "_worker"]
    recv = subprocess.Popen([*topo.exec_prefix(dst), *me, "recv", *args], stdout=subprocess.PIPE, text=True, env=env)
    try:
        if recv.stdout is None or recv.stdout.readline().strip() != "ready":
            raise ShaperError(f"receiver in {dst} did not start")
        send = subprocess.run([*topo.exec_prefix(src), *me, "send", *args], capture_output=True, text=True, env=env,
                              timeout=600, check=True)
        got, _ = recv.communicate(timeout=60)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    t0s, t1s = json.loads(send.stdout), json.loads(got)
    times: dict[int, list[float]] = {s: [] for s in sizes}
    for size, t0, t1 in list(zip(order, t0s, t1s))[1:]:
        times[size].append(t1 - t0)
    return times


def _worker(argv: list[str]) -> int:
    """`_worker recv|send HOST PORT SIZES`: run inside a namespace by one_way_times."""
    what, host, port, sizes = argv[0], argv[1], int(argv[2]), [int(s) for s in argv[3].split(",")]
    marks = []
    if what == "recv":
        buf = bytearray(1 << 20)
        with socket.create_server((host, port)) as server:
            print("ready", flush=True)
            server.settimeout(60)
            conn, _ = server.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for size in sizes:
                    got = 0
                    while got < size:
                        n = conn.recv_into(buf, min(len(buf), size - got))
                        if n == 0:
                            raise ConnectionError("sender closed early")
                        got += n
                    marks.append(time.perf_counter())
                    conn.sendall(b"k")
    else:
        with socket.create_connection((host, port), timeout=60) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for size in sizes:
                time.sleep(IDLE_S)
                data = bytes(size)
                marks.append(time.perf_counter())  # CLOCK_MONOTONIC: one clock for every namespace
                conn.sendall(data)
                if conn.recv(1) != b"k":
                    raise ConnectionError("receiver closed early")
    print(json.dumps(marks), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--links", default="4g,wifi,100/100", help="link presets or UP/DOWN[/RTT] in Mbps and ms")
    p.add_argument("--via", default="tcp", help="comma list: tcp (a TCP transfer), dime (dime.run's probe over gloo)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each transfer at the configured rate")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--sizes", help="comma list of bytes: one-way times of single transfers of these sizes")
    p.add_argument("--size-repeats", type=int, default=5)
    p.add_argument("--burst-frames", type=int, help=f"override netns.MIN_BURST_FRAMES ({netns.MIN_BURST_FRAMES})")
    p.add_argument("--burst-ms", type=float, help=f"override netns.BURST_S, in ms ({netns.BURST_S * 1e3:g})")
    p.add_argument("--skip-rates", action="store_true", help="only the --sizes times")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    links = parse_links(args.links)
    vias = [v.strip() for v in args.via.split(",") if v.strip()]
    if set(vias) - {"tcp", "dime"}:
        p.error(f"--via: tcp or dime, got {args.via}")
    if args.burst_frames is not None:
        netns.MIN_BURST_FRAMES = args.burst_frames
    if args.burst_ms is not None:
        netns.BURST_S = args.burst_ms / 1e3
    if not netns.available():
        return 2
    worst = 0.0
    rate_lines, size_lines = [], []
    for link in links:
        nl = netns.NetLink.from_link("edge", "cloud", link)
        measured: dict[str, dict[str, list[float]]] = {}
        with netns.Topology(["edge", "cloud"], [nl]) as topo:
            if "tcp" in vias and not args.skip_rates:
                measured["tcp"] = tcp_rates(topo, nl, args.seconds, args.repeats)
            if args.sizes:
                sizes = [int(s) for s in args.sizes.split(",")]
                for src, dst, label in (("edge", "cloud", "up"), ("cloud", "edge", "down")):
                    rate, tbf = nl.rate_mbps(src), topo.tbf(src, dst)
                    for size, ts in one_way_times(topo, src, dst, sizes, args.size_repeats).items():
                        med, model = statistics.median(ts), size * 8 / (rate * 1e6) + link.rtt_ms / 2000
                        size_lines.append(f"| {link.name} | {label} | {rate:g} | {tbf.burst_bytes} | {size} "
                                          f"| {med * 1e3:.2f} | {min(ts) * 1e3:.2f}-{max(ts) * 1e3:.2f} "
                                          f"| {model * 1e3:.2f} | {med / model - 1:+.0%} |")
                        print(size_lines[-1], flush=True)
            tbfs = {"up": topo.tbf("edge", "cloud"), "down": topo.tbf("cloud", "edge")}
        if "dime" in vias and not args.skip_rates:
            measured["dime"] = dime_rates(link, args.seconds)
        for via, by_dir in measured.items():
            for label, mbps in by_dir.items():
                rate, tbf = nl.rate_mbps("edge" if label == "up" else "cloud"), tbfs[label]
                med = statistics.median(mbps)
                err = med / rate - 1
                worst = max(worst, abs(err))
                rate_lines.append(f"| {link.name} | {label} | {via} | {rate:g} | {tbf.rate_bit / 1e6:.2f} "
                                  f"| {tbf.burst_bytes} | {int(rate * 1e6 / 8 * args.seconds)} | {med:.3f} "
                                  f"| {min(mbps):.3f}-{max(mbps):.3f} | {err:+.2%} |")
                print(rate_lines[-1], flush=True)
    if rate_lines:
        print("\n| link | direction | via | configured Mbps | tc rate Mbps | burst B | bytes | achieved Mbps (median) "
              "| min-max | error |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rate_lines))
        print(f"worst error {worst:.2%} (tolerance {args.tolerance:.0%})")
    if size_lines:
        print("\n| link | direction | configured Mbps | burst B | bytes | one-way ms (median) | min-max "
              "| 8B/rate + rtt/2 ms | error |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(size_lines))
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:
        sys.exit(_worker(sys.argv[2:]))
    sys.exit(run_main(main))
