"""Setting up a role process: pinning, the sample inputs, the description it reports."""

from __future__ import annotations

import logging
import os
import platform
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from dime.capture.models import SplitModel
from dime.core.costs import ROLE_NAMES
from dime.errors import ModelError, UsageError
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


def check_settings(role: int, plan: Plan, threads: int) -> None:
    """Warn where the placements' settings name another thread count than this role runs."""
    for setting in sorted({a.setting for c in plan.configs for a in c.placement if a.role == role}):
        _check_setting(role, setting, threads)


def _check_setting(role: int, setting: str, threads: int) -> None:
    m = re.fullmatch(r"threads=(\d+)", setting)
    if m and int(m.group(1)) != threads:
        log.warning("%s runs with %d torch thread(s) but its bundles' setting says %s: the profile's "
                    "prediction is for another setting", ROLE_NAMES[role], threads, setting)


def load_samples(model: SplitModel, images: Path | None, count: int, seed: int = 0) -> list[torch.Tensor]:
    """Preprocessed inputs (batch of one): image files, else deterministic generated images."""
    from PIL import Image

    from dime.capture.samples import generated_images, list_images

    if len(model.example_inputs) != 1:
        raise ModelError(f"{model.name}: only models with one input can be run split")
    if images is not None:
        pics = [Image.open(p).convert("RGB") for p in list_images(images)[:count]]
    else:
        pics = [img for _, img in generated_images(count, seed)]
    out = []
    want = tuple(model.example_inputs[0].shape)
    for img in pics:
        x = model.preprocess(img).unsqueeze(0) if model.preprocess else None
        if x is None or tuple(x.shape) != want:
            got = None if x is None else tuple(x.shape)
            raise ModelError(f"{model.name}: preprocessed images are {got}, the model was traced with {want}")
        out.append(x.contiguous())
    return out


def role_info(process: ProcessOptions, device: torch.device) -> dict[str, Any]:
    """What a role reports about itself (the cloud sends it to the edge for the CSV)."""
    info: dict[str, Any] = {"torch_device": str(device), "threads": process.threads, "host": platform.node()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
