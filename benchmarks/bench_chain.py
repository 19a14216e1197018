"""Whole model vs a chain of its single-layer bundles vs the sum of those layers timed alone.

    .venv/bin/python benchmarks/bench_chain.py alexnet mobilenet_v2 resnet18 [--threads 1] [--runs 20]

In one process: (a) the whole-model bundle, (b) the model's single-layer bundles run one after
another (what a chain of bundles on one device does), both on the images of
../shared/data/imagenette_samples (generated images where missing), and (c) each single-layer
bundle timed alone, back to back, on its own input, summed (what an isolated layer-wise profile
adds up). Medians of --runs timed runs after 3 warm-up runs, printed per model and round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dime.capture.models import load_model  # noqa: E402
from dime.run.control.process import load_samples  # noqa: E402

IMAGES = ROOT.parent / "shared" / "data" / "imagenette_samples"


def median_s(fn, inputs, runs: int) -> float:
    times = []
    with torch.inference_mode():
        for w in range(3):
            fn(inputs[w % len(inputs)])
        for r in range(runs):
            x = inputs[r % len(inputs)]
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        m = load_model(name)
        xs = [x for (x,) in load_samples(m, IMAGES if IMAGES.is_dir() else None, 8)]  # one-input models
        n = len(m.layer_names)
        whole = m.bundle(0, n - 1)
        singles = [m.bundle(i, i) for i in range(n)]

        def chain(x):
            v = (x,)
            for mod in singles:
                v = mod(*v)
            return v

        with torch.inference_mode():  # each layer's input, for timing it alone
            ins, v = [], (xs[0],)
            for mod in singles:
                ins.append(v)
                v = mod(*v)
        for rnd in range(args.rounds):
            w = median_s(lambda x: whole(x), xs, args.runs)
            c = median_s(chain, xs, args.runs)
            alone = sum(median_s(lambda _x, i=i: singles[i](*ins[i]), [None], args.runs) for i in range(n))
            print(f"{name} ({args.threads} thread(s)) round {rnd}: whole {w * 1e3:.1f} ms, chain of {n} single-layer "
                  f"bundles {c * 1e3:.1f} ms, single layers timed alone, summed {alone * 1e3:.1f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
