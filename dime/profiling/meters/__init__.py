"""Power meters: cumulative energy over measurement windows (nvml, jetson, rapl, smartpower3)."""

from dime.profiling.meters.common import (
    METER_KINDS,
    Meter,
    MeterError,
    PowerSampler,
)
from dime.profiling.meters.registry import make_meter

__all__ = ["METER_KINDS", "Meter", "MeterError", "PowerSampler", "make_meter"]
