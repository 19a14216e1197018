"""Made-up profiles, system files and solutions of the toy skip-connection model, for the
N-device tests (test_run_nd.py, test_validate_nd.py)."""

from __future__ import annotations

import csv
import functools
import json
from itertools import pairwise
from pathlib import Path

from dime.capture.models import load_model

SKIPNET = "toy_models:skipnet"
SKIP_CUTS = ["conv1", "conv2", "pool"]
SMALL = "1,3,16,16"


@functools.cache
def skipnet():
    """Loaded once per session: the helpers read its layer names and cut sizes only."""
    return load_model(SKIPNET, cuts=SKIP_CUTS, input_shape=(1, 3, 16, 16))


def fake_profile(path: Path, devices=("cpu",), ms_per_layer: dict[str, float] | None = None, model=None) -> None:
    """Made-up costs: 1 ms per layer in a bundle (or the device's `ms_per_layer`), 0.9 of that per
    layer for longer bundles; the cut sizes of `model` (default: skipnet at 16x16)."""
    m = model or skipnet()
    names, cb = m.layer_names, m.cut_bytes
    lines = ["model,device,setting,bundle,start,end,in_bytes,out_bytes,iteration,run,latency_s,energy_j"]
    for dev in devices:
        per_layer = (ms_per_layer or {}).get(dev, 1.0) / 1000
        for s in range(len(names)):
            for e in range(s, len(names)):
                for it in range(3):
                    lat = per_layer * (e - s + 1) * (0.9 if e > s else 1.0)
                    lines.append(f"{SKIPNET},{dev},threads=1,{'+'.join(names[s:e + 1])},{names[s]},{names[e]},"
                                 f"{cb[s]},{cb[e + 1]},{it},0,{lat},")
    path.write_text("\n".join(lines) + "\n")


def system_file(tmp_path: Path, n: int, relays: str = "", model: bool = True) -> Path:
    """Devices a, b, c (, d) in a line, source a, links of 200 Mbps and 1 ms; each the same made-up
    CPU, except the `relays` (compute = false)."""
    prof = tmp_path / "skipnet.csv"
    fake_profile(prof)
    names = "abcd"[:n]
    text = (f'model = "{SKIPNET}"\n' if model else "") + 'source = "a"\n'
    for d in names:
        if d in relays:
            text += f'\n[[device]]\nname = "{d}"\ncompute = false\n'
        else:
            text += f'\n[[device]]\nname = "{d}"\nprofiles = ["skipnet.csv"]\nprofile_device = "cpu"\n'
    for x, y in pairwise(names):
        text += f'\n[[link]]\nends = ["{x}", "{y}"]\nup_mbps = 200\ndown_mbps = 200\nrtt_ms = 1\n'
    path = tmp_path / "sys.toml"
    path.write_text(text)
    return path


def solution(tmp_path: Path, entries: list[tuple[int, int, str]], name: str = "sol.json") -> Path:
    m = skipnet()
    names = m.layer_names
    path = tmp_path / name
    path.write_text(json.dumps({"status": "optimal", "model": SKIPNET, "layer_names": names,
                                "cut_bytes": m.cut_bytes, "placement": [
                                    {"start": names[s], "end": names[e], "device": "cpu", "setting": "threads=1",
                                     "role": d, "latency_s": 0.001} for s, e, d in entries]}))
    return path


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
