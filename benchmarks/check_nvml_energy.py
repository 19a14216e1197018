"""Does the profiler's NVML energy add up? (issue 3's GPU check; reads NVML, never sets anything)

Profiles the full-model bundle with `--power nvml` (each row: the energy of a window of at
least --min-window seconds, divided by its repeats), then runs the full model the same total
number of times directly between two reads of the GPU's energy counter, and compares:

    .venv/bin/python benchmarks/check_nvml_energy.py --model alexnet --torch-device cuda

Prints both energies and their relative difference, writes a JSON report with --out, and
exits 0 when they agree within --tolerance (default 10%), 1 when not, 2 on bad input.
Only reads the GPU: no clocks, power limits or other settings are touched.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dime.cliargs import run_main, setup_logging  # noqa: E402
from dime.errors import UsageError  # noqa: E402


def profile_energy(model_name: str, torch_device: str, gpu: int, iterations: int, min_window_s: float,
                   work: Path) -> tuple[float, int, list[dict[str, str]]]:
    """Total energy (J) and number of full-model runs the profiler measured."""
    from dime.capture.models import load_model
    from dime.capture.samples import generate
    from dime.profiling import profiler as dime_profile

    model = load_model(model_name)
    samples = work / "samples"
    generate(model, samples, count=4, progress=False)
    out = work / "profile.csv"
    argv = ["--model", model_name, "--device-name", f"gpu{gpu}", "--torch-device", torch_device,
            "--power", "nvml", "--nvml-index", str(gpu), "--min-window", f"{min_window_s:g}", "--iterations", str(iterations), "--runs", "1",
            "--warmup", "3", "--bundles", f"0..{len(model.layer_names) - 1}", "--samples", str(samples),
            "--out", str(out), "-q"]
    dime_profile.main(argv)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(not r["energy_j"] for r in rows):
        raise UsageError("the profile has no NVML energies (is the energy counter supported?)")
    energy = sum(float(r["energy_j"]) * int(r["repeats"]) for r in rows)
    runs = sum(int(r["repeats"]) for r in rows)
    return energy, runs, rows


def direct_energy(model_name: str, torch_device: str, gpu: int, runs: int) -> tuple[float, float]:
    """Energy (J) and seconds of `runs` full-model runs, read straight off the counter."""
    import torch

    from dime.capture.models import load_model, resolve_torch_device
    from dime.profiling.meters.nvml import NvmlMeter

    device = resolve_torch_device(torch_device)
    model = load_model(model_name)
    model.graph_module.to(device)
    x = tuple(t.to(device) for t in model.example_inputs)
    meter = NvmlMeter(gpu)
    with torch.inference_mode():
        for _ in range(3):
            model.forward_full(*x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        meter.start()
        try:
            e0, t0 = meter.energy_j(), time.monotonic()
            for _ in range(runs):
                model.forward_full(*x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            e1, t1 = meter.energy_j(), time.monotonic()
        finally:
            meter.stop()
    return e1 - e0, t1 - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="alexnet")
    p.add_argument("--torch-device", default="cuda")
    p.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU that --torch-device uses")
    p.add_argument("--iterations", type=int, default=10, help="profile rows (windows) of the full-model bundle")
    p.add_argument("--min-window", type=float, default=1.0, help="seconds per measured window (default 1)")
    p.add_argument("--tolerance", type=float, default=0.10)
    p.add_argument("--out", type=Path, help="JSON report")
    args = p.parse_args(argv)
    setup_logging(0)
    with tempfile.TemporaryDirectory(prefix="dime-nvml-check-") as tmp:
        e_prof, runs, rows = profile_energy(args.model, args.torch_device, args.gpu, args.iterations,
                                            args.min_window, Path(tmp))
    e_direct, seconds = direct_energy(args.model, args.torch_device, args.gpu, runs)
    if e_direct <= 0:
        raise UsageError(f"the energy counter did not advance over {seconds:.2f} s")
    diff = (e_prof - e_direct) / e_direct
    report = {
        "model": args.model,
        "torch_device": args.torch_device,
        "runs": runs,
        "profile_energy_j": e_prof,
        "direct_energy_j": e_direct,
        "direct_seconds": seconds,
        "direct_power_w": e_direct / seconds if seconds > 0 else None,
        "profile_latency_s": sum(float(r["latency_s"]) * int(r["repeats"]) for r in rows) / runs,
        "relative_difference": diff,
        "tolerance": args.tolerance,
        "agree": abs(diff) <= args.tolerance,
    }
    print(f"{args.model} on {args.torch_device}: {runs} full-model runs; profiled {e_prof:.3f} J, "
          f"direct {e_direct:.3f} J over {seconds:.2f} s; difference {diff * 100:+.1f}% "
          f"({'within' if report['agree'] else 'outside'} {args.tolerance * 100:.0f}%)")
    if args.out:
        from dime.fileio import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    return 0 if report["agree"] else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
