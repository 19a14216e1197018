"""The min-period (throughput) ILP over runs, and a one-stage-per-role pipeline to start it from.

A run is a maximal stretch of consecutive layers on one role (core.costs.segments). When the
objective is the period and the only other limit is a latency budget, what a run does inside
matters only through its compute latency: the period is the largest of each role's compute
(the sum of its runs') and each link direction's wire time (fixed by where the runs change
role), and the latency is all the compute plus the routes' latencies. So every run may as
well take the bundles and settings with the least compute, C_r[a,e] (`run_costs`: a DP over
the bundles of layers a..e on role r, bundles of at most K layers, the merge rule inside the
run; two runs in a row are on different roles, so the rule never spans two runs), and the
ILP only chooses runs:

    binary   u[a,e,r]   layers a..e are one run on role r, compute C_r[a,e]
    flow     the chosen runs chain from layer 0 to layer n-1 (as the bundles of problem.py)
    moves    as in problem.py (moves.py), but with no z at inner cuts: the role changes
             between two runs
    period   T >= sum_{u on r} C_r[a,e] u (each r),  T >= wire time (each link direction)
    latency  sum C u + sum y * route latency <= budget (when there is one)

Exact: a placement's runs give no more compute to any role than its bundles, with the same
moves, and a choice of runs expands into a placement with exactly the modelled costs.
Energy budgets, memory limits and one setting per role depend on more than a run's latency;
the planner keeps the bundle model for those (problem.py).

Why it is faster: it has no merge-rule rows (9,000 of the bundle model's 9,600 rows at
4 roles x 60 layers x K = 8), and an upper bound U on the period (a feasible placement's)
removes every run whose compute exceeds U, and every move that puts more than U on a link:
no placement using them can be better. In the bundle model a costly run is several cheap
bundles in a row, which no such bound touches.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dime.core.costs import Assignment, CostTable, Role, bundles, segments
from dime.core.network import Network
from dime.plan.linear import INF, LinearModel, ModelBuilder
from dime.plan.moves import SCALE, add_moves

PIPELINE_ROLES = 6  # the pipeline search tries orders of at most this many computing roles
PIPELINE_WORK = 2e7  # numbers the pipeline DP may hold over all its steps (about 0.1 s of numpy)


@dataclass(frozen=True, eq=False)
class RunCosts:
    """The least compute latency of every run on one role, and the bundles that give it."""

    role: int
    settings: tuple[str, ...]
    max_bundle: int
    merge_rule: bool
    latency_s: np.ndarray  # [a, e]: least compute of layers a..e as one run; inf: no such run
    _bundle_s: np.ndarray  # [s, length-1, setting]: one bundle's latency; inf: not allowed
    _best_s: np.ndarray  # [end cut, a, setting, length-1]: least compute of a..end-1 ending so

    def bundles(self, a: int, e: int) -> list[Assignment]:
        """The bundles of the cheapest run a..e (the same floating-point sums as latency_s)."""
        K = self.max_bundle
        pos = e + 1
        flat = self._best_s[pos, a].reshape(-1)
        state = int(np.argmin(flat))
        value = flat[state]
        if not math.isfinite(value):
            raise ValueError(f"no run of layers {a}..{e} on role {self.role}")
        out: list[Assignment] = []
        while True:
            t, ci = divmod(state, K)
            s = pos - ci - 1
            out.append(Assignment(s, pos - 1, self.role, self.settings[t]))
            if s == a:
                return out[::-1]
            # The predecessor is the state whose value plus this bundle is exactly `value`
            # (the DP added them in that order), among those the merge rule lets precede it.
            ok = self._best_s[s, a] + self._bundle_s[s, ci, t] == value
            if self.merge_rule:
                ok[t, : K - ci - 1] = False
            state = int(np.flatnonzero(ok.reshape(-1))[0])
            value = self._best_s[s, a].reshape(-1)[state]
            pos = s


def run_costs(
    table: CostTable, role_index: int, role: Role, max_bundle: int,
    allowed: Callable[[int, int], bool], merge_rule: bool,
) -> RunCosts:
    """C[a, e] for every run on one role: bundles of at most `max_bundle` layers that `allowed`
    admits, any settings, and (with `merge_rule`) no two same-setting bundles in a row whose
    union has at most `max_bundle` layers.

    One DP for all starts a: the state after covering a..pos-1 is the last bundle's (setting,
    length), since the merge rule asks only for that.
    """
    n, K, settings = table.n_layers, max_bundle, role.settings
    T = len(settings)
    bundle_s = np.full((n, K, T), np.inf)
    for s, e in bundles(n, K):
        if allowed(s, e):
            for t, setting in enumerate(settings):
                bundle_s[s, e - s, t] = table.cost(role.device, setting, s, e).latency_s
    best = np.full((n + 1, n, T, K), np.inf)
    for pos in range(n):
        cur = best[pos]
        if merge_rule:
            per_setting = cur.min(axis=2)
            if T > 1:
                two = np.sort(per_setting, axis=1)[:, :2]
                other = np.where(per_setting == two[:, :1], two[:, 1:2], two[:, :1])  # best of the other settings
            else:
                other = np.full((n, T), np.inf)
            suffix = np.minimum.accumulate(cur[:, :, ::-1], axis=2)[:, :, ::-1]  # [a, t, i]: min over length > i
        else:
            anything = np.broadcast_to(cur.reshape(n, -1).min(axis=1)[:, None], (n, T))
        for c in range(1, min(K, n - pos) + 1):
            # Same setting after a bundle of length l only when l + c > K.
            before = np.minimum(other, suffix[:, :, K - c]) if merge_rule else anything.copy()
            before[pos] = 0.0  # the run starts with this bundle
            best[pos + c, :, :, c - 1] = before + bundle_s[pos, c - 1][None, :]
    latency = np.full((n, n), np.inf)
    for e in range(n):
        latency[: e + 1, e] = best[e + 1, : e + 1].reshape(e + 1, -1).min(axis=1)
    return RunCosts(role_index, tuple(settings), K, merge_rule, latency, bundle_s, best)


# -- the pipeline to start from --------------------------------------------------------------


def pipelines(
    table: CostTable, net: Network, energy: Sequence[bool], costs: Mapping[int, RunCosts]
) -> list[list[tuple[int, int, int]]]:
    """Candidate starting placements, as runs (first layer, last layer, role): pipelines in
    which each computing role runs at most one stage, except the source, which may run the
    first and the last; all on the source is one of them.

    A DP over (roles used, last role) x (cut where the source's first stage ends, cut where
    the last stage ends) minimises the largest single stage or single transfer (an
    estimate: a role's stages and a link's transfers are not summed); the best of each
    (roles used, last role) is a candidate, and the caller keeps the one whose evaluated
    period is least. A heuristic: it only has to be feasible. Each step holds heads x cuts x
    cuts numbers, so on long models or many roles the source's first stage ends only at the
    cuts with the fewest bytes, as many as PIPELINE_WORK allows.
    """
    n, src = table.n_layers, net.source
    cs = costs[src].latency_s
    others = sorted((r for r in costs if r != src), key=lambda r: costs[r].latency_s[0, n - 1])
    others = others[: PIPELINE_ROLES - 1]
    m = len(others)
    steps = sum(math.comb(m, size) * size * (m - size) for size in range(1, m)) + 1
    room = max(4, int(PIPELINE_WORK / (steps * (n + 1) ** 2)))
    hs = np.arange(n + 1)  # cuts where the source's first stage ends (0: it has none)
    if n + 1 > room:
        cheap = sorted(range(1, n), key=lambda k: (table.cut_bytes[k], k))[: room - 2]
        hs = np.array(sorted({0, n, *cheap}))
    heads = np.array([0.0 if h == 0 else cs[0, h - 1] for h in hs])  # source's first stage: 0..h-1
    tails = np.array([cs[k, n - 1] for k in range(n)] + [0.0])  # source's last stage: k..n-1
    cut = {r: _by_cut(costs[r].latency_s) for r in others}  # [k1, k2]: stage k1..k2-1
    wires: dict[tuple[int, int], np.ndarray] = {}

    def wire(a: int, b: int) -> np.ndarray:  # [k]: longest single-link wire time moving cut k from a to b
        if (a, b) not in wires:
            wires[(a, b)] = np.array([max(t for _, t in net.route(a, b, table.cut_bytes[k], energy).wire_s)
                                      for k in range(n + 1)])
        return wires[(a, b)]

    out = [[(0, n - 1, src)]] if math.isfinite(cs[0, n - 1]) else []
    if not others:
        return out
    # f[(mask, r)] = (value[h, k], predecessor role[h, k], predecessor cut[h, k]), h indexing hs
    f: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    none = np.full((len(hs), n + 1), -1)
    for i, r in enumerate(others):
        value = np.maximum(np.maximum(heads[:, None], wire(src, r)[hs][:, None]), cut[r][hs])
        f[(1 << i, r)] = (value, none, none)
    for size in range(1, len(others)):
        for mask in (m for m in range(1 << len(others)) if bin(m).count("1") == size):
            for i, r in enumerate(others):
                if not mask & (1 << i) or (mask, r) not in f:
                    continue
                value = f[(mask, r)][0]
                for i2, r2 in enumerate(others):
                    if mask & (1 << i2):
                        continue
                    ready = np.maximum(value, wire(r, r2)[None, :])  # [h, k]
                    both = np.maximum(ready[:, :, None], cut[r2][None, :, :])  # [h, k, k2]
                    k_best = both.argmin(axis=1)
                    v2 = np.take_along_axis(both, k_best[:, None, :], 1)[:, 0, :]
                    key = (mask | (1 << i2), r2)
                    if key in f:
                        old, old_r, old_k = f[key]
                        better = v2 < old
                        f[key] = (np.where(better, v2, old), np.where(better, r, old_r),
                                  np.where(better, k_best, old_k))
                    else:
                        f[key] = (v2, np.full_like(k_best, r), k_best)
    index = {r: i for i, r in enumerate(others)}
    for (mask, r), (value, _, _) in f.items():
        total = np.maximum(np.maximum(value, wire(r, src)[None, :]), heads[:, None] + tails[None, :])
        hi, k = (int(i) for i in np.unravel_index(int(np.argmin(total)), total.shape))
        if not math.isfinite(total[hi, k]):
            continue
        h = int(hs[hi])
        runs = [(k, n - 1, src)] if k < n else []
        last, m = r, mask
        while True:
            _, pred_r, pred_k = f[(m, last)]
            start = int(pred_k[hi, k]) if pred_r[hi, k] >= 0 else h
            runs.append((start, k - 1, last))
            if pred_r[hi, k] < 0:
                break
            m &= ~(1 << index[last])
            last, k = int(pred_r[hi, k]), start
        if h > 0:
            runs.append((0, h - 1, src))
        out.append(runs[::-1])
    return out


def _mean_layer_s(costs: RunCosts) -> float:
    """The role's mean single-layer compute, over the layers it may run."""
    one = np.diag(costs.latency_s)
    one = one[np.isfinite(one)]
    return float(one.mean()) if one.size else 0.0


def _by_cut(latency_s: np.ndarray) -> np.ndarray:
    """[k1, k2]: the run k1..k2-1 (cuts), inf unless k2 > k1."""
    n = latency_s.shape[0]
    out = np.full((n + 1, n + 1), np.inf)
    out[:n, 1:] = latency_s
    return out


# -- the ILP -----------------------------------------------------------------------------------


class RunModel:
    """The run ILP of one placement problem, with the runs and moves above `cutoff` (model
    units, ms) left out."""

    def __init__(
        self, table: CostTable, roles: Sequence[Role], net: Network, costs: Mapping[int, RunCosts], *,
        cutoff: float | None = None, max_latency: float | None = None, name: str = "dime_runs",
    ) -> None:
        n, D = table.n_layers, len(roles)
        tags = [f"r{r}" for r in range(D)]
        energy = [bool(r.energy) for r in roles]
        b = ModelBuilder(name=name)
        self.costs = costs
        self._runs: list[tuple[int, int, int]] = []
        self._run_var: dict[tuple[int, int, int], int] = {}
        starts: list[list[int]] = [[] for _ in range(n)]
        ends: list[list[int]] = [[] for _ in range(n)]
        left: list[list[dict[int, float]]] = [[{} for _ in range(D)] for _ in range(n + 1)]
        right: list[list[dict[int, float]]] = [[{} for _ in range(D)] for _ in range(n + 1)]
        busy: list[dict[int, float]] = [{} for _ in range(D)]
        for r, c in sorted(costs.items()):
            for a, e in zip(*np.nonzero(np.isfinite(c.latency_s))):
                ms = float(c.latency_s[a, e]) * SCALE
                if cutoff is not None and ms > cutoff:
                    continue
                a, e = int(a), int(e)
                j = b.add_var(f"u_{a}_{e}_{tags[r]}")
                self._runs.append((a, e, r))
                self._run_var[(a, e, r)] = j
                busy[r][j] = ms
                starts[a].append(j)
                ends[e].append(j)
                left[e + 1][r][j] = 1.0
                right[a][r][j] = 1.0
        b.add_row("flow_0", {j: 1.0 for j in starts[0]}, 1.0, 1.0)
        for k in range(1, n):
            b.add_row(f"flow_{k}", {**{j: 1.0 for j in ends[k - 1]}, **{j: -1.0 for j in starts[k]}}, 0.0, 0.0)
        b.add_row(f"flow_{n}", {j: 1.0 for j in ends[n - 1]}, 1.0, 1.0)
        moves = add_moves(b, table, net, tags, energy, left, right, stay_at_inner_cuts=False, max_wire=cutoff)
        self._moves = moves.index
        self._period = b.add_var("period", 0.0, INF, integer=False)
        self._loads = [terms for terms in busy if terms] + [terms for _, terms in sorted(moves.wire.items())]
        for i, terms in enumerate(self._loads):
            b.add_row(f"period_{i}", {self._period: 1.0, **{j: -c for j, c in terms.items()}}, 0.0, INF)
        if max_latency is not None:
            lat = {j: c for terms in busy for j, c in terms.items()}
            lat.update(moves.latency)
            b.add_row("max_latency", lat, -INF, max_latency)
        objective = np.zeros(b.num_vars)
        objective[self._period] = 1.0
        # Branch on the runs of the slowest roles first: their runs are the coarsest steps of
        # the period (measured: 3-5x fewer nodes than CBC's own choice at 4 roles x 60 layers).
        rank = {r: i for i, r in enumerate(sorted(costs, key=lambda r: _mean_layer_s(costs[r])))}  # fastest 0
        priority = np.zeros(b.num_vars, dtype=np.int64)
        for (a, e, r), j in self._run_var.items():
            priority[j] = 1 + rank[r]
        self.model: LinearModel = b.build(objective, priority)

    @property
    def num_runs(self) -> int:
        return len(self._runs)

    def placement_from_values(self, values: np.ndarray) -> list[Assignment]:
        chosen = sorted(self._runs[j] for j in range(len(self._runs)) if values[j] > 0.5)
        return [bundle for a, e, r in chosen for bundle in self.costs[r].bundles(a, e)]

    def values_of(self, placement: Sequence[Assignment], n_layers: int, source: int) -> np.ndarray | None:
        """The model's point for `placement` (its runs at their least compute), or None when
        one of its runs or moves is not in the model (above the cutoff)."""
        x = np.zeros(self.model.num_vars)
        runs = [(s, e, r) for r, s, e, _ in segments(placement)]
        holders = [source] + [r for _, _, r in runs] + [source]
        cuts = [0] + [s for s, _, _ in runs[1:]] + [n_layers]
        for j in itertools.chain((self._run_var.get(run) for run in runs),
                                 (self._moves.get(move) for move in zip(cuts, holders, holders[1:]))):
            if j is None:
                return None
            x[j] = 1.0
        x[self._period] = max(sum(c * x[j] for j, c in terms.items()) for terms in self._loads)
        return x
