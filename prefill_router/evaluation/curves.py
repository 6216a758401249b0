"""Cost–accuracy curves and their area metrics (method.md §6–§7).

Axis letters: N prompts, K targets, T tolerances, G λ values.

Routing rules swept here (private, vectorised re-implementations of method.md §6; the public
single-operating-point policies live in ``prefill_router.router.policies``):
    * tolerance: E_q(τ) = {k : p̂_{q,k} ≥ p_max(q) − τ} evaluated in float64 exactly as the toolkit and
      ``router.policies.route_tolerance``; c_q(τ) = argmin_{k ∈ E_q(τ)} rank_cost_k, ties → lowest index.
      The grid is every distinct value of p_max − p̂_{q,k} on the evaluated rows (toolkit). The sweep
      replaces each gap by the exact float64 switch-on tolerance τ*_{q,k} = min{τ : fl(p_max − τ) ≤ p̂_{q,k}}
      (bisection on the bit pattern), so its choices equal the per-τ rule bit for bit, also when
      probabilities sit on a grid such as k/5 where p_max − p̂ and p̂ ≥ p_max − τ round differently.
    * λ-utility: u_{q,k} = λ·p̂_{q,k} − (1−λ)·ĉ_{q,k}, ĉ = min–max normalised cost over all entries of the
      cost table (0 when all costs are equal); c_q(λ) = argmax_k u, ties (within 1e-12) → cheaper, then
      lowest index. Both rules match ``prefill_router.router.policies`` (cross-checked in the tests).

Area metrics (all on the same curve points):
    * P-AUCCC (toolkit ``_padded_auc``): curve deduplicated (rounded to 1e-10), stably sorted by cost,
      not made monotone. If there are no points or the first cost > c_min, prepend (c_min, floor); keep
      the points with c_min ≤ cost ≤ c_max; if there are no points or the last cost < c_max, append
      (c_max, accuracy of the rightmost point, before range filtering). The first/last tests use the
      unfiltered curve, exactly as the toolkit. P-AUCCC = trapz(acc − floor, cost) / (c_max − c_min);
      with a single padded point it is that point's acc − floor; 0 when c_max ≤ c_min. Degenerate cases the
      toolkit crashes on: range tests allow 1e-9 relative round-off; a curve with no point in the range
      but points on both sides is read by linear interpolation at c_min and c_max.
      floor = accuracy of the cheapest model (argmin cost, ties → lowest index).
    * Pareto-AUCCC: the same integral over the static-model frontier (stably sorted by cost, keep a
      point iff its accuracy is strictly above every earlier kept one). MDP = P-AUCCC − Pareto-AUCCC;
      PDP = AUCCC(frontier(models ∪ router curve)) − P-AUCCC. Normalised P-AUCCC = P-AUCCC / (oracle − floor).
    * AIQ (RouterBench): non-decreasing convex hull R̃ of the (cost, quality) points: upper convex hull,
      then vertices not strictly above their predecessor are dropped; between vertices R̃ interpolates
      linearly (random mixing of two operating points); right of the last vertex it stays flat; left of
      the first vertex the router cannot operate and R̃ = 0. Variants (name them when reporting):
      ``'range'`` AIQ = ∫_{c_min}^{c_max} R̃ / (c_max − c_min) over the single models' cost range
      (RouterBench paper); ``'zero_to_max'`` AIQ = ∫_0^{c_max} R̃ / c_max (our reading of RouterBench's
      code, which extends hulls flat to the largest cost and divides by it).
    * RouteLLM APGR / CPT for 2-target pools: see ``routellm_curve``.
"""
from __future__ import annotations

import numpy as np

from prefill_router.router.policies import route_tolerance as tolerance_choices  # noqa: F401 (re-export)
from prefill_router.router.policies import tolerance_grid

__all__ = [
    "cost_order", "tolerance_grid", "tolerance_choices", "switch_on_tolerance", "ToleranceSweep", "tolerance_sweep",
    "normalise_costs",
    "utility_choices", "utility_sweep", "dedup_sort_curve", "pareto_frontier", "padded_auc",
    "p_auccc_family", "nondecreasing_convex_hull", "aiq", "routellm_curve", "apgr", "cpt",
]

_ROUND = 10  # decimals used to deduplicate curve points (toolkit)
_TIE_ATOL = 1e-12  # utilities this close count as tied (router.policies)


# ----------------------------------------------------------------------------- tolerance rule
def _as_cost_matrix(costs, N: int, K: int) -> np.ndarray:
    c = np.asarray(costs, dtype=np.float64)
    if c.shape == (K,):
        c = np.broadcast_to(c, (N, K))
    if c.shape != (N, K):
        raise ValueError(f"costs must be [K]={K} prices or an [N, K]=({N}, {K}) matrix; got {c.shape}.")
    return c


def cost_order(costs, N: int, K: int) -> np.ndarray:
    """[N, K] target indices per row sorted by (cost, index): cheapest first, ties → lowest index."""
    c = _as_cost_matrix(costs, N, K)
    idx = np.broadcast_to(np.arange(K), (N, K))
    return np.lexsort((idx, c), axis=-1)


def switch_on_tolerance(P) -> np.ndarray:
    """[N, K] τ*_{q,k} = the smallest float64 τ ≥ 0 with fl(p_max(q) − τ) ≤ p̂_{q,k}.

    Target k is in E_q(τ) iff τ ≥ τ*_{q,k} (fl(p_max − τ) is monotone in τ). Found by bisection over the
    int64 bit patterns of non-negative doubles (ordered like their values), at most 64 vectorised steps,
    from the bracket [0, p_max − p̂ + 2·ulp(p_max)], whose upper end provably satisfies the condition.
    """
    P = np.asarray(P, dtype=np.float64)
    pmax = P.max(axis=1, keepdims=True)
    cond = lambda t: (pmax - t) <= P  # noqa: E731  (the toolkit's eligibility test, rearranged)
    hi_val = (pmax - P) + 2.0 * np.spacing(np.abs(pmax))
    hi = np.ascontiguousarray(np.broadcast_to(hi_val, P.shape)).view(np.int64).copy()
    lo = np.full(P.shape, -1, dtype=np.int64)  # sentinel just below τ = 0 (condition false there)
    hi[cond(np.zeros(P.shape))] = 0  # τ* = 0 (the argmax and its ties): nothing to search
    active = hi - lo > 1
    while active.any():
        mid = lo + (hi - lo) // 2
        ok = cond(np.maximum(mid, 0).view(np.float64)) & (mid >= 0)
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid, lo)
        active = hi - lo > 1
    return hi.view(np.float64)


class ToleranceSweep:
    """The tolerance rule's event structure for fixed P and rank costs, evaluated for any values/weights.

    With targets of row q in (cost, index) order o_0, o_1, … and m_j = min_{i ≤ j} τ*_{q,o_i} (non-increasing;
    τ* from ``switch_on_tolerance``), the choice is position j(τ) = #{j : m_j > τ}, hence
        v_{q, c_q(τ)} = v_{q,o_0} + Σ_{i ≥ 1} (v_{q,o_i} − v_{q,o_{i−1}})·[m_{i−1} > τ],
    and Σ_q w_q·v_{q,c_q(τ)} is a base plus a suffix sum of the events (m, w·Δv) sorted by m. The sort is
    done once here; each call is O(N·K + T) (so bootstrap replicates only change the row weights).
    """

    def __init__(self, P, rank_costs):
        P = np.asarray(P, dtype=np.float64)
        self.N, self.K = P.shape
        self.order = cost_order(rank_costs, self.N, self.K)
        tau = np.take_along_axis(switch_on_tolerance(P), self.order, axis=1)
        m = np.minimum.accumulate(tau, axis=1)[:, :-1].ravel()
        self.ev_order = np.argsort(m, kind="mergesort")
        self.m_sorted = m[self.ev_order]
        self.grid = tolerance_grid(P)

    def __call__(self, values: dict, tols=None, weights=None) -> dict:
        """{'tol': [T], name: [T] Σ_q w_q v_{q,c_q(τ)} / Σ_q w_q} for values name -> [N, K]."""
        N, K = self.N, self.K
        tols = self.grid if tols is None else np.asarray(tols, dtype=np.float64)
        w = np.ones(N) if weights is None else np.asarray(weights, dtype=np.float64)
        n_le = np.searchsorted(self.m_sorted, tols, side="right")  # events with m ≤ τ are switched off
        out = {"tol": tols}
        for name, V in values.items():
            V = np.asarray(V, dtype=np.float64)
            if V.shape != (N, K):
                raise ValueError(f"values[{name!r}] must be [N, K]=({N}, {K}); got {V.shape}.")
            Vs = np.take_along_axis(V, self.order, axis=1)
            base = np.dot(w, Vs[:, 0])
            d = (w[:, None] * np.diff(Vs, axis=1)).ravel()[self.ev_order]
            suffix = np.r_[np.cumsum(d[::-1])[::-1], 0.0]
            out[name] = (base + suffix[n_le]) / w.sum()
        return out


def tolerance_sweep(P, rank_costs, values: dict, tols=None, weights=None) -> dict:
    """Weighted means of per-row values of the tolerance rule's choice at every τ (no loop over τ).

    Args:
      P: [N, K] probabilities. rank_costs: [K] or [N, K] costs that rank targets for the rule.
      values: name -> [N, K] per-row value of each target (labels, per-query $, price, ...).
      tols: [T] tolerances (default ``tolerance_grid(P)``). weights: [N] row weights (bootstrap counts).
    Returns: {'tol': [T], name: [T] Σ_q w_q v_{q,c_q(τ)} / Σ_q w_q}. See ``ToleranceSweep`` for the method.
    """
    return ToleranceSweep(P, rank_costs)(values, tols, weights)


# ----------------------------------------------------------------------------- λ-utility rule
def normalise_costs(costs, N: int, K: int) -> np.ndarray:
    """[N, K] ĉ = (c − min c) / (max c − min c) over all entries (one global normalisation, as
    ``router.policies.normalised_costs``, so per-prompt differences survive); 0 when all costs are equal."""
    c = _as_cost_matrix(costs, N, K)
    lo, hi = c.min(), c.max()
    return np.zeros((N, K)) if hi == lo else (c - lo) / (hi - lo)


def utility_choices(P, costs, lams, *, chunk: int = 64, tie_atol: float = _TIE_ATOL) -> np.ndarray:
    """[G, N] c_q(λ) = argmax_k λ·p̂_{q,k} − (1−λ)·ĉ_{q,k}; utilities within ``tie_atol`` of the max tie and
    go to the cheaper target, then the lowest index (as ``router.policies.route_utility``)."""
    P = np.asarray(P, dtype=np.float64)
    N, K = P.shape
    lams = np.atleast_1d(np.asarray(lams, dtype=np.float64))
    order = cost_order(costs, N, K)
    Ps = np.take_along_axis(P, order, axis=1)
    Cs = np.take_along_axis(normalise_costs(costs, N, K), order, axis=1)
    out = np.empty((lams.size, N), dtype=np.int64)
    for s in range(0, lams.size, chunk):
        lam = lams[s:s + chunk, None, None]
        u = lam * Ps - (1.0 - lam) * Cs
        best = u >= u.max(axis=2, keepdims=True) - tie_atol
        pos = np.argmax(best, axis=2)  # first tied position in (cost, index) order = cheapest
        out[s:s + chunk] = np.take_along_axis(order, pos.T, axis=1).T
    return out


def utility_sweep(P, costs, values: dict, lams, weights=None, *, choices=None) -> dict:
    """{'lam': [G], name: [G] weighted mean of values[name] at the λ-rule's choices}.

    ``choices`` [G, N] = ``utility_choices(P, costs, lams)`` may be passed to reuse them across calls.
    """
    P = np.asarray(P, dtype=np.float64)
    N = P.shape[0]
    w = np.ones(N) if weights is None else np.asarray(weights, dtype=np.float64)
    ch = utility_choices(P, costs, lams) if choices is None else np.asarray(choices)
    rows = np.arange(N)
    out = {"lam": np.atleast_1d(np.asarray(lams, dtype=np.float64))}
    for name, V in values.items():
        V = np.asarray(V, dtype=np.float64)
        out[name] = (V[rows[None, :], ch] @ w) / w.sum()
    return out


# ----------------------------------------------------------------------------- P-AUCCC family
def dedup_sort_curve(cost, acc) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated (cost, acc) points (rounded to 1e-10, first occurrence kept), then stable-sort by cost."""
    cost = np.asarray(cost, dtype=np.float64)
    acc = np.asarray(acc, dtype=np.float64)
    rc, ra = np.round(cost, _ROUND), np.round(acc, _ROUND)
    if cost.size == 0:
        return cost, acc
    idx = np.arange(cost.size)
    o = np.lexsort((idx, ra, rc))  # groups of equal rounded points, first occurrence first
    first = np.r_[True, (np.diff(rc[o]) != 0) | (np.diff(ra[o]) != 0)]
    keep = np.sort(o[first])
    c, a = cost[keep], acc[keep]
    o2 = np.argsort(c, kind="mergesort")
    return c[o2], a[o2]


def pareto_frontier(cost, acc) -> tuple[np.ndarray, np.ndarray]:
    """Points stably sorted by cost, keeping each whose accuracy is strictly above all kept before it."""
    cost = np.asarray(cost, dtype=np.float64)
    acc = np.asarray(acc, dtype=np.float64)
    o = np.argsort(cost, kind="mergesort")
    c, a = cost[o], acc[o]
    prev_best = np.r_[-np.inf, np.maximum.accumulate(a)[:-1]]
    keep = a > prev_best
    return c[keep], a[keep]


def padded_auc(cost, acc, c_min: float, c_max: float, floor: float) -> float:
    """Toolkit padded area: trapz(acc − floor, cost) / (c_max − c_min) with the padding rules of the module
    docstring. ``cost``/``acc`` must already be sorted by cost (``dedup_sort_curve``/``pareto_frontier``).

    Range tests allow a relative round-off of 1e-9 (a mean of equal costs may land a few ulps outside
    [c_min, c_max]). A curve with no point inside the range, one point left of it and one right of it, counts
    as the straight line between its two innermost points, read at c_min and c_max.
    """
    if c_max <= c_min:
        return 0.0
    xs = np.asarray(cost, dtype=np.float64)
    ys = np.asarray(acc, dtype=np.float64)
    eps = 1e-9 * max(abs(c_min), abs(c_max))
    px, py = [], []
    if xs.size == 0 or c_min < xs[0] - eps:
        px.append(c_min)
        py.append(floor)
    inside = (xs >= c_min - eps) & (xs <= c_max + eps)
    px.extend(np.clip(xs[inside], c_min, c_max).tolist())
    py.extend(ys[inside].tolist())
    if xs.size == 0 or c_max > xs[-1] + eps:
        px.append(c_max)
        py.append(ys[-1] if ys.size else floor)
    if not px:  # straddling curve: interpolate between the last point left of c_min and the first right of c_max
        py = np.interp([c_min, c_max], xs, ys).tolist()
        px = [c_min, c_max]
    if len(px) < 2:
        return float(py[0] - floor)
    return float(np.trapezoid(np.asarray(py) - floor, np.asarray(px)) / (c_max - c_min))


def p_auccc_family(curve_cost, curve_acc, model_cost, model_acc, *, oracle: float | None = None) -> dict:
    """P-AUCCC, Pareto-AUCCC, MDP, PDP and normalised P-AUCCC on one cost axis.

    Args:
      curve_cost, curve_acc: [T] router operating points (e.g. one per tolerance; any order, duplicates ok).
      model_cost, model_acc: [K] single-model points on the same axis; c_min/c_max are their extremes and
        floor = model_acc[argmin model_cost].
      oracle: oracle accuracy for P-AUCCC / (oracle − floor) (NaN when not given or oracle ≤ floor).
    """
    mc = np.asarray(model_cost, dtype=np.float64)
    ma = np.asarray(model_acc, dtype=np.float64)
    c_min, c_max = float(mc.min()), float(mc.max())
    floor = float(ma[int(np.argmin(mc))])
    rc, ra = dedup_sort_curve(curve_cost, curve_acc)
    p = padded_auc(rc, ra, c_min, c_max, floor)
    pc, pa = pareto_frontier(mc, ma)
    pareto = padded_auc(pc, pa, c_min, c_max, floor)
    cc, ca = pareto_frontier(np.r_[mc, rc], np.r_[ma, ra])
    combined = padded_auc(cc, ca, c_min, c_max, floor)
    norm = float("nan")
    if oracle is not None and oracle - floor > 1e-12:
        norm = p / (oracle - floor)
    return {"p_auccc": p, "pareto_auccc": pareto, "mdp_auccc": p - pareto, "pdp_auccc": combined - p,
            "p_auccc_norm": norm, "c_min": c_min, "c_max": c_max, "floor": floor}


# ----------------------------------------------------------------------------- AIQ
def nondecreasing_convex_hull(cost, acc) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the non-decreasing convex hull: upper convex hull (monotone chain over points sorted by
    (cost, acc)), then each vertex not strictly above its predecessor's accuracy is dropped."""
    pts = sorted(set(zip(np.asarray(cost, dtype=np.float64).tolist(), np.asarray(acc, dtype=np.float64).tolist())))
    if not pts:
        raise ValueError("nondecreasing_convex_hull needs at least one point.")
    upper: list[tuple[float, float]] = []
    for x, y in pts:
        # same cost: only the best accuracy can be on the upper hull
        if upper and upper[-1][0] == x:
            upper.pop()
        while len(upper) >= 2:
            (x1, y1), (x2, y2) = upper[-2], upper[-1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) >= 0:  # upper[-1] on/below chord → not a vertex
                upper.pop()
            else:
                break
        upper.append((x, y))
    hull = [upper[0]]
    for x, y in upper[1:]:
        if y > hull[-1][1]:
            hull.append((x, y))
    hx, hy = zip(*hull)
    return np.asarray(hx), np.asarray(hy)


def aiq(cost, acc, c_min: float, c_max: float, *, variant: str = "range") -> float:
    """AIQ of the (cost, quality) points (module docstring; ``variant`` ∈ {'range', 'zero_to_max'})."""
    if variant == "zero_to_max":
        c_min = 0.0
    elif variant != "range":
        raise ValueError(f"unknown AIQ variant {variant!r}; use 'range' or 'zero_to_max'.")
    if c_max <= c_min:
        raise ValueError(f"AIQ needs c_max > c_min; got [{c_min}, {c_max}].")
    hx, hy = nondecreasing_convex_hull(cost, acc)
    lo = max(c_min, float(hx[0]))
    if lo >= c_max:
        return 0.0
    xs = np.unique(np.r_[lo, hx[(hx > lo) & (hx < c_max)], c_max])
    ys = np.interp(xs, hx, hy)  # flat beyond the last vertex
    return float(np.trapezoid(ys, xs) / (c_max - c_min))


# ----------------------------------------------------------------------------- RouteLLM
def routellm_curve(score, y_weak, y_strong, n_bins: int = 10) -> dict:
    """RouteLLM threshold curve for a weak/strong pool.

    Thresholds t = the n_bins+1 edges of equal-count quantile bins of s (``np.quantile(s, i/n_bins)``,
    linear interpolation); strong iff s ≥ t, except strict s > t at the last edge (0% strong).
    Returns {'threshold', 'strong_pct', 'accuracy'} sorted by strong_pct (stable) and the two accuracies.
    """
    s = np.asarray(score, dtype=np.float64)
    yw = np.asarray(y_weak, dtype=np.float64)
    ys = np.asarray(y_strong, dtype=np.float64)
    if not (s.shape == yw.shape == ys.shape and s.ndim == 1) or s.size == 0:
        raise ValueError("score, y_weak and y_strong must be non-empty 1-D arrays of one length.")
    if np.isnan(yw).any() or np.isnan(ys).any():
        raise ValueError("RouteLLM metrics need both labels on every row; drop rows with missing labels.")
    t = np.quantile(s, np.linspace(0.0, 1.0, n_bins + 1))
    strong = s[None, :] >= t[:, None]
    strong[-1] = s > t[-1]
    pct = strong.mean(axis=1) * 100.0
    acc = np.where(strong, ys[None, :], yw[None, :]).mean(axis=1)
    o = np.argsort(pct, kind="mergesort")
    return {"threshold": t[o], "strong_pct": pct[o], "accuracy": acc[o],
            "acc_weak": float(yw.mean()), "acc_strong": float(ys.mean())}


def apgr(curve: dict) -> float:
    """APGR = (AUC − A_weak) / (A_strong − A_weak), AUC = trapz(acc, x/100), A_* = acc_* · (x_max − x_min)/100.

    NaN when acc_strong = acc_weak.
    """
    x = curve["strong_pct"] / 100.0
    span = x[-1] - x[0]
    a_weak, a_strong = curve["acc_weak"] * span, curve["acc_strong"] * span
    if abs(a_strong - a_weak) < 1e-12:
        return float("nan")
    return float((np.trapezoid(curve["accuracy"], x) - a_weak) / (a_strong - a_weak))


def cpt(curve: dict, pgr: float) -> float:
    """CPT(p) = strong-call % at which accuracy first reaches acc_weak + p·(acc_strong − acc_weak).

    Walking the curve in order of strong_pct: the first point at/above the target returns its x if it is
    the first point, else x is linearly interpolated on the segment from the previous point. NaN if never.
    """
    x, a = curve["strong_pct"], curve["accuracy"]
    target = curve["acc_weak"] + pgr * (curve["acc_strong"] - curve["acc_weak"])
    hit = np.flatnonzero(a >= target - 1e-12)
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0 or a[i] == a[i - 1]:
        return float(x[i])
    return float(x[i - 1] + (target - a[i - 1]) * (x[i] - x[i - 1]) / (a[i] - a[i - 1]))
