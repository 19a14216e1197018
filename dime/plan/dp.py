"""The placement problem as a label-setting dynamic program over the chain of cuts: exact, in milliseconds.

Same problem as the ILP (problem.py): cut k (0..n) sits before layer k, a bundle i..e (at most
K layers) runs on a computing role d at one of its settings t, the input starts on the source s
and the output must come back to it. A *slot* j is a (role, setting) pair. The state after cut
c is (j, L): the last bundle ended at layer c-1, ran at slot j and had L layers. A label of a
state is a (latency, energy) pair of the chain of bundles that reaches it.

Bundle i..e at slot j, with L = e - i + 1 layers, follows state (j', L') at cut i when

    merge rule   j' != j, or L' + L > K           (unless bundle_sum: always)
    allowed      problem.allowed(i, e, role(j))  (compute, private layers, pins)

and costs bundle(j, i, e) + route(i, role(j'), role(j)), where route(k, a, b) is the fixed
least-latency route of cut k's bytes from a to b (network.route, the same one the ILP uses;
zero when a == b). Cut 0's only predecessor is the source with no slot; at cut n the output
travels route(n, role(j), s). So

    V(e+1, j, L) = bundle(j, i, e) + min over admissible (j', L') at cut i of
                   [ V(i, j', L') + route(i, role(j'), role(j)) ]

The admissible set splits in three parts that are reduced once per cut and shared by all the
bundles starting there: every label of another role (reduced per role, then moved along the
route), every label of another setting of the same role, and the labels of slot j itself whose
last bundle is longer than K - L (a suffix over L'). The merge rule only looks at two
neighbouring bundles, so (j, L) is all the history a placement's future depends on: the
costs are sums of per-bundle and per-cut terms, and every constraint is a condition on a cut
and its two neighbours. Hence the recursion is exact (Bellman), for latency, for energy, and for
any lexicographic order of the two (the scalar path breaks ties by the other quantity).

With budgets the scalar recursion is not enough: a label may be worse in latency and still the
only way to stay within an energy budget. Then each state keeps the Pareto set of its labels
(no label both slower and hungrier than another), which is exact for the same reason: if label
a dominates b at a state, every completion of b is dominated by the same completion of a. The
Pareto set at cut n, moved back to the source, is the whole latency-energy front in one pass;
every budgeted optimum (least latency within an energy budget, least energy within a latency
budget) is a point of it and is read off it.

What the DP cannot hold are constraints that couple bundles far apart on the chain: memory
limits (a sum over all of a device's bundles), one setting per device, and the pipelined period
(a max of per-device sums). `dp_unsupported` names them; the ILP solves those.

Every reported number comes from re-evaluating the chosen placement with dime.core.costs.evaluate,
as for the ILP; budgets compare with budget_with_slack as the ILP and brute force do.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from dime.core.costs import Assignment, Evaluation, bundles, check_chain
from dime.errors import InfeasibleError, UsageError
from dime.plan.solution import Solution
from dime.plan.statement import (
    ENERGY,
    LATENCY,
    THROUGHPUT,
    PlacementProblem,
    budget_with_slack,
    energy_needed_error,
    infeasible_error,
    no_placement_error,
    objective_value,
)

log = logging.getLogger(__name__)

DP = "dp"
OPTIMAL = "optimal"
_INF = math.inf
_CINF = complex(_INF, _INF)
THROUGHPUT_REASON = "the throughput objective (a max over the devices' sums)"


def _structure_unsupported(problem: PlacementProblem) -> str | None:
    """The coupling the DP cannot hold, whatever the objective (None: none)."""
    limited = [r.name for r in problem.roles if r.memory_bytes is not None]
    if limited:
        return f"memory limits (memory_bytes on {', '.join(limited)})"
    if problem.one_setting_per_device:
        return "one setting per device"
    return None


def dp_unsupported(problem: PlacementProblem, objective: str | None = None) -> str | None:
    """None when the DP solves `problem` exactly (under `objective`, default the problem's),
    else the constraint it cannot hold."""
    if (objective or problem.objective) == THROUGHPUT:
        return THROUGHPUT_REASON
    return _structure_unsupported(problem)


def unsupported_error(reason: str) -> UsageError:
    return UsageError(f"the dp solver cannot hold {reason}; use --solver cbc|highs|gurobi")


def _within(value: float, budget: float | None) -> bool:
    return budget is None or value <= budget_with_slack(budget)


@dataclass(frozen=True)
class Front:
    """The latency-energy Pareto front: no point is both slower and hungrier than another.

    Sorted by latency ascending (so energy descending). Without energy in the profiles it is the
    single min-latency point, with NaN energy.
    """

    points: tuple[Solution, ...]

    @property
    def has_energy(self) -> bool:
        return bool(self.points) and not math.isnan(self.points[0].evaluation.energy_j)

    def _need_energy(self, what: str) -> None:
        if self.points and not self.has_energy:
            raise UsageError(f"{what} needs energy, and the energy-counted devices' profiles have none")

    def min_latency(self, max_energy_j: float | None = None) -> Solution | None:
        """The least-latency point within the energy budget (None: no point meets it)."""
        if max_energy_j is not None:
            self._need_energy("an energy budget")
        for p in self.points:
            if max_energy_j is None or _within(p.evaluation.energy_j, max_energy_j):
                return _as_objective(p, LATENCY)
        return None

    def min_energy(self, max_latency_s: float | None = None) -> Solution | None:
        """The least-energy point within the latency budget (None: no point meets it)."""
        self._need_energy("least energy")
        best = None
        for p in self.points:  # latency ascending: the last one within the budget has the least energy
            if not _within(p.evaluation.latency_s, max_latency_s):
                break
            best = p
        return _as_objective(best, ENERGY) if best is not None else None


def _as_objective(sol: Solution, objective: str) -> Solution:
    if sol.objective_name == objective:
        return sol
    return dataclasses.replace(sol, objective_name=objective, objective=objective_value(objective, sol.evaluation))


# -- the problem as arrays ------------------------------------------------------------------------


class _Chain:
    """A problem's costs as arrays: each slot's bundles by (start, length), each cut's routes."""

    def __init__(self, problem: PlacementProblem) -> None:
        p = problem
        table, roles, net = p.table, p.roles, p.network
        n, K = table.n_layers, p.k
        self.problem, self.n, self.k, self.source = p, n, K, p.source
        self.slots = [(r, t) for r, role in enumerate(roles) if role.compute for t in role.settings]
        index = {s: j for j, s in enumerate(self.slots)}
        J, D = len(self.slots), len(roles)
        self.slot_role = np.array([r for r, _ in self.slots], dtype=np.int64)
        # lat/en[j, i, L-1]: the bundle of L layers from layer i at slot j; inf where not allowed.
        lat = np.full((J, n, K), _INF)
        en = np.full((J, n, K), _INF)
        spans = bundles(n, K)
        first = np.array([s for s, _ in spans], dtype=np.int64)
        size = np.array([e - s for s, e in spans], dtype=np.int64)
        missing: list[tuple[int, int, int]] = []  # (bundle, role, setting index) of a missing energy
        for r, role in enumerate(roles):
            ok = np.flatnonzero([p.allowed(s, e, r) for s, e in spans])
            for ti, t in enumerate(role.settings):
                j = index[(r, t)]
                costs = [table.cost(role.device, t, *spans[b]) for b in ok]
                lat[j, first[ok], size[ok]] = [c.latency_s for c in costs]
                if not role.energy:
                    en[j, first[ok], size[ok]] = 0.0
                    continue
                energies = np.array([math.nan if c.energy_j is None else c.energy_j for c in costs])
                en[j, first[ok], size[ok]] = energies
                gaps = np.flatnonzero(np.isnan(energies))
                if len(gaps):
                    missing.append((int(ok[gaps[0]]), r, ti))
        self.lat, self.en = lat, en
        self.energy_missing: str | None = None
        if missing:  # name the first in the ILP's order (bundle, role, setting), so that both say the same
            b, r, ti = min(missing)
            role = roles[r]
            self.energy_missing = (f"the {role.name} profile has no energy for {role.device} ({role.settings[ti]}), "
                                   f"e.g. bundle {table.bundle_name(*spans[b])}")
        # route_lat/en[k, a, b]: cut k moved from role a to role b (0 when a == b; inf to or from a relay).
        energy = [bool(r.energy) for r in roles]
        compute = [r for r, role in enumerate(roles) if role.compute]
        by_bytes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for nbytes in set(table.cut_bytes):
            rl, re_ = np.full((D, D), _INF), np.full((D, D), _INF)
            for a in compute:
                rl[a, a] = re_[a, a] = 0.0
                for b in compute:
                    if a != b:
                        route = net.route(a, b, nbytes, energy)
                        rl[a, b], re_[a, b] = route.latency_s, route.energy_j
            by_bytes[nbytes] = (rl, re_)
        self.route_lat = np.stack([by_bytes[b][0] for b in table.cut_bytes])
        self.route_en = np.stack([by_bytes[b][1] for b in table.cut_bytes])

    def placement(self, steps: list[tuple[int, int, int]]) -> list[Assignment]:
        """(start, end, slot) bundles, in any order, as a checked chain of Assignments."""
        out = [Assignment(s, e, self.slots[j][0], self.slots[j][1]) for s, e, j in sorted(steps)]
        check_chain(out, self.n)
        return out


# -- scalar: least latency or least energy --------------------------------------------------------


def _least(ch: _Chain, primary: str) -> list[Assignment] | None:
    """The least-latency (ties: least energy) or least-energy (ties: least latency) placement."""
    if primary == LATENCY:
        other = np.where(np.isnan(ch.en), 0.0, ch.en)  # missing energy: no tie-break by it
        return _scalar(ch, _lex(ch.lat, other), _lex(ch.route_lat, ch.route_en))
    return _scalar(ch, _lex(ch.en, ch.lat), _lex(ch.route_en, ch.route_lat))


def _weighted(ch: _Chain, w_lat: float, w_en: float) -> list[Assignment] | None:
    """The least w_lat * latency + w_en * energy placement (both weights > 0): a front point."""
    return _scalar(ch, _lex(w_lat * ch.lat + w_en * ch.en, ch.lat),
                   _lex(w_lat * ch.route_lat + w_en * ch.route_en, ch.route_lat))


def _scalar(ch: _Chain, cost: np.ndarray, route: np.ndarray) -> list[Assignment] | None:
    """The lexicographic least placement, or None when nothing is allowed.

    `cost[j, i, L-1]` and `route[k, a, b]` hold (primary, tie-break) pairs as complex numbers:
    numpy orders complex numbers lexicographically and adds them componentwise, which is
    exactly the order and the sums the recursion needs. The forward pass keeps values only;
    the path is recovered backwards, one cut at a time.
    """
    n, K, J, src = ch.n, ch.k, len(ch.slots), ch.source
    sr = ch.slot_role
    D = route.shape[1]
    roles_c = sorted(set(sr.tolist()))
    # The slots of each computing role, padded with J (an always-inf sentinel) to one width.
    width = max(int(np.sum(sr == r)) for r in roles_c)
    pad = np.full((len(roles_c), width), J, dtype=np.int64)
    for i, r in enumerate(roles_c):
        js = np.flatnonzero(sr == r)
        pad[i, : len(js)] = js
    mine = np.searchsorted(roles_c, sr)  # each slot's row in pad
    cols, rows = np.arange(len(roles_c)), np.arange(J)
    no_stay = np.where(np.eye(D, dtype=bool), _CINF, 0)  # "another role": not the same one

    value = np.full((n + 1, J, K), _CINF)
    lengths = np.arange(1, K + 1)
    for k in range(n):
        if k == 0:
            entry = np.repeat(route[0, src, sr][:, None], K, axis=1)
        else:
            v = value[k]
            best = v.min(axis=1)  # per slot, over the last bundle's lengths
            padded = np.append(best, _CINF)[pad]
            first = padded.argmin(axis=1)
            role_best, role_best_slot = padded[cols, first], pad[cols, first]
            padded[cols, first] = _CINF
            role_second = padded.min(axis=1)
            by_role = np.full(D, _CINF)
            by_role[roles_c] = role_best
            moved = (by_role[:, None] + route[k] + no_stay).min(axis=0)[sr]  # another role, along cut k's route
            same_role = np.where(role_best_slot[mine] == rows, role_second[mine], role_best[mine])  # another setting
            base = np.minimum(moved, same_role)[:, None]
            if ch.problem.bundle_sum:
                entry = np.repeat(np.minimum(base[:, 0], best)[:, None], K, axis=1)
            else:
                # new length L admits the slot's own labels with last length >= K - L + 1: a suffix
                entry = np.minimum(base, np.minimum.accumulate(v[:, ::-1], axis=1))
        ls = lengths[: min(K, n - k)]
        value[k + ls, :, ls - 1] = (entry + cost[:, k, :])[:, ls - 1].T
    final = value[n] + route[n, sr, src][:, None]
    j, last = np.unravel_index(final.argmin(), final.shape)
    if math.isinf(final[j, last].real):
        return None
    steps, c, j, L = [], n, int(j), int(last) + 1
    while True:
        k = c - L
        steps.append((k, c - 1, j))
        if k == 0:
            return ch.placement(steps)
        # the predecessor: the least admissible label at cut k, moved to slot j's role
        cand = value[k] + route[k, sr, sr[j]][:, None]
        if not ch.problem.bundle_sum:
            cand[j, : K - L] = _CINF
        pj, pl = np.unravel_index(cand.argmin(), cand.shape)
        c, j, L = k, int(pj), int(pl) + 1


def _lex(primary: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(primary, other) as complex numbers; inf + inf j (above anything finite) where primary is inf."""
    z = np.empty(primary.shape, dtype=complex)
    z.real, z.imag = primary, other
    z[np.isinf(primary)] = _CINF
    return z


# -- Pareto labels: the whole front ---------------------------------------------------------------


def _pareto(group: np.ndarray, lat: np.ndarray, en: np.ndarray) -> np.ndarray:
    """Indices of the labels no other label of the same group weakly dominates (one per tie),
    sorted by group, then latency ascending. `group` holds small non-negative ints."""
    if len(lat) == 0:
        return np.zeros(0, dtype=np.int64)
    # By latency, then stably by group: several times faster than np.lexsort, and ties in
    # latency are settled below.
    order = np.argsort(lat)
    order = order[np.argsort(group[order].astype(np.int32), kind="stable")]
    g = group[order]
    # A label stays when its energy is below every earlier one's in its group. The running
    # minimum of (-group, energy), ordered lexicographically as complex numbers, restarts at
    # each group (its -group is below all before it) and within a group is the least energy.
    key = np.empty(len(order), dtype=complex)
    key.real, key.imag = -g, en[order]
    keep = np.empty(len(order), dtype=bool)
    keep[0] = True
    keep[1:] = key[1:] < np.minimum.accumulate(key)[:-1]
    kept = np.flatnonzero(keep)
    # Kept labels of one group and one latency came in any order, energy falling: keep the last.
    lat_k, g_k = lat[order[kept]], g[kept]
    last = np.append((g_k[1:] != g_k[:-1]) | (lat_k[1:] != lat_k[:-1]), True)
    return order[kept[last]]


@dataclass
class _Labels:
    """Labels of one cut (or candidates for some states): costs, slot, last length, origin."""

    lat: np.ndarray
    en: np.ndarray
    slot: np.ndarray
    length: np.ndarray
    origin: np.ndarray  # index into the labels of the cut the last bundle started at

    def take(self, idx: np.ndarray) -> _Labels:
        return _Labels(self.lat[idx], self.en[idx], self.slot[idx], self.length[idx], self.origin[idx])

    @staticmethod
    def concat(parts: list[_Labels]) -> _Labels:
        if not parts:
            return _Labels(np.zeros(0), np.zeros(0), *(np.zeros(0, np.int64) for _ in range(3)))
        return _Labels(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(_Labels)))


def _expand(group_of: np.ndarray, n_groups: int, src_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For labels sorted by group (`group_of`), every (label, pair) with the label in pair's source
    group: (label indices, pair indices)."""
    counts = np.bincount(group_of, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cnt = counts[src_group]
    pair = np.repeat(np.arange(len(src_group)), cnt)
    within = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    return starts[src_group][pair] + within, pair


def _pairs(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([a for a, _ in pairs], dtype=np.int64), np.array([b for _, b in pairs], dtype=np.int64)


@dataclass(frozen=True)
class _Bounds:
    """What a label must beat to matter: budgets, and front points already known.

    A label at cut k on role r cannot end below (its latency + lat_to_go[k, r], its energy +
    en_to_go[k, r]), each the least to go on its own (merge rule relaxed: a lower bound). When
    that ideal point breaks a budget, or a known placement weakly dominates it, no completion of
    the label adds a point to the front (a known point stands for any equal one), so it is dropped.
    """

    lat_to_go: np.ndarray  # (n + 1, D)
    en_to_go: np.ndarray
    known_lat: np.ndarray  # known points by latency ascending
    known_least_en: np.ndarray  # the least energy among known points up to each
    max_latency_s: float = _INF
    max_energy_j: float = _INF

    def keep(self, k: int, lat: np.ndarray, en: np.ndarray, role: np.ndarray) -> np.ndarray:
        ideal_lat, ideal_en = lat + self.lat_to_go[k, role], en + self.en_to_go[k, role]
        ok = (ideal_lat <= self.max_latency_s) & (ideal_en <= self.max_energy_j)
        i = np.searchsorted(self.known_lat, ideal_lat, side="right") - 1
        dominated = (i >= 0) & (self.known_least_en[np.maximum(i, 0)] <= ideal_en)
        return np.flatnonzero(ok & ~dominated)


def _to_go(ch: _Chain, cost: np.ndarray, route: np.ndarray) -> np.ndarray:
    """[k, r]: the least cost from cut k, data on role r, to the output back on the source,
    with the merge rule relaxed (so a lower bound of every completion)."""
    n, K, sr = ch.n, ch.k, ch.slot_role
    out = np.full((n + 1, route.shape[1]), _INF)
    out[n] = route[n, :, ch.source]
    for c in range(n - 1, -1, -1):
        ls = np.arange(1, min(K, n - c) + 1)
        after = (cost[:, c, : len(ls)] + out[c + ls][:, sr].T).min(axis=1)  # per slot: a bundle, then the rest
        out[c] = (route[c][:, sr] + after[None, :]).min(axis=1)
    return out


def _front_placements(ch: _Chain, bounds: _Bounds | None = None) -> list[list[Assignment]]:
    """The placements of the latency-energy front (by the DP's own sums), latency ascending;
    with `bounds`, only those no known point stands for, within the budgets."""
    n, K, J, src = ch.n, ch.k, len(ch.slots), ch.source
    sr = ch.slot_role
    roles_c = np.array(sorted(set(sr.tolist())), dtype=np.int64)
    # pairs (another role -> target role) and (another slot of the same role -> target slot)
    rr_src, rr_dst = _pairs([(a, b) for a in roles_c for b in roles_c if a != b])
    ss_src, ss_dst = _pairs([(a, b) for a in range(J) for b in range(J) if a != b and sr[a] == sr[b]])
    slot_ids = np.arange(J)
    D = ch.route_lat.shape[1]

    cuts: list[_Labels | None] = [None] * (n + 1)
    pending: list[list[_Labels]] = [[] for _ in range(n + 1)]
    cuts[0] = _Labels(np.zeros(1), np.zeros(1), np.array([-1]), np.zeros(1, np.int64), np.array([-1]))
    for k in range(n):
        if k > 0:
            cuts[k] = _Labels.concat(pending[k])
            pending[k] = []
            if bounds is not None:
                cuts[k] = cuts[k].take(bounds.keep(k, cuts[k].lat, cuts[k].en, sr[cuts[k].slot]))
        here = cuts[k]
        assert here is not None
        if k == 0:
            # entry for every slot: the input moved from the source; one label, any length follows
            base = _Labels(ch.route_lat[0, src, sr], ch.route_en[0, src, sr], slot_ids.copy(),
                           np.zeros(J, np.int64), np.zeros(J, np.int64))
            by_len = [base] * K
        else:
            idx = np.arange(len(here.lat))
            per_slot = _pareto(here.slot, here.lat, here.en)
            sf = here.take(per_slot)
            sf.origin = idx[per_slot]
            per_role = _pareto(sr[sf.slot], sf.lat, sf.en)
            rf = sf.take(per_role)
            rf_role = sr[rf.slot]
            # another role, moved along cut k's route, reduced per target role
            li, pi = _expand(np.searchsorted(roles_c, rf_role), len(roles_c), np.searchsorted(roles_c, rr_src))
            a, b = rf_role[li], rr_dst[pi]
            moved = _Labels(rf.lat[li] + ch.route_lat[k, a, b], rf.en[li] + ch.route_en[k, a, b], b,
                            np.zeros(len(li), np.int64), rf.origin[li])
            keep = _pareto(moved.slot, moved.lat, moved.en)  # slot holds the target role here
            moved = moved.take(keep)
            # to every slot of the target role; plus another setting of the same role
            li, pi = _expand(moved.slot, D, sr)
            into = moved.take(li)
            into.slot = slot_ids[pi]
            li, pi = _expand(sf.slot, J, ss_src)
            other = sf.take(li)
            other.slot = ss_dst[pi]
            cand = _Labels.concat([into, other])
            base = cand.take(_pareto(cand.slot, cand.lat, cand.en))
            if ch.problem.bundle_sum:
                cand = _Labels.concat([base, sf])
                by_len = [cand.take(_pareto(cand.slot, cand.lat, cand.en))] * K
            else:
                # new length L admits the slot's own labels with last length >= K - L + 1
                by_len, cur = [], base
                for L in range(1, K + 1):
                    own = np.flatnonzero(here.length == K - L + 1)
                    if len(own):
                        mine = here.take(own)
                        mine.origin = own
                        cand = _Labels.concat([cur, mine])
                        cur = cand.take(_pareto(cand.slot, cand.lat, cand.en))
                    by_len.append(cur)
        for L in range(1, min(K, n - k) + 1):
            e = by_len[L - 1]
            lat = e.lat + ch.lat[e.slot, k, L - 1]
            ok = np.isfinite(lat)
            if ok.any():
                pending[k + L].append(_Labels(lat[ok], (e.en + ch.en[e.slot, k, L - 1])[ok], e.slot[ok],
                                              np.full(int(ok.sum()), L), e.origin[ok]))
    if not pending[n]:
        return []
    last = _Labels.concat(pending[n])
    cuts[n] = last
    lat = last.lat + ch.route_lat[n, sr[last.slot], src]
    en = last.en + ch.route_en[n, sr[last.slot], src]
    front = _pareto(np.zeros(len(lat), np.int64), lat, en)
    out = []
    for i in front:
        steps, c, i = [], n, int(i)
        while c > 0:
            lab = cuts[c]
            assert lab is not None
            L = int(lab.length[i])
            steps.append((c - L, c - 1, int(lab.slot[i])))
            i, c = int(lab.origin[i]), c - L
        out.append(ch.placement(steps))
    log.debug("dp front: %d points", len(out))
    return out


# -- the solver ------------------------------------------------------------------------------------


Point = tuple[list[Assignment], Evaluation]
_MARGIN = 1 + 1e-12  # bounds compare the DP's sums: a hair above the budgets, never below
# Weights of energy against latency (each scaled by its least value) for the known points.
_RATIOS = tuple(4.0 ** m for m in range(-3, 4))


def _cap(budget: float | None) -> float:
    return _INF if budget is None else budget_with_slack(budget) * _MARGIN


def _pareto_points(points: list[Point]) -> list[Point]:
    """The points no other weakly dominates, by their evaluated numbers, latency ascending."""
    kept: list[Point] = []
    least = _INF
    for placement, ev in sorted(points, key=lambda x: (x[1].latency_s, x[1].energy_j)):
        if ev.energy_j < least:
            kept.append((placement, ev))
            least = ev.energy_j
    return kept


class DpSolver:
    """The DP of one problem's structure; budgets and the objective come with each solve.

    Keeps the arrays, the scalar optima and the front, so that re-solving under other budgets
    (a sweep) reads them off instead of running again.
    """

    def __init__(self, problem: PlacementProblem) -> None:
        reason = _structure_unsupported(problem)
        if reason:
            raise unsupported_error(reason)
        self.problem = problem
        self._chain: _Chain | None = None
        self._best: dict[str, Solution | None] = {}
        self._known: list[Point] | None = None
        self._to_go: tuple[np.ndarray, np.ndarray] | None = None
        self._front: Front | None = None
        self._budgeted = 0  # solves with a budget on the other quantity so far

    @property
    def chain(self) -> _Chain:
        if self._chain is None:
            self._chain = _Chain(self.problem)
        return self._chain

    @property
    def has_energy(self) -> bool:
        """Whether every allowed bundle of an energy-counted role has an energy."""
        return self.chain.energy_missing is None

    def _check_energy(self) -> None:
        if self.chain.energy_missing:
            raise energy_needed_error(self.chain.energy_missing)

    def _solution(self, point: Point, objective: str, t0: float) -> Solution:
        placement, ev = point
        return Solution(status=OPTIMAL, objective=objective_value(objective, ev), objective_name=objective,
                        evaluation=ev, solver=DP, solve_time_s=time.perf_counter() - t0, placement=tuple(placement))

    def _point(self, placement: list[Assignment]) -> Point:
        return placement, self.problem.evaluate(placement)

    def best(self, quantity: str) -> Solution | None:
        """The least latency or least energy placement, budgets aside (None: none is allowed)."""
        if quantity not in self._best:
            t0 = time.perf_counter()
            if quantity == ENERGY:
                self._check_energy()
            placement = _least(self.chain, quantity)
            self._best[quantity] = None if placement is None else self._solution(self._point(placement), quantity, t0)
        return self._best[quantity]

    # -- the front ---------------------------------------------------------------------------------

    def _known_points(self) -> list[Point]:
        """Front points from scalar solves: the two least placements and weighted sums between."""
        if self._known is None:
            lat, en = self.best(LATENCY), self.best(ENERGY)
            if lat is None or en is None:
                self._known = []
                return self._known
            points = [(list(lat.placement), lat.evaluation), (list(en.placement), en.evaluation)]
            scale_lat = lat.evaluation.latency_s or 1.0
            scale_en = en.evaluation.energy_j or lat.evaluation.energy_j or 1.0
            seen = {lat.placement, en.placement}
            for ratio in _RATIOS:
                placement = _weighted(self.chain, 1.0 / scale_lat, ratio / scale_en)
                if placement is not None and tuple(placement) not in seen:
                    seen.add(tuple(placement))
                    points.append(self._point(placement))
            self._known = _pareto_points(points)
        return self._known

    def _front_within(self, max_latency_s: float, max_energy_j: float) -> list[Point]:
        """The front's points within the caps (DP sums; _cap of the budgets), and the known points."""
        ch = self.chain
        if self._to_go is None:
            self._to_go = (_to_go(ch, ch.lat, ch.route_lat), _to_go(ch, ch.en, ch.route_en))
        known = self._known_points()
        known_lat = np.array([ev.latency_s for _, ev in known])
        known_en = np.minimum.accumulate(np.array([ev.energy_j for _, ev in known])) if known else np.zeros(0)
        bounds = _Bounds(*self._to_go, known_lat, known_en, max_latency_s, max_energy_j)
        return _pareto_points(known + [self._point(p) for p in _front_placements(ch, bounds)])

    def front(self, max_latency_s: float | None = None, max_energy_j: float | None = None) -> Front:
        """The latency-energy front within the budgets (one point without energy). The whole
        front is kept for later calls; with budgets and none kept, only their part is searched."""
        budgeted = max_latency_s is not None or max_energy_j is not None
        if self._front is None and budgeted and not self.chain.energy_missing:
            t0 = time.perf_counter()
            points = self._front_within(_cap(max_latency_s), _cap(max_energy_j))
            elapsed = time.perf_counter() - t0
            front = Front(tuple(dataclasses.replace(self._solution(p, self._front_objective(), t0),
                                                    solve_time_s=elapsed) for p in points))
        else:
            front = self._whole_front()
        return Front(tuple(p for p in front.points if _within(p.evaluation.latency_s, max_latency_s)
                           and (max_energy_j is None or _within(p.evaluation.energy_j, max_energy_j))))

    def _front_objective(self) -> str:
        return self.problem.objective if self.problem.objective in (LATENCY, ENERGY) else LATENCY

    def _whole_front(self) -> Front:
        if self._front is None:
            t0 = time.perf_counter()
            if self.chain.energy_missing:
                best = self.best(LATENCY)
                note = f"no energy to trade ({self.chain.energy_missing}): the front is the least-latency point"
                self._front = Front((dataclasses.replace(best, note=note),) if best is not None else ())
            else:
                points = self._front_within(_INF, _INF)
                elapsed = time.perf_counter() - t0
                self._front = Front(tuple(
                    dataclasses.replace(self._solution(p, self._front_objective(), t0), solve_time_s=elapsed)
                    for p in points))
        return self._front

    # -- solving -----------------------------------------------------------------------------------

    def solve(self, objective: str, max_latency_s: float | None = None,
              max_energy_j: float | None = None) -> Solution:
        """The optimum under `objective` and the budgets; InfeasibleError naming the least feasible value."""
        if objective == THROUGHPUT:
            raise unsupported_error(THROUGHPUT_REASON)
        t0 = time.perf_counter()
        if objective == ENERGY or max_energy_j is not None:
            self._check_energy()
        other = max_energy_j if objective == LATENCY else max_latency_s
        if other is None:  # no budget on the other quantity: the scalar path, then its own budget
            sol = self.best(objective)
            own = max_latency_s if objective == LATENCY else max_energy_j
            if sol is not None and _within(objective_value(objective, sol.evaluation), own):
                return dataclasses.replace(sol, solve_time_s=time.perf_counter() - t0)
        else:
            sol = self._budgeted_solve(objective, max_latency_s, max_energy_j)
            if sol is not None:
                return dataclasses.replace(sol, solve_time_s=time.perf_counter() - t0)
        raise self._explain_infeasible(max_latency_s, max_energy_j)

    def _budgeted_solve(self, objective: str, max_latency_s: float | None,
                        max_energy_j: float | None) -> Solution | None:
        """Least latency within an energy budget or least energy within a latency budget (and its
        own budget, if any), from the front: the whole front, kept, from the second such solve on
        (a sweep), else only the part that can beat the best known point within the budgets."""
        t0 = time.perf_counter()
        self._budgeted += 1
        if self._front is None and self._budgeted == 1:
            if self.best(LATENCY) is None:
                return None
            lat_cap, en_cap = _cap(max_latency_s), _cap(max_energy_j)
            feasible = [ev for _, ev in self._known_points()
                        if _within(ev.latency_s, max_latency_s) and _within(ev.energy_j, max_energy_j)]
            if feasible and objective == LATENCY:
                lat_cap = min(lat_cap, min(ev.latency_s for ev in feasible) * _MARGIN)
            elif feasible:
                en_cap = min(en_cap, min(ev.energy_j for ev in feasible) * _MARGIN)
            front = Front(tuple(self._solution(p, objective, t0) for p in self._front_within(lat_cap, en_cap)))
        else:
            front = self._whole_front()
        sol = front.min_latency(max_energy_j) if objective == LATENCY else front.min_energy(max_latency_s)
        if sol is None or not (_within(sol.evaluation.latency_s, max_latency_s)
                               and _within(sol.evaluation.energy_j, max_energy_j)):
            return None
        return sol

    def _explain_infeasible(self, max_latency_s: float | None, max_energy_j: float | None) -> InfeasibleError:
        least_lat = self.best(LATENCY)
        if least_lat is None:
            return no_placement_error()
        least_en = self.best(ENERGY) if max_energy_j is not None else None
        within = None
        if max_latency_s is not None and max_energy_j is not None:
            within = self._budgeted_solve(LATENCY, None, max_energy_j)
        return infeasible_error(
            max_latency_s, max_energy_j, least_lat.evaluation.latency_s,
            least_en.evaluation.energy_j if least_en is not None else None,
            within.evaluation.latency_s if within is not None else None,
        )


def solve_front(problem: PlacementProblem) -> Front:
    """The latency-energy front of `problem`, within its budgets (all of it without budgets).

    The objective plays no part. UsageError when the problem has a constraint the DP cannot
    hold (memory limits, one setting per device), InfeasibleError when the budgets admit no point.
    """
    reason = _structure_unsupported(problem)
    if reason:
        raise UsageError(f"the latency-energy front needs the dp solver, which cannot hold {reason}")
    if problem.counts_wakeup:
        log.warning("the front is the DP's, without wake-up after idling; each point's numbers count it")
    solver = DpSolver(problem)
    if problem.max_energy_j is not None:
        solver._check_energy()
    front = solver.front(problem.max_latency_s, problem.max_energy_j)
    if not front.points:
        raise solver._explain_infeasible(problem.max_latency_s, problem.max_energy_j)
    return front
