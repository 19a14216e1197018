"""NVIDIA Jetson GPU frequency through devfreq.

The GPU is found among ``<root>/sys/class/devfreq/*``: the node whose ``device/of_node/name`` is
one of gv11b, gp10b, ga10b, gb10b, gpu (paths move between JetPack releases, so nothing else is
hard-coded). Frequencies are in Hz in ``available_frequencies``, ``min_freq``, ``max_freq``. A
frequency is pinned by writing it to both min_freq and max_freq (raising: max first; lowering:
min first). Labels are Hz as integer strings.

nvpmodel / jetson_clocks are not touched: choose the power mode before profiling, and do not run
jetson_clocks during a sweep (it rewrites min_freq).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

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

DEVFREQ_DIR = "sys/class/devfreq"
GPU_OF_NAMES: tuple[str, ...] = ("gv11b", "gp10b", "ga10b", "gb10b", "gpu")


def _of_name(node: Path) -> str | None:
    p = node / "device" / "of_node" / "name"
    try:
        return p.read_bytes().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def find_gpu_devfreq(sysfs_root: str | os.PathLike = "/") -> list[Path]:
    """devfreq nodes whose device-tree name says GPU (normally exactly one)."""
    base = sysfs_path(sysfs_root, DEVFREQ_DIR)
    if not base.is_dir():
        return []
    found = []
    for node in sorted(base.iterdir()):
        name = _of_name(node)
        if name in GPU_OF_NAMES:
            found.append(node)
        else:
            log.debug("jetson-gpu: devfreq %s has of_node name %r: not the GPU", node.name, name)
    return found


class JetsonGpuController(Controller):
    kind = "freq_hz"
    name = "jetson-gpu"

    def __init__(
        self,
        sysfs_root: str | os.PathLike = "/",
        node: str | None = None,
        *,
        state_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(state_dir=state_dir)
        self.sysfs_root = str(sysfs_root)
        reason = self.unavailable_reason(sysfs_root=sysfs_root)
        if reason:
            raise DvfsError(reason)
        nodes = find_gpu_devfreq(sysfs_root)
        if node is not None:
            nodes = [n for n in nodes if n.name == node]
            if not nodes:
                raise DvfsError(f"jetson-gpu: no GPU devfreq node named {node!r}")
        if len(nodes) > 1:
            log.warning(
                "jetson-gpu: several GPU devfreq nodes %s; using %s (pass node=... to choose)",
                [n.name for n in nodes], nodes[0].name,
            )
        self.node: Path = nodes[0]
        avail = self.node / "available_frequencies"
        if not avail.exists():
            raise DvfsError(f"jetson-gpu: {avail} does not exist")
        self._freqs_hz = sorted({int(v) for v in read_sysfs(avail).split()})
        if not self._freqs_hz:
            raise DvfsError(f"jetson-gpu: {avail} is empty")
        log.info("jetson-gpu: %s (%d frequencies)", self.node.name, len(self._freqs_hz))

    @classmethod
    def unavailable_reason(cls, sysfs_root: str | os.PathLike = "/", **kw: Any) -> str | None:
        base = sysfs_path(sysfs_root, DEVFREQ_DIR)
        if not base.is_dir():
            return f"no devfreq folder {base} (not a Jetson?)"
        if not find_gpu_devfreq(sysfs_root):
            return (
                f"no devfreq node under {base} has device/of_node/name in "
                f"{', '.join(GPU_OF_NAMES)}"
            )
        return None

    def _identity(self) -> str:
        return f"jetson-gpu:{os.path.realpath(self.sysfs_root)}:{self.node.name}"

    def settings(self) -> list[str]:
        return [str(v) for v in self._freqs_hz]

    def _write(self, path: Path, value: str) -> None:
        write_sysfs(path, value, "the Jetson GPU frequency")

    def _read(self, path: Path) -> str:
        return read_sysfs(path, "the Jetson GPU frequency")

    def apply(self, setting: str) -> None:
        check_setting(self, setting, self.settings())
        self._ensure_saved()
        hz = int(setting)
        set_min_max(
            self.node / "min_freq", self.node / "max_freq", hz, hz, self._write, self._read
        )

    def _read_state(self) -> dict[str, Any]:
        state = {
            "min_freq": self._read(self.node / "min_freq"),
            "max_freq": self._read(self.node / "max_freq"),
        }
        if (self.node / "governor").exists():
            state["governor"] = self._read(self.node / "governor")
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        set_min_max(
            self.node / "min_freq", self.node / "max_freq",
            int(state["min_freq"]), int(state["max_freq"]), self._write, self._read,
        )
        gov = state.get("governor")
        if gov is not None and self._read(self.node / "governor") != gov:
            self._write(self.node / "governor", gov)
