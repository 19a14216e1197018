"""`python -m dime.predict PARTIAL.csv [...] --out FULL.csv [--max-bundle K]`: fill in every
bundle of 1..K layers that the profiles did not measure (dime.profiling.predicted).

The measured rows are copied as they are (each value unchanged; latency_source = measured,
energy_origin = measured where they have energy); each unmeasured bundle gets one row with
latency_source = predicted and its uncertainty in latency_sd_s (energy likewise:
energy_origin, energy_sd_j). Predicted rows of the inputs are predicted afresh. FULL.csv's
.meta.json is the input's (or, for several inputs, each input's under `sources`) plus a
`prediction` entry: predictor, version, parameters, the files and the measured bundles it was
fitted on. No torch.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from dime.cliargs import OneLineParser, positive_int, run_main, setup_logging
from dime.core.costs import CostTable
from dime.errors import ProfileError, UsageError
from dime.fileio import atomic_write_text, check_output_path
from dime.profiling.predict import DEFAULT_PARAMS
from dime.profiling.predicted import (
    PredictedProfile,
    fitted_on,
    measured_only,
    missing_count,
    predict_profile,
    predicted_rows,
)
from dime.profiling.reader import load_profiles
from dime.profiling.schema import MEASURED, PREDICTED, PROFILE_COLUMNS, meta_path

log = logging.getLogger("dime.predict")


def read_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """A profile's .meta.json, or None where there is none (or it is unreadable)."""
    try:
        data = json.loads(meta_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_raw_rows(paths: Sequence[str]) -> tuple[list[dict[str, str]], list[str]]:
    """Every row of the files as text, and the columns beyond dime's that they hold."""
    rows: list[dict[str, str]] = []
    extra: list[str] = []
    for p in paths:
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for c in reader.fieldnames or []:
                if c.strip() not in PROFILE_COLUMNS and c.strip() not in extra:
                    extra.append(c.strip())
            rows += [{(k or "").strip(): (v or "") for k, v in r.items()} for r in reader]
    return rows, extra


def _models(rows: Sequence[dict[str, str]]) -> list[str]:
    return list(dict.fromkeys(r["model"].strip() for r in rows))


def default_max_bundle(table: CostTable, metas: Sequence[dict[str, Any] | None]) -> int:
    """The longest bundle the profiles were made for (their meta files), else the longest measured."""
    longest = max(e - s + 1 for (_, _, s, e) in table.costs)
    said = [m.get("max_bundle") for m in metas if m]
    said_k = [k for k in said if isinstance(k, int) and k > 0]
    return min(table.n_layers, max([longest, *said_k]))


def meta_settings(table: CostTable, metas: Sequence[dict[str, Any] | None]) -> dict[str, list[str]]:
    """Settings the profiler was asked to measure (meta files) that have no rows."""
    out: dict[str, list[str]] = {}
    for m in metas:
        if not m or not isinstance(m.get("settings"), list) or m.get("device") not in table.settings:
            continue
        device = str(m["device"])
        for t in m["settings"]:
            if str(t) not in table.settings[device]:
                out.setdefault(device, []).append(str(t))
    return out


def full_rows(measured: Sequence[dict[str, str]], predicted: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The measured rows (marked measured) then the predicted ones."""
    out = []
    for r in measured:
        r = dict(r)
        r["latency_source"] = MEASURED
        if r.get("energy_j", "").strip().lower() not in ("", "nan"):
            r["energy_origin"] = MEASURED
        out.append(r)
    return out + list(predicted)


def rows_text(rows: Sequence[dict[str, str]], extra: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(PROFILE_COLUMNS) + list(extra), restval="", lineterminator="\n",
                       extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def out_meta(files: Sequence[str], metas: Sequence[dict[str, Any] | None], prediction: dict[str, Any]) -> dict[str, Any]:
    if len(files) == 1 and metas[0] is not None:
        return {**metas[0], "max_bundle": prediction["max_bundle"], "prediction": prediction}
    return {"sources": {f: m for f, m in zip(files, metas)}, "max_bundle": prediction["max_bundle"],
            "prediction": prediction}


def summary_lines(out: Path, table: CostTable, predicted: PredictedProfile, k: int) -> list[str]:
    total = len(table.costs) + len(predicted.costs)
    lines = [f"{out}: {table.model}, {len(table.costs)} measured + {len(predicted.costs)} predicted "
             f"bundle/setting pairs ({100 * len(table.costs) / total:.0f}% measured), every bundle of 1..{k} layers"]
    for fit in predicted.fits:
        held = fit.get("latency_fit", {})
        fitted = held.get("fitted_multi_layer_bundles", 0)
        how = fit["method"] + (f", fitted on {fitted} multi-layer bundle{'s' if fitted != 1 else ''}, "
                               f"sd scale {held['sd_scale']:g}" if held else "")
        lines.append(f"  {fit['device']} ({fit['setting']}): {fit['measured_bundles']} measured, "
                     f"{fit['predicted_bundles']} predicted ({how}; energy: {fit['energy']})")
    lines += [f"  note: {n}" for n in predicted.notes]
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m dime.predict",
                      description="Fill in the unmeasured bundles of a partial profile with predictions "
                                  "(marked latency_source = predicted, with latency_sd_s).")
    p.add_argument("profiles", nargs="+", metavar="PARTIAL.csv", help="profile CSV files of one model")
    p.add_argument("--out", required=True, type=Path, metavar="FULL.csv", help="the filled-in profile to write")
    p.add_argument("--max-bundle", type=positive_int, metavar="K",
                   help="fill in every bundle of 1..K layers (default: the profile's own K, from its meta file, "
                        "else its longest measured bundle)")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else 0)
    check_output_path(args.out, "--out")
    files = list({os.path.realpath(p): str(p) for p in reversed(args.profiles)}.values())[::-1]
    models = _file_models(files)
    if len(models) > 1:
        raise ProfileError(f"{', '.join(files)}: several models ({', '.join(models)}); dime.predict fills in the "
                           "profile of one model: give the files of one")
    table = load_profiles(files)
    rows, extra = read_raw_rows(files)
    measured_rows = [r for r in rows if r.get("latency_source", "").strip() != PREDICTED]
    table = measured_only(table)
    if not table.costs:
        raise ProfileError(f"{', '.join(files)}: no measured bundles, only predicted ones")
    metas = [read_meta(f) for f in files]
    k = min(args.max_bundle or default_max_bundle(table, metas), table.n_layers)
    extra_settings = meta_settings(table, metas)
    if missing_count(table, k) == 0 and not extra_settings:
        print(f"note: {', '.join(files)} already {'holds' if len(files) == 1 else 'hold'} every bundle of 1..{k} layers at every setting: "
              f"nothing to predict, {args.out} not written")
        return 0
    predicted = predict_profile(table, k, DEFAULT_PARAMS, extra_settings)
    text = rows_text(full_rows(measured_rows, predicted_rows(table, predicted)), extra)
    meta = out_meta(files, metas, predicted.meta(DEFAULT_PARAMS, k, [*files, *fitted_on(table)]))
    atomic_write_text(args.out, text)
    atomic_write_text(meta_path(args.out), json.dumps(meta, indent=2) + "\n")
    if not args.quiet:
        print("\n".join(summary_lines(args.out, table, predicted, k)))
    return 0


def _file_models(files: Sequence[str]) -> list[str]:
    """The models the files hold (raises the reader's one-line errors for unreadable files)."""
    models: list[str] = []
    for f in files:
        try:
            with open(f, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                col = next((c for c in reader.fieldnames or [] if c.strip() == "model"), None)
                if col is None:
                    load_profiles([f])  # the reader's message for a file that is not a profile
                    raise UsageError(f"{f}: not a profile CSV")
                models += [(r.get(col) or "").strip() for r in reader]
        except (OSError, UnicodeDecodeError, csv.Error):
            load_profiles([f])  # the reader's message for a missing or unreadable file
            raise
    return list(dict.fromkeys(m for m in models if m))


if __name__ == "__main__":
    sys.exit(run_main(main))
