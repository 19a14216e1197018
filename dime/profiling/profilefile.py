"""The profile CSV being written: one model and parameter set, repaired and indexed for resuming."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from dime.errors import DimeError, UsageError
from dime.fileio import MAX_TABLE_BYTES, atomic_write_text, read_input_bytes, read_input_text
from dime.profiling.schema import PREDICTED, PROFILE_COLUMNS, REQUIRED_COLUMNS, meta_path

log = logging.getLogger(__name__)


# meta.json keys that make a profile file: resuming must not mix rows that differ in one
_IDENTITY_FLAGS: dict[str, str] = {
    "model": "--model",
    "device": "--device-name",
    "torch_device": "--torch-device",
    "layers": "--cuts",
    "weights": "--weights",
    "iterations": "--iterations",
    "runs": "--runs",
    "warmup": "--warmup",
    "context": "--context",
    "energy": "--power/--assume-power",
    "min_window_s": "--min-window",
    "idle_baseline": "--idle-baseline",
    "wakeup": "--wakeup/--wakeup-runs",
}


def _shown(key: str, value: Any) -> str:
    if key == "layers" and isinstance(value, list):
        return f"({len(value)} layers: {', '.join(map(str, value[:3]))}{', ...' if len(value) > 3 else ''})"
    return str(value)


def wakeup_key(bundle: str, idle_s: float) -> str:
    """The bundle part of a wake-up row's key: its runs count apart from the bundle's own."""
    return f"{bundle}@idle={idle_s:g}"


def _idle(row: list[str], idx: dict[str, int]) -> float | None:
    i = idx.get("idle_s")
    if i is None or not row[i].strip():
        return None
    try:
        return float(row[i])
    except ValueError:
        return None


def _key(row: list[str], idx: dict[str, int], bundle_idle_s: float | None = None) -> tuple[str, str, str, str]:
    """Whose runs a row counts in: its bundle's (also the bundle's own calls after
    `bundle_idle_s`, written with them), or a wake-up probe's at its idle time."""
    idle = _idle(row, idx)
    own = idle is None or idle == bundle_idle_s
    bundle = row[idx["bundle"]] if own else wakeup_key(row[idx["bundle"]], idle)
    return row[idx["model"]], row[idx["device"]], row[idx["setting"]], bundle


class ProfileFile:
    """A profile CSV opened for appending, repaired and indexed for resuming.

    The file belongs to one model, device and parameter set (`identity`, as in its
    .meta.json): a file of another is refused before anything is written, unless
    `overwrite`, which starts it afresh. Only bundles with fewer runs than a complete one
    (an interrupted run) are dropped, and predicted rows (dime.profile --measure): they are
    predicted again once the measuring is done (`predicted_max_bundle` says up to what K).
    `prepare=False` opens nothing: `check()` then only reads (the profiler checks an identity
    before it builds the model). Wake-up rows (dime.profile --wakeup): a bundle's own calls after
    idling (`bundle_wakeup`: idle time, calls) count with its rows; the probes' count per bundle
    and idle time against `wakeup_rows` (idle time -> rows). Without these, wake-up rows are kept
    as they are.
    """

    def __init__(self, path: Path, expected_rows: int, identity: dict[str, Any] | None = None,
                 overwrite: bool = False, prepare: bool = True, wakeup_rows: dict[float, int] | None = None,
                 bundle_wakeup: tuple[float, int] | None = None) -> None:
        self.path = path
        self.expected_rows = expected_rows + (bundle_wakeup[1] if bundle_wakeup else 0)
        self.bundle_idle_s = bundle_wakeup[0] if bundle_wakeup else None
        self.wakeup_rows = wakeup_rows
        self.identity = identity or {}
        self.overwrite = overwrite
        self.done: set[tuple[str, str, str, str]] = set()  # (model, device, setting, bundle)
        self.predicted_max_bundle = 0  # the longest predicted bundle the file held (0: none)
        if prepare:
            self._prepare()

    def _refuse(self, why: str) -> UsageError:
        return UsageError(f"{self.path} {why}; choose another --out, or --overwrite to replace it")

    def _read(self) -> tuple[list[str], list[list[str]], int] | None:
        """The header, the whole rows and the count of broken lines; None for a missing or
        empty file. A file of other columns is refused (`overwrite`: None, it is replaced)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        text = read_input_bytes(self.path, "profile file", MAX_TABLE_BYTES).decode("utf-8", errors="replace")
        lines = text.splitlines(keepends=True)
        header = next(csv.reader([lines[0]])) if lines else []
        if header != list(PROFILE_COLUMNS) and not (set(REQUIRED_COLUMNS) <= set(header) <= set(PROFILE_COLUMNS)):
            if self.overwrite:
                return None
            raise UsageError(
                f"{self.path} exists but is not a dime profile (other columns); choose another --out or move it away"
            )
        rows: list[list[str]] = []
        dropped_lines = 0
        for line in lines[1:]:
            if not line.endswith("\n"):
                dropped_lines += 1  # torn write at a kill
                continue
            fields = next(csv.reader([line]))
            if len(fields) != len(header):
                dropped_lines += 1
                continue
            rows.append(fields)
        return header, rows, dropped_lines

    def check(self) -> tuple[list[str], list[list[str]], list[list[str]], int,
                             dict[tuple[str, str, str, str], int]] | None:
        """Refuse a file of another model, device or parameter set, writing nothing: what
        `_prepare` does first, and what the profiler calls before it builds the model (with
        the identity known by then). Returns the header, the measured and the predicted rows, the
        count of broken lines and the measured runs per bundle."""
        read = self._read()
        if read is None or self.overwrite:
            return None
        header, rows, _ = read
        idx = {c: i for i, c in enumerate(header)}
        self._check_identity(rows, idx)
        src = idx.get("latency_source")
        guessed = [r for r in rows if src is not None and r[src].strip() == PREDICTED]
        if guessed:
            rows = [r for r in rows if r[src].strip() != PREDICTED]
            self.predicted_max_bundle = max(len(r[idx["bundle"]].split("+")) for r in guessed)
            log.info("%s: %d predicted rows kept until the measuring is done, then predicted again",
                     self.path, len(guessed))
        counts: dict[tuple[str, str, str, str], int] = {}
        self._expected: dict[tuple[str, str, str, str], int] = {}
        for r in rows:
            k = _key(r, idx, self.bundle_idle_s)
            counts[k] = counts.get(k, 0) + 1
            idle = _idle(r, idx)
            if idle is None or idle == self.bundle_idle_s:
                self._expected[k] = self.expected_rows
            elif self.wakeup_rows is not None:
                self._expected[k] = self.wakeup_rows.get(idle, 0)
        over = {k: c for k, c in counts.items() if k in self._expected and c > self._expected[k]}
        if over:
            k, c = next(iter(over.items()))
            flags = "--iterations x --runs, and --wakeup" if "@idle=" not in k[3] else "--wakeup and --wakeup-runs"
            raise self._refuse(
                f"has {c} runs of bundle {k[3]} ({k[2]}) where this profile makes {self._expected[k]} "
                f"({flags}): it was profiled with other parameters"
            )
        return header, rows, guessed, read[2], counts

    def _prepare(self) -> None:
        fresh = ",".join(PROFILE_COLUMNS) + "\n"
        if self.overwrite:
            read = self._read()
            if read is None and self.path.exists() and self.path.stat().st_size > 0:
                log.warning("%s: not a dime profile; replaced (--overwrite)", self.path)
            elif read is not None and read[1]:
                log.warning("%s: replacing %d rows (--overwrite)", self.path, len(read[1]))
            atomic_write_text(self.path, fresh)
            return
        checked = self.check()
        if checked is None:
            atomic_write_text(self.path, fresh)
            return
        header, rows, guessed, dropped_lines, counts = checked
        idx = {c: i for i, c in enumerate(header)}
        upgrade = header != list(PROFILE_COLUMNS)
        self.done = {k for k, c in counts.items() if c == self._expected.get(k, c)}
        if self.wakeup_rows is not None:
            # a bundle's wake-up pass is written at once and redone whole: all its idle times or none
            passes: dict[tuple[str, str, str, str], set[tuple[str, str, str, str]]] = {}
            for k in counts:
                if "@idle=" in k[3]:
                    passes.setdefault((*k[:3], k[3].rsplit("@idle=", 1)[0]), set()).add(k)
            for (m, d, t, b), keys in passes.items():
                whole = {(m, d, t, wakeup_key(b, idle)) for idle in self.wakeup_rows}
                if keys != whole or not keys <= self.done:
                    self.done -= keys
        partial = [k for k in counts if k not in self.done]
        if dropped_lines or partial or upgrade:
            # predicted rows stay (a measured bundle's rows win over them when read) until
            # replace_predictions: an error before then leaves the file usable
            keep = [dict(zip(header, r)) for r in rows if _key(r, idx, self.bundle_idle_s) in self.done] + [dict(zip(header, r)) for r in guessed]
            atomic_write_text(self.path, _csv_text(keep))
            if upgrade:
                log.info("%s: columns brought up to this profiler version", self.path)
        if dropped_lines or partial:
            log.warning(
                "%s: dropped %d incomplete bundle(s) (%d of %d rows, fewer than %d runs each) and %d broken "
                "line(s) from an interrupted run",
                self.path, len(partial), sum(counts[k] for k in partial), len(rows), self.expected_rows,
                dropped_lines,
            )
        if self.done:
            log.info("%s: resuming, %d bundle/setting pairs already done", self.path, len(self.done))

    def _check_identity(self, rows: list[list[str]], idx: dict[str, int]) -> None:
        """Refuse a file that holds rows of another model, device or parameter set."""
        if not rows:
            return
        want = (self.identity.get("model"), self.identity.get("device"))
        if None not in want:
            foreign: dict[tuple[str, str], int] = {}
            for r in rows:
                md = (r[idx["model"]], r[idx["device"]])
                if md != want:
                    foreign[md] = foreign.get(md, 0) + 1
            if foreign:
                what = ", ".join(f"{m} on {d} ({n} rows)" for (m, d), n in foreign.items())
                raise self._refuse(f"holds profiles of {what}, not of {want[0]} on {want[1]}")
        meta = meta_path(self.path)
        if not meta.exists():
            return
        try:
            before = json.loads(read_input_text(meta, "profile meta file"))
            if not isinstance(before, dict):
                raise ValueError("not an object")
        except (DimeError, ValueError) as e:
            log.warning("%s: unreadable (%s); resuming on the rows' own model and device", meta, e)
            return
        before.setdefault("context", "isolated")  # files from before --context existed
        diffs = [
            (k, before[k], v) for k, v in self.identity.items()
            if k in before and before[k] != v
        ]
        if diffs:
            was = ", ".join(f"{_IDENTITY_FLAGS.get(k, k)} {_shown(k, a)}" for k, a, _ in diffs)
            now = ", ".join(f"{_shown(k, b)}" for k, _, b in diffs)
            raise self._refuse(f"was profiled with {was} (this run: {now}); resume with the same")

    def replace_predictions(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite the file as its measured rows followed by `rows` (the new predictions)."""
        with open(self.path, newline="", encoding="utf-8") as f:
            kept = [r for r in csv.DictReader(f) if (r.get("latency_source") or "").strip() != PREDICTED]
        atomic_write_text(self.path, _csv_text(kept + list(rows)))

    def append(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=PROFILE_COLUMNS, lineterminator="\n", extrasaction="raise")
        w.writerows(rows)
        # One write per bundle: a kill mid-write leaves at most a torn tail, repaired on resume.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PROFILE_COLUMNS, restval="", lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
