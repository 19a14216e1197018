"""A system of devices and links, from a TOML file or from the two-device flags.

    model = "alexnet"            # optional when the profiles hold one model
    source = "camera"            # holds the input and must get the output back
    max_bundle = 8               # optional (default: the largest K profiled everywhere)

    [[device]]
    name = "camera"
    profiles = ["profiles/alexnet-camera.csv"]   # relative to this file
    profile_device = "xeon-2core"  # optional: the profiled device it stands in for (default: name)
    settings = ["threads=1"]     # optional subset, default all profiled
    energy = true                # optional: its energy counts (default: the source's only)
    memory_bytes = 512_000_000   # optional capacity

    [[device]]
    name = "router"
    compute = false              # a relay: forwards transfers along routes, runs no bundle; no
                                 # profiles, profile_device, settings or memory_bytes (energy may
                                 # be given: the radio energy of its links). The source computes.

    [[link]]
    ends = ["camera", "jetson"]  # up = ends[0] -> ends[1], down = the reverse
    preset = "wifi"              # or up_mbps, down_mbps; optional rtt_ms and radio model of ends[0]:
                                 # alpha_up_mw_per_mbps, alpha_down_mw_per_mbps, beta_mw

    [constraints]                # all optional
    objective = "latency"        # latency | energy | throughput
    max_latency_s = 0.1
    max_energy_j = 0.5
    private_layers = 2
    pin = { fc3 = "cloud" }
    one_setting_per_device = false
    bundle_sum = false           # true: DIME's semantics (no merge rule)

Both the file and the two-device flags become a System; `build_problem` turns either into
the one PlacementProblem.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from dime.core.costs import Role
from dime.core.links import LINK_PRESETS, Link, get_link
from dime.core.network import NetLink, Network
from dime.errors import UsageError
from dime.fileio import MAX_TABLE_BYTES, input_problem, read_input_text
from dime.plan.problem import LATENCY, OBJECTIVES, PlacementProblem
from dime.profiling.reader import (
    load_profiles,
    make_role,
    max_bundle_for,
)


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    profiles: tuple[str, ...]
    profile_device: str  # the device in the profiles' device column
    settings: tuple[str, ...] | None = None  # None: every profiled setting
    energy: bool | None = None  # None: counts only when it is the source
    memory_bytes: int | None = None
    compute: bool = True  # False: a relay (no profiles, profile_device "", runs no bundle)


@dataclass(frozen=True)
class LinkSpec:
    ends: tuple[str, str]  # up = ends[0] -> ends[1]
    link: Link


@dataclass(frozen=True)
class Constraints:
    objective: str = LATENCY
    max_latency_s: float | None = None
    max_energy_j: float | None = None
    private_layers: int = 0
    pin: tuple[tuple[str, str], ...] = ()  # (layer, device name)
    one_setting_per_device: bool = False
    bundle_sum: bool = False


@dataclass(frozen=True)
class System:
    devices: tuple[DeviceSpec, ...]
    links: tuple[LinkSpec, ...]
    source: str
    model: str | None = None
    max_bundle: int | None = None
    constraints: Constraints = Constraints()
    path: str = ""  # the file it came from, for messages ("" for the flags)

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for d in self.devices for p in d.profiles))


def two_devices(
    profiles: Sequence[str], edge: str, cloud: str, link: Link,
    edge_settings: Sequence[str] | None = None, cloud_settings: Sequence[str] | None = None,
    model: str | None = None, max_bundle: int | None = None, constraints: Constraints = Constraints(),
) -> System:
    """The system the two-device flags describe: edge (the source) and cloud, one link."""
    paths = tuple(str(p) for p in profiles)
    devices = (
        DeviceSpec("edge", paths, edge, tuple(edge_settings) if edge_settings else None),
        DeviceSpec("cloud", paths, cloud, tuple(cloud_settings) if cloud_settings else None),
    )
    return System(devices, (LinkSpec(("edge", "cloud"), link),), "edge", model, max_bundle, constraints)


# -- reading the file ---------------------------------------------------------------------


class _Reader:
    """Typed access to one TOML table, with errors naming the file and key."""

    def __init__(self, path: str, where: str, data: Any) -> None:
        self.path, self.where = path, where
        if not isinstance(data, dict):
            raise self.error("", "must be a table")
        self.data = data

    def error(self, key: str, what: str) -> UsageError:
        at = ".".join(x for x in (self.where, key) if x)
        return UsageError(f"{self.path}: {at}: {what}" if at else f"{self.path}: {what}")

    def check_keys(self, allowed: Sequence[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.error(key, f"unknown key; known: {', '.join(allowed)}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                raise self.error(key, "missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.error(key, f"must be a number, got {value!r}")
        if not isinstance(value, kind):
            name = kind.__name__ if isinstance(kind, type) else "number"
            raise self.error(key, f"must be a {name}, got {value!r}")
        return value

    def number(self, key: str, positive: bool = True, allow_zero: bool = False) -> float | None:
        value = self.get(key, (int, float))
        if value is None:
            return None
        ok = math.isfinite(value) and (value > 0 or (allow_zero and value == 0) or not positive)
        if not ok:
            raise self.error(key, f"must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
        return float(value)

    def strings(self, key: str, required: bool = False) -> tuple[str, ...] | None:
        value = self.get(key, list, required=required)
        if value is None:
            return None
        if not value or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, "must be a non-empty list of strings")
        return tuple(value)


_TOP = ("model", "source", "max_bundle", "device", "link", "constraints")
_DEVICE = ("name", "compute", "profiles", "profile_device", "settings", "energy", "memory_bytes")
_COMPUTE_ONLY = ("profiles", "profile_device", "settings", "memory_bytes")  # not on a relay
_LINK = ("ends", "preset", "up_mbps", "down_mbps", "rtt_ms", "alpha_up_mw_per_mbps",
         "alpha_down_mw_per_mbps", "beta_mw")
_CONSTRAINTS = ("objective", "max_latency_s", "max_energy_j", "private_layers", "pin",
                "one_setting_per_device", "bundle_sum")


def load_system(path: str | Path) -> System:
    """Read a system file; UsageError naming the file and key on anything wrong in it."""
    path = Path(path)
    label = str(path)
    try:
        data = tomllib.loads(read_input_text(path, "system file"))
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{label}: not TOML ({e})") from None
    top = _Reader(label, "", data)
    top.check_keys(_TOP)
    base = path.parent

    raw_devices = top.get("device", list, required=True)
    if not raw_devices:
        raise top.error("device", "give at least one [[device]]")
    devices: list[DeviceSpec] = []
    for i, raw in enumerate(raw_devices):
        r = _Reader(label, f"device[{i}]", raw)
        r.check_keys(_DEVICE)
        name = r.get("name", str, required=True)
        r.where = f"device {name!r}"
        if any(d.name == name for d in devices):
            raise r.error("name", "used by two devices")
        energy = r.get("energy", bool)
        if not r.get("compute", bool, True):
            for key in _COMPUTE_ONLY:
                if key in r.data:
                    raise r.error(key, "a relay (compute = false) runs no bundle; drop this key")
            devices.append(DeviceSpec(name=name, profiles=(), profile_device="", energy=energy, compute=False))
            continue
        profiles = r.strings("profiles", required=True)
        assert profiles is not None
        paths = []
        for p in profiles:
            full = (base / p) if not Path(p).is_absolute() else Path(p)
            problem = input_problem(full, "profile file", MAX_TABLE_BYTES)
            if problem is not None:
                raise r.error("profiles", f"profile {p}: {problem} (looked at {full})")
            paths.append(str(full))
        memory = r.get("memory_bytes", int)
        if memory is not None and memory <= 0:
            raise r.error("memory_bytes", f"must be a positive whole number, got {memory}")
        devices.append(DeviceSpec(
            name=name,
            profiles=tuple(paths),
            profile_device=r.get("profile_device", str, name),
            settings=r.strings("settings"),
            energy=energy,
            memory_bytes=memory,
        ))
    names = [d.name for d in devices]

    links: list[LinkSpec] = []
    for i, raw in enumerate(top.get("link", list, default=[])):
        r = _Reader(label, f"link[{i}]", raw)
        r.check_keys(_LINK)
        ends = r.strings("ends", required=True)
        assert ends is not None
        if len(ends) != 2 or ends[0] == ends[1]:
            raise r.error("ends", f"must name two different devices, got {list(ends)}")
        for end in ends:
            if end not in names:
                raise r.error("ends", f"link to nowhere: no device {end!r}; devices: {', '.join(names)}")
        links.append(LinkSpec((ends[0], ends[1]), _read_link(r, f"{ends[0]}-{ends[1]}")))

    source = top.get("source", str, names[0] if len(names) == 1 else None, required=len(names) > 1)
    if source not in names:
        raise top.error("source", f"unknown device {source!r}; devices: {', '.join(names)}")
    relays = [d.name for d in devices if not d.compute]
    if source in relays:
        raise top.error("source", f"device {source!r} has compute = false; the source holds the input and must compute")
    max_bundle = top.get("max_bundle", int)
    if max_bundle is not None and max_bundle < 1:
        raise top.error("max_bundle", f"must be a whole number >= 1, got {max_bundle}")

    system = System(tuple(devices), tuple(links), source, top.get("model", str), max_bundle,
                    _read_constraints(_Reader(label, "constraints", top.get("constraints", dict, {})), names,
                                      relays),
                    label)
    net = system_network(system)
    unreachable = net.unreachable()
    if unreachable:
        raise top.error("link", f"device {names[unreachable[0]]!r} is unreachable from the source {source!r}")
    return system


def _read_link(r: _Reader, default_name: str) -> Link:
    preset = r.get("preset", str)
    up, down = r.number("up_mbps"), r.number("down_mbps")
    rtt = r.number("rtt_ms", allow_zero=True)
    radio = {k: r.number(k, allow_zero=True) for k in ("alpha_up_mw_per_mbps", "alpha_down_mw_per_mbps", "beta_mw")}
    if preset is not None:
        if preset.lower() not in LINK_PRESETS:
            raise r.error("preset", f"unknown preset {preset!r}; presets: {', '.join(LINK_PRESETS)}")
        link = get_link(preset, up, down, rtt)
    else:
        if up is None or down is None:
            raise r.error("", "give preset or both up_mbps and down_mbps")
        link = Link(default_name, up, down, rtt_ms=rtt or 0.0)
    changes = {k: v for k, v in radio.items() if v is not None}
    return dataclasses.replace(link, **changes) if changes else link


def _read_constraints(r: _Reader, names: Sequence[str], relays: Sequence[str] = ()) -> Constraints:
    r.check_keys(_CONSTRAINTS)
    objective = r.get("objective", str, LATENCY)
    if objective not in OBJECTIVES:
        raise r.error("objective", f"must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    private = r.get("private_layers", int, 0)
    if private < 0:
        raise r.error("private_layers", f"must be >= 0, got {private}")
    pins = r.get("pin", dict, {})
    for layer, device in pins.items():
        if device not in names:
            raise r.error(f"pin.{layer}", f"unknown device {device!r}; devices: {', '.join(names)}")
        if device in relays:
            raise r.error(f"pin.{layer}", f"device {device!r} has compute = false; it runs no layer")
    return Constraints(
        objective=objective,
        max_latency_s=r.number("max_latency_s"),
        max_energy_j=r.number("max_energy_j"),
        private_layers=private,
        pin=tuple(pins.items()),
        one_setting_per_device=r.get("one_setting_per_device", bool, False),
        bundle_sum=r.get("bundle_sum", bool, False),
    )


def system_network(system: System) -> Network:
    """The system's devices and links as a Network (device indices in file order)."""
    index = {d.name: i for i, d in enumerate(system.devices)}
    return Network(
        len(system.devices),
        tuple(NetLink(index[lk.ends[0]], index[lk.ends[1]], lk.link) for lk in system.links),
        index[system.source],
    )


# -- to a problem -------------------------------------------------------------------------


def _check_own_rows(system: System, device: DeviceSpec, model: str, files: Sequence[str]) -> None:
    """The costs of a device come from its own profiles: the table holds every device's files,
    so rows of its profiled device found only in, or also in, files it does not list would be
    used (averaged in) silently."""
    if not files:
        return  # no rows of its profiled device at all: make_role names the devices there are
    where = system.path or "the profiles"
    own = {os.path.realpath(p) for p in device.profiles}
    if not any(os.path.realpath(f) in own for f in files):
        raise UsageError(f"{where}: device {device.name!r}: its profiles ({', '.join(device.profiles)}) hold no rows "
                         f"of {device.profile_device} for model {model} (another device's file has them)")
    other = next((f for f in files if os.path.realpath(f) not in own), None)
    if other is not None:
        raise UsageError(f"{where}: device {device.name!r}: rows of {device.profile_device} for model {model} are "
                         f"also in {other}, which it does not list; list the same profile files for every device "
                         f"that stands for {device.profile_device}")


def build_problem(system: System, trim: float = 0.1) -> PlacementProblem:
    """Read the profiles and make the one PlacementProblem of a system."""
    where = system.path or "the profiles"
    table = load_profiles(list(system.profiles), model=system.model, trim=trim)
    roles = []
    for d in system.devices:
        if not d.compute:  # a relay: in routes only, nothing to find in the profiles
            roles.append(Role("", (), d.name, d.energy, None, compute=False))
            continue
        _check_own_rows(system, d, table.model, table.device_files.get(d.profile_device, ()))
        role = make_role(table, d.profile_device, d.settings)
        roles.append(dataclasses.replace(role, name=d.name, energy=d.energy, memory_bytes=d.memory_bytes))
    k = max_bundle_for(table, roles, system.max_bundle)
    c = system.constraints
    layer_index = {name: i for i, name in enumerate(table.layer_names)}
    names = [d.name for d in system.devices]
    pin = []
    for layer, device in c.pin:
        if layer not in layer_index:
            raise UsageError(f"{where}: constraints.pin: model {table.model} has no layer {layer!r}")
        pin.append((layer_index[layer], names.index(device)))
    if c.private_layers > table.n_layers:
        what = f"{system.path}: constraints.private_layers" if system.path else "--private-layers"
        raise UsageError(f"{what} {c.private_layers} exceeds the model's {table.n_layers} layers")
    return PlacementProblem(
        table=table,
        roles=tuple(roles),
        link=system_network(system),
        max_bundle=k,
        objective=c.objective,
        max_latency_s=c.max_latency_s,
        max_energy_j=c.max_energy_j,
        private_layers=c.private_layers,
        one_setting_per_device=c.one_setting_per_device,
        pin=tuple(pin),
        bundle_sum=c.bundle_sum,
    )
