"""What dime.validate reports (no torch): the drift-corrected and compute-only errors of each
measured row, and the markdown summaries.

Errors are (predicted - measured) / measured. A device's drift factor is its whole model timed
right before the placement over the same bundle as profiled; the drift-corrected prediction
scales each device's compute part by its factor and keeps the communication. The compute-only
error takes the link model's communication time (`pred_comm_s`) off both sides.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from dime.fileio import atomic_write_text
from dime.run.measure import OFFLINE, SINGLE_STREAM
from dime.run.results import RESULT_COLUMNS, map_cell, parse_map, rel_err, rows_csv

SEMANTICS = ("bundle", "layersum")
VALIDATE_COLUMNS: tuple[str, ...] = RESULT_COLUMNS + (
    "whole_profiled_s", "drift",
    "pred_bundle_drift_s", "pred_layersum_drift_s", "err_bundle_drift", "err_layersum_drift",
    "err_bundle_compute", "err_layersum_compute", "err_bundle_compute_drift", "err_layersum_compute_drift",
    "predicted_bundles",  # how many of the placement's bundles are predicted (dime.predict), not measured
)
RATIO_GOAL = 1.5  # the summary counts placements predicted to gain this much from queries in flight


# ---- errors, raw and drift-corrected ------------------------------------------------
def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def compute_err(row: dict[str, Any], pred: float | None) -> float | None:
    """Relative error of the compute part alone: the link model's communication time
    (`pred_comm_s`) taken off both sides."""
    meas, comm = _num(row.get("measured_s")), _num(row.get("pred_comm_s"))
    if pred is None or meas is None or comm is None or meas - comm <= 0:
        return None
    return (pred - meas) / (meas - comm)


def drift_factor(now_s: Any, profiled_s: Any) -> float | None:
    """How much slower (> 1) or faster a device runs its whole model now than when profiled."""
    now, then = _num(now_s), _num(profiled_s)
    return now / then if now is not None and then else None


def drift_corrected(row: dict[str, Any], sem: str) -> float | None:
    """The `sem` prediction with each device's compute part scaled by its drift factor (a
    device without a factor unscaled)."""
    pred = _num(row.get(f"pred_{sem}_s"))
    if pred is None:
        return None
    drift = parse_map(row.get("drift"))
    for device, part in parse_map(row.get(f"pred_{sem}_compute_s")).items():
        f, p = _num(drift.get(device)), _num(part)
        if p is not None and f is not None:
            pred += p * (f - 1.0)
    return pred


def add_drift_columns(row: dict[str, Any], profiled_s: dict[str, float | None]) -> None:
    """The validation columns of one measured row, in place; `profiled_s`: each device's whole
    model as profiled (at the setting it runs in this placement)."""
    before = parse_map(row.get("whole_before_s"))
    row["whole_profiled_s"] = map_cell(profiled_s)
    row["drift"] = map_cell({d: drift_factor(before.get(d), p) for d, p in profiled_s.items()})
    meas = _num(row.get("measured_s"))
    for sem in SEMANTICS:
        raw, corrected = _num(row.get(f"pred_{sem}_s")), drift_corrected(row, sem)
        row[f"pred_{sem}_drift_s"] = corrected
        row[f"err_{sem}_drift"] = rel_err(corrected, meas)
        row[f"err_{sem}_compute"] = compute_err(row, raw)
        row[f"err_{sem}_compute_drift"] = compute_err(row, corrected)


# ---- summary --------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _median(rows: Sequence[dict[str, Any]], col: str, f: Callable[[float], float] = abs) -> float | None:
    vals = [f(x) for x in (_num(r.get(col)) for r in rows) if x is not None]
    return statistics.median(vals) if vals else None


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v * 100:+.1f}%" if signed else f"{v * 100:.1f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def _pair(rows: Sequence[dict[str, Any]], col: str) -> str:
    """median |error|: raw / drift-corrected."""
    return f"{_pct(_median(rows, col))} / {_pct(_median(rows, col + '_drift'))}"


def _bundle_closer(rows: Sequence[dict[str, Any]]) -> str:
    """In how many rows the bundle prediction is closer to the measurement than the layer sum."""
    pairs = [(_num(r.get("err_bundle")), _num(r.get("err_layersum"))) for r in rows]
    pairs = [(b, s) for b, s in pairs if b is not None and s is not None]
    if not pairs:
        return "-"
    return f"{sum(abs(b) < abs(s) for b, s in pairs)}/{len(pairs)}"


def _whole(rows: Sequence[dict[str, Any]]) -> str:
    """Each device's whole model: profiled / timed before the placements (range) / at the end."""
    parts = []
    for device, profiled in parse_map(rows[0].get("whole_profiled_s")).items():
        before = [v for v in (_num(parse_map(r.get("whole_before_s")).get(device)) for r in rows) if v is not None]
        span = "-" if not before else _ms(min(before)) if min(before) == max(before) \
            else f"{_ms(min(before))}-{_ms(max(before))}"
        end = _num(parse_map(rows[-1].get("whole_end_s")).get(device))
        parts.append(f"{device} {_ms(_num(profiled))} / {span} / {_ms(end)}")
    return "; ".join(parts) or "-"


def _short_placement(text: str) -> str:
    """`a,b+c@edge/t | d..f@cloud/t` -> `a..c edge (2 bundles), d..f cloud`: one run per role,
    and no '|' (a markdown cell)."""
    runs: list[list[Any]] = []  # [first, last, role, bundles]
    for group in text.split(" | "):
        bundles, _, where = group.rpartition("@")
        role = where.split("/")[0]
        parts = bundles.split(",")
        first = parts[0].replace("..", "+").split("+")[0]
        last = parts[-1].replace("..", "+").split("+")[-1]
        if runs and runs[-1][2] == role:
            runs[-1][1] = last
            runs[-1][3] += len(parts)
        else:
            runs.append([first, last, role, len(parts)])
    out = []
    for first, last, role, n in runs:
        span = first if first == last else f"{first}..{last}"
        out.append(f"{span} {role}" + (f" ({n} bundles)" if n != 1 else ""))
    return ", ".join(out)


def _explained(raw: float | None, corrected: float | None) -> str:
    if raw is None or corrected is None or raw == 0:
        return "-"
    return f"{(raw - corrected) / raw * 100:.0f}%"


def _is_solver(row: dict[str, Any]) -> bool:
    return str(row["config"]).split(":")[0] == "solver"


def summary_markdown(rows: Sequence[dict[str, Any]], per_placement: bool = False) -> str:
    """Median |prediction error| per model, network, scenario and in-flight count, raw /
    drift-corrected, and how the solver's choice fared (its first placement); then how much of
    the error the machines' drift explains. `per_placement`: also one line per placement with
    its latencies and throughputs (placement_markdown)."""
    lines = [
        "| model | link | scenario | in flight | placements | bundle | layer-sum | compute only: bundle "
        "| compute only: layer-sum | bundle closer | solver's placement | solver pred (ms) | measured (ms) "
        "| solver err | best measured (ms) | whole model (ms) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["link"], r["scenario"], str(r.get("in_flight") or 1)), []).append(r)
    for (model, link, scenario, in_flight), rs in groups.items():
        solver = next((r for r in rs if _is_solver(r)), None)
        measured = [(_num(r["measured_s"]), r) for r in rs]
        best = min((m for m, _ in measured if m is not None), default=None)
        best_label = next((f" ({r['config']})" for m, r in measured if m is not None and m == best), "")
        sol = [solver] if solver else []
        lines.append(
            f"| {model} | {link} | {scenario} | {in_flight} | {len(rs)} | {_pair(rs, 'err_bundle')} "
            f"| {_pair(rs, 'err_layersum')} "
            f"| {_pair(rs, 'err_bundle_compute')} | {_pair(rs, 'err_layersum_compute')} | {_bundle_closer(rs)} "
            f"| {_short_placement(solver['placement']) if solver else '-'} "
            f"| {_ms(_num(solver['pred_bundle_s'])) if solver else '-'} "
            f"| {_ms(_num(solver['measured_s'])) if solver else '-'} "
            f"| {_pct(_median(sol, 'err_bundle', float), True)} / {_pct(_median(sol, 'err_bundle_drift', float), True)} "
            f"| {_ms(best)}{best_label} | {_whole(rs)} |"
        )
    solvers = [r for r in rows if _is_solver(r)]
    lines.append(
        f"| **all** | | | | {len(rows)} | **{_pair(rows, 'err_bundle')}** | **{_pair(rows, 'err_layersum')}** "
        f"| **{_pair(rows, 'err_bundle_compute')}** | **{_pair(rows, 'err_layersum_compute')}** "
        f"| **{_bundle_closer(rows)}** | | | | **{_pct(_median(solvers, 'err_bundle', float), True)} / "
        f"{_pct(_median(solvers, 'err_bundle_drift', float), True)}** | | |"
    )
    lines += [
        "",
        "Errors: median |predicted - measured| / measured, raw / drift-corrected; solver err: its signed error. "
        "Whole model: per device, profiled / timed before each placement / after the last.",
        f"Drift explains {_explained(_median(rows, 'err_bundle'), _median(rows, 'err_bundle_drift'))} of the "
        f"median |bundle error| ({_pct(_median(rows, 'err_bundle'))} -> {_pct(_median(rows, 'err_bundle_drift'))}), "
        f"{_explained(_median(rows, 'err_bundle_compute'), _median(rows, 'err_bundle_compute_drift'))} of the "
        f"compute-only one ({_pct(_median(rows, 'err_bundle_compute'))} -> "
        f"{_pct(_median(rows, 'err_bundle_compute_drift'))}).",
    ]
    predicted = predicted_line(rows)
    if predicted:
        lines.append(predicted)
    if per_placement:
        lines += ["", placement_markdown(rows)]
    return "\n".join(lines)


def predicted_line(rows: Sequence[dict[str, Any]]) -> str:
    """The errors of placements resting on predicted bundles apart from the others ("" when none does)."""
    guessed = [r for r in rows if (_num(r.get("predicted_bundles")) or 0) > 0]
    if not guessed:
        return ""
    measured = [r for r in rows if r not in guessed]
    return (f"Placements resting on predicted bundles (dime.predict): {len(guessed)} row(s), median |bundle error| "
            f"{_pair(guessed, 'err_bundle')}; on measured bundles only: {len(measured)} row(s), "
            f"{_pair(measured, 'err_bundle')} (raw / drift-corrected).")


# ---- summary: one line per placement --------------------------------------------------
@dataclass
class PlacementResult:
    """One placement's rows: its single-stream latency and its throughput per in-flight count."""

    model: str
    link: str
    config: str
    placement: str
    latency: dict[str, Any] | None = None  # the single-stream row
    fps: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)  # in flight -> (pred, meas)

    def fps_err(self, n: int) -> float | None:
        pred, meas = self.fps.get(n, (None, None))
        return rel_err(pred, meas)

    def ratio(self, n: int, which: int) -> float | None:
        """throughput(in_flight=n) / throughput(in_flight=1): which 0 predicted, 1 measured."""
        hi, lo = self.fps.get(n, (None, None))[which], self.fps.get(1, (None, None))[which]
        return hi / lo if hi is not None and lo else None


def placement_results(rows: Sequence[dict[str, Any]]) -> list[PlacementResult]:
    """The rows by placement (model, network, config), in order: the throughput of in_flight=N
    from the offline row at N (in_flight=1 without one: the single-stream row's)."""
    out: dict[tuple[str, str, str], PlacementResult] = {}
    for r in rows:
        res = out.setdefault((r["model"], r["link"], r["config"]),
                             PlacementResult(r["model"], r["link"], r["config"], r["placement"]))
        pair = (_num(r.get("pred_throughput_fps")), _num(r.get("throughput_fps")))
        if r["scenario"] == SINGLE_STREAM:
            res.latency = r
            res.fps.setdefault(1, pair)
        elif r["scenario"] == OFFLINE:
            res.fps[int(_num(r.get("in_flight")) or 1)] = pair
    return list(out.values())


def _fps_cell(res: PlacementResult, n: int) -> str:
    pred, meas = res.fps.get(n, (None, None))
    if pred is None and meas is None:
        return "-"
    return f"{_f1(pred)} / {_f1(meas)} ({_pct(res.fps_err(n), True)})"


def _f1(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _f2(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _latency_cells(r: dict[str, Any] | None) -> str:
    if r is None:
        return "| - | - | - | - | - | - "
    stats = " / ".join(_ms(_num(r.get(c))) for c in ("mean_s", "p50_s", "p90_s", "p95_s"))
    return (f"| {_ms(_num(r.get('pred_bundle_s')))} | {stats} | {_pct(_num(r.get('err_bundle')), True)} / "
            f"{_pct(_num(r.get('err_bundle_drift')), True)} ")


def placement_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One line per placement: predicted latency, measured mean / p50 / p90 / p95 (single-stream)
    and the error, raw / drift-corrected; predicted / measured throughput (error) for each
    in-flight count; the speed-up of the most in flight over one, measured / predicted. Then the
    median |latency error| and |throughput error| over all placements, and how many placements
    predicted to speed up by RATIO_GOAL or more did."""
    results = placement_results(rows)
    counts = sorted({n for res in results for n in res.fps})
    top = counts[-1] if len(counts) > 1 and counts[0] == 1 else None
    head = ["model", "network", "config", "placement", "pred (ms)", "mean / p50 / p90 / p95 (ms)", "err raw / drift"]
    head += [f"frames/s x{n}: pred / meas (err)" for n in counts]
    head += [f"speed-up x{top}/x1: meas / pred"] if top else []
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|---|" + "---:|" * (len(head) - 4)]
    for res in results:
        cells = [_fps_cell(res, n) for n in counts] + ([f"{_f2(res.ratio(top, 1))} / {_f2(res.ratio(top, 0))}"]
                                                        if top else [])
        lines.append(f"| {res.model} | {res.link} | {res.config} | {_short_placement(res.placement)} "
                     f"{_latency_cells(res.latency)}| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", _placement_line(results, top)])


def _placement_line(results: Sequence[PlacementResult], top: int | None) -> str:
    lat = [abs(e) for e in (_num(r.latency.get("err_bundle")) for r in results if r.latency) if e is not None]
    fps = [abs(e) for r in results for e in (r.fps_err(n) for n in r.fps) if e is not None]
    text = (f"Over {len(results)} placement(s): median |latency error| "
            f"{_pct(statistics.median(lat) if lat else None)}, median |throughput error| "
            f"{_pct(statistics.median(fps) if fps else None)}")
    if top is None:
        return text + "."
    hoped = [r for r in results if (r.ratio(top, 0) or 0) >= RATIO_GOAL]
    got = [r for r in hoped if (r.ratio(top, 1) or 0) >= RATIO_GOAL]
    return (text + f"; {len(hoped)} placement(s) predicted to run >= {RATIO_GOAL:g}x faster with {top} in flight "
            f"than with 1, {len(got)} of them did.")


def write_table(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    atomic_write_text(path, rows_csv(rows, VALIDATE_COLUMNS))
