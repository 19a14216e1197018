"""Synthetic placement instances and profile CSVs for the tests (never real measurements)."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dime.core.costs import BundleCost, CostTable, Role, bundles
from dime.core.links import LINK_PRESETS, Link
from dime.core.network import NetLink, Network
from dime.plan import PlacementProblem
from dime.profiling.schema import PROFILE_COLUMNS


def random_table(
    rng: random.Random,
    n_layers: int,
    devices: dict[str, Sequence[str]],
    energy_devices: Iterable[str] = (),
    latency_scale_s: float = 1e-2,
    model: str = "synthetic",
    energy_source: str = "synthetic",
) -> CostTable:
    """Every bundle of every length on every (device, setting), with random costs.

    A bundle costs the sum of its layers times a random factor in [0.6, 1.2], so that
    fusing layers sometimes pays and sometimes does not.
    """
    energy_devices = set(energy_devices)
    names = tuple(f"layer{i}.conv" for i in range(n_layers))
    cut_bytes = tuple(rng.choice([0, 4, 1000, rng.randint(1, 3_000_000)]) for _ in range(n_layers + 1))
    costs: dict[tuple[str, str, int, int], BundleCost] = {}
    for device, settings in devices.items():
        for setting in settings:
            per_layer = [latency_scale_s * 10 ** rng.uniform(-1.5, 1.0) for _ in range(n_layers)]
            watts = rng.uniform(0.5, 15.0)
            for s, e in bundles(n_layers, n_layers):
                lat = sum(per_layer[s : e + 1]) * rng.uniform(0.6, 1.2)
                energy = lat * watts * rng.uniform(0.8, 1.2) if device in energy_devices else None
                costs[(device, setting, s, e)] = BundleCost(lat, energy, energy_source if energy is not None else "", 5)
    return CostTable(
        model=model,
        layer_names=names,
        cut_bytes=cut_bytes,
        settings={d: tuple(s) for d, s in devices.items()},
        costs=costs,
    )


def random_link(rng: random.Random) -> Link:
    kind = rng.choice(["3g", "4g", "wifi", "custom", "rtt"])
    if kind == "custom":
        return Link("custom", rng.uniform(0.5, 200), rng.uniform(0.5, 500), rtt_ms=rng.choice([0.0, 5.0, 40.0]))
    base = LINK_PRESETS["wifi" if kind == "rtt" else kind]
    if kind == "rtt":
        return Link("wifi-rtt", base.uplink_mbps, base.downlink_mbps, base.alpha_up_mw_per_mbps,
                    base.alpha_down_mw_per_mbps, base.beta_mw, rtt_ms=rng.uniform(1, 80))
    return base


@dataclass(frozen=True)
class Spec:
    """The random choices behind one instance (hypothesis draws these)."""

    seed: int
    n_layers: int
    max_bundle: int
    edge_settings: int
    cloud_settings: int
    same_device: bool
    edge_energy: bool
    latency_scale_s: float
    objective: str
    private_layers: int
    one_setting: bool


def make_problem(spec: Spec) -> PlacementProblem:
    rng = random.Random(spec.seed)
    if spec.same_device:
        settings = [f"s{i}" for i in range(spec.edge_settings + spec.cloud_settings)]
        devices = {"box": settings}
        roles = (Role("box", tuple(settings[: spec.edge_settings])), Role("box", tuple(settings[spec.edge_settings :])))
        energy = ["box"] if spec.edge_energy else []
    else:
        devices = {
            "edgedev": [f"e{i}" for i in range(spec.edge_settings)],
            "clouddev": [f"c{i}" for i in range(spec.cloud_settings)],
        }
        roles = (Role("edgedev", tuple(devices["edgedev"])), Role("clouddev", tuple(devices["clouddev"])))
        energy = ["edgedev"] if spec.edge_energy else []
    table = random_table(rng, spec.n_layers, devices, energy, spec.latency_scale_s)
    return PlacementProblem(
        table=table,
        roles=roles,
        link=random_link(rng),
        max_bundle=spec.max_bundle,
        objective=spec.objective if spec.edge_energy else "latency",
        private_layers=spec.private_layers,
        one_setting_per_device=spec.one_setting,
    )


def write_profile_csv(
    path: Path,
    table: CostTable,
    runs: int = 3,
    spread: float = 0.0,
    seed: int = 0,
    skip: Iterable[tuple[str, str, int, int]] = (),
    columns: Sequence[str] = PROFILE_COLUMNS,
) -> Path:
    """Write `table` as a synthetic profile: `runs` rows per bundle around its cost.

    With spread 0 every run has exactly the table's cost, so any trimmed mean reads it back.
    """
    rng = random.Random(seed)
    skip = set(skip)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for (device, setting, s, e), c in table.costs.items():
            if (device, setting, s, e) in skip:
                continue
            for r in range(runs):
                jitter = 1 + rng.uniform(-spread, spread)
                w.writerow({
                    "model": table.model,
                    "device": device,
                    "setting": setting,
                    "bundle": table.bundle_name(s, e),
                    "start": table.layer_names[s],
                    "end": table.layer_names[e],
                    "in_bytes": table.cut_bytes[s],
                    "out_bytes": table.cut_bytes[e + 1],
                    "iteration": 0,
                    "run": r,
                    "latency_s": repr(c.latency_s * jitter),
                    "energy_j": "" if c.energy_j is None else repr(c.energy_j * jitter),
                    "setting_kind": "synthetic",
                    "energy_source": c.energy_source,
                    "torch_device": "cpu",
                    "host": "synthetic",
                    "param_bytes": table.param_bytes.get((s, e), ""),
                })
    return path


def random_network(rng: random.Random, n_devices: int, source: int = 0) -> Network:
    """A random tree over the devices plus an extra link or two, with random rates, rtts and radios."""
    links = []
    order = list(range(n_devices))
    rng.shuffle(order)
    pairs = [(order[i], order[rng.randrange(i)]) for i in range(1, n_devices)]
    for _ in range(rng.randint(0, 2)):
        a, b = rng.sample(range(n_devices), 2)
        pairs.append((a, b))
    for i, (a, b) in enumerate(pairs):
        links.append(NetLink(a, b, Link(
            f"l{i}", rng.uniform(0.5, 300), rng.uniform(0.5, 300),
            alpha_up_mw_per_mbps=rng.choice([0.0, rng.uniform(50, 900)]),
            alpha_down_mw_per_mbps=rng.uniform(0, 150), beta_mw=rng.uniform(0, 1300),
            rtt_ms=rng.choice([0.0, rng.uniform(0.5, 60)]),
        )))
    return Network(n_devices, tuple(links), source)


def random_system_problem(
    seed: int, n_devices: int, n_layers: int, max_bundle: int, settings: int = 2, memory: bool = True,
    objective: str = "latency",
) -> PlacementProblem:
    """N devices on a random network, random energy flags, memory limits, private layers and pins."""
    rng = random.Random(seed)
    devices = {f"dev{d}": [f"s{t}" for t in range(settings if d < 2 else rng.randint(1, settings))]
               for d in range(n_devices)}
    energy = [d for d in devices if rng.random() < 0.6] or ["dev0"]
    table = random_table(rng, n_layers, devices, energy)
    layer_params = [rng.choice([0, rng.randint(1_000, 5_000_000)]) for _ in range(n_layers)]
    table.param_bytes.update({(s, e): sum(layer_params[s : e + 1]) for s, e in bundles(n_layers, n_layers)})
    roles = []
    for d, name in enumerate(devices):
        cap = None
        if memory and d > 0 and rng.random() < 0.4:
            cap = rng.randint(1, 3) * max(1, max(layer_params)) + max(table.cut_bytes) * 2
        roles.append(Role(name, tuple(devices[name]), name=f"n{d}", energy=name in energy, memory_bytes=cap))
    private = rng.choice([0, 0, 1])
    pin = ((n_layers - 1, rng.randrange(n_devices)),) if rng.random() < 0.25 else ()
    if pin and pin[0][0] < private:
        pin = ()
    return PlacementProblem(table, tuple(roles), random_network(rng, n_devices), max_bundle,
                            objective=objective, private_layers=private, pin=pin)
