"""Fake sysfs trees, a fake pynvml and helpers for the DVFS / meter / power-log tests.

Nothing here touches the real /sys or a real GPU: every tree is built under pytest's tmp_path.
"""

from __future__ import annotations

import errno
import os
import types
from pathlib import Path

import pytest

from dime.profiling.device.common import read_sysfs, write_sysfs

# ---------------------------------------------------------------------------------------------
# tree helpers


def put(root: Path, rel: str, content: str | bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    p.write_bytes(content)
    return p


def link(root: Path, rel: str, target: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, p)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file (bytes), symlink (target) and folder under root, without following links."""
    snap: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for d in dirnames:
            p = Path(dirpath) / d
            rel = str(p.relative_to(root))
            snap[rel] = ("link", os.readlink(p)) if p.is_symlink() else ("dir",)
        for f in filenames:
            p = Path(dirpath) / f
            rel = str(p.relative_to(root))
            snap[rel] = ("link", os.readlink(p)) if p.is_symlink() else ("file", p.read_bytes())
    return snap


# ---------------------------------------------------------------------------------------------
# boards

CPU_LITTLE_KHZ = [408000, 600000, 816000, 1008000, 1200000, 1416000]
CPU_BIG_KHZ = [408000, 816000, 1200000, 1608000, 1800000, 2016000]


def build_cpufreq(root: Path, *, with_table: bool = True) -> Path:
    """Two policies (cpus 0-3 little, 4-7 big); available frequencies unless with_table=False."""
    base = "sys/devices/system/cpu/cpufreq"
    for num, freqs, cpus in ((0, CPU_LITTLE_KHZ, "0 1 2 3"), (4, CPU_BIG_KHZ, "4 5 6 7")):
        d = f"{base}/policy{num}"
        if with_table:
            put(root, f"{d}/scaling_available_frequencies", " ".join(map(str, freqs)) + " \n")
        put(root, f"{d}/cpuinfo_min_freq", f"{freqs[0]}\n")
        put(root, f"{d}/cpuinfo_max_freq", f"{freqs[-1]}\n")
        put(root, f"{d}/scaling_min_freq", f"{freqs[0]}\n")
        put(root, f"{d}/scaling_max_freq", f"{freqs[-1]}\n")
        put(root, f"{d}/scaling_cur_freq", f"{freqs[2]}\n")
        put(root, f"{d}/scaling_governor", "schedutil\n")
        put(root, f"{d}/scaling_available_governors", "ondemand userspace powersave performance "
                                                      "schedutil \n")
        put(root, f"{d}/scaling_driver", "cpufreq-dt\n")
        put(root, f"{d}/related_cpus", cpus + "\n")
    return root


ORIN_GPU_HZ = [306000000, 408000000, 510000000, 612000000, 714000000, 816000000, 918000000,
               1020000000]
NANO_GPU_HZ = [76800000, 153600000, 230400000, 307200000, 384000000, 460800000, 537600000,
               614400000, 691200000, 768000000, 844800000, 921600000]


def _devfreq(root: Path, dev_rel: str, node: str, of_rel: str, of_name: bytes,
             freqs: list[int]) -> None:
    """A devfreq node the way the kernel lays it out (class link, device link, of_node link)."""
    dev = f"{dev_rel}/{node}"
    df = f"{dev}/devfreq/{node}"
    put(root, f"{df}/available_frequencies", " ".join(map(str, freqs)) + "\n")
    put(root, f"{df}/min_freq", f"{freqs[0]}\n")
    put(root, f"{df}/max_freq", f"{freqs[-1]}\n")
    put(root, f"{df}/cur_freq", f"{freqs[len(freqs) // 2]}\n")
    put(root, f"{df}/governor", "nvhost_podgov\n")
    put(root, f"{df}/available_governors", "wmark_active nvhost_podgov userspace performance "
                                           "simple_ondemand\n")
    link(root, f"{df}/device", "../../../" + node)
    put(root, f"{of_rel}/name", of_name)
    depth = dev.count("/") + 1
    link(root, f"{dev}/of_node", "../" * depth + of_rel)
    link(root, f"sys/class/devfreq/{node}", "../../" + df[len("sys/"):])


def build_orin(root: Path) -> Path:
    """Jetson Orin Nano (JetPack 6): GPU devfreq 17000000.gpu (ga10b), a VIC devfreq node, and
    an INA3221 (hwmon) with VDD_IN, VDD_CPU_GPU_CV, VDD_SOC plus an NC channel on a 2nd chip."""
    _devfreq(root, "sys/devices/platform/bus@0", "17000000.gpu",
             "sys/firmware/devicetree/base/bus@0/gpu@17000000", b"ga10b\x00", ORIN_GPU_HZ)
    _devfreq(root, "sys/devices/platform/bus@0", "15340000.vic",
             "sys/firmware/devicetree/base/bus@0/vic@15340000", b"vic\x00",
             [115200000, 345600000, 729600000])
    hw = "sys/bus/i2c/devices/1-0040/hwmon/hwmon1"
    put(root, f"{hw}/name", "ina3221\n")
    put(root, f"{hw}/update_interval", "5\n")
    for n, label, mv, ma in ((1, "VDD_IN", 5000, 1200), (2, "VDD_CPU_GPU_CV", 5000, 400),
                             (3, "VDD_SOC", 5000, 300)):
        put(root, f"{hw}/in{n}_label", label + "\n")
        put(root, f"{hw}/in{n}_input", f"{mv}\n")
        put(root, f"{hw}/curr{n}_input", f"{ma}\n")
        put(root, f"{hw}/in{n + 3}_input", "12\n")  # shunt voltages: no label, no current
    put(root, f"{hw}/in7_label", "sum of shunt voltages\n")
    put(root, f"{hw}/in7_input", "36\n")
    hw2 = "sys/bus/i2c/devices/1-0041/hwmon/hwmon2"
    put(root, f"{hw2}/in1_label", "NC\n")
    put(root, f"{hw2}/in1_input", "5000\n")
    put(root, f"{hw2}/curr1_input", "1000\n")
    return root


def set_orin_rail(root: Path, n: int, mv: int, ma: int) -> None:
    hw = root / "sys/bus/i2c/devices/1-0040/hwmon/hwmon1"
    (hw / f"in{n}_input").write_text(f"{mv}\n")
    (hw / f"curr{n}_input").write_text(f"{ma}\n")


def build_nano(root: Path) -> Path:
    """Jetson Nano (JetPack 4): GPU devfreq 57000000.gpu (of_node name "gpu"), INA3221 via iio
    with POM_5V_IN, POM_5V_GPU, POM_5V_CPU (mW)."""
    _devfreq(root, "sys/devices", "57000000.gpu",
             "sys/firmware/devicetree/base/gpu@57000000", b"gpu\x00", NANO_GPU_HZ)
    iio = "sys/bus/i2c/devices/6-0040/iio:device0"
    for n, label, mw in ((0, "POM_5V_IN", 2000), (1, "POM_5V_GPU", 500), (2, "POM_5V_CPU", 700)):
        put(root, f"{iio}/rail_name_{n}", label + "\n")
        put(root, f"{iio}/in_power{n}_input", f"{mw}\n")
        put(root, f"{iio}/in_voltage{n}_input", "5000\n")
        put(root, f"{iio}/in_current{n}_input", f"{mw // 5}\n")
    return root


RAPL_MAX_UJ = 262143328850


def build_rapl(root: Path, start_uj: tuple[int, int] = (RAPL_MAX_UJ - 1_000_000, 5_000_000)
               ) -> Path:
    """Two packages (intel-rapl:0, :1) with core/dram sub-zones, plus psys."""
    base = "sys/class/powercap"
    for n, uj in enumerate(start_uj):
        z = f"{base}/intel-rapl:{n}"
        put(root, f"{z}/name", f"package-{n}\n")
        put(root, f"{z}/energy_uj", f"{uj}\n")
        put(root, f"{z}/max_energy_range_uj", f"{RAPL_MAX_UJ}\n")
        for m, sub in enumerate(("core", "dram")):
            put(root, f"{base}/intel-rapl:{n}:{m}/name", sub + "\n")
            put(root, f"{base}/intel-rapl:{n}:{m}/energy_uj", "1000\n")
            put(root, f"{base}/intel-rapl:{n}:{m}/max_energy_range_uj", f"{RAPL_MAX_UJ}\n")
    put(root, f"{base}/intel-rapl:2/name", "psys\n")
    put(root, f"{base}/intel-rapl:2/energy_uj", "42\n")
    put(root, f"{base}/intel-rapl:2/max_energy_range_uj", f"{RAPL_MAX_UJ}\n")
    return root


def set_rapl(root: Path, n: int, uj: int) -> None:
    (root / f"sys/class/powercap/intel-rapl:{n}/energy_uj").write_text(f"{uj}\n")


# ---------------------------------------------------------------------------------------------
# a kernel-like writer that records the order of writes


class KernelWriter:
    """Stands in for a controller's `_write`: rejects min > max like devfreq does (EINVAL),
    records (file name, value) in order, then writes to the fake tree."""

    def __init__(self, min_name: str, max_name: str) -> None:
        self.min_name, self.max_name = min_name, max_name
        self.writes: list[tuple[str, str, str]] = []  # (parent folder name, file, value)

    def __call__(self, path: Path, value: str) -> None:
        path = Path(path)
        if path.name in (self.min_name, self.max_name):
            cur_min = int(read_sysfs(path.parent / self.min_name))
            cur_max = int(read_sysfs(path.parent / self.max_name))
            v = int(value)
            if (path.name == self.min_name and v > cur_max) or (
                path.name == self.max_name and v < cur_min
            ):
                raise OSError(errno.EINVAL, f"min > max via {path.name}={v}")
        self.writes.append((path.parent.name, path.name, value))
        write_sysfs(path, value)


# ---------------------------------------------------------------------------------------------
# fake pynvml


class FakeNvmlState:
    def __init__(self) -> None:
        self.energy_mj = 1_000_000
        self.power_mw = 250_000
        self.energy_supported = True
        self.power_supported = True
        self.lock_allowed = True
        self.locked: tuple[int, int] | None = None
        self.calls: list[tuple] = []
        self.mem_clocks = [1593, 877]
        self.gfx_clocks = {1593: [1980, 1500, 1005, 345, 1500], 877: [700, 345]}
        self.inits = 0


def make_fake_pynvml(state: FakeNvmlState) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVML_ERROR_UNINITIALIZED = 1
    m.NVML_ERROR_NOT_SUPPORTED = 3
    m.NVML_ERROR_NO_PERMISSION = 4

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(value)
            self.value = value

        def __str__(self) -> str:
            return {3: "Not Supported", 4: "Insufficient Permissions"}.get(self.value, "Unknown")

    m.NVMLError = NVMLError

    def nvmlInit():
        state.inits += 1

    def nvmlShutdown():
        state.inits -= 1

    def handle(i):
        return ("gpu", i)

    def energy(h):
        if not state.energy_supported:
            raise NVMLError(3)
        return state.energy_mj

    def power(h):
        if not state.power_supported:
            raise NVMLError(3)
        return state.power_mw

    def set_locked(h, lo, hi):
        state.calls.append(("set", lo, hi))
        if not state.lock_allowed:
            raise NVMLError(4)
        state.locked = (lo, hi)

    def reset_locked(h):
        state.calls.append(("reset",))
        if not state.lock_allowed:
            raise NVMLError(4)
        state.locked = None

    m.nvmlInit = nvmlInit
    m.nvmlShutdown = nvmlShutdown
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlDeviceGetHandleByIndex = handle
    m.nvmlDeviceGetUUID = lambda h: "GPU-fake-0000"
    m.nvmlDeviceGetName = lambda h: "Fake GPU"
    m.nvmlDeviceGetSupportedMemoryClocks = lambda h: list(state.mem_clocks)
    m.nvmlDeviceGetSupportedGraphicsClocks = lambda h, mem: list(state.gfx_clocks[mem])
    m.nvmlDeviceSetGpuLockedClocks = set_locked
    m.nvmlDeviceResetGpuLockedClocks = reset_locked
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 350_000
    return m


@pytest.fixture
def fake_nvml(monkeypatch):
    """Install a fake `pynvml` module; yields its state object."""
    state = FakeNvmlState()
    monkeypatch.setitem(__import__("sys").modules, "pynvml", make_fake_pynvml(state))
    return state


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
