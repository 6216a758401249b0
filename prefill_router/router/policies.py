"""Routing rules: map P(correct) [N, K] (and costs) to one chosen target per prompt [N] (method.md §6).

Axis letters: N prompts, K targets. ``costs`` is either [K] (a per-target price, e.g. $/M input tokens:
the toolkit's ranking cost) or [N, K] (per-prompt $ estimates). All rules are vectorised numpy; every tie
is broken deterministically (cheaper, then lower index).

* ``route_argmax``:    c = argmax_k p_k (ties → lowest index).
* ``route_tolerance``: E = {k : p_k ≥ p_max − tol}; c = cheapest in E (ties → lowest index).
  tol = 0 → argmax (cheapest among exact ties); tol = 1 → cheapest overall.
* ``route_utility``:   u_k = λ·p_k − (1−λ)·ĉ_k, ĉ = (cost − min) / (max − min) over all entries of ``costs``
  (one global normalisation, so an [N, K] table keeps its per-prompt differences); argmax u, ties → cheaper.
* ``route_budget``:    the largest λ ∈ [0, 1] whose utility routing has mean cost ≤ budget, by bisection.
  The chosen cost of each prompt is non-decreasing in λ (maximiser of a linear score), so the mean is
  monotone and bisection is exact up to ``iters`` halvings. Mean cost can sit below the budget because the
  cost jumps at the breakpoints of λ.
* ``apply_fallback``:  prompts with max_k p_k < threshold go to a given fallback target (abstain option).
* ``route_reward``:    argmax_k of a reward r(p_k, c_k; λ) on RAW per-prompt costs (e.g. expected $), ties →
  cheaper, then lower index (arXiv 2509.09782's two rewards; the exact exponential form is unknown):
    'linear'       r = λ·p − c             (λ in cost units per unit of quality; λ → 0: cheapest, λ → ∞: argmax p)
    'exponential'  r = p·exp(−c/λ)         (λ in cost units; same limits). [Assumption] The other plausible
                   reading, exp(λ·p − c), is a monotone transform of the linear reward and routes identically,
                   so it is not a separate rule.
  ``reward_breakpoints`` lists every λ > 0 at which two targets of one prompt tie (linear:
  λ = Δc/Δp; exponential: λ = Δc/Δlog p, both with Δc, Δp of one sign); ``reward_lambda_grid`` spans them
  log-uniformly, so sweeping it traces the whole cost–quality curve.
"""
from __future__ import annotations

import numpy as np

_TIE_ATOL = 1e-12
REWARD_FORMS = ("linear", "exponential")
_P_FLOOR = 1e-12  # p is clipped to this in the exponential reward's log-ratio breakpoints


def _check_p(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"P must be [N, K] with K >= 1, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("P holds NaN/inf; routing needs a probability for every (prompt, target)")
    return p


def _costs_nk(costs: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Costs broadcast to [N, K]; accepts [K] or [N, K]."""
    c = np.asarray(costs, np.float64)
    if c.shape == (p.shape[1],):
        c = np.broadcast_to(c, p.shape)
    elif c.shape != p.shape:
        raise ValueError(f"costs must be [K]={p.shape[1]} or [N, K]={p.shape}, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("costs hold NaN/inf; fill every (prompt, target) cost")
    return c


def _cheapest_in(allowed: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Per row: index of the lowest cost among allowed entries (ties → lowest index)."""
    return np.argmin(np.where(allowed, c, np.inf), axis=1)


def route_argmax(p: np.ndarray) -> np.ndarray:
    """c(q) = argmax_k p_k(q) -> [N] int (ties → lowest index)."""
    return np.argmax(_check_p(p), axis=1)


def route_tolerance(p: np.ndarray, costs: np.ndarray, tol: float = 0.2) -> np.ndarray:
    """Cheapest target within ``tol`` of the best probability -> [N] int."""
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    p = _check_p(p)
    c = _costs_nk(costs, p)
    eligible = p >= p.max(axis=1, keepdims=True) - tol
    return _cheapest_in(eligible, c)


def tolerance_grid(p: np.ndarray) -> np.ndarray:
    """The tolerances where the tolerance rule can change: distinct values of p_max − p_k, sorted [T]."""
    p = _check_p(p)
    return np.unique(p.max(axis=1, keepdims=True) - p)


def normalised_costs(costs: np.ndarray, p: np.ndarray) -> np.ndarray:
    """ĉ [N, K] = (c − min c) / (max c − min c) over all entries; all zeros when costs are constant."""
    c = _costs_nk(costs, p)
    lo, hi = c.min(), c.max()
    return np.zeros_like(c) if hi == lo else (c - lo) / (hi - lo)


def route_utility(p: np.ndarray, costs: np.ndarray, lam: float = 0.5) -> np.ndarray:
    """argmax_k λ·p_k − (1−λ)·ĉ_k -> [N] int (ties → cheaper, then lower index)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    p = _check_p(p)
    c_hat = normalised_costs(costs, p)
    u = lam * p - (1.0 - lam) * c_hat
    best = u >= u.max(axis=1, keepdims=True) - _TIE_ATOL
    return _cheapest_in(best, c_hat)


def mean_cost(choices: np.ndarray, costs: np.ndarray) -> float:
    """Mean cost of the chosen targets; costs [K] or [N, K]."""
    choices = np.asarray(choices)
    c = np.asarray(costs, np.float64)
    chosen = c[choices] if c.ndim == 1 else c[np.arange(len(choices)), choices]
    return float(chosen.mean())


def route_budget(p: np.ndarray, costs: np.ndarray, budget: float, iters: int = 60) -> tuple[np.ndarray, float]:
    """Utility routing at the largest λ whose mean cost ≤ ``budget`` -> (choices [N], λ).

    Raises ValueError when even λ = 0 (cheapest target for every prompt) exceeds the budget.
    """
    p = _check_p(p)
    c = _costs_nk(costs, p)

    def cost_at(lam):
        ch = route_utility(p, c, lam)
        return ch, mean_cost(ch, c)

    choices, spent = cost_at(1.0)
    if spent <= budget:
        return choices, 1.0
    choices, spent = cost_at(0.0)
    if spent > budget:
        raise ValueError(f"budget {budget} is below the cheapest achievable mean cost {spent}")
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ch, spent = cost_at(mid)
        if spent <= budget:
            lo, choices = mid, ch
        else:
            hi = mid
    return choices, lo


def apply_fallback(p: np.ndarray, choices: np.ndarray, threshold: float, fallback: int) -> np.ndarray:
    """Replace the choice by ``fallback`` where max_k p_k < threshold (no target is confident) -> [N] int."""
    p = _check_p(p)
    if not 0 <= fallback < p.shape[1]:
        raise ValueError(f"fallback index {fallback} is not a target index in [0, {p.shape[1]})")
    choices = np.asarray(choices)
    if choices.shape != (p.shape[0],):
        raise ValueError(f"choices must be [N]={p.shape[0]}, got shape {choices.shape}")
    return np.where(p.max(axis=1) < threshold, fallback, choices)


def _check_form(form: str) -> None:
    if form not in REWARD_FORMS:
        raise ValueError(f"unknown reward form {form!r}; use one of {', '.join(REWARD_FORMS)}")


def reward(p: np.ndarray, costs: np.ndarray, lam: float, form: str = "linear") -> np.ndarray:
    """r [N, K]: 'linear' λ·p − c, 'exponential' p·exp(−c/λ); costs [K] or [N, K] (raw, not normalised)."""
    _check_form(form)
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    p = _check_p(p)
    c = _costs_nk(costs, p)
    return lam * p - c if form == "linear" else p * np.exp(-c / lam)


def route_reward(p: np.ndarray, costs: np.ndarray, lam: float, form: str = "linear") -> np.ndarray:
    """argmax_k reward -> [N] int; rewards within 1e-12 (relative to the row max) tie → cheaper, lower index."""
    p = _check_p(p)
    c = _costs_nk(costs, p)
    r = reward(p, c, lam, form)
    top = r.max(axis=1, keepdims=True)
    return _cheapest_in(r >= top - _TIE_ATOL * np.maximum(1.0, np.abs(top)), c)


def reward_breakpoints(p: np.ndarray, costs: np.ndarray, form: str = "linear") -> np.ndarray:
    """Sorted distinct λ > 0 where two targets of one prompt have equal reward (module docstring)."""
    _check_form(form)
    p = _check_p(p)
    c = _costs_nk(costs, p)
    a, b = np.triu_indices(p.shape[1], k=1)
    dc = c[:, a] - c[:, b]
    dq = p[:, a] - p[:, b] if form == "linear" else (
        np.log(np.maximum(p[:, a], _P_FLOOR)) - np.log(np.maximum(p[:, b], _P_FLOOR)))
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = dc / dq
    return np.unique(lam[(dc * dq > 0) & np.isfinite(lam)])


def reward_lambda_grid(p: np.ndarray, costs: np.ndarray, form: str = "linear", n: int = 201) -> np.ndarray:
    """[n] log-spaced λ from half the smallest to twice the largest breakpoint, so the sweep starts at the
    cheapest choice and ends at argmax p; [1.0] when no two targets trade off on any prompt."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    bp = reward_breakpoints(p, costs, form)
    if bp.size == 0:
        return np.ones(1)
    return np.geomspace(bp[0] / 2, bp[-1] * 2, n)


def reward_choices(p: np.ndarray, costs: np.ndarray, lams: np.ndarray, form: str = "linear") -> np.ndarray:
    """[G, N] ``route_reward`` at every λ of ``lams``."""
    return np.stack([route_reward(p, costs, float(lam), form) for lam in np.atleast_1d(lams)])
