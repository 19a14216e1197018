"""The last step of `make demo`: solve the placement for 3g, 4g, wifi and a fast link.

usage: python examples/demo_solve.py EDGE_PROFILE.csv OUT_DIR

The edge is this CPU at 1 thread (from the profile `make demo` just measured). The
cloud is a GPU profile shipped in profiles/ when there is one for the model; without
one, this CPU at 2 threads stands in for the cloud, and the demo says so. The fast link
(300/300/1: 300 Mbps up and down, 1 ms round trip) is where a split pays off.

Each placement is checked for two bundles in a row on one role at one setting whose union
is profiled: such a pair is physically one segment, which dime.run runs as the union (the
demo says so for each link).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from dime.cliargs import run_main
from dime.core.costs import ROLE_NAMES, Assignment
from dime.core.placement import format_placement
from dime.plan.solve import main as solve_main
from dime.profiling.reader import load_profiles, make_role
from dime.run.plan import merge_runs, mergeable_runs, profiled_in

LINKS = ("3g", "4g", "wifi", "300/300/1")

ROOT = Path(__file__).resolve().parent.parent


def find_gpu_profile(model: str) -> tuple[Path, str] | None:
    for path in sorted((ROOT / "profiles").glob(f"{model}-*.csv")):
        with open(path, newline="") as f:
            row = next(csv.DictReader(f), None)
        if row and row.get("torch_device", "").startswith("cuda"):
            return path, row["device"]
    return None


def check_merged(profiles: list[str], sol: dict, edge: str, cloud: str) -> tuple[str, int, str]:
    """The solution's placement text; how many of its neighbouring bundles sit on one role at
    one setting with a profiled union; the placement dime.run runs for it (those runs merged)."""
    table = load_profiles(profiles, model=sol.get("model") or None)
    index = {name: i for i, name in enumerate(table.layer_names)}
    placement = [Assignment(index[p["start"]], index[p["end"]], ROLE_NAMES.index(p["role"]), p["setting"])
                 for p in sol["placement"]]
    is_profiled = profiled_in(table, (make_role(table, edge), make_role(table, cloud)))
    return (format_placement(table.layer_names, placement), len(mergeable_runs(placement, is_profiled)),
            format_placement(table.layer_names, merge_runs(placement, is_profiled)))


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
        cloud_args, cloud = ["--cloud", gpu[1]], gpu[1]
        print(f"cloud: {gpu[1]} from {gpu[0].relative_to(ROOT)}")
    else:
        profiles = [str(edge_profile)]
        cloud_args, cloud = ["--cloud", edge, "--cloud-settings", "threads=2"], edge
        print(
            "NOTE: no GPU profile of this model is shipped in profiles/, so this CPU at 2 threads "
            "stands in for the cloud (edge: the same CPU at 1 thread)."
        )
    unmerged = 0
    for link in LINKS:
        js = out / f"solution-{link.replace('/', '-')}.json"
        print(f"\n=== {model}, link {link} ===")
        argv = [*profiles, "--edge", edge, "--edge-settings", "threads=1", *cloud_args,
                "--link", link, "--json", str(js)]
        print("$ python -m dime.solve " + " ".join(argv))
        sys.stdout.flush()
        code = run_main(solve_main, argv)
        if code != 0:
            return code
        sol = json.loads(js.read_text())
        text, pairs, runs = check_merged(profiles, sol, edge, cloud)
        print(f"{js}: {sol['status']}, latency {sol['latency_s']:.6f} s, placement {text}")
        unmerged += pairs > 0
        if pairs:
            print(f"check: {pairs} pair(s) of same-setting bundles in a row whose union is profiled (the solver "
                  f"summed their costs); dime.run runs it as {runs}")
        else:
            print("check: no two same-setting bundles in a row whose union is profiled")
    print(f"\n{unmerged} placement(s) with same-setting bundles in a row whose union is profiled, over "
          f"{len(LINKS)} links")
    return 0


if __name__ == "__main__":
    sys.exit(main())
