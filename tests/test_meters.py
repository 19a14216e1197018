"""Power meters against fake sysfs trees and a fake pynvml; one read-only real-GPU check."""

from __future__ import annotations

import importlib
import logging
import math
import sys
import time
from pathlib import Path

import pytest
from energy_fakes import (
    RAPL_MAX_UJ,
    FakeClock,
    build_nano,
    build_orin,
    build_rapl,
    fake_nvml,  # noqa: F401  (fixture)
    set_orin_rail,
    set_rapl,
)

from dime.errors import MeterError, UsageError
from dime.profiling.meters import Meter, make_meter
from dime.profiling.meters.jetson import JetsonMeter, find_rails
from dime.profiling.meters.nvml import NvmlMeter
from dime.profiling.meters.rapl import RaplMeter, counter_delta

# ------------------------------------------------------------------------------- Jetson


def test_orin_rails_discovered_and_nc_skipped(tmp_path):
    root = build_orin(tmp_path / "orin")
    rails, interval = find_rails(root)
    assert [r.label for r in rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    assert interval == pytest.approx(0.005)
    meter = make_meter("jetson", sysfs_root=str(root))
    assert isinstance(meter, JetsonMeter) and meter.name == "jetson"
    assert meter.input_rail == "VDD_IN"
    assert meter.interval_s == pytest.approx(0.005)
    assert meter.min_window_s == pytest.approx(0.1)
    assert meter.power_w() == pytest.approx(6.0)  # 5000 mV x 1200 mA


def test_orin_energy_is_input_rail_trapezoid(tmp_path):
    root = build_orin(tmp_path / "orin")
    clock = FakeClock(10.0)
    meter = JetsonMeter(root, interval_s=3600, clock=clock)  # no background ticks
    meter.start()  # sample at t=10: VDD_IN 6 W, CPU_GPU_CV 2 W, SOC 1.5 W
    clock.t = 12.0
    set_orin_rail(root, 1, 5000, 1600)  # VDD_IN 8 W
    set_orin_rail(root, 2, 5000, 800)  # 4 W
    assert meter.energy_j() == pytest.approx((6 + 8) / 2 * 2)
    clock.t = 13.0
    rails = meter.rails_energy_j()
    assert rails["VDD_IN"] == pytest.approx(14 + 8)
    assert rails["VDD_CPU_GPU_CV"] == pytest.approx((2 + 4) / 2 * 2 + 4)
    assert rails["VDD_SOC"] == pytest.approx(1.5 * 3)
    meter.stop()
    clock.t = 20.0
    assert meter.energy_j() == pytest.approx(22)  # frozen after stop


def test_nano_jetpack4_iio_rails(tmp_path):
    root = build_nano(tmp_path / "nano")
    clock = FakeClock(0.0)
    meter = JetsonMeter(root, interval_s=3600, clock=clock)
    assert meter.input_rail == "POM_5V_IN"
    assert sorted(r.label for r in meter.rails) == ["POM_5V_CPU", "POM_5V_GPU", "POM_5V_IN"]
    with meter:
        clock.t = 4.0
        assert meter.energy_j() == pytest.approx(2.0 * 4)
        assert meter.rails_energy_j()["POM_5V_GPU"] == pytest.approx(0.5 * 4)


def test_jetson_without_input_rail_sums_rails(tmp_path, caplog):
    root = tmp_path / "agx"
    hw = root / "sys/bus/i2c/devices/1-0040/hwmon/hwmon0"
    hw.mkdir(parents=True)
    for n, label, ma in ((1, "GPU", 400), (2, "CPU", 200), (3, "NC", 999)):
        (hw / f"in{n}_label").write_text(label + "\n")
        (hw / f"in{n}_input").write_text("5000\n")
        (hw / f"curr{n}_input").write_text(f"{ma}\n")
    clock = FakeClock(0.0)
    with caplog.at_level(logging.WARNING):
        meter = JetsonMeter(root, interval_s=3600, clock=clock)
    assert meter.input_rail is None and "sum of all rails" in caplog.text
    assert meter.update_interval_s is None  # no update_interval file
    with meter:
        clock.t = 1.0
        assert meter.energy_j() == pytest.approx(2.0 + 1.0)


@pytest.mark.serial
def test_jetson_background_sampling_thread(tmp_path):
    root = build_orin(tmp_path / "orin")
    meter = JetsonMeter(root, interval_s=0.005)
    t0 = time.monotonic()
    meter.start()
    time.sleep(0.15)
    e = meter.energy_j()
    t1 = time.monotonic()
    meter.stop()
    assert meter.samples > 5
    assert 6.0 * 0.14 <= e <= 6.0 * (t1 - t0) + 1e-9


def test_jetson_unavailable_logs_reason(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        assert not JetsonMeter.is_available(sysfs_root=tmp_path)
    assert "INA3221" in caplog.text
    with pytest.raises(MeterError, match="jetson power meter not available"):
        make_meter("jetson", sysfs_root=str(tmp_path))


# ------------------------------------------------------------------------------- RAPL


def test_rapl_packages_with_wraparound(tmp_path):
    root = build_rapl(tmp_path / "rapl")
    meter = make_meter("rapl", sysfs_root=str(root))
    assert isinstance(meter, RaplMeter)
    assert [z.name for z in meter.zones] == ["package-0", "package-1"]  # no sub-zones, no psys
    meter.start()
    set_rapl(root, 0, 2_000_000)  # wrapped: 1 J up to the range, then 2 J
    set_rapl(root, 1, 8_000_000)  # +3 J
    assert meter.energy_j() == pytest.approx(1 + 2 + 3)
    set_rapl(root, 0, 3_000_000)  # +1 J
    meter.stop()
    assert meter.energy_j() == pytest.approx(7)
    assert counter_delta(RAPL_MAX_UJ - 5, 5, RAPL_MAX_UJ) == 10


def test_rapl_permission_denied_is_unavailable(tmp_path, monkeypatch, caplog):
    root = build_rapl(tmp_path / "rapl")
    real = Path.read_text

    def deny(self, *a, **kw):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", deny)
    with caplog.at_level(logging.INFO):
        assert not RaplMeter.is_available(sysfs_root=root)
    assert "needs root" in caplog.text and "energy_uj" in caplog.text


# ------------------------------------------------------------------------------- NVML (fake)


def test_nvml_meter_energy_counter(fake_nvml):
    meter = make_meter("nvml", device_index=0)
    assert isinstance(meter, NvmlMeter) and meter.uses_counter
    assert meter.min_window_s == 1.0
    meter.start()
    fake_nvml.energy_mj += 2500
    assert meter.energy_j() == pytest.approx(2.5)
    fake_nvml.energy_mj += 500
    meter.stop()
    fake_nvml.energy_mj += 10_000
    assert meter.energy_j() == pytest.approx(3.0)
    assert meter.power_w() == pytest.approx(250.0)


def test_nvml_meter_falls_back_to_sampled_power(fake_nvml):
    fake_nvml.energy_supported = False
    clock = FakeClock(0.0)
    meter = NvmlMeter(0, sample_interval_s=3600, clock=clock)
    assert not meter.uses_counter
    meter.start()  # 250 W at t=0
    clock.t = 2.0
    fake_nvml.power_mw = 150_000
    assert meter.energy_j() == pytest.approx((250 + 150) / 2 * 2)
    clock.t = 3.0
    meter.stop()
    assert meter.energy_j() == pytest.approx(400 + 150)


def test_nvml_meter_unavailable_when_nothing_supported(fake_nvml, caplog):
    fake_nvml.energy_supported = False
    fake_nvml.power_supported = False
    with caplog.at_level(logging.INFO):
        assert not NvmlMeter.is_available()
    assert "jetson" in caplog.text


def test_nvml_meter_without_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(MeterError, match="nvidia-ml-py"):
        make_meter("nvml")


def test_make_meter_none_and_unknown():
    assert make_meter("none") is None
    with pytest.raises(UsageError, match="unknown power meter"):
        make_meter("multimeter")
    assert issubclass(JetsonMeter, Meter)


# ------------------------------------------------------------------------------- real GPU (read only)


def _real_pynvml():
    try:
        nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
        if nvml.nvmlDeviceGetCount() < 1:
            return None
    except Exception:
        return None
    return nvml


def test_nvml_real_gpu_reads_energy_only():
    """Only READS the energy counter and power limit of GPU 0; never changes any setting."""
    nvml = _real_pynvml()
    if nvml is None:
        pytest.skip("no NVIDIA GPU / NVML here")
    meter = NvmlMeter(0)
    if not meter.uses_counter:
        pytest.skip("this GPU has no energy counter")
    meter.start()
    t0 = time.monotonic()
    time.sleep(1.2)
    e = meter.energy_j()
    dt = time.monotonic() - t0
    meter.stop()
    limit = meter.power_limit_w()
    power = e / dt
    assert 10.0 <= power <= limit * 1.05, (power, limit)
    assert not math.isnan(meter.power_w())
