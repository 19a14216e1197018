"""The results CSV of a split run: its columns, appending rows, one row as text (no torch)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

from dime.errors import UsageError
from dime.fileio import atomic_write_text

RESULT_COLUMNS: tuple[str, ...] = (
    "model", "config", "placement", "edge_device", "cloud_device", "link", "uplink_mbps", "downlink_mbps",
    "rtt_ms", "emulation", "achieved_up_mbps", "achieved_down_mbps", "scenario", "driver", "count",
    "mean_s", "p50_s", "p90_s", "p95_s", "p99_s", "min_s", "max_s", "throughput_qps", "target_qps",
    "valid", "measured_s", "pred_bundle_s", "pred_layersum_s", "solver_latency_s", "err_bundle",
    "err_layersum", "pred_bundle_edge_s", "pred_bundle_cloud_s", "pred_layersum_edge_s", "pred_layersum_cloud_s",
    "edge_compute_s", "upload_s", "cloud_wait_s", "up_bytes", "down_bytes", "transfers",
    "up_overruns", "edge_threads", "cloud_threads", "edge_torch_device", "cloud_torch_device",
    # each role's whole model, timed as the profiler times it, right before this placement and after the last
    "edge_whole_before_s", "cloud_whole_before_s", "edge_whole_end_s", "cloud_whole_end_s",
    "samples", "warmup", "host", "cloud_host", "timestamp", "note",
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


def write_rows(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] = RESULT_COLUMNS) -> None:
    """Append rows to a results CSV (created with a header when new), atomically."""
    path = Path(path)
    old = ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
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


def format_row(row: dict[str, Any]) -> str:
    """One measured row as a line of text."""
    return (
        f"{row['model']} {row['config']} over {row['link']} [{row['scenario']}, {row['driver']}]: "
        f"n={row['count']} mean {_fmt_s(row['mean_s'])} p50 {_fmt_s(row['p50_s'])} p90 {_fmt_s(row['p90_s'])} "
        f"p99 {_fmt_s(row['p99_s'])} {row['throughput_qps']:.3g} q/s; predicted bundle "
        f"{_fmt_s(row['pred_bundle_s'])} ({_fmt_err(row['err_bundle'])}), layer-sum "
        f"{_fmt_s(row['pred_layersum_s'])} ({_fmt_err(row['err_layersum'])})"
    )
