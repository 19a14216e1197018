"""System files (`dime.solve --system`): the two-device flags' equal, N devices, bad files."""

from __future__ import annotations

import json
import shutil
import random
from pathlib import Path

import pytest
from instances import random_table, write_profile_csv
from test_solve_cli import ROOT, one_line_error, run

from dime.plan.system import load_system

MB = 1_000_000


@pytest.fixture
def profile(tmp_path) -> Path:
    table = random_table(random.Random(21), 5, {"jetson": ["maxn", "15w"], "a100": ["default"], "pi": ["x"]},
                         ["jetson", "pi"], 1e-2)
    table.param_bytes.update({(s, e): (e - s + 1) * 2 * MB for s in range(5) for e in range(s, 5)})
    (tmp_path / "prof").mkdir()
    return write_profile_csv(tmp_path / "prof" / "synthetic.csv", table, runs=3)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sys.toml"
    path.write_text(text)
    return path


EDGE_CLOUD = """
source = "edge"
[[device]]
name = "edge"
profile_device = "jetson"
profiles = ["prof/synthetic.csv"]
[[device]]
name = "cloud"
profile_device = "a100"
profiles = ["prof/synthetic.csv"]
[[link]]
ends = ["edge", "cloud"]
preset = "4g"
rtt_ms = 20
[constraints]
objective = "energy"
max_latency_s = 1.0
"""


def test_edge_cloud_file_equals_the_flags(tmp_path, profile):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    p1 = run("--system", write(tmp_path, EDGE_CLOUD), "--json", a, "--solver", "highs")
    p2 = run(profile, "--edge", "jetson", "--cloud", "a100", "--link", "4g", "--rtt-ms", "20",
             "--objective", "energy", "--max-latency", "1", "--json", b, "--solver", "highs")
    assert p1.returncode == 0 and p2.returncode == 0, (p1.stderr, p2.stderr)
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    for d in (ja, jb):
        d.pop("solve_time_s")
        d.pop("solve_args")  # each records its own command line
        for dev in d["devices"]:
            dev.pop("memory_used_bytes")
    assert ja == jb
    strip = [line for line in p1.stdout.splitlines() if not line.startswith("solver:")]
    assert strip == [line for line in p2.stdout.splitlines() if not line.startswith("solver:")]


THREE = """
source = "cam"
max_bundle = 3
[[device]]
name = "cam"
profile_device = "pi"
profiles = ["prof/synthetic.csv"]
energy = true
memory_bytes = {mem}
[[device]]
name = "jet"
profile_device = "jetson"
profiles = ["prof/synthetic.csv"]
settings = ["maxn"]
energy = true
[[device]]
name = "cloud"
profile_device = "a100"
profiles = ["prof/synthetic.csv"]
[[link]]
ends = ["cam", "jet"]
preset = "wifi"
[[link]]
ends = ["jet", "cloud"]
up_mbps = 50
down_mbps = 100
rtt_ms = 10
[constraints]
objective = "{objective}"
private_layers = {private}
"""


def test_three_devices_json(tmp_path, profile):
    out = tmp_path / "o.json"
    p = run("--system", write(tmp_path, THREE.format(mem=10 * MB, objective="throughput", private=0)),
            "--json", out, "--solver", "highs")
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    assert [d["name"] for d in data["devices"]] == ["cam", "jet", "cloud"]
    assert data["objective_name"] == "throughput" and data["throughput_fps"] == pytest.approx(1 / data["period_s"])
    assert data["layer_names"] and len(data["cut_bytes"]) == len(data["layer_names"]) + 1
    for t in data["transfers"]:
        assert t["route"][0] == t["from"] and t["route"][-1] == t["to"]
        assert t["bytes"] == data["cut_bytes"][t["cut"]]
        if {t["from"], t["to"]} == {"cam", "cloud"}:
            assert t["route"] in (["cam", "jet", "cloud"], ["cloud", "jet", "cam"])
    cam = data["devices"][0]
    assert cam["memory_used_bytes"] <= 10 * MB
    assert "bottleneck" in p.stdout and "throughput:" in p.stdout


def test_memory_infeasible_exits_1_naming_the_device(tmp_path, profile):
    p = run("--system", write(tmp_path, THREE.format(mem=MB, objective="latency", private=1)))
    assert "memory of cam" in one_line_error(p, 1)


def test_memory_limit_without_param_bytes_exits_2(tmp_path):
    table = random_table(random.Random(2), 4, {"jetson": ["maxn"], "a100": ["default"], "pi": ["x"]}, ["pi"])
    (tmp_path / "prof").mkdir()
    write_profile_csv(tmp_path / "prof" / "synthetic.csv", table)
    p = run("--system", write(tmp_path, THREE.format(mem=MB, objective="latency", private=0)))
    assert "param_bytes" in one_line_error(p, 2)


@pytest.mark.parametrize("change,expected", [
    (("ends = [\"cam\", \"jet\"]", "ends = [\"cam\", \"phone\"]"), "link[0].ends: link to nowhere: no device 'phone'"),
    (("source = \"cam\"", "source = \"tv\""), "source: unknown device 'tv'"),
    (("down_mbps = 100", "down_mbps = -5"), "link[1].down_mbps: must be a positive number"),
    (("profiles = [\"prof/synthetic.csv\"]\nsettings", "profiles = [\"prof/none.csv\"]\nsettings"),
     "device 'jet'.profiles: profile prof/none.csv: profile file not found"),
    (("[[link]]\nends = [\"jet\", \"cloud\"]", "[[nolink]]\nends = [\"jet\", \"cloud\"]"), "nolink: unknown key"),
    (("objective = \"latency\"", "objective = \"speed\""), "constraints.objective: must be one of"),
    (("memory_bytes = 1000000", "memory_bytes = \"1GB\""), "device 'cam'.memory_bytes: must be a int"),
])
def test_bad_files_exit_2(tmp_path, profile, change, expected):
    text = THREE.format(mem=MB, objective="latency", private=0)
    assert change[0] in text
    path = write(tmp_path, text.replace(change[0], change[1]))
    msg = one_line_error(run("--system", path), 2)
    assert str(path) in msg and expected in msg, msg


def test_unreachable_device_exits_2(tmp_path, profile):
    text = THREE.format(mem=MB, objective="latency", private=0)
    text = text[: text.index("[[link]]\nends = [\"jet\"")] + text[text.index("[constraints]"):]
    msg = one_line_error(run("--system", write(tmp_path, text)), 2)
    assert "'cloud' is unreachable from the source 'cam'" in msg


def test_system_and_flags_do_not_mix(tmp_path, profile):
    path = write(tmp_path, EDGE_CLOUD)
    assert "drop --edge" in one_line_error(run("--system", path, "--edge", "jetson"), 2)


def test_paths_are_relative_to_the_file(tmp_path, profile):
    system = load_system(write(tmp_path, EDGE_CLOUD))
    assert system.profiles == (str(tmp_path / "prof" / "synthetic.csv"),)


# -- relays: devices with compute = false --------------------------------------------------

RELAY = """
source = "cam"
max_bundle = 3
[[device]]
name = "cam"
profile_device = "pi"
profiles = ["prof/synthetic.csv"]
energy = true
[[device]]
name = "router"
compute = false    # forwards, runs nothing
energy = true
[[device]]
name = "cloud"
profile_device = "a100"
profiles = ["prof/synthetic.csv"]
[[link]]
ends = ["cam", "router"]
preset = "wifi"
[[link]]
ends = ["router", "cloud"]
up_mbps = 50
down_mbps = 100
rtt_ms = 10
[constraints]
objective = "latency"
pin = { "layer4.conv" = "cloud" }
"""


def test_relay_forwards_and_runs_nothing(tmp_path, profile):
    out = tmp_path / "o.json"
    p = run("--system", write(tmp_path, RELAY), "--json", out, "--solver", "highs")
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    router = data["devices"][1]
    assert router["name"] == "router" and router["profile_device"] == "" and router["settings"] == []
    assert router["compute"] is False and router["bundles"] == 0 and router["compute_latency_s"] == 0
    assert router["energy"] is True and router["memory_bytes"] is None
    assert [d["compute"] for d in data["devices"]] == [True, False, True]
    assert all(a["role"] != "router" for a in data["placement"])
    assert data["transfers"]  # layer4 runs on the cloud
    for t in data["transfers"]:
        assert t["route"] in (["cam", "router", "cloud"], ["cloud", "router", "cam"]), t
    assert "router (relay)" in p.stdout.splitlines()[0]
    assert "cam -> router -> cloud" in p.stdout or "cloud -> router -> cam" in p.stdout


def test_relay_system_loads(tmp_path, profile):
    system = load_system(write(tmp_path, RELAY))
    router = system.devices[1]
    assert (router.compute, router.profiles, router.profile_device, router.energy) == (False, (), "", True)
    assert system.profiles == (str(tmp_path / "prof" / "synthetic.csv"),)


@pytest.mark.parametrize("change,expected", [
    (("compute = false", "compute = false\nprofiles = [\"prof/synthetic.csv\"]"),
     "device 'router'.profiles: a relay (compute = false) runs no bundle"),
    (("compute = false", "compute = false\nprofile_device = \"pi\""), "device 'router'.profile_device: a relay"),
    (("compute = false", "compute = false\nsettings = [\"x\"]"), "device 'router'.settings: a relay"),
    (("compute = false", "compute = false\nmemory_bytes = 1000"), "device 'router'.memory_bytes: a relay"),
    (("compute = false", "compute = \"no\""), "device 'router'.compute: must be a bool"),
    (("source = \"cam\"", "source = \"router\""), "source: device 'router' has compute = false; the source"),
    (("\"layer4.conv\" = \"cloud\"", "\"layer4.conv\" = \"router\""),
     "constraints.pin.layer4.conv: device 'router' has compute = false"),
])
def test_bad_relay_files_exit_2(tmp_path, profile, change, expected):
    assert change[0] in RELAY
    path = write(tmp_path, RELAY.replace(change[0], change[1]))
    msg = one_line_error(run("--system", path), 2)
    assert str(path) in msg and expected in msg, msg


ALEXNET_RELAY = """
model = "alexnet"
source = "camera"
[[device]]
name = "camera"
profile_device = "xeon-2core"
profiles = ["alexnet-xeon-2core.csv"]
settings = ["threads=1"]
[[device]]
name = "ap"
compute = false    # an access point
[[device]]
name = "cloud"
profile_device = "xeon-2core"
profiles = ["alexnet-xeon-2core.csv"]
settings = ["threads=2"]
[[link]]
ends = ["camera", "ap"]
up_mbps = 400
down_mbps = 400
rtt_ms = 0.5
[[link]]
ends = ["ap", "cloud"]
up_mbps = 1000
down_mbps = 1000
rtt_ms = 2
[constraints]
objective = "throughput"
pin = { fc3 = "cloud" }
"""


def test_shipped_profile_with_a_relay(tmp_path):
    shutil.copy(ROOT / "profiles" / "alexnet-xeon-2core.csv", tmp_path / "alexnet-xeon-2core.csv")
    p = run("--system", write(tmp_path, ALEXNET_RELAY), "--solver", "highs")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == ("model alexnet: 8 layers; camera xeon-2core (threads=1); ap (relay); "
                        "cloud xeon-2core (threads=2)")
    rows = lines[lines.index("") + 2 : lines.index("", lines.index("") + 1)]
    assert rows and all(row.split()[3] in ("camera", "cloud") for row in rows), rows
    assert "camera -> ap -> cloud" in p.stdout and "throughput:" in p.stdout
