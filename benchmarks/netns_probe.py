"""Achieved vs configured rates of links shaped by the kernel (dime.run.netns), as root.

    .venv/bin/python benchmarks/netns_probe.py [--links 4g,wifi,100/100] [--seconds 3] [--repeats 3]

For each link, two namespaces (edge, cloud) joined by a tbf-shaped veth pair; in each
direction a TCP sender in one namespace sends about --seconds worth of the configured rate
to a receiver in the other (dime.run.netns.probe_rate: payload rate after the first 10% of
the bytes). Prints the median of --repeats transfers per direction; exits 1 when one is more
than --tolerance off the configured rate.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dime.cliargs import run_main  # noqa: E402
from dime.core.links import parse_links  # noqa: E402
from dime.run import netns  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--links", default="4g,wifi,100/100", help="link presets or UP/DOWN in Mbps")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each transfer at the configured rate")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tolerance", type=float, default=0.05)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    links = parse_links(args.links)
    if not netns.available():
        return 2
    print("| link | direction | configured Mbps | tc rate Mbps | burst B | bytes | achieved Mbps (median) | min-max | error |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    for link in links:
        nl = netns.NetLink.from_link("edge", "cloud", link)
        with netns.Topology(["edge", "cloud"], [nl]) as topo:
            for src, dst, label in (("edge", "cloud", "up"), ("cloud", "edge", "down")):
                rate = nl.rate_mbps(src)
                nbytes = int(rate * 1e6 / 8 * args.seconds)
                runs = [netns.probe_rate(topo, src, dst, nbytes) for _ in range(args.repeats)]
                mbps = [r.achieved_mbps for r in runs]
                med = statistics.median(mbps)
                err = med / rate - 1
                worst = max(worst, abs(err))
                tbf = topo.tbf(src, dst)
                print(f"| {link.name} | {label} | {rate:g} | {tbf.rate_bit / 1e6:.2f} | {tbf.burst_bytes} | {nbytes} "
                      f"| {med:.3f} | {min(mbps):.3f}-{max(mbps):.3f} | {err:+.2%} |", flush=True)
    print(f"worst error {worst:.2%} (tolerance {args.tolerance:.0%})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
