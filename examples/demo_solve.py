"""The last step of `make demo`: solve the placement for 3g, 4g and wifi.

usage: python examples/demo_solve.py EDGE_PROFILE.csv OUT_DIR

The edge is this CPU at 1 thread (from the profile `make demo` just measured). The
cloud is a GPU profile shipped in profiles/ when there is one for the model; without
one, this CPU at 2 threads stands in for the cloud, and the demo says so.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from dime.cliargs import run_main
from dime.plan.solve import main as solve_main

ROOT = Path(__file__).resolve().parent.parent


def find_gpu_profile(model: str) -> tuple[Path, str] | None:
    for path in sorted((ROOT / "profiles").glob(f"{model}-*.csv")):
        with open(path, newline="") as f:
            row = next(csv.DictReader(f), None)
        if row and row.get("torch_device", "").startswith("cuda"):
            return path, row["device"]
    return None


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    edge_profile, out = Path(sys.argv[1]), Path(sys.argv[2])
    with open(edge_profile, newline="") as f:
        first = next(csv.DictReader(f))
    model, edge = first["model"], first["device"]
    gpu = find_gpu_profile(model)
    if gpu:
        profiles = [str(edge_profile), str(gpu[0])]
        cloud_args = ["--cloud", gpu[1]]
        print(f"cloud: {gpu[1]} from {gpu[0].relative_to(ROOT)}")
    else:
        profiles = [str(edge_profile)]
        cloud_args = ["--cloud", edge, "--cloud-settings", "threads=2"]
        print(
            "NOTE: no GPU profile of this model is shipped in profiles/, so this CPU at 2 threads "
            "stands in for the cloud (edge: the same CPU at 1 thread)."
        )
    for link in ("3g", "4g", "wifi"):
        js = out / f"solution-{link}.json"
        print(f"\n=== {model}, link {link} ===")
        argv = [*profiles, "--edge", edge, "--edge-settings", "threads=1", *cloud_args,
                "--link", link, "--json", str(js)]
        print("$ python -m dime.solve " + " ".join(argv))
        sys.stdout.flush()
        code = run_main(solve_main, argv)
        if code != 0:
            return code
        sol = json.loads(js.read_text())
        chain = " | ".join(f"{p['bundle']}@{p['device']}/{p['setting']}" for p in sol["placement"])
        print(f"{js}: {sol['status']}, latency {sol['latency_s']:.6f} s, placement {chain}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
