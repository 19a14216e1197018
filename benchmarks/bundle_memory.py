"""What building every bundle ahead costs a device (dime.run --adapt builds them before the run).

For each model: the resident memory of a fresh process after loading the model (as a device does,
torch imported), then after building every bundle of at most K layers (K: the profile's, all
layers for the shipped ones), and the time that took. Each model in its own process, so that one
does not count the other's memory.

    python benchmarks/bundle_memory.py --models alexnet,resnet18
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(model: str, max_bundle: int | None) -> dict:
    from dime.capture.models import load_model
    from dime.run.control.process import rss_bytes
    from dime.run.data.compute import build_bundles

    base = rss_bytes()
    m = load_model(model)
    loaded = rss_bytes()
    k = max_bundle or len(m.layer_names)
    cache: dict = {}
    t0 = time.perf_counter()
    n = build_bundles(m, cache, k)
    took = time.perf_counter() - t0
    built = rss_bytes()
    return {"model": model, "layers": len(m.layer_names), "k": k, "bundles": n, "build_s": took,
            "rss_torch_mib": base / 2**20, "rss_model_mib": loaded / 2**20, "rss_bundles_mib": built / 2**20}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="alexnet,resnet18")
    p.add_argument("--max-bundle", type=int, help="K (default: all layers)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # a child process: measure this model
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.max_bundle)))
        return 0
    print("| model | layers | K | bundles | build (s) | RSS: torch | + model | + every bundle | bundles add |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        cmd = [sys.executable, __file__, "--one", model] + (["--max-bundle", str(args.max_bundle)]
                                                           if args.max_bundle else [])
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"| {r['model']} | {r['layers']} | {r['k']} | {r['bundles']} | {r['build_s']:.2f} | "
              f"{r['rss_torch_mib']:.0f} MiB | {r['rss_model_mib']:.0f} MiB | {r['rss_bundles_mib']:.0f} MiB | "
              f"{r['rss_bundles_mib'] - r['rss_model_mib']:.1f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
