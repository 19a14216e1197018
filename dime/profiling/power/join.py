"""Turn power samples into energy per timed window; join external power logs with profiles.

Library::

    integrate_energy_j(times_s, power_w, t0, t1)   # trapezoid, interpolated at t0 and t1
    estimate_offset_s(round_trips)                 # host - device clock offset
    join_energy(timing_df, power_df, ...)          # fill energy_j for every timed window

CLI (after profiling with ``--power smartpower3``, with the host's log copied over)::

    python -m dime.energy join --timing profile.csv --power run1.csv --out joined.csv \\
        [--offset-s X] [--power-column input_mw] [--clock host|meter] [--allow-sparse]
    python -m dime.energy offset --host 127.0.0.1 --port 47031     # print the clock offset

Each timing row's window [t_start_s, t_end_s] is in DEVICE ``time.monotonic()`` seconds; the
power log's ``host_time_s`` is HOST monotonic time. The window is shifted by the offset (host
minus device): ``--offset-s``, else a ``clock_offset_s`` column in the timing file, else 0 (same
machine). If the timing file has a ``repeats`` column (the bundle ran that many times inside the
window, as dime.profile writes it), the window's energy is divided by it. With
``--idle-power-w W`` the idle energy W x latency_s is subtracted the way the profiler's
--idle-baseline does: energy_total_j keeps the measured value, idle_power_w records W.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import sys
from typing import Sequence

import numpy as np

from dime.cliargs import (
    OneLineParser,
    finite_float,
    non_negative_float,
    port_number,
    positive_int,
    run_main,
    setup_logging,
)
from dime.errors import DimeError, UsageError
from dime.fileio import MAX_TABLE_BYTES, atomic_write_text, check_output_path, read_input_bytes

log = logging.getLogger(__name__)

MIN_SAMPLES_PER_WINDOW = 2


def _prepare(times_s: Sequence[float] | np.ndarray, power_w: Sequence[float] | np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times_s, dtype=float)
    p = np.asarray(power_w, dtype=float)
    if t.ndim != 1 or t.shape != p.shape:
        raise UsageError(f"times and power differ in shape: {t.shape} vs {p.shape}")
    if t.size < 2:
        raise UsageError(f"need at least 2 power samples, got {t.size}")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise UsageError("power samples contain NaN or infinite values")
    if np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, p = t[order], p[order]
    return t, p


def cumulative_energy_j(times_s: Sequence[float] | np.ndarray,
                        power_w: Sequence[float] | np.ndarray,
                        query_s: Sequence[float] | np.ndarray) -> np.ndarray:
    """Energy (J) from the first sample to each query time: trapezoid rule over the samples,
    with power linearly interpolated at the query time. Queries must lie within the samples.
    """
    t, p = _prepare(times_s, power_w)
    q = np.asarray(query_s, dtype=float)
    seg = 0.5 * (p[1:] + p[:-1]) * np.diff(t)
    cum = np.concatenate(([0.0], np.cumsum(seg)))
    k = np.clip(np.searchsorted(t, q, side="right") - 1, 0, t.size - 2)
    pq = np.interp(q, t, p)
    return cum[k] + 0.5 * (p[k] + pq) * (q - t[k])


def integrate_energy_j(times_s: Sequence[float] | np.ndarray,
                       power_w: Sequence[float] | np.ndarray,
                       t0: float, t1: float) -> float:
    """Energy (J) over [t0, t1] from power samples (W) at `times_s` (s).

    Trapezoid rule over the samples inside the window plus the two edge pieces, with the power at
    t0 and t1 linearly interpolated between neighbouring samples (exact for piecewise-linear
    power). Raises UsageError if the window is reversed or not covered by the samples.
    """
    t, p = _prepare(times_s, power_w)
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
        raise UsageError(f"bad window [{t0}, {t1}]")
    if t0 < t[0] or t1 > t[-1]:
        raise UsageError(
            f"window [{t0:.6f}, {t1:.6f}] s is outside the power samples "
            f"[{t[0]:.6f}, {t[-1]:.6f}] s"
        )
    e = cumulative_energy_j(t, p, [t0, t1])
    return float(e[1] - e[0])


# --------------------------------------------------------------------------------------------
# joining


def _numbers(df, col: str, name: str, allow_empty: bool = True) -> np.ndarray:
    """Column `col` as floats (empty cells NaN if allowed); a non-numeric cell raises
    UsageError naming the file `name` and its line."""
    import pandas as pd

    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    empty = raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()
    bad = np.isnan(num) & ~empty
    if not allow_empty:
        bad |= empty | ~np.isfinite(num)
    if bad.any():
        i = int(np.argmax(bad))
        what = "is empty" if empty[i] else "is not a finite number"
        raise UsageError(f"{name}: line {i + 2}: {col} {'' if empty[i] else repr(raw.iloc[i]) + ' '}{what}")
    return num


def power_log_series(power, power_column: str = "input_mw", clock: str = "host",
                     name: str = "power log") -> tuple[np.ndarray, np.ndarray]:
    """(host times s, power W) from a `dime.powerlog` CSV (as a DataFrame).

    clock="host": the host's arrival stamps. clock="meter": the meter's own ms counter (even
    spacing, no USB jitter), anchored to host time by the least-delayed line; the two crystals
    drift apart by up to ~50 ppm, so prefer it for recordings of minutes, not hours.
    """
    if power_column not in power.columns:
        raise UsageError(
            f"power log has no column {power_column!r}; columns: {', '.join(power.columns)}"
        )
    if power_column.endswith("_mw"):
        scale = 1e-3
    elif power_column.endswith("_w"):
        scale = 1.0
    else:
        raise UsageError(f"power column {power_column!r} must end in _mw or _w (its unit)")
    if "host_time_s" not in power.columns:
        raise UsageError("power log has no host_time_s column (not written by dime.powerlog?)")
    p = _numbers(power, power_column, name, allow_empty=False) * scale
    host = _numbers(power, "host_time_s", name, allow_empty=False)
    if (p < 0).any():
        i = int(np.argmax(p < 0))
        raise UsageError(f"{name}: line {i + 2}: {power_column} {power[power_column].iloc[i]} is negative power")
    if clock == "host":
        t = host
    elif clock == "meter":
        if "meter_ms" not in power.columns:
            raise UsageError("power log has no meter_ms column for --clock meter")
        meter = _numbers(power, "meter_ms", name, allow_empty=False) / 1000.0
        if np.any(np.diff(meter) <= 0):
            raise UsageError("meter_ms is not increasing (meter rebooted?); use --clock host")
        t = meter + np.min(host - meter)
    else:
        raise UsageError(f"unknown clock {clock!r}; use host or meter")
    return t, p


def join_energy(timing, power, *, offset_s: float | None = None,
                power_column: str = "input_mw", clock: str = "host",
                allow_sparse: bool = False, source: str = "smartpower3",
                idle_power_w: float | None = None, clamp_negative: bool = False,
                timing_name: str = "timing file", power_name: str = "power log"):
    """A copy of `timing` (DataFrame) with energy_j and energy_source filled from `power`.

    Rows without t_start_s/t_end_s are left unchanged. Raises UsageError when windows fall
    outside the log, or (unless `allow_sparse`) when a window holds fewer than 2 samples.
    An energy that comes out negative (idle power above the measured power) raises too, unless
    `clamp_negative`: then it is set to 0 with a warning per bundle and an `energy_note`.
    """
    if offset_s is not None and not math.isfinite(offset_s):
        raise UsageError(f"offset must be finite, got {offset_s}")
    if idle_power_w is not None and not (math.isfinite(idle_power_w) and idle_power_w >= 0):
        raise UsageError(f"idle power must be a finite number >= 0 W, got {idle_power_w}")
    import pandas as pd

    for col in ("t_start_s", "t_end_s"):
        if col not in timing.columns:
            raise UsageError(
                f"timing file has no {col} column (profile with a deferred meter, e.g. "
                "--power smartpower3, to get window timestamps)"
            )
    t, p = power_log_series(power, power_column, clock, power_name)
    t, p = _prepare(t, p)
    out = timing.copy()
    start = _numbers(out, "t_start_s", timing_name)
    end = _numbers(out, "t_end_s", timing_name)
    ok = np.isfinite(start) & np.isfinite(end)
    if not ok.any():
        raise UsageError("no timing row has both t_start_s and t_end_s")
    if (~ok).any():
        log.warning("%d rows have no window timestamps; left unchanged", int((~ok).sum()))
    if offset_s is not None:
        off = np.full(len(out), float(offset_s))
    elif "clock_offset_s" in out.columns:
        off = _numbers(out, "clock_offset_s", timing_name)
        if not np.isfinite(off[ok]).all():
            raise UsageError("clock_offset_s has empty values; pass --offset-s")
    else:
        log.warning("no --offset-s and no clock_offset_s column: assuming device and host "
                    "share one clock (offset 0)")
        off = np.zeros(len(out))
    a, b = start[ok] + off[ok], end[ok] + off[ok]
    if np.any(b < a):
        raise UsageError(f"{int((b < a).sum())} windows end before they start")
    outside = (a < t[0]) | (b > t[-1])
    if outside.any():
        raise UsageError(
            f"{int(outside.sum())} of {len(a)} windows fall outside the power log (log covers "
            f"{t[0]:.3f}..{t[-1]:.3f} s host time; windows span {a.min():.3f}..{b.max():.3f} s "
            "after the offset): check --offset-s and that the recording covers the whole run"
        )
    n_inside = np.searchsorted(t, b, side="right") - np.searchsorted(t, a, side="left")
    sparse = n_inside < MIN_SAMPLES_PER_WINDOW
    if sparse.any():
        interval_ms = 1000 * float(np.median(np.diff(t)))
        window_ms = 1000 * float(np.median(b - a))
        msg = (
            f"{int(sparse.sum())} of {len(a)} windows hold fewer than {MIN_SAMPLES_PER_WINDOW} "
            f"power samples (median window {window_ms:.1f} ms, log interval {interval_ms:.1f} "
            "ms): repeat each bundle for a longer window (profile with a larger --min-window) "
            "or log faster"
        )
        if not allow_sparse:
            raise UsageError(msg + "; --allow-sparse joins anyway")
        log.warning("%s", msg)
    e = cumulative_energy_j(t, p, b) - cumulative_energy_j(t, p, a)
    if "repeats" in out.columns:
        runs = _numbers(out, "repeats", timing_name)[ok]
        if not (np.isfinite(runs).all() and (runs >= 1).all()):
            raise UsageError("repeats must be a positive number on every timed row")
        e = e / runs
    if idle_power_w is not None:
        if "latency_s" not in out.columns:
            raise UsageError("--idle-power-w needs a latency_s column")
        latency = _numbers(out, "latency_s", timing_name)[ok]
        if not np.isfinite(latency).all():
            i = int(np.flatnonzero(ok)[np.argmax(~np.isfinite(latency))])
            raise UsageError(f"{timing_name}: line {i + 2}: latency_s is empty; --idle-power-w needs it")
        total = np.full(len(out), np.nan)
        total[ok] = e
        idle = np.full(len(out), np.nan)
        idle[ok] = float(idle_power_w)
        if "energy_total_j" in out.columns:
            old = pd.to_numeric(out["energy_total_j"], errors="coerce").to_numpy(dtype=float)
            total[~ok] = old[~ok]
        if "idle_power_w" in out.columns:
            old = pd.to_numeric(out["idle_power_w"], errors="coerce").to_numpy(dtype=float)
            idle[~ok] = old[~ok]
        out["energy_total_j"] = total
        out["idle_power_w"] = idle
        e = e - float(idle_power_w) * latency
    if "energy_j" in out.columns:
        energy = pd.to_numeric(out["energy_j"], errors="coerce").to_numpy(dtype=float, copy=True)
    else:
        energy = np.full(len(out), np.nan)
    e = _checked_energy(out, ok, e, timing_name, idle_power_w, clamp_negative)
    energy[ok] = e
    out["energy_j"] = energy
    if "energy_source" in out.columns:
        src = np.array(out["energy_source"].tolist(), dtype=object)
    else:
        src = np.full(len(out), "", dtype=object)
    src[ok] = source
    out["energy_source"] = src
    return out


def _read_csv(path: str, what: str):
    import pandas as pd

    data = read_input_bytes(path, what, MAX_TABLE_BYTES)
    try:
        return pd.read_csv(io.BytesIO(data))
    except pd.errors.EmptyDataError:
        raise UsageError(f"{path}: empty file, not a CSV") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text CSV file (undecodable bytes)") from None
    except (ValueError, pd.errors.ParserError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "parse error"
        raise UsageError(f"{path}: not a CSV file ({first})") from None


def _checked_energy(out, ok: np.ndarray, e: np.ndarray, timing_name: str,
                    idle_power_w: float | None, clamp: bool) -> np.ndarray:
    """Refuse joined energies that are not finite; refuse negative ones or, with `clamp`,
    set them to 0, warn once per bundle and say so in the row's energy_note."""
    rows = np.flatnonzero(ok)
    if not np.isfinite(e).all():
        i = int(rows[np.argmax(~np.isfinite(e))])
        raise UsageError(f"{timing_name}: line {i + 2}: the joined energy is not finite ({e[~np.isfinite(e)][0]})")
    neg = e < 0
    if not neg.any():
        return e
    why = (f"below the idle power {idle_power_w:g} W x latency_s" if idle_power_w is not None
           else "negative")
    first = int(rows[np.argmax(neg)])
    if not clamp:
        raise UsageError(
            f"{timing_name}: {int(neg.sum())} of {len(e)} joined runs come out {why} (first at line "
            f"{first + 2}: {e[neg][0]:.6g} J): check --idle-power-w; --clamp-negative sets them to 0 "
            "with a note"
        )
    if "energy_note" in out.columns:
        note = out["energy_note"].fillna("").astype(str).to_numpy(dtype=object)
    else:
        note = np.full(len(out), "", dtype=object)
    key_cols = [c for c in ("device", "setting", "bundle") if c in out.columns]
    labels = (out[key_cols].astype(str).agg(" ".join, axis=1).to_numpy() if key_cols
              else np.full(len(out), "rows"))
    for label in dict.fromkeys(labels[rows[neg]]):
        mine = neg & (labels[rows] == label)
        log.warning("%s: %s: %d of %d runs %s (down to %.6g J); set to 0", timing_name, label,
                    int(mine.sum()), int((labels[rows] == label).sum()), why, float(e[mine].min()))
    for j in np.flatnonzero(neg):
        note[rows[j]] = f"clamped to 0 from {e[j]:.6g} J"
    out["energy_note"] = note
    return np.where(neg, 0.0, e)


def pd_isna(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.isna(values)


def join_files(timing_path: str, power_path: str, out_path: str, **kw) -> int:
    """Read both CSVs, join, write `out_path` atomically; returns the number of rows joined."""
    check_output_path(out_path, "--out")
    timing = _read_csv(timing_path, "timing CSV")
    power = _read_csv(power_path, "power CSV")
    if power.empty:
        raise UsageError(f"power log {power_path} has no samples")
    out = join_energy(timing, power, timing_name=timing_path, power_name=power_path, **kw)
    atomic_write_text(out_path, out.to_csv(index=False))
    n = int((out["energy_source"] == kw.get("source", "smartpower3")).sum())
    log.info("joined energy for %d rows into %s", n, out_path)
    return n


# --------------------------------------------------------------------------------------------
# CLI


def _build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m dime.energy",
                                description="energy from external power logs")
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="command", required=True)
    j = sub.add_parser("join", help="fill energy_j of timed windows from a power log")
    j.add_argument("--timing", required=True, help="profile CSV with t_start_s, t_end_s")
    j.add_argument("--power", required=True, help="CSV written by python -m dime.powerlog")
    j.add_argument("--out", required=True, help="output CSV (written atomically)")
    j.add_argument("--offset-s", type=finite_float, default=None,
                   help="host minus device monotonic time (default: the clock_offset_s column, "
                        "else 0)")
    j.add_argument("--power-column", default="input_mw",
                   help="power column (unit from its suffix _mw or _w); default input_mw")
    j.add_argument("--clock", choices=("host", "meter"), default="host",
                   help="time base of the samples (default host arrival stamps)")
    j.add_argument("--allow-sparse", action="store_true",
                   help="join windows with fewer than 2 samples (warn instead of failing)")
    j.add_argument("--source", default="smartpower3", help="energy_source label to write")
    j.add_argument("--idle-power-w", type=non_negative_float, default=None,
                   help="subtract this idle power x latency_s (keeps energy_total_j)")
    j.add_argument("--clamp-negative", action="store_true",
                   help="set energies that come out below 0 to 0 (warning per bundle, energy_note column) "
                        "instead of failing")
    o = sub.add_parser("offset", help="print host minus device clock offset (run on the device)")
    o.add_argument("--host", default="127.0.0.1")
    o.add_argument("--port", type=port_number, default=None)
    o.add_argument("--rounds", type=positive_int, default=20)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "join":
        join_files(args.timing, args.power, args.out, offset_s=args.offset_s,
                   power_column=args.power_column, clock=args.clock,
                   allow_sparse=args.allow_sparse, source=args.source,
                   idle_power_w=args.idle_power_w, clamp_negative=args.clamp_negative)
        return 0
    if args.command == "offset":
        from dime.profiling.power.client import DEFAULT_PORT, PowerLogClient

        with PowerLogClient(args.host, args.port or DEFAULT_PORT) as client:
            print(f"{client.estimate_offset_s(args.rounds):.6f}")
        return 0
    raise DimeError(f"unknown command {args.command}")  # argparse prevents this


if __name__ == "__main__":
    sys.exit(run_main(main))
