"""Where does the compute gap of split placements come from? One experiment per candidate.

A split placement runs part A (layers 0..c) on one device process and part B (c+1..n-1) on
another; on this VM both are cores of one machine. The profiler times each bundle back to
back in one process. This script times the two parts of each split under conditions that add
one candidate cause at a time, side by side in one run, so that each condition's ratio to
`isolated` (the profiler's way, pinned to one core) is what that cause costs:

- `isolated`: back to back over the samples, one torch thread, pinned to core 0 (the profiler's way).
- `unpinned`: the same without pinning (the profiler pins nothing).
- `new-thread`: in a fresh thread that sets its torch thread count (dime.run's workers since
  the pipeline-thread fix).
- `new-thread-unset`: a fresh thread that does not (dime.run before that fix).
- `cold-cache`: 64 MiB written before each call (the caches after a transfer or after the other
  part ran).
- `alternate`: A and B one after the other in one process (each evicts the other's weights).
- `sibling-spin`: back to back while another process spins on the other core (a device that
  busy-polls while it waits).
- `pingpong-block`: two processes, A on core 0 and B on core 1, passing a token through a pipe
  (blocking waits): a split run without the network.
- `pingpong-spin`: the same, each waiting by spinning on a shared flag.
- `pingpong-data`: as pingpong-block, B's input is A's output written into shared memory by A
  (a received buffer: its lines are in the other core's cache).
- `idle-G`: G seconds of sleep before each call (a device waits while the other computes and
  the transfers run; single-stream queries of a whole-model placement come back to back).
- `isolated-again`: `isolated` once more, last: how far the machine drifted during the run (the
  noise floor of every ratio).

Run from the repository root on a quiet machine:
    .venv/bin/python benchmarks/split_gap.py --samples-root /tmp/feat --out-dir docs/data/split-gap-DATE
It writes rows.csv (every timing) and summary.md (median ratio to `isolated` per condition).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dime.capture.models import load_model  # noqa: E402
from dime.capture.samples import Manifest, load_tensors  # noqa: E402

FLUSH_BYTES = 64 << 20
CONDITIONS = ("isolated", "unpinned", "new-thread", "new-thread-unset", "cold-cache", "alternate", "sibling-spin",
              "pingpong-block", "pingpong-spin", "pingpong-data", "isolated-again")


def _pin(core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})


def _inputs(samples: Path, layer: str) -> list[tuple[torch.Tensor, ...]]:
    man = Manifest.load(samples)
    return [load_tensors(samples / layer / f"{sid}.pt") for sid in man.images]


class Part:
    """One part of a split: its module and its inputs from the feature maps."""

    def __init__(self, model_name: str, samples: Path, start: int, end: int) -> None:
        torch.manual_seed(0)
        self.model = load_model(model_name)
        self.start, self.end = start, end
        self.mod = self.model.bundle(start, end)
        self.inputs = _inputs(samples, self.model.layer_names[start])

    def call(self, i: int, x: Sequence[torch.Tensor] | None = None) -> float:
        x = self.inputs[i % len(self.inputs)] if x is None else x
        t0 = time.perf_counter()
        self.mod(*x)
        return time.perf_counter() - t0


def _timed(part: Part, n: int, warmup: int, before: Callable[[], None] | None = None) -> list[float]:
    out = []
    with torch.inference_mode():
        for i in range(warmup + n):
            if before is not None:
                before()
            t = part.call(i)
            if i >= warmup:
                out.append(t)
    return out


def _in_thread(fn: Callable[[], list[float]], set_threads: bool) -> list[float]:
    box: list[Any] = []

    def run() -> None:
        if set_threads:
            torch.set_num_threads(1)
        box.append(fn())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return box[0]


def _spinner(core: int, stop: Any, ready: Any) -> None:
    _pin(core)
    ready.value = 1
    while not stop.value:
        pass


class _Token:
    """The turn passed between the two sides of a ping-pong: through a pipe (blocking waits) or
    a shared flag per side (spinning waits)."""

    def __init__(self, mode: str, side: int, conn: Any, flags: Any) -> None:
        self.mode, self.side, self.conn, self.flags = mode, side, conn, flags

    def wait(self) -> None:
        if self.mode == "spin":
            while self.flags[self.side] == 0:
                pass
            self.flags[self.side] = 0
        else:
            self.conn.recv()

    def give(self) -> None:
        if self.mode == "spin":
            self.flags[1 - self.side] = 1
        else:
            self.conn.send(1)


def _pingpong_child(model_name: str, samples: str, start: int, end: int, core: int, n: int, warmup: int,
                    token: _Token, res: Any, shared: Any) -> None:
    """One side: wait for the turn, time its part, pass the turn on. Side 0 (A) goes first and,
    with `shared`, writes its output there; side 1 (B) then takes it as its input."""
    _pin(core)
    torch.set_num_threads(1)
    part = Part(model_name, Path(samples), start, end)
    first = token.side == 0
    times = []
    with torch.inference_mode():
        for i in range(warmup + n):
            if not first or i > 0:
                token.wait()
            if first:
                t0 = time.perf_counter()
                out = part.mod(*part.inputs[i % len(part.inputs)])
                t = time.perf_counter() - t0
                if shared is not None:
                    shared.copy_(out if isinstance(out, torch.Tensor) else out[0])
            else:
                t = part.call(i, (shared,) if shared is not None else None)
            if i >= warmup:
                times.append(t)
            token.give()
        if first:
            token.wait()  # B's last call
    res.send(times)


def _pingpong(model_name: str, samples: Path, c: int, n_layers: int, n: int, warmup: int, mode: str,
              cut_shape: Sequence[int] | None = None) -> tuple[list[float], list[float]]:
    """A on core 0 and B on core 1 in two processes taking turns (`mode` block or spin); with
    `cut_shape`, B's input is A's output in shared memory. Each side's times."""
    ctx = mp.get_context("spawn")
    end_a, end_b = ctx.Pipe()
    flags = ctx.Array("i", [0, 0], lock=False)
    shared = torch.zeros(tuple(cut_shape)).share_memory_() if cut_shape is not None else None
    results = []
    procs = []
    for side, (start, end, conn) in enumerate(((0, c, end_a), (c + 1, n_layers - 1, end_b))):
        got, sent = ctx.Pipe()
        results.append(got)
        procs.append(ctx.Process(target=_pingpong_child, args=(model_name, str(samples), start, end, side, n, warmup,
                                                               _Token(mode, side, conn, flags), sent, shared)))
    for proc in procs:
        proc.start()
    ta, tb = results[0].recv(), results[1].recv()
    for proc in procs:
        proc.join()
    return ta, tb


def measure_split(model_name: str, samples: Path, c: int, n: int, warmup: int,
                  conditions: Sequence[str]) -> list[dict[str, Any]]:
    """Every condition's timings of both parts of the split after layer index `c`."""
    _pin(0)
    torch.set_num_threads(1)
    a = Part(model_name, samples, 0, c)
    n_layers = len(a.model.layer_names)
    b = Part(model_name, samples, c + 1, n_layers - 1)
    cut = b.inputs[0]
    cut_shape = tuple(cut[0].shape) if len(cut) == 1 else None
    flush = torch.empty(FLUSH_BYTES // 4)
    rows: list[dict[str, Any]] = []

    def add(cond: str, part: str, times: list[float]) -> None:
        rows.append({"model": model_name, "cut": a.model.layer_names[c], "part": part, "condition": cond,
                     "n": len(times), "median_s": statistics.median(times), "min_s": min(times)})

    _timed(a, 0, 2 * warmup)  # both parts warm before the first condition: none gets the cold start
    _timed(b, 0, 2 * warmup)
    for cond in conditions:
        if cond in ("isolated", "isolated-again"):
            for name, p in (("A", a), ("B", b)):
                add(cond, name, _timed(p, n, warmup))
        elif cond == "unpinned":
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            for name, p in (("A", a), ("B", b)):
                add(cond, name, _timed(p, n, warmup))
            _pin(0)
        elif cond in ("new-thread", "new-thread-unset"):
            for name, p in (("A", a), ("B", b)):
                add(cond, name, _in_thread(lambda p=p: _timed(p, n, warmup), cond == "new-thread"))
        elif cond.startswith("idle-"):
            gap_s = float(cond[len("idle-"):])
            for name, p in (("A", a), ("B", b)):
                add(cond, name, _timed(p, n, warmup, before=lambda: time.sleep(gap_s)))
        elif cond == "cold-cache":
            for name, p in (("A", a), ("B", b)):
                add(cond, name, _timed(p, n, warmup, before=lambda: flush.fill_(1.0)))
        elif cond == "alternate":
            ta, tb = [], []
            with torch.inference_mode():
                for i in range(warmup + n):
                    x, y = a.call(i), b.call(i)
                    if i >= warmup:
                        ta.append(x)
                        tb.append(y)
            add(cond, "A", ta)
            add(cond, "B", tb)
        elif cond == "sibling-spin":
            ctx = mp.get_context("spawn")
            stop = ctx.Value("i", 0, lock=False)
            ready = ctx.Value("i", 0, lock=False)
            spin = ctx.Process(target=_spinner, args=(1, stop, ready))
            spin.start()
            # a spawned child starts on this process's core (its affinity is inherited) and imports
            # torch there: timing starts only once it has moved to its own core
            while not ready.value:
                time.sleep(0.05)
            time.sleep(0.2)
            try:
                for name, p in (("A", a), ("B", b)):
                    add(cond, name, _timed(p, n, warmup))
            finally:
                stop.value = 1
                spin.join()
        elif cond == "pingpong-block":
            ta, tb = _pingpong(model_name, samples, c, n_layers, n, warmup, "block")
            add(cond, "A", ta)
            add(cond, "B", tb)
        elif cond == "pingpong-data":
            if cut_shape is None:
                continue
            ta, tb = _pingpong(model_name, samples, c, n_layers, n, warmup, "block", cut_shape)
            add(cond, "A", ta)
            add(cond, "B", tb)
        elif cond == "pingpong-spin":
            ta, tb = _pingpong(model_name, samples, c, n_layers, n, warmup, "spin")
            add(cond, "A", ta)
            add(cond, "B", tb)
        else:
            raise SystemExit(f"unknown condition {cond!r}")
    return rows


def summary(rows: list[dict[str, Any]], conditions: Sequence[str]) -> str:
    base = {(r["model"], r["cut"], r["part"]): r["median_s"] for r in rows if r["condition"] == "isolated"}
    lines = ["| condition | parts | median ratio to isolated | A (first part) | B (second part) | max |",
             "|---|---:|---:|---:|---:|---:|"]
    for cond in conditions:
        rs = [r for r in rows if r["condition"] == cond and (r["model"], r["cut"], r["part"]) in base]
        if not rs:
            continue
        ratio = [r["median_s"] / base[(r["model"], r["cut"], r["part"])] for r in rs]
        ra = [x for x, r in zip(ratio, rs) if r["part"] == "A"]
        rb = [x for x, r in zip(ratio, rs) if r["part"] == "B"]
        lines.append(f"| {cond} | {len(rs)} | {statistics.median(ratio):.3f} | "
                     f"{statistics.median(ra):.3f} | {statistics.median(rb):.3f} | {max(ratio):.3f} |")
    models = sorted({r["model"] for r in rows})
    lines += ["", "Per model (median ratio to isolated over its cuts and both parts):", "",
              "| condition | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for cond in conditions:
        cells = []
        for m in models:
            rs = [r for r in rows if r["condition"] == cond and r["model"] == m
                  and (r["model"], r["cut"], r["part"]) in base]
            cells.append(f"{statistics.median(r['median_s'] / base[(r['model'], r['cut'], r['part'])] for r in rs):.3f}"
                         if rs else "")
        lines.append(f"| {cond} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="alexnet,resnet18,mobilenet_v2")
    p.add_argument("--samples-root", type=Path, required=True, help="feature maps as SAMPLES_ROOT/<model>")
    p.add_argument("--cuts", type=int, default=4, help="splits per model, evenly spaced (default 4)")
    p.add_argument("--n", type=int, default=24, help="timed calls per part and condition")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--conditions", default=",".join(CONDITIONS))
    p.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args(argv)
    conditions = args.conditions.split(",")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for m in args.models.split(","):
        n_layers = len(Manifest.load(args.samples_root / m).layer_names)
        k = min(args.cuts, n_layers - 1)
        cuts = sorted({round((i + 1) * (n_layers - 1) / (k + 1)) - 1 for i in range(k)} | set())
        cuts = [c for c in cuts if 0 <= c < n_layers - 1]
        for c in cuts:
            t0 = time.monotonic()
            rows += measure_split(m, args.samples_root / m, c, args.n, args.warmup, conditions)
            print(f"{m} cut after layer {c}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    with open(args.out_dir / "rows.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    text = summary(rows, conditions)
    (args.out_dir / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
