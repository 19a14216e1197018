"""NVIDIA Jetson on-board power monitors (INA3221), found by their rail labels.

JetPack 5 and newer (hwmon driver)::

    <root>/sys/bus/i2c/devices/*/hwmon/hwmon*/in{N}_label    rail name (VDD_IN, ...)
                                              in{N}_input    bus voltage, mV
                                              curr{N}_input  current, mA
                                              update_interval  ms (the chip averages over it)

JetPack 4 (iio driver)::

    <root>/sys/bus/i2c/devices/*/iio:device*/rail_name_{N}    rail name (POM_5V_IN, ...)
                                             in_power{N}_input  power, mW

`energy_j()` is the input rail (VDD_IN on Orin Nano/NX, POM_5V_IN on Nano): the whole module.
If no input rail is present (AGX boards), it is the sum of all rails, with a warning.
`rails_energy_j()` gives every rail (GPU/CPU/SOC ... where present). Labels containing "NC"
(not connected) are skipped. A background thread samples every `interval_s` and integrates with
the trapezoid rule; the default interval follows the chip's update_interval (at least 5 ms).
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dime.errors import MeterError
from dime.profiling.device.common import sysfs_path
from dime.profiling.meters.common import Meter, PowerSampler

log = logging.getLogger(__name__)

INPUT_RAILS: tuple[str, ...] = ("VDD_IN", "POM_5V_IN")
DEFAULT_INTERVAL_S = 0.02  # when the chip does not tell its update interval
MIN_INTERVAL_S = 0.005


@dataclass(frozen=True)
class Rail:
    label: str
    power_path: Path | None = None  # mW (JetPack 4)
    volt_path: Path | None = None  # mV (JetPack 5+)
    curr_path: Path | None = None  # mA (JetPack 5+)

    def read_w(self) -> float:
        try:
            if self.power_path is not None:
                return int(self.power_path.read_text().strip()) / 1000.0
            mv = int(self.volt_path.read_text().strip())  # type: ignore[union-attr]
            ma = int(self.curr_path.read_text().strip())  # type: ignore[union-attr]
        except PermissionError as e:
            raise MeterError(f"permission denied reading {e.filename}: run as root") from e
        except (OSError, ValueError) as e:
            raise MeterError(f"cannot read rail {self.label}: {e}") from e
        return mv * ma / 1e6


def _skip_label(label: str) -> bool:
    """Empty labels and "NC" (not connected) ones, e.g. "NC" or "NC_1"; not "VDD_SYNC"."""
    return not label or "NC" in re.split(r"[^A-Z0-9]+", label.upper())


def find_rails(sysfs_root: str | os.PathLike = "/") -> tuple[list[Rail], float | None]:
    """The INA3221 rails (deduplicated by label) and the chip's update interval in s (or None)."""
    base = sysfs_path(sysfs_root, "sys/bus/i2c/devices")
    rails: dict[str, Rail] = {}
    intervals: list[float] = []
    # JetPack 5+: hwmon
    for label_file in sorted(glob.glob(str(base / "*" / "hwmon" / "hwmon*" / "in*_label"))):
        m = re.fullmatch(r"in(\d+)_label", os.path.basename(label_file))
        if not m:
            continue
        n = m.group(1)
        d = Path(label_file).parent
        label = Path(label_file).read_text().strip()
        volt, curr = d / f"in{n}_input", d / f"curr{n}_input"
        if _skip_label(label) or not (volt.exists() and curr.exists()):
            log.debug("jetson meter: skipping %s (%r)", label_file, label)
            continue
        rails.setdefault(label, Rail(label, volt_path=volt, curr_path=curr))
        ui = d / "update_interval"
        if ui.exists():
            try:
                intervals.append(int(ui.read_text().strip()) / 1000.0)
            except (OSError, ValueError):
                pass
    # JetPack 4: iio
    for name_file in sorted(glob.glob(str(base / "*" / "iio:device*" / "rail_name_*"))):
        m = re.fullmatch(r"rail_name_(\d+)", os.path.basename(name_file))
        if not m:
            continue
        n = m.group(1)
        d = Path(name_file).parent
        label = Path(name_file).read_text().strip()
        power = d / f"in_power{n}_input"
        if _skip_label(label) or not power.exists():
            log.debug("jetson meter: skipping %s (%r)", name_file, label)
            continue
        rails.setdefault(label, Rail(label, power_path=power))
    return list(rails.values()), (max(intervals) if intervals else None)


class JetsonMeter(Meter):
    name = "jetson"

    def __init__(
        self,
        sysfs_root: str | os.PathLike = "/",
        interval_s: float | None = None,
        min_window_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sysfs_root = str(sysfs_root)
        self.rails, self.update_interval_s = find_rails(sysfs_root)
        if not self.rails:
            raise MeterError(f"no INA3221 rails under {sysfs_path(sysfs_root, 'sys/bus/i2c')}")
        inputs = [r.label for r in self.rails if r.label in INPUT_RAILS]
        if inputs:
            self.input_rail: str | None = inputs[0]
        else:
            self.input_rail = None
            log.warning(
                "jetson meter: no input rail (%s) among %s; energy is the sum of all rails",
                "/".join(INPUT_RAILS), [r.label for r in self.rails],
            )
        if interval_s is None:
            interval_s = max(MIN_INTERVAL_S, self.update_interval_s or DEFAULT_INTERVAL_S)
        self.interval_s = float(interval_s)
        # at least 20 samples per window, and never below 0.1 s
        self.min_window_s = (
            float(min_window_s) if min_window_s is not None else max(0.1, 20 * self.interval_s)
        )
        self._clock = clock
        self._sampler: PowerSampler | None = None
        log.info(
            "jetson meter: rails %s, input %s, sampling every %.1f ms",
            [r.label for r in self.rails], self.input_rail or "sum", 1000 * self.interval_s,
        )

    @classmethod
    def unavailable_reason(cls, sysfs_root: str | os.PathLike = "/", **kw: Any) -> str | None:
        rails, _ = find_rails(sysfs_root)
        if not rails:
            return (
                f"no INA3221 rail labels under {sysfs_path(sysfs_root, 'sys/bus/i2c/devices')} "
                "(not a Jetson, or an unknown layout)"
            )
        try:
            rails[0].read_w()
        except MeterError as e:
            return str(e)
        return None

    def _read_all(self) -> dict[str, float]:
        return {r.label: r.read_w() for r in self.rails}

    def _total(self, per_rail: dict[str, float]) -> float:
        if self.input_rail is not None:
            return per_rail.get(self.input_rail, 0.0)
        return sum(per_rail.values())

    def start(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        self._sampler = PowerSampler(self._read_all, self.interval_s, clock=self._clock,
                                     name="jetson power sampler")
        self._sampler.start()

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()

    def rails_energy_j(self) -> dict[str, float]:
        """Joules per rail label since start."""
        if self._sampler is None:
            raise MeterError("jetson meter: energy read before start()")
        return self._sampler.energy_j()

    def energy_j(self) -> float:
        return self._total(self.rails_energy_j())

    def rails_power_w(self) -> dict[str, float]:
        return self._read_all()

    def power_w(self) -> float:
        try:
            return self._total(self._read_all())
        except MeterError:
            return math.nan

    @property
    def samples(self) -> int:
        return self._sampler.samples if self._sampler is not None else 0
