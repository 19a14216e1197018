"""Column names of profile files (CSV, one row per timed run)."""

from __future__ import annotations

import os
from pathlib import Path

REQUIRED_COLUMNS: tuple[str, ...] = (
    "model",
    "device",
    "setting",
    "bundle",
    "start",
    "end",
    "in_bytes",
    "out_bytes",
    "iteration",
    "run",
    "latency_s",
    "energy_j",
)
# Written by dime's profiler for provenance; optional when reading.
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "setting_kind",  # default, threads, freq_hz, ...
    "energy_source",  # "", nvml, rapl, jetson, smartpower3, assumed:<W>
    "torch_device",
    "host",
    "torch_version",
    "timestamp",
    "t_start_s",  # time.monotonic() on the profiled host at the run's start, for joining power logs
    "t_end_s",
    "clock_offset_s",  # power-meter host clock minus this host's, for joining (smartpower3)
    "repeats",  # calls per run (> 1 when a meter needs a longer window)
    "energy_total_j",  # energy before subtracting idle power (with --idle-baseline)
    "idle_power_w",
    "param_bytes",  # bytes of the bundle's parameters and buffers (memory limits need it)
    "energy_note",  # why energy_j is not the measured value (e.g. clamped at 0 by `dime energy join`)
    # Predicted rows (dime.predict, dime.profile --measure): one row per predicted bundle.
    "latency_source",  # measured (also when empty) | predicted
    "latency_sd_s",  # uncertainty (sd) of a predicted latency_s; empty on measured rows
    "energy_origin",  # measured | predicted | empty (no energy); energy_source stays the meter's name
    "energy_sd_j",  # uncertainty (sd) of a predicted energy_j
    # Wake-up rows (dime.profile --wakeup): one call timed after the device idled idle_s seconds
    # (0: right after another call, the reference). Empty on the bundle rows.
    "idle_s",
)
MEASURED = "measured"
PREDICTED = "predicted"
PROFILE_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


def meta_path(csv_path: str | os.PathLike) -> Path:
    """The provenance file the profiler writes beside a profile CSV."""
    p = Path(csv_path)
    return p.with_name(p.name + ".meta.json")

# Bounds of a plausible row: one run of one bundle. Beyond them a value is a unit mix-up or
# a corrupt cell, and sums of such values overflow the solver's arithmetic.
MAX_LATENCY_S = 3600.0  # an hour
MAX_ENERGY_J = 3.6e6  # a kilowatt for an hour
MAX_CUT_BYTES = 2**40  # a terabyte crossing one cut
