"""The results CSV of a run: its columns, appending rows, one row as text (no torch).

One row per (model, placement, network, scenario). Values that exist once per device (the
predicted compute part, the measured busy time, threads, hosts, the whole-model reference
timings) are one column each, written as `name=value;name=value` in the plan's device order
(`map_cell`, read back by `parse_map`): one format for two devices and for N.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from dime.errors import UsageError
from dime.fileio import MAX_TABLE_BYTES, atomic_write_text, read_input_text

RESULT_COLUMNS: tuple[str, ...] = (
    "model", "config", "placement", "devices", "source", "profile_devices", "link", "network",
    "uplink_mbps", "downlink_mbps", "rtt_ms", "shaper", "achieved_mbps",
    "scenario", "driver", "in_flight", "count", "mean_s", "p50_s", "p90_s", "p95_s", "p99_s", "min_s", "max_s",
    "throughput_fps", "target_qps", "valid", "measured_s",
    "pred_bundle_s", "pred_layersum_s", "solver_latency_s", "err_bundle", "err_layersum",
    "pred_throughput_fps", "pred_period_s", "pred_bottleneck", "solver_throughput_fps", "err_throughput",
    "pred_comm_s", "pred_bundle_compute_s", "pred_layersum_compute_s", "busy_s",
    "transfers", "hops", "comm_bytes", "overruns",
    "threads", "torch_devices", "hosts",
    # each device's whole model, timed as the profiler times it, right before this placement and after the last
    "whole_before_s", "whole_end_s",
    "samples", "warmup", "timestamp", "note",
    "schedule",  # --link-schedule: the links' rate changes during the measurement, LINK=T:RATE,...; ...
    # --adapt: measured or schedule, the re-plans made, how many of them switched and the seconds the switches took
    "adapt", "replans", "switches", "switch_s",
)
# --queries-out: a row per measured query, its times in seconds from the schedule's (or measurement's) start
QUERY_COLUMNS: tuple[str, ...] = (
    "model", "config", "scenario", "in_flight", "query", "sample", "plan", "placement",
    "issued_s", "started_s", "done_s", "latency_s", "ok",
)
# --replans-out: a row per re-plan (dime.run.control.adapt.Replan)
REPLAN_COLUMNS: tuple[str, ...] = (
    "model", "config", "at_s", "trigger", "reason", "rates", "solver", "solve_s", "old", "new",
    "pred_old_s", "pred_new_s", "switched", "drain_s", "switch_s", "first_query",
)


def rel_err(pred: float | None, meas: float | None) -> float | None:
    """(predicted - measured) / measured; None when there is no prediction."""
    if pred is None or meas is None or not math.isfinite(meas) or meas <= 0:
        return None
    return (pred - meas) / meas


def cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def map_cell(values: Mapping[str, Any]) -> str:
    """`name=value;...` of the entries that have a value."""
    return ";".join(f"{k}={cell(v)}" for k, v in values.items() if v is not None and cell(v) != "")


def parse_map(text: Any) -> dict[str, str]:
    """The inverse of map_cell (values as text)."""
    out: dict[str, str] = {}
    for item in str(text or "").split(";"):
        k, sep, v = item.partition("=")
        if sep and k:
            out[k] = v
    return out


def write_rows(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] = RESULT_COLUMNS) -> None:
    """Append rows to a results CSV (created with a header when new), atomically."""
    path = Path(path)
    old = ""
    if path.exists():
        old = read_input_text(path, "results CSV", MAX_TABLE_BYTES)
        header = old.splitlines()[0] if old.strip() else ""
        if header and header.split(",") != list(columns):
            raise UsageError(f"{path} holds other columns than dime.run writes; choose another --out")
    new = rows_csv(rows, columns, header=not old.strip())
    atomic_write_text(path, (old if old.endswith("\n") or not old else old + "\n") + new)


def rows_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] = RESULT_COLUMNS, header: bool = True) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    if header:
        w.writeheader()
    for r in rows:
        w.writerow({k: cell(r.get(k)) for k in columns})
    return buf.getvalue()


def _fmt_s(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1000:.2f} ms"


def _fmt_err(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f}%"


def _fmt_fps(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def format_row(row: dict[str, Any]) -> str:
    """One measured row as a line of text."""
    return (
        f"{row['model']} {row['config']} over {row['link']} [{row['scenario']}, {row['in_flight']} in flight, "
        f"{row['driver']}]: n={row['count']} mean {_fmt_s(row['mean_s'])} p50 {_fmt_s(row['p50_s'])} "
        f"p90 {_fmt_s(row['p90_s'])} p99 {_fmt_s(row['p99_s'])}; {_fmt_fps(row['throughput_fps'])} frames/s "
        f"(predicted {_fmt_fps(row['pred_throughput_fps'])}); predicted bundle {_fmt_s(row['pred_bundle_s'])} "
        f"({_fmt_err(row['err_bundle'])}), layer-sum {_fmt_s(row['pred_layersum_s'])} "
        f"({_fmt_err(row['err_layersum'])})"
    )
