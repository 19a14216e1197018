"""NVIDIA GPU energy through NVML (read only: this never changes any GPU setting).

Primary source: nvmlDeviceGetTotalEnergyConsumption (mJ since the driver loaded, Volta and
newer); it updates about every 100 ms, so `min_window_s` is 1 s. Where the counter answers
NotSupported, a background thread samples nvmlDeviceGetPowerUsage (mW) and integrates it with the
trapezoid rule (on Ampere and newer that reading is itself a 1 s average: keep windows long).
NVML on Jetson answers NotSupported for both: use the `jetson` meter there.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

from dime.errors import MeterError
from dime.profiling.device.gpu.nvml import (
    import_pynvml,
    is_not_supported,
    nvml_call,
    nvml_handle,
)
from dime.profiling.meters.common import Meter, PowerSampler

log = logging.getLogger(__name__)


class NvmlMeter(Meter):
    name = "nvml"
    min_window_s = 1.0

    def __init__(
        self,
        device_index: int = 0,
        sample_interval_s: float = 0.02,
        min_window_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device_index = int(device_index)
        self._nvml = import_pynvml(MeterError)
        self._handle = nvml_handle(self._nvml, self.device_index, MeterError)
        self._sample_interval_s = float(sample_interval_s)
        self._clock = clock
        self.uses_counter = self._counter_supported()
        if not self.uses_counter:
            log.info(
                "nvml meter: GPU %d has no energy counter; sampling power every %.0f ms",
                self.device_index, 1000 * self._sample_interval_s,
            )
        if min_window_s is not None:
            self.min_window_s = float(min_window_s)
        self._start_mj: int | None = None
        self._final_j: float | None = None
        self._sampler: PowerSampler | None = None

    @classmethod
    def unavailable_reason(cls, device_index: int = 0, **kw: Any) -> str | None:
        try:
            nvml = import_pynvml(MeterError)
        except MeterError as e:
            return str(e)
        try:
            h = nvml_handle(nvml, int(device_index), MeterError)
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(h)
                return None
            except Exception as e:
                if not is_not_supported(nvml, e):
                    return f"reading the energy counter failed: {e}"
            try:
                nvml.nvmlDeviceGetPowerUsage(h)
            except Exception as e:
                if is_not_supported(nvml, e):
                    return "the GPU reports neither energy nor power (a Jetson? use --power jetson)"
                return f"reading power failed: {e}"
        except MeterError as e:
            return str(e)
        return None

    def _counter_supported(self) -> bool:
        try:
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            return True
        except Exception as e:
            if is_not_supported(self._nvml, e):
                return False
            raise MeterError(f"NVML: reading the energy counter failed: {e}") from e

    def _counter_mj(self) -> int:
        return int(nvml_call(self._nvml, self._nvml.nvmlDeviceGetTotalEnergyConsumption,
                             self._handle, what="read the energy counter", error=MeterError))

    def _power_channels(self) -> dict[str, float]:
        mw = nvml_call(self._nvml, self._nvml.nvmlDeviceGetPowerUsage, self._handle,
                       what="read power", error=MeterError)
        return {"gpu": float(mw) / 1000.0}

    def start(self) -> None:
        self._final_j = None
        if self.uses_counter:
            self._start_mj = self._counter_mj()
        else:
            if self._sampler is not None:
                self._sampler.stop()
            self._sampler = PowerSampler(self._power_channels, self._sample_interval_s,
                                         clock=self._clock, name="nvml power sampler")
            self._sampler.start()

    def stop(self) -> None:
        if self._final_j is not None:
            return
        if self.uses_counter:
            if self._start_mj is not None:
                self._final_j = (self._counter_mj() - self._start_mj) / 1000.0
        elif self._sampler is not None:
            self._sampler.stop()
            self._final_j = self._sampler.energy_j(fresh=False).get("gpu", 0.0)

    def energy_j(self) -> float:
        if self._final_j is not None:
            return self._final_j
        if self.uses_counter:
            if self._start_mj is None:
                raise MeterError("nvml meter: energy_j() before start()")
            return (self._counter_mj() - self._start_mj) / 1000.0
        if self._sampler is None:
            raise MeterError("nvml meter: energy_j() before start()")
        return self._sampler.energy_j().get("gpu", 0.0)

    def power_w(self) -> float:
        try:
            return self._power_channels()["gpu"]
        except MeterError:
            return math.nan

    def power_limit_w(self) -> float:
        """The enforced power limit (W), for sanity checks."""
        mw = nvml_call(self._nvml, self._nvml.nvmlDeviceGetEnforcedPowerLimit, self._handle,
                       what="read the power limit", error=MeterError)
        return float(mw) / 1000.0
