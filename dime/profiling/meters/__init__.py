"""Power meters: cumulative energy over measurement windows (nvml, jetson, rapl, smartpower3)."""

from dime.profiling.meters.common import (
    METER_KINDS,
    Meter,
    MeterError,
    PowerSampler,
    make_meter,
)

__all__ = ["METER_KINDS", "Meter", "MeterError", "PowerSampler", "make_meter"]
