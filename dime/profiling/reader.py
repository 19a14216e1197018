"""Read bundle profiles (CSV, one row per timed run) into a CostTable.

Each row times one run of one bundle (a run of consecutive layers, named by its
first and last layer and by the "+"-joined layer names) on one (device, setting).
Runs of the same bundle are reduced to a trimmed mean, separately for latency and
energy, so that a few outliers (a cold cache, a scheduler hiccup) do not decide a
placement. Rows marked latency_source = predicted (dime.predict, dime.profile --measure)
are one row per bundle, with its uncertainty; a bundle with measured rows ignores any
predicted ones. This module does not import torch: the solver runs where torch is absent.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from dime.core.costs import Assignment, BundleCost, CostTable, Role, WakeUp, segments
from dime.errors import DimeError, ProfileError, UsageError
from dime.fileio import MAX_TABLE_BYTES, MAX_TEXT_BYTES, input_problem, read_input_bytes, read_input_text
from dime.profiling.schema import (
    MAX_CUT_BYTES,
    MAX_ENERGY_J,
    MAX_LATENCY_S,
    MEASURED,
    PREDICTED,
    REQUIRED_COLUMNS,
    meta_path,
)

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

_KEY_COLUMNS = ("model", "device", "setting", "bundle", "start", "end")
_NUMERIC_COLUMNS = ("latency_s", "energy_j", "in_bytes", "out_bytes", "latency_sd_s", "energy_sd_j")
_SD_COLUMNS = ("latency_sd_s", "energy_sd_j")
_ORIGIN_COLUMNS = ("latency_source", "energy_origin")


DEFAULT_TRIM = 0.1


def load_profiles(
    paths: PathLike | Sequence[PathLike], model: str | None = None, trim: float = DEFAULT_TRIM
) -> CostTable:
    """Read one or more profile CSVs of one model into a CostTable.

    `model` picks the model when the files hold several. `trim` is the fraction of
    runs dropped at each end (fastest and slowest) before averaging: floor(n * trim)
    runs each side, separately for latency_s and energy_j.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise UsageError("no profile files given")
    if not (0.0 <= trim < 0.5):
        raise UsageError(f"trim must be in [0, 0.5), got {trim}")
    files = _distinct_files([str(p) for p in paths])
    frames = [_read_one(p) for p in files]
    df = pd.concat(frames, ignore_index=True)
    wake = df["_idle"].notna().to_numpy()
    _warn_duplicate_runs(df[(df["latency_source"] != PREDICTED).to_numpy() & ~wake].reset_index(drop=True), files)
    for c in df.columns:
        if not c.startswith("_") and c not in _NUMERIC_COLUMNS:
            df[c] = df[c].fillna("")  # optional text columns absent from some files
    where = _files_label(files)

    models = list(dict.fromkeys(df["model"]))
    if model is None:
        if len(models) > 1:
            raise ProfileError(
                f"{where}: several models ({', '.join(models)}); choose one with --model"
            )
        model = models[0]
    elif model not in models:
        raise ProfileError(f"{where}: no rows for model {model!r}; models: {', '.join(models)}")
    df = df[df["model"] == model].reset_index(drop=True)

    layer_names = _layer_order(df, where)
    index = {name: i for i, name in enumerate(layer_names)}
    df["_s"] = df["start"].map(index)
    df["_e"] = df["end"].map(index)
    cut_bytes = _cut_bytes(df, layer_names, where)

    settings: dict[str, tuple[str, ...]] = {}
    for device, setting in dict.fromkeys(zip(df["device"], df["setting"])):
        settings[device] = settings.get(device, ()) + (setting,)
    setting_kinds: dict[tuple[str, str], str] = {}
    if "setting_kind" in df.columns:
        for device, setting, kind in zip(df["device"], df["setting"], df["setting_kind"]):
            if kind and (device, setting) not in setting_kinds:
                setting_kinds[(device, setting)] = kind

    wake = df["_idle"].notna()
    costs = _aggregate(df[~wake].reset_index(drop=True), trim, layer_names)
    wakeup = _wakeup(df[wake].reset_index(drop=True), df[~wake].reset_index(drop=True), costs)  # fills costs' wakeup_s
    table = CostTable(
        model=model,
        layer_names=tuple(layer_names),
        cut_bytes=tuple(cut_bytes),
        settings=settings,
        costs=costs,
        setting_kinds=setting_kinds,
        sources=tuple(files),
        param_bytes=_param_bytes(df, layer_names),
        device_files={dev: tuple(dict.fromkeys(group)) for dev, group in df.groupby("device", sort=False)["_file"]},
        wakeup=wakeup,
    )
    log.debug(
        "read %d runs of %s (%d layers, %d bundle costs) from %s",
        len(df), model, len(layer_names), len(costs), where,
    )
    return table


def make_role(table: CostTable, device: str, settings: Iterable[str] | None = None) -> Role:
    """A Role for `device`, restricted to `settings` (default: all its profiled settings)."""
    if device not in table.settings:
        raise ProfileError(
            f"{_files_label(table.sources)}: unknown device {device!r}; "
            f"known devices: {', '.join(table.settings)}"
        )
    known = table.settings[device]
    if settings is None:
        return Role(device, known)
    chosen = tuple(dict.fromkeys(settings))
    if not chosen:
        raise UsageError(f"no settings chosen for device {device}")
    for s in chosen:
        if s not in known:
            raise ProfileError(
                f"{_files_label(table.sources)}: device {device} has no setting {s!r}; "
                f"its settings: {', '.join(known)}"
            )
    return Role(device, chosen)


def missing_bundle(table: CostTable, device: str, setting: str, max_bundle: int) -> tuple[int, int] | None:
    """The first bundle of 1..max_bundle layers (by length, then start) without a cost."""
    n = table.n_layers
    for k in range(1, min(max_bundle, n) + 1):
        for s in range(n - k + 1):
            if (device, setting, s, s + k - 1) not in table.costs:
                return s, s + k - 1
    return None


def require_bundles(table: CostTable, roles: Sequence[Role], max_bundle: int) -> None:
    """Raise ProfileError naming the first bundle up to max_bundle layers that is not profiled
    (relays, roles without compute, need none)."""
    for role in roles:
        if not role.compute:
            continue
        for setting in role.settings:
            miss = missing_bundle(table, role.device, setting, max_bundle)
            if miss is not None:
                s, e = miss
                raise ProfileError(
                    f"{_files_label(table.sources)}: no runs of bundle {table.bundle_name(s, e)} "
                    f"({e - s + 1} layers) on {role.device} ({setting}); max bundle {max_bundle} "
                    f"needs every bundle of up to {max_bundle} layers "
                    f"(profiled up to {table.max_bundle(role.device, setting)})"
                )


def common_max_bundle(table: CostTable, roles: Sequence[Role]) -> int:
    """The largest K with every bundle of 1..K layers profiled for every setting of every
    role that computes (relays have none)."""
    ks = [table.max_bundle(r.device, s) for r in roles if r.compute for s in r.settings]
    if not ks:
        raise UsageError("no device computes: every role is a relay")
    k = min(ks)
    if k == 0:
        require_bundles(table, roles, 1)  # raises, naming the missing one-layer bundle
    return k


def max_bundle_for(table: CostTable, roles: Sequence[Role], requested: int | None) -> int:
    """K for a placement: the largest profiled for every setting of the roles that compute,
    or the requested K (capped at the model's layers) once every bundle up to it is known
    to be profiled."""
    if requested is None:
        return common_max_bundle(table, roles)
    k = min(requested, table.n_layers)
    require_bundles(table, roles, k)
    return k


def latency_of_rows(texts: Sequence[str], trim: float = DEFAULT_TRIM) -> float:
    """A bundle's latency from the latency_s cells of its rows, parsed and trimmed as
    load_profiles does."""
    return trimmed_mean(pd.to_numeric(pd.Series(list(texts), dtype=str)).astype(float).to_numpy(), trim)


def trimmed_mean(values: np.ndarray, trim: float) -> float:
    """Mean after dropping floor(n * trim) of the smallest and of the largest values."""
    v = np.sort(np.asarray(values, dtype=float))
    drop = int(math.floor(len(v) * trim))
    if drop:
        v = v[drop : len(v) - drop]
    return float(v.mean())


def _files_label(files: Sequence[str]) -> str:
    if not files:
        return "profiles"
    if len(files) <= 3:
        return ", ".join(files)
    return f"{files[0]} and {len(files) - 1} more files"


def _distinct_files(files: list[str]) -> list[str]:
    """Each file once: the same file named twice (by any path) would count its runs twice."""
    seen: dict[str, str] = {}
    for f in files:
        seen.setdefault(os.path.realpath(f), f)
    if len(seen) < len(files):
        log.warning("%d profile file(s) given more than once; each is read once", len(files) - len(seen))
    return list(seen.values())


def _warn_duplicate_runs(df: pd.DataFrame, files: Sequence[str]) -> None:
    """Rows naming the same run twice (copied rows, files concatenated) still count as runs."""
    dup = df.duplicated(subset=["model", "device", "setting", "bundle", "iteration", "run"], keep="first")
    if dup.any():
        i = int(np.argmax(dup.to_numpy()))
        log.warning(
            "%s: %d row(s) repeat the model, device, setting, bundle, iteration and run of an earlier row "
            "(first at %s: line %s); each is averaged as a separate run",
            _files_label(list(files)), int(dup.sum()), df["_file"][i], df["_line"][i],
        )


def _read_one(path: str) -> pd.DataFrame:
    data = read_input_bytes(path, "profile file", MAX_TABLE_BYTES, ProfileError)
    try:
        # Everything as text first: numbers are checked column by column below so that
        # a bad cell gets a message naming its line instead of a dtype error.
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False,
                         skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ProfileError(f"{path}: empty file, not a profile CSV") from None
    except pd.errors.ParserError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "parse error"
        raise ProfileError(f"{path}: not a CSV file ({first})") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not a text CSV file (undecodable bytes)") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot read ({e.strerror or e})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ProfileError(f"{path}: not a profile CSV, missing columns: {', '.join(missing)}")
    if df.empty:
        raise ProfileError(f"{path}: no rows (header only)")
    df = df.copy()
    for c in df.columns:
        df[c] = df[c].str.strip()
    df["_file"] = path
    df["_line"] = np.arange(len(df)) + 2  # line 1 is the header
    for c in _KEY_COLUMNS:
        bad = df[c] == ""
        if bad.any():
            raise ProfileError(f"{path}: line {df['_line'][bad.idxmax()]}: empty {c}")
    _check_numbers(df, path)
    return df


def _check_numbers(df: pd.DataFrame, path: str) -> None:
    """Parse latency_s, energy_j, in_bytes, out_bytes in place; raise on bad cells."""

    def fail(col: str, i: int, what: str) -> ProfileError:
        return ProfileError(f"{path}: line {df['_line'][i]}: {col} {df[col][i]!r} {what}")

    lat_raw = df["latency_s"]
    lat = pd.to_numeric(lat_raw, errors="coerce")
    bad = lat.isna() | ~np.isfinite(lat.fillna(0.0))
    if bad.any():
        i = bad.idxmax()
        if lat_raw[i] == "":
            raise ProfileError(f"{path}: line {df['_line'][i]}: latency_s is empty")
        raise fail("latency_s", i, "is not a number" if pd.isna(lat[i]) else "is not finite")
    if (lat < 0).any():
        raise fail("latency_s", (lat < 0).idxmax(), "is negative")
    if (lat > MAX_LATENCY_S).any():
        raise fail("latency_s", (lat > MAX_LATENCY_S).idxmax(), f"is implausible (over {MAX_LATENCY_S:g} s for one run)")

    en_raw = df["energy_j"]
    empty = en_raw.str.lower().isin(["", "nan"])
    en = pd.to_numeric(en_raw.where(~empty, "nan"), errors="coerce")
    bad = en.isna() & ~empty
    if bad.any():
        raise fail("energy_j", bad.idxmax(), "is not a number")
    if (~np.isfinite(en) & ~empty).any():
        raise fail("energy_j", (~np.isfinite(en) & ~empty).idxmax(), "is not finite")
    if (en < 0).any():
        raise fail("energy_j", (en < 0).idxmax(), "is negative")
    if (en > MAX_ENERGY_J).any():
        raise fail("energy_j", (en > MAX_ENERGY_J).idxmax(), f"is implausible (over {MAX_ENERGY_J:g} J for one run)")

    for col in ("in_bytes", "out_bytes"):
        num = pd.to_numeric(df[col], errors="coerce")
        ok = num.notna() & np.isfinite(num.fillna(0.0)) & (num.fillna(-1) >= 0)
        ok &= num.fillna(0.5) == np.floor(num.fillna(0.5))
        ok &= num.fillna(0) <= MAX_CUT_BYTES
        if not ok.all():
            raise fail(col, (~ok).idxmax(), f"is not a whole number of bytes in [0, {MAX_CUT_BYTES}]")
        df[col] = num.astype(np.int64)
    df["latency_s"] = lat.astype(float)
    df["energy_j"] = en.astype(float)
    df["_energy_empty"] = empty
    _check_predicted(df, path, fail)
    raw = df["idle_s"] if "idle_s" in df.columns else pd.Series([""] * len(df), index=df.index)
    idle = pd.to_numeric(raw.where(raw != "", "nan"), errors="coerce")
    bad = (idle.isna() & (raw != "")) | (idle < 0) | (idle > MAX_LATENCY_S) | np.isinf(idle)
    if bad.any():
        raise fail("idle_s", bad.idxmax(), f"is not a number of seconds in [0, {MAX_LATENCY_S:g}]")
    df["_idle"] = idle.astype(float)


def _check_predicted(df: pd.DataFrame, path: str, fail: Callable[[str, int, str], ProfileError]) -> None:
    """The columns of predicted rows: origins measured|predicted|empty, sds empty or >= 0."""
    for col in _ORIGIN_COLUMNS:
        if col not in df.columns:
            df[col] = ""
        bad = ~df[col].isin(["", MEASURED, PREDICTED])
        if bad.any():
            raise fail(col, bad.idxmax(), f"is not {MEASURED!r}, {PREDICTED!r} or empty")
    for col in _SD_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
            continue
        raw = df[col]
        num = pd.to_numeric(raw.where(raw != "", "nan"), errors="coerce")
        bad = (raw != "") & (num.isna() | ~np.isfinite(num.fillna(0.0)) | (num.fillna(0.0) < 0))
        if bad.any():
            raise fail(col, bad.idxmax(), "is not a non-negative number")
        df[col] = num.astype(float)


def _layer_order(df: pd.DataFrame, where: str) -> list[str]:
    """The layer sequence implied by the bundle strings.

    Multi-layer bundles fix which layer follows which; every bundle string must agree.
    Layers linked by no bundle (profiles of 1-layer bundles only) keep the order in
    which the file first starts a bundle at them.
    """

    def at(i: int) -> str:
        return f"{df['_file'][i]}: line {df['_line'][i]}"

    first_row: dict[str, int] = {}
    for i, s in enumerate(df["start"]):
        first_row.setdefault(s, i)
    succ: dict[str, str] = {}
    pred: dict[str, str] = {}
    witness: dict[str, str] = {}  # layer -> bundle that fixed its successor
    seen_bundles: dict[str, int] = {}
    for i, (bundle, start, end) in enumerate(zip(df["bundle"], df["start"], df["end"])):
        if bundle in seen_bundles:
            j = seen_bundles[bundle]
            if (df["start"][j], df["end"][j]) != (start, end):
                raise ProfileError(
                    f"{at(i)}: bundle {bundle} has start/end {start}/{end} "
                    f"but {at(j)} says {df['start'][j]}/{df['end'][j]}"
                )
            continue
        seen_bundles[bundle] = i
        if start == end:
            if bundle != start:
                raise ProfileError(
                    f"{at(i)}: bundle {bundle!r} has start == end == {start!r} "
                    "but is not that one layer"
                )
            first_row.setdefault(start, i)
            continue
        names = bundle.split("+")
        if len(names) < 2 or names[0] != start or names[-1] != end:
            raise ProfileError(
                f"{at(i)}: bundle {bundle!r} does not run from start {start!r} to end {end!r}"
            )
        if len(set(names)) != len(names):
            raise ProfileError(f"{at(i)}: bundle {bundle!r} repeats a layer")
        for a, b in zip(names, names[1:]):
            for layer in (a, b):
                first_row.setdefault(layer, i)
            if succ.get(a, b) != b:
                raise ProfileError(
                    f"{where}: inconsistent layer order: bundle {bundle} puts {b} after {a} "
                    f"but bundle {witness[a]} puts {succ[a]} there"
                )
            if pred.get(b, a) != a:
                raise ProfileError(
                    f"{where}: inconsistent layer order: bundle {bundle} puts {a} before {b} "
                    f"but another bundle puts {pred[b]} there"
                )
            succ[a], pred[b] = b, a
            witness[a] = bundle

    layers = list(first_row)
    heads = sorted((l for l in layers if l not in pred), key=lambda l: first_row[l])
    order: list[str] = []
    for head in heads:
        node: str | None = head
        while node is not None:
            order.append(node)
            node = succ.get(node)
    if len(order) != len(layers):
        stuck = [l for l in layers if l not in set(order)]
        raise ProfileError(f"{where}: inconsistent layer order: the bundles make a cycle through {stuck[0]}")
    if len(heads) > 1:
        log.debug("layer order of %d unlinked segments taken from row order in %s", len(heads), where)
    return order


def _cut_bytes(df: pd.DataFrame, layer_names: list[str], where: str) -> list[int]:
    """Bytes crossing each cut; every bundle meeting a cut must report the same size."""
    n = len(layer_names)
    found: dict[int, tuple[int, str, str]] = {}  # cut -> (bytes, column, bundle)

    def record(cut: int, nbytes: int, col: str, bundle: str) -> None:
        prev = found.get(cut)
        if prev is None:
            found[cut] = (nbytes, col, bundle)
        elif prev[0] != nbytes:
            at = f"before layer {layer_names[cut]}" if cut < n else "after the last layer"
            raise ProfileError(
                f"{where}: inconsistent sizes at the cut {at}: {prev[1]} {prev[0]} of bundle {prev[2]} "
                f"but {col} {nbytes} of bundle {bundle}"
            )

    for s, b, nb in zip(df["_s"], df["bundle"], df["in_bytes"]):
        record(int(s), int(nb), "in_bytes", b)
    for e, b, nb in zip(df["_e"], df["bundle"], df["out_bytes"]):
        record(int(e) + 1, int(nb), "out_bytes", b)
    missing = [k for k in range(n + 1) if k not in found]
    if missing:
        k = missing[0]
        raise ProfileError(
            f"{where}: no bundle starts at layer {layer_names[k]} or ends just before it; "
            "the size of its input is unknown"
        )
    return [found[k][0] for k in range(n + 1)]


def _param_bytes(df: pd.DataFrame, layer_names: list[str]) -> dict[tuple[int, int], int]:
    """Bytes of each bundle's parameters and buffers, where the profiles say (same on every row)."""
    if "param_bytes" not in df.columns:
        return {}
    out: dict[tuple[int, int], int] = {}
    for s, e, text, path, line in zip(df["_s"], df["_e"], df["param_bytes"], df["_file"], df["_line"]):
        if text == "":
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0 and value == int(value)):
            raise ProfileError(f"{path}: line {line}: param_bytes {text!r} is not a non-negative whole number")
        key = (int(s), int(e))
        if out.setdefault(key, int(value)) != int(value):
            raise ProfileError(
                f"{path}: line {line}: param_bytes {int(value)} of bundle {'+'.join(layer_names[key[0] : key[1] + 1])} "
                f"differs from {out[key]} in another row"
            )
    return out


def _aggregate(df: pd.DataFrame, trim: float, layer_names: list[str]) -> dict[tuple[str, str, int, int], BundleCost]:
    has_source = "energy_source" in df.columns
    lat = df["latency_s"].to_numpy()
    en = df["energy_j"].to_numpy()
    empty = df["_energy_empty"].to_numpy()
    source = df["energy_source"].to_numpy() if has_source else None
    predicted = (df["latency_source"] == PREDICTED).to_numpy()
    lat_sd, en_sd = df["latency_sd_s"].to_numpy(), df["energy_sd_j"].to_numpy()
    en_origin = df["energy_origin"].to_numpy()
    costs: dict[tuple[str, str, int, int], BundleCost] = {}
    groups = df.groupby(["device", "setting", "_s", "_e"], sort=False).indices
    for (device, setting, s, e), idx in groups.items():
        s, e = int(s), int(e)
        guess = bool(predicted[idx].all())
        if not guess:
            idx = idx[~predicted[idx]]  # measured rows win over predicted ones
        n_empty = int(empty[idx].sum())
        if n_empty == len(idx):
            energy = None
        elif n_empty:
            i = idx[np.argmax(empty[idx])]
            raise ProfileError(
                f"{df['_file'][i]}: line {df['_line'][i]}: energy_j is empty in {n_empty} of {len(idx)} runs "
                f"of bundle {'+'.join(layer_names[s : e + 1])} on {device} ({setting}); "
                "either every run has energy or none"
            )
        else:
            energy = trimmed_mean(en[idx], trim)
        src = ""
        if source is not None:
            src = next((x for x in source[idx] if x), "")
        origin = next((x for x in en_origin[idx] if x), MEASURED) if energy is not None else ""
        costs[(device, setting, s, e)] = BundleCost(
            latency_s=trimmed_mean(lat[idx], trim), energy_j=energy, energy_source=src, runs=len(idx),
            latency_source=PREDICTED if guess else MEASURED,
            latency_sd_s=_mean_or_none(lat_sd[idx]) if guess else None,
            energy_origin=origin,
            energy_sd_j=_mean_or_none(en_sd[idx]) if origin == PREDICTED else None,
        )
    return costs


def _wakeup(wake: pd.DataFrame, plain: pd.DataFrame, costs: dict[tuple[str, str, int, int], BundleCost]
            ) -> dict[tuple[str, str], WakeUp]:
    """Per (device, setting), the wake-up curve; each timed bundle's own extra goes into its
    BundleCost (`costs`, replaced in place).

    A bundle's extra after an idle time is the median of its calls after that idle less the
    median of its reference calls: those timed right after another call in the same pass
    (idle_s 0) where there are any, else its own back-to-back runs. Medians, not trimmed means:
    calls after an idle have a long tail. The curve is the median over the bundles at each idle
    time, made >= 0 and non-decreasing (a shorter idle never costs more than a longer one; what
    the medians say otherwise is noise). `ref_idle_s` is the idle time most bundles were timed
    after; their own extras there (>= 0) are what the cost model scales by the curve.
    """
    out: dict[tuple[str, str], WakeUp] = {}
    if wake.empty:
        return out
    measured = plain[plain["latency_source"] != PREDICTED]
    back_to_back = measured.groupby(["device", "setting", "_s", "_e"], sort=False)["latency_s"].median()
    for (device, setting), rows in wake.groupby(["device", "setting"], sort=False):
        by_idle: dict[float, list[float]] = {}
        own: dict[float, dict[tuple[int, int], float]] = {}
        for (s, e), b in rows.groupby(["_s", "_e"], sort=False):
            refs = b[b["_idle"] == 0.0]["latency_s"]
            key = (device, setting, s, e)
            if refs.empty and key not in back_to_back.index:
                raise ProfileError(f"{b['_file'].iloc[0]}: line {b['_line'].iloc[0]}: wake-up rows of bundle "
                                   f"{b['bundle'].iloc[0]} on {device} ({setting}) without reference rows "
                                   "(idle_s 0, or the bundle's own runs)")
            ref = float(refs.median()) if not refs.empty else float(back_to_back[key])
            for idle, g in b[b["_idle"] > 0.0].groupby("_idle"):
                extra = float(g["latency_s"].median()) - ref
                by_idle.setdefault(float(idle), []).append(extra)
                own.setdefault(float(idle), {})[(int(s), int(e))] = extra
        if not by_idle:
            continue
        xs, ys, top = [0.0], [0.0], 0.0
        for idle in sorted(by_idle):
            top = max(top, float(np.median(by_idle[idle])))
            xs.append(idle)
            ys.append(top)
        ref_idle = max(own, key=lambda t: (len(own[t]), t))
        out[(str(device), str(setting))] = WakeUp(tuple(xs), tuple(ys), ref_idle if len(own[ref_idle]) > 1 else None)
        if len(own[ref_idle]) > 1:
            for (s, e), extra in own[ref_idle].items():
                key = (str(device), str(setting), s, e)
                if key in costs:
                    costs[key] = dataclasses.replace(costs[key], wakeup_s=max(0.0, extra))
    return out


def _mean_or_none(values: np.ndarray) -> float | None:
    v = values[np.isfinite(values)]
    return float(v.mean()) if len(v) else None


def timing_contexts(paths: Iterable[PathLike]) -> dict[str, str]:
    """device -> how its bundles were timed ("isolated", "chain" or "mixed"), from the
    `.meta.json` the profiler writes beside each CSV; devices without one are left out.
    Files from before `--context` existed were timed in isolation."""
    found: dict[str, set[str]] = {}
    for p in paths:
        meta = meta_path(p)
        if input_problem(meta, "profile meta file", MAX_TEXT_BYTES) is not None:
            continue  # missing (older files) or unreadable: the context is unknown
        try:
            info = json.loads(read_input_text(meta, "profile meta file"))
            device = str(info["device"])
        except (DimeError, ValueError, KeyError, TypeError):
            continue
        found.setdefault(device, set()).add(str(info.get("context", "isolated")))
    return {d: (c.pop() if len(c) == 1 else "mixed") for d, c in found.items()}


def isolated_chains(placement: Sequence[Assignment], roles: Sequence[Role],
                    contexts: dict[str, str]) -> list[list[Assignment]]:
    """Runs of two or more consecutive bundles on one role whose device was timed in
    isolation: their predicted cost is the sum of bundles each timed back to back alone,
    which on CPUs with warm caches can be less than the chain really costs."""
    return [bs for role, _, _, bs in segments(placement)
            if len(bs) > 1 and contexts.get(roles[role].device) in ("isolated", "mixed")]
