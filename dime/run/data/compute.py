"""Running bundles on a torch device: the modules of a placement, whole-model timing,
the check against the full model."""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from dime.capture.models import SplitModel
from dime.core.costs import EDGE, Assignment
from dime.errors import ModelError

CPU = torch.device("cpu")


def to_device(vals: Sequence[torch.Tensor], device: torch.device) -> Sequence[torch.Tensor]:
    return vals if device.type == "cpu" else tuple(t.to(device) for t in vals)


def sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: a phase's time counts only once they are done
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bundle_modules(model: SplitModel, bundles: Sequence[Assignment], cache: dict[tuple[int, int], Any]) -> list[Any]:
    """One module per bundle, as planned (a merged run of layers is one bundle, so one
    module); each built once and shared through `cache`."""
    for a in bundles:
        if (a.start, a.end) not in cache:
            cache[(a.start, a.end)] = model.bundle(a.start, a.end)
    return [cache[(a.start, a.end)] for a in bundles]


def build_bundles(model: SplitModel, cache: dict[tuple[int, int], Any], max_bundle: int) -> int:
    """Every bundle of at most `max_bundle` layers into `cache`, ahead of the placements that may
    run them (a re-plan); how many were built. They share the model's parameters: what they add
    is their graphs and code."""
    n = len(model.layer_names)
    built = 0
    for s in range(n):
        for e in range(s, min(n, s + max_bundle)):
            if (s, e) not in cache:
                cache[(s, e)] = model.bundle(s, e)
                built += 1
    return built


def run_modules(mods: Sequence[Any], vals: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """A segment's bundles in order, each one's outputs the next one's inputs."""
    for mod in mods:
        vals = mod(*vals)
    return vals


def time_whole_model(model: SplitModel, samples: Sequence[tuple[torch.Tensor, ...]], device: torch.device, runs: int,
                     cache: dict[tuple[int, int], Any], warmup: int = 2, trim: float = 0.1) -> float:
    """The whole model as one bundle, timed as the profiler times it (back to back, trimmed
    mean): set beside the profile's figure it shows how much this machine has drifted."""
    from dime.profiling.reader import trimmed_mean  # pandas: not at the roles' start-up

    (mod,) = bundle_modules(model, [Assignment(0, len(model.layer_names) - 1, EDGE, "")], cache)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            x = to_device(samples[i % len(samples)], device)
            t0 = time.perf_counter()
            mod(*x)
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return trimmed_mean(times, trim)


def flat_tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flat_tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in flat_tensors(o)]
    return []


def check_outputs(label: str, got: Sequence[torch.Tensor], ref: Any, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    want = flat_tensors(ref)
    if len(got) != len(want):
        raise ModelError(f"{label}: the split run returned {len(got)} tensors, the full model {len(want)}")
    for i, (a, b) in enumerate(zip(got, want)):
        if a.shape != b.shape or not torch.allclose(a, b, rtol=rtol, atol=atol):
            diff = (a - b).abs().max().item() if a.shape == b.shape else float("nan")
            raise ModelError(f"{label}: output {i} differs from the full model's (max abs diff {diff:.3g})")
