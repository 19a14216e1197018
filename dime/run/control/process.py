"""Setting up a device process: pinning, the sample inputs, the description it reports."""

from __future__ import annotations

import logging
import os
import platform
import re
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from dime.capture.models import SplitModel
from dime.errors import UsageError
from dime.run.data.compute import build_bundles
from dime.run.links import SHAPER_NETNS, SHAPER_NETNS_USER_DELAY, SHAPER_USER
from dime.run.options import ProcessOptions
from dime.run.plan import Plan

log = logging.getLogger("dime.run")


def pin(cores: Sequence[int] | None, threads: int | None) -> None:
    """Pin this process (every thread so far; later threads inherit) and size torch's pools."""
    if cores:
        try:
            for tid in os.listdir("/proc/self/task"):
                os.sched_setaffinity(int(tid), set(cores))
        except (OSError, AttributeError) as e:
            raise UsageError(f"cannot pin to cores {','.join(map(str, cores))}: {e}") from None
    if threads is not None:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already fixed: torch ran parallel work before


def check_settings(plan: Plan, device: int, threads: int) -> None:
    """Warn where the placements' settings name another thread count than this device runs."""
    for setting in sorted({a.setting for c in plan.configs for a in c.placement if a.role == device}):
        m = re.fullmatch(r"threads=(\d+)", setting)
        if m and int(m.group(1)) != threads:
            log.warning("%s runs with %d torch thread(s) but its bundles' setting says %s: the profile's "
                        "prediction is for another setting", plan.device_names[device], threads, setting)


def shaping(shaper: str) -> tuple[bool, bool]:
    """(pace sends in user space, add the links' delays in user space) for a plan's shaper."""
    if shaper == SHAPER_USER:
        return True, True
    if shaper == SHAPER_NETNS_USER_DELAY:
        return False, True
    if shaper == SHAPER_NETNS:
        return False, False
    raise UsageError(f"unknown shaper {shaper!r}")


def load_samples(model: SplitModel, images: Path | None, count: int, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """The model's inputs (batch of one), one tuple per sample: images or tensor files from
    `images`, else deterministic generated ones (as dime.samples makes them)."""
    from dime.capture.samples import model_samples

    return [vals for _, vals in model_samples(model, images, count, seed)[0]]


def rss_bytes() -> int | None:
    """This process's resident memory (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def build_ahead(model: SplitModel, modules: dict[tuple[int, int], Any], plan: Plan, device: int) -> None:
    """With --adapt, a computing device builds every bundle a re-plan may give it before the run
    (off the critical path of a switch); logged with the time and the resident memory it took."""
    if not plan.adapt_max_bundle or device not in plan.adapt_computing:
        return
    before, t0 = rss_bytes(), time.perf_counter()
    n = build_bundles(model, modules, plan.adapt_max_bundle)
    after = rss_bytes()
    memory = f"; resident memory {before / 2**20:.0f} -> {after / 2**20:.0f} MiB" if before and after else ""
    log.info("%s: built %d bundles of up to %d layers ahead in %.2f s%s", plan.device_names[device], n,
             plan.adapt_max_bundle, time.perf_counter() - t0, memory)


def device_info(process: ProcessOptions, device: torch.device) -> dict[str, Any]:
    """What a device reports about itself (sent to the source for the CSV)."""
    info: dict[str, Any] = {"torch_device": str(device), "threads": process.threads, "host": platform.node()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
