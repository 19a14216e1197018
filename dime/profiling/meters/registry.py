"""The meter registry, apart from the base class that the concrete meters import."""

from __future__ import annotations

from typing import Any

from dime.errors import MeterError, UsageError
from dime.profiling.meters.common import METER_KINDS, Meter


def make_meter(
    kind: str,
    sysfs_root: str = "/",
    device_index: int = 0,
    **kw: Any,
) -> Meter | None:
    """Build a meter: none (returns None) | nvml | jetson | rapl | smartpower3.

    Raises MeterError with the reason when the meter cannot be used here. Extra keywords go to
    the class (e.g. smartpower3: host=, port=, name=; jetson: interval_s=).
    """
    if kind == "none":
        return None
    if kind == "nvml":
        from dime.profiling.meters.nvml import NvmlMeter

        cls: type[Meter] = NvmlMeter
        args: dict[str, Any] = {"device_index": device_index, **kw}
    elif kind == "jetson":
        from dime.profiling.meters.jetson import JetsonMeter

        cls, args = JetsonMeter, {"sysfs_root": sysfs_root, **kw}
    elif kind == "rapl":
        from dime.profiling.meters.rapl import RaplMeter

        cls, args = RaplMeter, {"sysfs_root": sysfs_root, **kw}
    elif kind == "smartpower3":
        from dime.profiling.meters.smartpower3 import SmartPower3Meter

        cls, args = SmartPower3Meter, dict(kw)
    else:
        raise UsageError(f"unknown power meter {kind!r}; choose one of {', '.join(METER_KINDS)}")
    reason = cls.unavailable_reason(**args)
    if reason:
        raise MeterError(f"{kind} power meter not available: {reason}")
    return cls(**args)
