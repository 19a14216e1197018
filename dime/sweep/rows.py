"""Sweep rows: one point, baseline or failed cell each; their CSV and Pareto flags."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from dime.errors import UsageError
from dime.fileio import MAX_TABLE_BYTES, read_input_text

ENERGY_SWEEP = "energy-budget"
LATENCY_SWEEP = "latency-budget"
BASELINE = "baseline:"
CELL_FAILED = "cell"  # the `sweep` of the one row that records a failed cell
EVALUATED = "evaluated"  # status of a baseline found without a solver


@dataclass
class SweepRow:
    """One point of a sweep, one baseline, or a failed cell. Units are in the names."""

    model: str
    edge: str  # edge device: the source's profiled device
    cloud: str  # cloud device; "" unless the system is two devices that both compute
    edge_settings: str  # the edge role's settings, comma-joined
    cloud_settings: str
    link: str  # the link, or with a system file the link setting ("a-b=4g, b-c=wifi" or "as-given")
    max_bundle: int  # K
    sweep: str  # energy-budget | latency-budget | baseline:<name> | cell (failed)
    bundle_sum: bool = False  # True: DIME's semantics (any partition, costs summed); False: the merge rule
    devices: str = ""  # every device: name=profiled device(settings), or name=relay; see devices_text
    point: int | None = None  # index of the budget within its sweep
    budget: float | None = None  # this sweep's budget: J for energy-budget, s for latency-budget
    max_energy_j: float | None = None  # the budget of an energy-budget point
    max_latency_s: float | None = None  # the budget of a latency-budget point
    status: str = ""  # optimal | time_limit | evaluated | infeasible | error
    latency_s: float | None = None
    compute_latency_s: float | None = None
    comm_latency_s: float | None = None
    energy_j: float | None = None  # energy of the devices in energy_of (the edge's, for two): compute + radio
    compute_energy_j: float | None = None
    comm_energy_j: float | None = None
    bundle_latency_s: float | None = None  # the placement re-evaluated with bundle profiles
    bundle_energy_j: float | None = None
    energy_of: str = ""  # the devices whose energy energy_j counts, comma-joined
    energy_source: str = ""  # assumed:<W>..., or the meter(s) of their profiles ("<device> <source>; ..." for several)
    edge_layers: int | None = None  # layers placed on the edge (the source)
    cloud_layers: int | None = None  # layers placed elsewhere
    settings: str = ""  # settings the placement uses, per role
    placement: str = ""  # see format_placement
    solver: str = ""
    solve_time_s: float | None = None
    pareto: bool = False  # non-dominated within its sweep (latency, energy)
    error: str = ""


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SweepRow))
_INT_COLUMNS = {"max_bundle", "point", "edge_layers", "cloud_layers"}
_BOOL_COLUMNS = {"pareto", "bundle_sum"}
_FLOAT_COLUMNS = {
    "budget", "max_energy_j", "max_latency_s", "latency_s", "compute_latency_s", "comm_latency_s", "energy_j",
    "compute_energy_j", "comm_energy_j", "bundle_latency_s", "bundle_energy_j", "solve_time_s",
}


def rows_to_csv(rows: Iterable[SweepRow]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        d = dataclasses.asdict(r)
        w.writerow({k: "" if v is None else repr(v) if isinstance(v, float) else v for k, v in d.items()})
    return buf.getvalue()


def read_rows(path: str | os.PathLike) -> list[SweepRow]:
    """Rows of a sweep CSV (floats read back exactly); UsageError names the file and line otherwise."""
    text = read_input_text(path, "sweep CSV", MAX_TABLE_BYTES)
    try:
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UsageError(f"{path}: not a sweep CSV, missing columns: {', '.join(missing)}")
            return [_row(rec) for rec in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"{path}: not a readable sweep CSV ({e})") from None
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path}: line {reader.line_num}: {e}") from None


def _row(rec: dict[str, str | None]) -> SweepRow:
    kw: dict[str, Any] = {}
    for c in COLUMNS:
        v = rec[c]
        if v is None:
            raise ValueError(f"too few cells (no {c})")
        if c in _INT_COLUMNS:
            kw[c] = int(v) if v != "" else None
        elif c in _FLOAT_COLUMNS:
            kw[c] = float(v) if v != "" else None
        elif c in _BOOL_COLUMNS:
            kw[c] = v == "True"
        else:
            kw[c] = v
    return SweepRow(**kw)


def rows_frame(rows: Sequence[SweepRow]) -> Any:
    """The rows as a pandas DataFrame, columns in CSV order."""
    import pandas as pd

    return pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=list(COLUMNS))


def mark_pareto(rows: Sequence[SweepRow]) -> None:
    """Flag each sweep's non-dominated points (less latency or less energy than any other)."""
    groups: dict[tuple[str, str, str], list[SweepRow]] = {}
    for r in rows:
        r.pareto = False
        if r.sweep in (ENERGY_SWEEP, LATENCY_SWEEP) and r.latency_s is not None and r.energy_j is not None:
            groups.setdefault((r.model, r.link, r.sweep), []).append(r)
    for group in groups.values():
        for r in group:
            r.pareto = not any(
                o.latency_s <= r.latency_s and o.energy_j <= r.energy_j  # type: ignore[operator]
                and (o.latency_s < r.latency_s or o.energy_j < r.energy_j)  # type: ignore[operator]
                for o in group
            )
