"""The one placement text: format -> parse gives the same placement, and the CSVs the tool writes use it."""

from __future__ import annotations

import csv
import random

import pytest
from instances import random_table, write_profile_csv

from dime.cliargs import run_main
from dime.core.costs import CLOUD, EDGE, Assignment
from dime.core.placement import bundle_text, format_placement, parse_placement
from dime.errors import UsageError
from dime.sweep import cli as sweep_cli

NAMES = [f"layer{i}.conv" for i in range(7)]


def _random_placement(rng: random.Random, n: int, roles: int, settings: list[str]) -> list[Assignment]:
    placement, s = [], 0
    while s < n:
        e = min(n - 1, s + rng.randint(0, 3))
        placement.append(Assignment(s, e, rng.randrange(roles), rng.choice(settings)))
        s = e + 1
    return placement


@pytest.mark.parametrize("roles", [("edge", "cloud"), ("camera", "jetson", "server", "cloud")])
def test_round_trip_over_random_placements(roles):
    rng = random.Random(len(roles))
    for _ in range(300):
        placement = _random_placement(rng, len(NAMES), len(roles), ["threads=1", "threads=2", "gpu=1300MHz"])
        text = format_placement(NAMES, placement, roles)
        assert parse_placement(NAMES, text, roles) == placement, text


def test_the_format():
    p = [Assignment(0, 1, EDGE, "e0"), Assignment(2, 2, EDGE, "e0"), Assignment(3, 6, CLOUD, "c0")]
    assert format_placement(NAMES, p) == "layer0.conv+layer1.conv,layer2.conv@edge/e0 | layer3.conv..layer6.conv@cloud/c0"
    assert bundle_text(NAMES, 0, 0) == "layer0.conv" and bundle_text(NAMES, 0, 2) == "layer0.conv..layer2.conv"


@pytest.mark.parametrize("bad", [
    "nonsense",
    "layer0.conv..layer6.conv@middle/e0",  # unknown role
    "layer9@edge/e0",  # unknown layer
    "layer0.conv+layer2.conv@edge/e0",  # not consecutive
    "layer0.conv..layer3.conv@edge/e0",  # does not cover the model
    "layer3.conv..layer0.conv@edge/e0 | layer4.conv..layer6.conv@cloud/c0",  # backwards
])
def test_text_it_did_not_write_is_refused(bad):
    with pytest.raises(UsageError):
        parse_placement(NAMES, bad)


def test_the_sweep_csv_uses_it(tmp_path):
    devices = {"edgedev": ["e0", "e1"], "clouddev": ["c0"]}
    table = random_table(random.Random(5), 5, devices, ["edgedev"], 1e-2, model="synthetic")
    prof = write_profile_csv(tmp_path / "p.csv", table)
    out = tmp_path / "s.csv"
    assert run_main(sweep_cli.main, [str(prof), "--edge", "edgedev", "--cloud", "clouddev", "--out", str(out),
                                     "--points", "3", "--links", "wifi", "-q"]) == 0
    with open(out, newline="") as f:
        texts = [r["placement"] for r in csv.DictReader(f) if r["placement"]]
    assert texts
    for text in texts:
        assert format_placement(table.layer_names, parse_placement(table.layer_names, text)) == text
