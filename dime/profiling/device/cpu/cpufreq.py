"""Linux cpufreq: pin CPU frequencies by writing scaling_min_freq = scaling_max_freq.

Files (kHz) under ``<root>/sys/devices/system/cpu/cpufreq/policyX/``. Setting labels are the
target frequency in Hz as an integer string ("1200000000"). The label list is the union of the
frequencies of the controlled policies; each policy is pinned to its highest frequency at or
below the target (its lowest if it has none), so on big.LITTLE boards one label caps every
cluster. Pass `policies=[4]` to control only some policies.

min = max pins the frequency under any governor, so the governor is left alone (but saved and
restored with the limits). Thermal limits may still lower the frequency.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable

from dime.profiling.device.common import (
    Controller,
    DvfsError,
    check_setting,
    read_sysfs,
    set_min_max,
    sysfs_path,
    write_sysfs,
)

log = logging.getLogger(__name__)

CPUFREQ_DIR = "sys/devices/system/cpu/cpufreq"


def find_policies(sysfs_root: str | os.PathLike = "/") -> list[Path]:
    """The cpufreq policy folders, ordered by number."""
    base = sysfs_path(sysfs_root, CPUFREQ_DIR)
    if not base.is_dir():
        return []
    found = []
    for p in base.iterdir():
        m = re.fullmatch(r"policy(\d+)", p.name)
        if m and (p / "scaling_max_freq").exists():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def policy_frequencies_khz(policy: Path) -> list[int]:
    """Available frequencies of one policy (kHz, ascending)."""
    avail = policy / "scaling_available_frequencies"
    if avail.exists():
        vals = sorted({int(v) for v in read_sysfs(avail, "CPU frequencies").split()})
        if vals:
            return vals
    lo = policy / "cpuinfo_min_freq"
    hi = policy / "cpuinfo_max_freq"
    if lo.exists() and hi.exists():
        log.info(
            "cpufreq: %s has no frequency table; using cpuinfo_min/max_freq only", policy.name
        )
        return sorted({int(read_sysfs(lo)), int(read_sysfs(hi))})
    raise DvfsError(f"{policy} lists no frequencies (no scaling_available_frequencies)")


class CpufreqController(Controller):
    kind = "freq_hz"
    name = "cpufreq"

    def __init__(
        self,
        sysfs_root: str | os.PathLike = "/",
        policies: Iterable[int] | None = None,
        *,
        state_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(state_dir=state_dir)
        self.sysfs_root = str(sysfs_root)
        reason = self.unavailable_reason(sysfs_root=sysfs_root)
        if reason:
            raise DvfsError(reason)
        all_policies = find_policies(sysfs_root)
        if policies is not None:
            wanted = {int(p) for p in policies}
            chosen = [p for p in all_policies if int(p.name[len("policy"):]) in wanted]
            missing = wanted - {int(p.name[len("policy"):]) for p in chosen}
            if missing:
                raise DvfsError(
                    f"cpufreq: no policy {sorted(missing)}; have "
                    f"{[p.name for p in all_policies]}"
                )
            all_policies = chosen
        self.policies: list[Path] = all_policies
        self._freqs_khz = {p.name: policy_frequencies_khz(p) for p in self.policies}

    @classmethod
    def unavailable_reason(cls, sysfs_root: str | os.PathLike = "/", **kw: Any) -> str | None:
        base = sysfs_path(sysfs_root, CPUFREQ_DIR)
        if not base.is_dir():
            return f"no cpufreq folder {base} (no CPU frequency scaling on this machine)"
        if not find_policies(sysfs_root):
            return f"no cpufreq policies under {base}"
        return None

    def _identity(self) -> str:
        root = os.path.realpath(self.sysfs_root)
        return f"cpufreq:{root}:" + ",".join(p.name for p in self.policies)

    def settings(self) -> list[str]:
        hz = sorted({khz * 1000 for freqs in self._freqs_khz.values() for khz in freqs})
        return [str(v) for v in hz]

    def target_khz(self, policy: Path, hz: int) -> int:
        """The frequency a policy is pinned to for a target in Hz."""
        freqs = self._freqs_khz[policy.name]
        below = [f for f in freqs if f * 1000 <= hz]
        return below[-1] if below else freqs[0]

    def _write(self, path: Path, value: str) -> None:
        write_sysfs(path, value, "CPU frequency limits")

    def _read(self, path: Path) -> str:
        return read_sysfs(path, "CPU frequency limits")

    def apply(self, setting: str) -> None:
        check_setting(self, setting, self.settings())
        self._ensure_saved()
        hz = int(setting)
        for policy in self.policies:
            khz = self.target_khz(policy, hz)
            log.debug("cpufreq: %s -> %d kHz", policy.name, khz)
            set_min_max(
                policy / "scaling_min_freq", policy / "scaling_max_freq", khz, khz,
                self._write, self._read,
            )
            got_min = int(self._read(policy / "scaling_min_freq"))
            got_max = int(self._read(policy / "scaling_max_freq"))
            if got_min != khz or got_max != khz:
                log.warning(
                    "cpufreq: %s reads back min %d / max %d kHz after pinning %d kHz "
                    "(a thermal or QoS limit?)", policy.name, got_min, got_max, khz,
                )

    def _read_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for policy in self.policies:
            entry = {
                "scaling_min_freq": self._read(policy / "scaling_min_freq"),
                "scaling_max_freq": self._read(policy / "scaling_max_freq"),
            }
            gov = policy / "scaling_governor"
            if gov.exists():
                entry["scaling_governor"] = self._read(gov)
            state[policy.name] = entry
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        base = sysfs_path(self.sysfs_root, CPUFREQ_DIR)
        errors = []
        for name, entry in state.items():
            policy = base / name
            try:
                set_min_max(
                    policy / "scaling_min_freq", policy / "scaling_max_freq",
                    int(entry["scaling_min_freq"]), int(entry["scaling_max_freq"]),
                    self._write, self._read,
                )
                gov = entry.get("scaling_governor")
                if gov is not None and self._read(policy / "scaling_governor") != gov:
                    self._write(policy / "scaling_governor", gov)
            except DvfsError as e:
                errors.append(e)
        if errors:
            raise errors[0]
