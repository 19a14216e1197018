"""The controller registry, apart from the base class that the concrete controllers import."""

from __future__ import annotations

import os
from typing import Any

from dime.errors import UsageError
from dime.profiling.device.common import CONTROLLER_KINDS, Controller, NoneController


def make_controller(
    kind: str,
    sysfs_root: str | os.PathLike = "/",
    state_dir: str | os.PathLike | None = None,
    **kw: Any,
) -> Controller:
    """Build a controller: none | cpufreq | jetson-gpu | nvml-gpu.

    Extra keywords go to the class: cpufreq `policies=[0, 4]`; jetson-gpu `node="17000000.gpu"`;
    nvml-gpu `device_index=0`. Raises DvfsError (with the reason) when the hardware is missing.
    """
    if kind == "none":
        return NoneController(state_dir=state_dir)
    if kind == "cpufreq":
        from dime.profiling.device.cpu.cpufreq import CpufreqController

        return CpufreqController(sysfs_root=sysfs_root, state_dir=state_dir, **kw)
    if kind == "jetson-gpu":
        from dime.profiling.device.soc.jetson import JetsonGpuController

        return JetsonGpuController(sysfs_root=sysfs_root, state_dir=state_dir, **kw)
    if kind == "nvml-gpu":
        from dime.profiling.device.gpu.nvml import NvmlGpuController

        return NvmlGpuController(state_dir=state_dir, **kw)
    raise UsageError(f"unknown DVFS kind {kind!r}; choose one of {', '.join(CONTROLLER_KINDS)}")
