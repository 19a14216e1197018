"""The predicted rows of a profile: every bundle of 1..K layers that was not measured, with
its uncertainty, from the measured ones (dime.profiling.predict). No torch.

Per device and setting:
- with every single layer and at least one multi-layer bundle measured: the bundle model,
  for latency and (where every measured bundle has it) energy; energy from an assumed power
  (--assume-power W) is W x the predicted latency, exactly as the profiler computes it;
- otherwise, for a clock-frequency setting (setting_kind freq_hz) with two or more sibling
  frequencies (same other parts of the setting) that are complete: t(f) = a + b / f per
  bundle through their values (untested on hardware); energy is not carried across
  frequencies (no power law is assumed);
- otherwise the profile has too few measured bundles (ProfileError).

A predicted row is one row per bundle (iteration 0, run 0) with latency_source = predicted
and latency_sd_s; its param_bytes is the sum of its layers' (an upper bound where layers
share tensors).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from dime.core.costs import BundleCost, CostTable
from dime.errors import ProfileError
from dime.profiling.predict import (
    DEFAULT_PARAMS,
    FREQUENCY_LAW,
    PREDICTOR,
    PREDICTOR_VERSION,
    BundleFit,
    BundleModel,
    PredictorParams,
    bundles_upto,
    fit_frequency_law,
    law_sd,
)
from dime.profiling.schema import PREDICTED

log = logging.getLogger(__name__)

Key = tuple[str, str, int, int]
FREQ_KIND = "freq_hz"


@dataclass
class PredictedProfile:
    """What predict_profile adds to a profile."""

    costs: dict[Key, BundleCost] = field(default_factory=dict)  # predicted bundles only
    fits: list[dict[str, Any]] = field(default_factory=list)  # per device and setting, for the meta file
    notes: list[str] = field(default_factory=list)

    def meta(self, params: PredictorParams, max_bundle: int, fitted_on: Sequence[str]) -> dict[str, Any]:
        """The `prediction` entry of a profile's .meta.json."""
        return {
            "predictor": PREDICTOR,
            "version": PREDICTOR_VERSION,
            "parameters": params.as_dict(),
            "frequency_law": FREQUENCY_LAW,
            "max_bundle": max_bundle,
            "fitted_on": list(fitted_on),
            "settings": self.fits,
        }


def measured_only(table: CostTable) -> CostTable:
    """The table without its predicted bundles."""
    return replace(table, costs={k: c for k, c in table.costs.items() if not c.predicted})


def missing_count(table: CostTable, max_bundle: int) -> int:
    """Bundle/setting pairs of 1..max_bundle layers without a cost."""
    want = bundles_upto(table.n_layers, max_bundle)
    return sum((d, t, s, e) not in table.costs for d, ts in table.settings.items() for t in ts for s, e in want)


def predict_profile(table: CostTable, max_bundle: int, params: PredictorParams = DEFAULT_PARAMS,
                    extra_settings: Mapping[str, Sequence[str]] | None = None) -> PredictedProfile:
    """Predict every bundle of 1..max_bundle layers that `table` lacks, for every device and
    setting it holds (and `extra_settings`: settings known to exist but with no rows, e.g.
    from the profiler's meta file, predictable only by the frequency law).

    `table` should hold measured costs only (see measured_only). Raises ProfileError where a
    setting has too few measured bundles.
    """
    n = table.n_layers
    k = min(max_bundle, n)
    want = bundles_upto(n, k)
    out = PredictedProfile()
    pending: list[tuple[str, str]] = []  # settings left to the frequency law
    for device, settings in table.settings.items():
        for setting in list(settings) + [t for t in (extra_settings or {}).get(device, ()) if t not in settings]:
            have = {(s, e): c for (d, t, s, e), c in table.costs.items() if d == device and t == setting}
            missing = [b for b in want if b not in have]
            if not missing:
                continue
            why = _too_few(table, have)
            if why:
                pending.append((device, setting))
                continue
            _predict_setting(table, device, setting, have, missing, params, out)
    for device, setting in pending:
        _frequency_setting(table, device, setting, want, out)
    return out


def _too_few(table: CostTable, have: Mapping[tuple[int, int], BundleCost]) -> str:
    """Why a setting's measured bundles cannot feed the bundle model ("" if they can)."""
    n = table.n_layers
    lacking = [i for i in range(n) if (i, i) not in have]
    if lacking:
        return (f"{len(lacking)} of its {n} single layers are not measured (first {table.layer_names[lacking[0]]}); "
                "every single layer must be")
    if n > 1 and not any(e > s for s, e in have):
        return "no bundle of two or more layers is measured; at least one must be"
    return ""


def _predict_setting(table: CostTable, device: str, setting: str, have: Mapping[tuple[int, int], BundleCost],
                     missing: Sequence[tuple[int, int]], params: PredictorParams, out: PredictedProfile) -> None:
    lat_fit = _fit(table, {b: c.latency_s for b, c in have.items()}, params)
    energy_kind, en_fit, watts = _energy_fit(table, have, params)
    for s, e in missing:
        lat, lat_sd = lat_fit.predict(s, e)
        energy = energy_sd = None
        source = ""
        if watts is not None:
            energy, energy_sd, source = watts * lat, watts * lat_sd, have[(0, 0)].energy_source
        elif en_fit is not None:
            energy, energy_sd = en_fit.predict(s, e)
            source = have[(0, 0)].energy_source
        out.costs[(device, setting, s, e)] = BundleCost(
            latency_s=lat, energy_j=energy, energy_source=source, runs=1, latency_source=PREDICTED,
            latency_sd_s=lat_sd, energy_origin=PREDICTED if energy is not None else "", energy_sd_j=energy_sd)
    out.fits.append({
        "device": device, "setting": setting, "method": "bundle model",
        "measured_bundles": len(have), "predicted_bundles": len(missing),
        "latency_fit": lat_fit.summary(), "energy": energy_kind,
        **({"energy_fit": en_fit.summary()} if en_fit is not None else {}),
    })


def _fit(table: CostTable, values: Mapping[tuple[int, int], float], params: PredictorParams) -> BundleFit:
    singles = [values[(i, i)] for i in range(table.n_layers)]
    return BundleModel(singles, table.cut_bytes, params).fit(values)


def _energy_fit(table: CostTable, have: Mapping[tuple[int, int], BundleCost],
                params: PredictorParams) -> tuple[str, BundleFit | None, float | None]:
    """How energy is predicted at a setting: ("none" | "assumed power" | "bundle model", fit, W)."""
    if any(c.energy_j is None for c in have.values()):
        return "none", None, None
    sources = {c.energy_source for c in have.values()}
    if len(sources) == 1:
        src = next(iter(sources))
        if src.startswith("assumed:"):
            try:
                return "assumed power", None, float(src.split(":", 1)[1])
            except ValueError:
                pass
    return "bundle model", _fit(table, {b: float(c.energy_j) for b, c in have.items()}, params), None


def parse_frequency(kind: str, label: str) -> tuple[float, str] | None:
    """(frequency in Hz, the setting's other parts) of a clock-frequency setting, else None."""
    kinds, parts = kind.split(";"), label.split(";")
    if FREQ_KIND not in kinds or len(kinds) != len(parts):
        return None
    i = kinds.index(FREQ_KIND)
    try:
        f = float(parts[i])
    except ValueError:
        return None
    if not f > 0:
        return None
    return f, ";".join(parts[:i] + parts[i + 1 :])


def _setting_kind(table: CostTable, device: str, setting: str) -> str:
    kind = table.setting_kinds.get((device, setting), "")
    if kind:
        return kind
    kinds = {table.setting_kinds.get((device, t), "") for t in table.settings.get(device, ())}
    return next(iter(kinds)) if len(kinds) == 1 else ""


def _frequency_setting(table: CostTable, device: str, setting: str, want: Sequence[tuple[int, int]],
                       out: PredictedProfile) -> None:
    have = {(s, e): c for (d, t, s, e), c in table.costs.items() if d == device and t == setting}
    parsed = parse_frequency(_setting_kind(table, device, setting), setting)
    why = _too_few(table, have) or "no rows at all"
    if parsed is None:
        raise ProfileError(f"{_where(table)}: too few measured bundles on {device} ({setting}) to predict: {why}")
    f_hz, rest = parsed
    siblings: list[tuple[float, str]] = []
    for t in table.settings.get(device, ()):
        p = parse_frequency(_setting_kind(table, device, t), t)
        if t != setting and p is not None and p[1] == rest and _complete(table, out, device, t, want):
            siblings.append((p[0], t))
    if len({f for f, _ in siblings}) < 2:
        raise ProfileError(
            f"{_where(table)}: too few measured bundles on {device} ({setting}) to predict: {why}; "
            f"and fewer than two other frequencies{' with ' + rest if rest else ''} are complete for the "
            f"frequency law")
    count = 0
    for s, e in want:
        if (s, e) in have:
            continue
        cs = [_known(table, out, device, t, s, e) for _, t in siblings]
        law = fit_frequency_law([f for f, _ in siblings], [c.latency_s for c in cs])
        sd = law_sd(law, f_hz, [c.latency_sd_s or 0.0 for c in cs])
        out.costs[(device, setting, s, e)] = BundleCost(
            latency_s=max(law.at(f_hz), 0.0), runs=1, latency_source=PREDICTED, latency_sd_s=sd)
        count += 1
    out.fits.append({"device": device, "setting": setting, "method": "frequency law", "law": FREQUENCY_LAW,
                     "from_settings": [t for _, t in siblings], "measured_bundles": len(have),
                     "predicted_bundles": count, "energy": "none (not carried across frequencies)"})
    out.notes.append(f"{device} ({setting}): {count} bundles from the frequency law over "
                     f"{', '.join(t for _, t in siblings)} ({FREQUENCY_LAW})")


def _known(table: CostTable, out: PredictedProfile, device: str, setting: str, s: int, e: int) -> BundleCost:
    key = (device, setting, s, e)
    return table.costs[key] if key in table.costs else out.costs[key]


def _complete(table: CostTable, out: PredictedProfile, device: str, setting: str,
              want: Sequence[tuple[int, int]]) -> bool:
    return all((device, setting, s, e) in table.costs or (device, setting, s, e) in out.costs for s, e in want)


def _where(table: CostTable) -> str:
    files = list(table.sources)
    if not files:
        return "profiles"
    return ", ".join(files) if len(files) <= 3 else f"{files[0]} and {len(files) - 1} more files"


def predicted_rows(table: CostTable, predicted: PredictedProfile) -> list[dict[str, str]]:
    """CSV rows (schema.PROFILE_COLUMNS, as text) of the predicted bundles, in profile order."""
    singles_params = [table.param_bytes.get((i, i)) for i in range(table.n_layers)]
    rows = []
    order = {(d, t): i for i, (d, t) in enumerate((d, t) for d, ts in table.settings.items() for t in ts)}
    keys = sorted(predicted.costs, key=lambda k: (order.get((k[0], k[1]), len(order)), k[0], k[1], k[2], k[3]))
    for device, setting, s, e in keys:
        c = predicted.costs[(device, setting, s, e)]
        params = singles_params[s : e + 1]
        rows.append({
            "model": table.model, "device": device, "setting": setting,
            "bundle": table.bundle_name(s, e), "start": table.layer_names[s], "end": table.layer_names[e],
            "in_bytes": str(table.cut_bytes[s]), "out_bytes": str(table.cut_bytes[e + 1]),
            "iteration": "0", "run": "0", "latency_s": f"{c.latency_s:.9g}",
            "energy_j": "" if c.energy_j is None else f"{c.energy_j:.9g}",
            "setting_kind": _setting_kind(table, device, setting),
            "energy_source": c.energy_source,
            "param_bytes": str(sum(params)) if all(p is not None for p in params) else "",  # type: ignore[arg-type]
            "latency_source": PREDICTED,
            "latency_sd_s": "" if c.latency_sd_s is None else f"{c.latency_sd_s:.6g}",
            "energy_origin": c.energy_origin,
            "energy_sd_j": "" if c.energy_sd_j is None else f"{c.energy_sd_j:.6g}",
        })
    return rows


def fitted_on(table: CostTable) -> list[str]:
    """What a prediction rests on: each setting's measured bundles."""
    per: dict[tuple[str, str], int] = {}
    for d, t, _, _ in table.costs:
        per[(d, t)] = per.get((d, t), 0) + 1
    return [f"{d} ({t}): {c} measured bundles" for (d, t), c in per.items()]


def source_counts(table: CostTable) -> tuple[int, int]:
    """(measured, predicted) bundle/setting pairs of a table."""
    pred = sum(c.predicted for c in table.costs.values())
    return len(table.costs) - pred, pred

