"""Predict the cost of unmeasured bundles from the measured ones (no torch, numpy only).

One model per device, setting and quantity (latency or energy), on a chain of n layers whose
single layers are all measured (their costs c_i). A bundle [s, e] is predicted as

    cost(s, e) = sum_{i=s..e} c_i                                   the layer sum
               + sum_{cuts j inside} (theta . phi_j + u_j)          what each inner cut saves or adds
               + r_s * sum_{i=s..e} c_i - sum_{i=s..e} r_i c_i      the start's factor (see below)

- phi_j, features of the inner cut between layers j and j+1: a constant (a call's fixed
  overhead), c_j + c_{j+1} (interactions proportional to the two layers' time) and the bytes
  crossing the cut (a working set that stays in cache inside a bundle); theta is shared by
  every cut, unpenalised once enough multi-layer bundles are measured to pin it down.
- u_j, the cut's own interaction (the plain pairwise model's term), a random effect shrunk
  towards theta . phi_j: N(0, (cut_rel * (c_j + c_{j+1}))^2).
- r_s, a factor of every bundle that starts at layer s: N(0, start_rel^2). The profiler
  times the bundles that start at one layer in one block (same input tensor, loaded once,
  same minutes of the machine's life), and so does a profile made with --measure; on the
  shipped profiles these blocks differ by up to 15 %. The single layer c_s is timed in its
  block too, so a single layer carries its own factor and the r_i c_i term takes it out.

Fitted by weighted least squares (relative noise noise_rel on every measured bundle) with
these Gaussian priors, i.e. a Bayesian linear model: the posterior gives each prediction a
standard deviation, which is then scaled so that the leave-one-out residuals of the
measured multi-layer bundles have unit root mean square (the uncertainty from held-out
residuals). A law that is linear in these terms (e.g. cost = layer sum + a + b * bytes per
cut) is reproduced exactly.

Which bundles to measure (choose_bundles): the single layers and the longest bundles first,
then greedily the bundle whose prediction has the largest relative sd given what is chosen so
far. The sd depends on which bundles are measured, not on their values, so the choice is
fixed once the single layers are measured: a resumed profile recomputes the same set.

Across operating points (frequency_law): a bundle's time at an unmeasured clock frequency f
from the frequencies where it is known, t(f) = a + b / f (the part that scales with the
clock plus the part that does not). Tested on synthetic profiles only: untested on hardware.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from dime.errors import ProfileError

Bundle = tuple[int, int]

PREDICTOR = "dime.profiling.predict: layer sum + cut features + cut and start random effects"
PREDICTOR_VERSION = 1
FREQUENCY_LAW = "t(f) = a + b / f per bundle (untested on hardware)"
_TINY = 1e-15


@dataclass(frozen=True)
class PredictorParams:
    """Prior scales of the bundle model (all relative, dimensionless)."""

    noise_rel: float = 0.01  # sd of a measured bundle's cost, relative to it
    cut_rel: float = 0.05  # sd of a cut's own interaction, relative to its two layers' cost
    start_rel: float = 0.05  # sd of a start's factor
    theta_sd: float = 1.0  # sd of the feature coefficients while too few bundles pin them down
    min_for_flat: int = 6  # with this many multi-layer bundles (and full rank) theta is unpenalised
    min_for_scale: int = 5  # held-out residuals needed to rescale the sd

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


DEFAULT_PARAMS = PredictorParams()


def bundles_upto(n_layers: int, max_bundle: int) -> list[Bundle]:
    """Every (start, end) of 1..max_bundle layers, by start then end (the profiler's order)."""
    return [(s, e) for s in range(n_layers) for e in range(s, min(n_layers, s + max_bundle))]


def longest_bundles(n_layers: int, max_bundle: int) -> list[Bundle]:
    """The whole model, or with max_bundle < n the longest bundles at both ends."""
    k = min(max_bundle, n_layers)
    return list(dict.fromkeys([(0, k - 1), (n_layers - k, n_layers - 1)]))


class BundleModel:
    """The design of the model for one chain: singles c_i and the bytes at each cut."""

    def __init__(self, singles: Sequence[float], cut_bytes: Sequence[int],
                 params: PredictorParams = DEFAULT_PARAMS) -> None:
        c = np.asarray(singles, dtype=float)
        n = len(c)
        if n == 0 or len(cut_bytes) != n + 1:
            raise ValueError("need n singles and n + 1 cut sizes")
        self.n, self.c, self.params = n, c, params
        scale = max(float(c.mean()), _TINY)
        inner = np.asarray(cut_bytes[1:n], dtype=float)
        pair = c[:-1] + c[1:]
        # every feature in the unit of the costs, so that theta is a dimensionless ratio
        self.phi = np.column_stack([
            np.full(n - 1, scale),
            pair,
            inner / max(float(inner.max()) if n > 1 else 1.0, 1.0) * scale,
        ]) if n > 1 else np.zeros((0, 3))
        self.p = 3
        self.off_u = self.p
        self.off_r = self.p + (n - 1)
        self.q = self.off_r + n
        sd = np.empty(self.q)
        sd[: self.p] = params.theta_sd
        sd[self.off_u : self.off_r] = np.maximum(params.cut_rel * pair, _TINY)
        sd[self.off_r :] = params.start_rel
        self.prior_precision = 1.0 / sd**2
        self._cum = np.concatenate([[0.0], np.cumsum(c)])

    def layer_sum(self, s: int, e: int) -> float:
        return float(self._cum[e + 1] - self._cum[s])

    def row(self, s: int, e: int) -> np.ndarray:
        """The bundle's coefficients on (theta, u, r)."""
        x = np.zeros(self.q)
        if e > s:
            x[: self.p] = self.phi[s:e].sum(axis=0)
            x[self.off_u + s : self.off_u + e] = 1.0
            x[self.off_r + s] += self.layer_sum(s, e)
            x[self.off_r + s : self.off_r + e + 1] -= self.c[s : e + 1]
        return x

    def noise_sd(self, value: float) -> float:
        return max(self.params.noise_rel * abs(value), _TINY)

    def fit(self, measured: Mapping[Bundle, float]) -> "BundleFit":
        multi = [(b, v) for b, v in measured.items() if b[1] > b[0]]
        X = np.array([self.row(*b) for b, _ in multi]).reshape(len(multi), self.q)
        y = np.array([v - self.layer_sum(*b) for b, v in multi])
        w = np.array([1.0 / self.noise_sd(v) ** 2 for _, v in multi])
        precision = self.prior_precision.copy()
        if len(multi) >= self.params.min_for_flat and np.linalg.matrix_rank(X[:, : self.p]) == self.p:
            precision[: self.p] = 0.0  # a flat prior: a law linear in the features is fitted exactly
        A = (X * w[:, None]).T @ X + np.diag(precision)
        cov = np.linalg.inv(A)
        beta = cov @ ((X * w[:, None]).T @ y)
        scale, z = _loo_scale(X, y, w, cov, beta, self.params.min_for_scale)
        return BundleFit(self, dict(measured), beta, cov, scale, len(multi), z)


@dataclass
class BundleFit:
    """A fitted model: mean and sd of any bundle."""

    model: BundleModel
    measured: dict[Bundle, float]
    beta: np.ndarray
    cov: np.ndarray
    sd_scale: float  # the posterior sd times this matches the held-out residuals
    n_fitted: int  # measured multi-layer bundles the fit rests on
    loo_z: np.ndarray  # their leave-one-out residuals / predicted sd (before scaling)

    def mean(self, s: int, e: int) -> float:
        return self.model.layer_sum(s, e) + float(self.model.row(s, e) @ self.beta)

    def sd(self, s: int, e: int) -> float:
        x = self.model.row(s, e)
        m = self.mean(s, e)
        return self.sd_scale * math.sqrt(float(x @ self.cov @ x) + self.model.noise_sd(m) ** 2)

    def predict(self, s: int, e: int) -> tuple[float, float]:
        """(mean, sd); a mean below zero is clipped at zero (a cost cannot be negative)."""
        return max(self.mean(s, e), 0.0), self.sd(s, e)

    def summary(self) -> dict[str, float | int]:
        return {"fitted_multi_layer_bundles": self.n_fitted, "sd_scale": round(self.sd_scale, 6),
                "theta": [round(float(t), 6) for t in self.beta[: self.model.p]]}


def _loo_scale(X: np.ndarray, y: np.ndarray, w: np.ndarray, cov: np.ndarray,
               beta: np.ndarray, least: int) -> tuple[float, np.ndarray]:
    """RMS of the leave-one-out residuals over their predictive sd (1 with fewer than `least`)."""
    if len(y) < least:
        return 1.0, np.zeros(0)
    h = np.einsum("ij,jk,ik->i", X, cov, X)  # x' C x
    lev = w * h
    ok = lev < 1 - 1e-9
    resid = (y - X @ beta)[ok] / (1 - lev[ok])  # y_i - prediction without i
    var = h[ok] / (1 - lev[ok]) + 1.0 / w[ok]  # its predictive variance without i
    z = resid / np.sqrt(var)
    if len(z) < least:
        return 1.0, z
    return max(float(np.sqrt(np.mean(z**2))), 0.1), z


def base_bundles(n_layers: int, max_bundle: int) -> list[Bundle]:
    """What --measure measures first at every setting: the single layers and the longest bundles."""
    return list(dict.fromkeys([(i, i) for i in range(n_layers)] + longest_bundles(n_layers, max_bundle)))


def choose_bundles(singles: Sequence[float], cut_bytes: Sequence[int], max_bundle: int, budget: int,
                   params: PredictorParams = DEFAULT_PARAMS, start: Sequence[Bundle] | None = None) -> list[Bundle]:
    """The bundles to measure, in order: `start` (default: every single layer and the longest
    bundles), then greedily the one with the largest relative predictive sd until `budget`
    bundles (or every bundle) are chosen. Depends on the singles' values (the priors' scales)
    and on which bundles `start` holds, not on any other measurement."""
    n = len(singles)
    model = BundleModel(singles, cut_bytes, params)
    chosen = list(dict.fromkeys(start if start is not None else base_bundles(n, max_bundle)))
    cands = [b for b in bundles_upto(n, max_bundle) if b not in set(chosen)]
    if len(chosen) >= budget or not cands:
        return chosen
    X = np.array([model.row(*b) for b in cands])
    base = np.array([max(model.layer_sum(*b), _TINY) for b in cands])
    A = np.diag(model.prior_precision)
    for b in chosen:
        if b[1] > b[0]:
            x = model.row(*b)
            A = A + np.outer(x, x) / model.noise_sd(model.layer_sum(*b)) ** 2
    C = np.linalg.inv(A)
    XC = X @ C
    var = np.einsum("ij,ij->i", XC, X)
    free = np.ones(len(cands), dtype=bool)
    while len(chosen) < budget and free.any():
        score = np.where(free, np.sqrt(np.maximum(var, 0)) / base, -1.0)
        i = int(np.argmax(score))
        free[i] = False
        chosen.append(cands[i])
        # rank-one update of every candidate's variance (Sherman-Morrison)
        d = model.noise_sd(base[i]) ** 2
        cx = XC[i].copy()
        denom = d + float(cx @ X[i])
        proj = X @ cx
        var -= proj**2 / denom
        XC -= np.outer(proj, cx) / denom
    return chosen


class Chooser(Protocol):
    """What --measure measures at one setting. Called with the chain (layers, max bundle, cut
    sizes), the budget and the latency of any bundle it chose before, it yields rounds of
    bundles; the caller measures each round before asking for the next. It may depend on the
    values of its own earlier rounds only, so that a resumed profile replays the same rounds."""

    def __call__(self, n_layers: int, max_bundle: int, cut_bytes: Sequence[int], budget: int,
                 value: Callable[[Bundle], float]) -> Iterator[list[Bundle]]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class UncertaintyChoice:
    """The plan-blind choice: the single layers and the longest bundles, then (choose_bundles)
    the least certain predictions given the single layers."""

    params: PredictorParams = DEFAULT_PARAMS

    def __call__(self, n_layers: int, max_bundle: int, cut_bytes: Sequence[int], budget: int,
                 value: Callable[[Bundle], float]) -> Iterator[list[Bundle]]:
        base = base_bundles(n_layers, max_bundle)
        yield base
        singles = [value((i, i)) for i in range(n_layers)]
        rest = choose_bundles(singles, cut_bytes, max_bundle, budget, self.params, start=base)[len(base):]
        if rest:
            yield rest

    def describe(self) -> dict[str, Any]:
        return {"choice": "the least certain predictions (dime.profiling.predict.choose_bundles)"}


def budget_for(fraction: float, n_layers: int, max_bundle: int) -> int:
    """Bundles to measure for a fraction of all bundles of 1..max_bundle layers (at least the
    single layers and the longest bundles)."""
    total = len(bundles_upto(n_layers, max_bundle))
    least = len(base_bundles(n_layers, max_bundle))
    return min(total, max(least, int(math.floor(fraction * total + 1e-9))))


# ---- across operating points ---------------------------------------------------------------
@dataclass(frozen=True)
class FrequencyLaw:
    """t(f) = a + b / f, fitted to one bundle's costs at several frequencies."""

    a: float
    b: float
    resid_sd: float  # of the fit (0 with two points)
    freqs_hz: tuple[float, ...]

    def at(self, f_hz: float) -> float:
        return self.a + self.b / f_hz


def fit_frequency_law(freqs_hz: Sequence[float], values: Sequence[float]) -> FrequencyLaw:
    f = np.asarray(freqs_hz, dtype=float)
    v = np.asarray(values, dtype=float)
    if len(f) < 2 or len(set(f.tolist())) < 2:
        raise ProfileError("the frequency law needs a bundle at two or more frequencies")
    X = np.column_stack([np.ones_like(f), 1.0 / f])
    coef, *_ = np.linalg.lstsq(X, v, rcond=None)
    resid = v - X @ coef
    dof = len(f) - 2
    sd = float(np.sqrt(resid @ resid / dof)) if dof > 0 else 0.0
    return FrequencyLaw(float(coef[0]), float(coef[1]), sd, tuple(f.tolist()))


def law_sd(law: FrequencyLaw, f_hz: float, input_sds: Sequence[float]) -> float:
    """Uncertainty of law.at(f): the fit's residual sd plus the inputs' sds carried through the
    (linear) interpolation weights."""
    f = np.asarray(law.freqs_hz)
    X = np.column_stack([np.ones_like(f), 1.0 / f])
    weights = np.array([1.0, 1.0 / f_hz]) @ np.linalg.pinv(X)
    carried = float(np.sqrt(np.sum((weights * np.asarray(input_sds, dtype=float)) ** 2)))
    return math.hypot(carried, law.resid_sd)
