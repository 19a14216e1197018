"""Operating-point controllers against fake sysfs trees and a fake pynvml (never the real /sys)."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from energy_fakes import (
    CPU_BIG_KHZ,
    CPU_LITTLE_KHZ,
    NANO_GPU_HZ,
    ORIN_GPU_HZ,
    KernelWriter,
    build_cpufreq,
    build_nano,
    build_orin,
    fake_nvml,  # noqa: F401  (fixture)
    snapshot,
)

from dime.errors import UsageError
from dime.profiling.device import Controller, make_controller
from dime.profiling.device.common import DvfsError, _boot_id, write_sysfs
from dime.profiling.device.cpu.cpufreq import CpufreqController
from dime.profiling.device.gpu.nvml import NvmlGpuController
from dime.profiling.device.soc.jetson import JetsonGpuController

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cpu_root(tmp_path):
    return build_cpufreq(tmp_path / "cpu")


@pytest.fixture
def orin_root(tmp_path):
    return build_orin(tmp_path / "orin")


@pytest.fixture
def nano_root(tmp_path):
    return build_nano(tmp_path / "nano")


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


def policy(root: Path, n: int) -> Path:
    return root / f"sys/devices/system/cpu/cpufreq/policy{n}"


def rd(p: Path) -> str:
    return p.read_text().strip()


# ------------------------------------------------------------------------------- cpufreq


def test_cpufreq_lists_union_of_policy_frequencies_in_hz(cpu_root, state_dir):
    ctl = make_controller("cpufreq", sysfs_root=cpu_root, state_dir=state_dir)
    assert isinstance(ctl, CpufreqController)
    assert ctl.kind == "freq_hz"
    want = sorted({k * 1000 for k in CPU_LITTLE_KHZ + CPU_BIG_KHZ})
    assert ctl.settings() == [str(v) for v in want]
    assert CpufreqController.is_available(sysfs_root=cpu_root)


def test_cpufreq_without_table_uses_cpuinfo_min_max(tmp_path):
    root = build_cpufreq(tmp_path / "cpu", with_table=False)
    ctl = CpufreqController(root, policies=[0], state_dir=tmp_path / "s")
    assert ctl.settings() == [str(CPU_LITTLE_KHZ[0] * 1000), str(CPU_LITTLE_KHZ[-1] * 1000)]


def test_cpufreq_apply_safe_order_and_restore_byte_for_byte(cpu_root, state_dir):
    before = snapshot(cpu_root)
    ctl = CpufreqController(cpu_root, state_dir=state_dir)
    writer = KernelWriter("scaling_min_freq", "scaling_max_freq")
    ctl._write = writer
    with ctl:
        # 816 MHz lies inside both policies' [min, max]: max first is safe
        ctl.apply("816000000")
        assert writer.writes == [
            ("policy0", "scaling_max_freq", "816000"), ("policy0", "scaling_min_freq", "816000"),
            ("policy4", "scaling_max_freq", "816000"), ("policy4", "scaling_min_freq", "816000"),
        ]
        for n in (0, 4):
            assert rd(policy(cpu_root, n) / "scaling_min_freq") == "816000"
            assert rd(policy(cpu_root, n) / "scaling_max_freq") == "816000"
        # lowering below the current min (816 MHz): min must go first
        writer.writes.clear()
        ctl.apply("408000000")
        assert writer.writes == [
            ("policy0", "scaling_min_freq", "408000"), ("policy0", "scaling_max_freq", "408000"),
            ("policy4", "scaling_min_freq", "408000"), ("policy4", "scaling_max_freq", "408000"),
        ]
        # raising above the current max: max must go first; the little cluster caps at 1416 MHz
        writer.writes.clear()
        ctl.apply("2016000000")
        assert writer.writes == [
            ("policy0", "scaling_max_freq", "1416000"), ("policy0", "scaling_min_freq", "1416000"),
            ("policy4", "scaling_max_freq", "2016000"), ("policy4", "scaling_min_freq", "2016000"),
        ]
        # someone changes the governor behind our back: restored too
        write_sysfs(policy(cpu_root, 4) / "scaling_governor", "performance")
        assert ctl.state_path.exists()
    assert snapshot(cpu_root) == before
    assert not ctl.state_path.exists()


def test_cpufreq_restore_after_exception(cpu_root, state_dir):
    before = snapshot(cpu_root)
    ctl = CpufreqController(cpu_root, state_dir=state_dir)
    with pytest.raises(RuntimeError):
        with ctl:
            ctl.apply("1200000000")
            assert rd(policy(cpu_root, 0) / "scaling_max_freq") == "1200000"
            raise RuntimeError("boom")
    assert snapshot(cpu_root) == before


def test_state_file_written_before_first_change(cpu_root, state_dir):
    ctl = CpufreqController(cpu_root, state_dir=state_dir)
    seen = []

    def spy(path, value):
        seen.append(json.loads(ctl.state_path.read_text())["state"])
        write_sysfs(path, value)

    ctl._write = spy
    ctl.apply("600000000")  # saves implicitly
    assert seen and seen[0]["policy0"] == {
        "scaling_min_freq": "408000", "scaling_max_freq": "1416000",
        "scaling_governor": "schedutil",
    }
    doc = json.loads(ctl.state_path.read_text())
    assert doc["pid"] == os.getpid() and doc["controller"] == "cpufreq"
    ctl.restore()
    assert not ctl.state_path.exists()


def test_unknown_setting_is_a_usage_error(cpu_root, state_dir):
    ctl = CpufreqController(cpu_root, state_dir=state_dir)
    with pytest.raises(UsageError, match="unknown setting"):
        ctl.apply("123")
    assert not ctl.state_path.exists()  # nothing saved, nothing touched


def test_permission_error_is_one_line_naming_file_and_root(cpu_root, state_dir, monkeypatch):
    target = str(policy(cpu_root, 0) / "scaling_max_freq")
    real_open = os.open

    def deny(path, flags, *a, **kw):
        if str(path) == target and flags & os.O_WRONLY:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", deny)
    ctl = CpufreqController(cpu_root, state_dir=state_dir)
    with pytest.raises(DvfsError) as ei:
        ctl.apply("600000000")  # policy0: max goes first
    msg = str(ei.value)
    assert "\n" not in msg
    assert target in msg and "root" in msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes")
def test_permission_error_from_file_mode(cpu_root, state_dir):
    f = policy(cpu_root, 0) / "scaling_max_freq"
    f.chmod(0o444)
    with pytest.raises(DvfsError, match="needs root"):
        CpufreqController(cpu_root, state_dir=state_dir).apply("600000000")


# ------------------------------------------------------------------------------- Jetson


def test_jetson_orin_finds_gpu_and_pins_in_safe_order(orin_root, state_dir):
    before = snapshot(orin_root)
    ctl = make_controller("jetson-gpu", sysfs_root=orin_root, state_dir=state_dir)
    assert isinstance(ctl, JetsonGpuController)
    assert ctl.node.name == "17000000.gpu"
    assert ctl.settings() == [str(v) for v in ORIN_GPU_HZ]
    writer = KernelWriter("min_freq", "max_freq")
    ctl._write = writer
    with ctl:
        ctl.apply("612000000")  # below max, above min: max first is safe
        ctl.apply("306000000")  # lowering below the current min: min first
        ctl.apply("1020000000")  # raising above the current max: max first
        df = ctl.node
        assert rd(df / "min_freq") == rd(df / "max_freq") == "1020000000"
    assert writer.writes == [
        ("17000000.gpu", "max_freq", "612000000"), ("17000000.gpu", "min_freq", "612000000"),
        ("17000000.gpu", "min_freq", "306000000"), ("17000000.gpu", "max_freq", "306000000"),
        ("17000000.gpu", "max_freq", "1020000000"), ("17000000.gpu", "min_freq", "1020000000"),
        # restore to [306 MHz, 1020 MHz] from [1020, 1020]: only min changes
        ("17000000.gpu", "min_freq", "306000000"),
    ]
    assert snapshot(orin_root) == before


def test_jetson_nano_gpu_of_node_named_gpu(nano_root, state_dir):
    before = snapshot(nano_root)
    ctl = JetsonGpuController(nano_root, state_dir=state_dir)
    assert ctl.node.name == "57000000.gpu"
    assert ctl.settings()[0] == "76800000" and ctl.settings()[-1] == "921600000"
    assert len(ctl.settings()) == len(NANO_GPU_HZ)
    with ctl:
        ctl.apply("460800000")
        assert rd(ctl.node / "max_freq") == "460800000"
    assert snapshot(nano_root) == before


def test_jetson_unavailable_without_gpu_node(tmp_path, caplog):
    root = tmp_path / "empty"
    (root / "sys/class/devfreq").mkdir(parents=True)
    with caplog.at_level(logging.INFO):
        assert not JetsonGpuController.is_available(sysfs_root=root)
    assert "of_node/name" in caplog.text
    with pytest.raises(DvfsError, match="of_node"):
        make_controller("jetson-gpu", sysfs_root=root, state_dir=tmp_path / "s")


# ------------------------------------------------------------------------------- crash safety

CHILD = r"""
import sys, time, signal
from dime.profiling.device import make_controller
root, state, mode, setting = sys.argv[1:5]
ctl = make_controller("cpufreq", sysfs_root=root, state_dir=state)
if mode == "kill":
    ctl.save()
    ctl.apply(setting)
    print("applied", flush=True)
    time.sleep(60)
else:
    try:
        with ctl:
            ctl.apply(setting)
            print("applied", flush=True)
            time.sleep(60)
    except KeyboardInterrupt:
        sys.exit(130)
"""


def _spawn(root: Path, state: Path, mode: str, setting: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(state), mode, setting],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO),
    )
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready:
        proc.kill()
        pytest.fail("child did not start: " + proc.stderr.read().decode())
    line = proc.stdout.readline().decode().strip()
    if line != "applied":
        proc.kill()
        pytest.fail(f"child said {line!r}: {proc.stderr.read().decode()}")
    return proc


def test_sigkill_then_next_start_restores_from_state_file(cpu_root, state_dir, caplog):
    before = snapshot(cpu_root)
    proc = _spawn(cpu_root, state_dir, "kill", "600000000")
    assert rd(policy(cpu_root, 0) / "scaling_max_freq") == "600000"
    proc.kill()
    proc.wait(timeout=10)
    assert list(state_dir.glob("cpufreq-*.json"))
    ctl = CpufreqController(cpu_root, state_dir=state_dir)
    with caplog.at_level(logging.WARNING):
        with ctl:
            # the original values were recovered before being recorded again
            assert ctl.saved["policy0"]["scaling_max_freq"] == "1416000"
            assert snapshot(cpu_root) == before
    assert "did not restore" in caplog.text
    assert snapshot(cpu_root) == before
    assert not list(state_dir.glob("*.json"))


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 128 + signal.SIGTERM),
                                       (signal.SIGINT, 130)])
def test_signal_restores_before_exit(cpu_root, state_dir, sig, code):
    before = snapshot(cpu_root)
    proc = _spawn(cpu_root, state_dir, "with", "1008000000")
    assert rd(policy(cpu_root, 4) / "scaling_max_freq") == "816000"
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == code
    assert snapshot(cpu_root) == before
    assert not list(state_dir.glob("*.json"))


def test_in_process_sigint_restores_and_reinstates_handler(cpu_root, state_dir):
    before = snapshot(cpu_root)
    prev = signal.getsignal(signal.SIGINT)
    ctl = CpufreqController(cpu_root, state_dir=state_dir)
    with pytest.raises(KeyboardInterrupt):
        with ctl:
            ctl.apply("1800000000")
            assert signal.getsignal(signal.SIGINT) != prev
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises KeyboardInterrupt out of the sleep
    assert snapshot(cpu_root) == before
    assert signal.getsignal(signal.SIGINT) == prev


def test_live_owner_blocks_a_second_run(cpu_root, state_dir):
    ctl = CpufreqController(cpu_root, state_dir=state_dir)
    ctl.save()
    doc = json.loads(ctl.state_path.read_text())
    doc["pid"] = os.getppid()  # a live process that is not us
    doc["pid_start_ticks"] = None
    ctl.state_path.write_text(json.dumps(doc))
    other = CpufreqController(cpu_root, state_dir=state_dir)
    with pytest.raises(DvfsError, match="another process"):
        other.save()


def test_state_file_from_before_reboot_is_discarded(cpu_root, state_dir, caplog):
    if not _boot_id():
        pytest.skip("no boot id on this system")
    ctl = CpufreqController(cpu_root, state_dir=state_dir)
    ctl.save()
    doc = json.loads(ctl.state_path.read_text())
    doc.update(pid=999_999_999, boot_id="another-boot")
    doc["state"]["policy0"]["scaling_max_freq"] = "600000"
    ctl.state_path.write_text(json.dumps(doc))
    before = snapshot(cpu_root)
    other = CpufreqController(cpu_root, state_dir=state_dir)
    with caplog.at_level(logging.WARNING):
        assert other.recover() is False
    assert "reboot" in caplog.text
    assert snapshot(cpu_root) == before  # stale values not written back
    assert not other.state_path.exists()


# ------------------------------------------------------------------------------- factory / none


def test_none_controller_and_factory_errors(tmp_path):
    ctl = make_controller("none")
    assert ctl.kind == "default" and ctl.settings() == ["default"]
    with ctl:
        ctl.apply("default")
    with pytest.raises(UsageError):
        ctl.apply("fast")
    with pytest.raises(UsageError, match="unknown DVFS kind"):
        make_controller("turbo")
    with pytest.raises(DvfsError, match="cpufreq"):
        make_controller("cpufreq", sysfs_root=tmp_path / "nothing", state_dir=tmp_path)
    assert issubclass(CpufreqController, Controller)


# ------------------------------------------------------------------------------- NVML (fake)


def test_nvml_controller_against_fake_pynvml(fake_nvml, state_dir):
    ctl = make_controller("nvml-gpu", state_dir=state_dir, device_index=0)
    assert isinstance(ctl, NvmlGpuController)
    assert ctl.settings() == [str(m * 1_000_000) for m in (345, 1005, 1500, 1980)]
    with ctl:
        ctl.apply("1500000000")
        assert fake_nvml.locked == (1500, 1500)
        assert ctl.state_path.exists()
    assert fake_nvml.locked is None
    assert fake_nvml.calls == [("set", 1500, 1500), ("reset",)]
    assert not ctl.state_path.exists()


def test_nvml_controller_permission_error(fake_nvml, state_dir):
    fake_nvml.lock_allowed = False
    ctl = NvmlGpuController(0, state_dir=state_dir)
    with pytest.raises(DvfsError, match="needs root") as ei:
        ctl.apply("345000000")
    assert "\n" not in str(ei.value)


def test_nvml_controller_without_pynvml(monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    with caplog.at_level(logging.INFO):
        assert not NvmlGpuController.is_available()
    assert "nvidia-ml-py" in caplog.text
    with pytest.raises(DvfsError, match="nvidia-ml-py"):
        make_controller("nvml-gpu", state_dir=tmp_path)
