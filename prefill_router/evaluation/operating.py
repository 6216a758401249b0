"""Cost-aware operating points: a routing rule's parameter chosen on validation rows, its accuracy and
savings on test.

Axis letters: N prompts, K targets, T grid values. Rules (``router.policies``, ranking cost ``prices`` [K]):
'tolerance' (τ: cheapest target among those with p_k ≥ p_max − τ) and 'utility' (λ: argmax λ·p_k − (1−λ)·ĉ_k).
Only *complete* rows (every label present) count.

    choose_point(P, Y, M, prices, best_single_index, rule='tolerance', grid=None) -> dict
        The cheapest grid value (lowest mean price of the chosen targets; ties → higher accuracy, then the
        smaller value) whose accuracy ≥ the best single target's accuracy on the same rows ("reached"). When
        none reaches it, the most accurate value (ties → cheaper, then smaller) with ``reached = False``.
        Default grids: τ = every distinct p_max − p_k (`policies.tolerance_grid`, every τ where the routing can
        change); λ = 0, 0.01, ..., 1 (the evaluation's λ grid).
    point_metrics(P, Y, M, costs, prices, param, best_single_index, rule='tolerance', ...) -> {metric: {value,
        ci_low, ci_high}}: router accuracy, best-single accuracy, their difference, and cost savings vs the most expensive target
        (``metrics.cost_savings``: price axis = ``prices``, per-query axis = ``costs`` [N, K] $; the reference
        target is fixed on all complete rows) with percentile bootstrap CIs over the complete rows.
"""
from __future__ import annotations

import numpy as np

from prefill_router.evaluation import bootstrap, metrics
from prefill_router.router import policies


def _complete(P, Y, M) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, Y, complete-row indices) after shape checks; raises when no row is complete."""
    P, Y, M, _, _ = metrics.check_inputs(P, Y, M)
    rows = np.flatnonzero(metrics.complete_rows(M))
    if rows.size == 0:
        raise ValueError("no row has every target's label; an operating point needs complete rows.")
    return P, Y, rows


RULES = {"tolerance": policies.route_tolerance, "utility": policies.route_utility}


def _rule(rule: str):
    if rule not in RULES:
        raise ValueError(f"unknown operating-point rule {rule!r}; use one of {sorted(RULES)}")
    return RULES[rule]


def choose_point(P, Y, M, prices, best_single_index: int, rule: str = "tolerance", grid=None) -> dict:
    """The operating point on validation rows (module docstring). Returns {rule, param, reached, acc,
    best_single_acc, mean_price, savings_price_pct, n_rows, n_grid}."""
    route = _rule(rule)
    P, Y, rows = _complete(P, Y, M)
    prices = np.asarray(prices, np.float64)
    if prices.shape != (P.shape[1],):
        raise ValueError(f"prices must be [K]={P.shape[1]}, got shape {prices.shape}")
    Pc, Yc = P[rows], Y[rows]
    given = grid
    if grid is None:
        grid = policies.tolerance_grid(Pc) if rule == "tolerance" else np.linspace(0.0, 1.0, 101)
    grid = np.unique(np.asarray(grid, np.float64))
    if grid.size == 0 or grid.min() < 0 or (rule == "utility" and grid.max() > 1):
        raise ValueError(f"grid must be a non-empty set of values >= 0 (<= 1 for 'utility'), got {given!r}")
    acc = np.empty(grid.size)
    price = np.empty(grid.size)
    for t, value in enumerate(grid):
        ch = route(Pc, prices, value)
        acc[t] = Yc[np.arange(rows.size), ch].mean()
        price[t] = prices[ch].mean()
    best = float(Yc[:, best_single_index].mean())
    feasible = acc >= best - 1e-12
    reached = bool(feasible.any())
    # lexsort: the last key is primary; the grid order breaks remaining ties toward the smaller value
    order = (np.lexsort((-acc, price, ~feasible)) if reached else np.lexsort((price, -acc)))
    t = int(order[0])
    expensive = metrics.most_expensive_index(prices)
    return {"rule": rule, "param": float(grid[t]), "reached": reached, "acc": float(acc[t]), "best_single_acc": best,
            "mean_price": float(price[t]), "savings_price_pct": 100 * (1 - float(price[t]) / prices[expensive])
            if prices[expensive] > 0 else float("nan"), "n_rows": int(rows.size), "n_grid": int(grid.size)}


POINT_KEYS = ("router_acc", "best_single_acc", "acc_minus_best_single", "cost_savings_price_pct",
              "cost_savings_query_pct")


def point_metrics(P, Y, M, costs, prices, param: float, best_single_index: int, rule: str = "tolerance", *,
                  n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Test metrics of ``rule`` at ``param`` (τ or λ) with percentile bootstrap CIs (module docstring).
    ``costs``: [N, K] per-prompt $ or None (then no per-query savings)."""
    route = _rule(rule)
    P, Y, rows = _complete(P, Y, M)
    prices = np.asarray(prices, np.float64)
    ch = route(P[rows], prices, param)
    Yc = Y[rows]
    price_nk = np.broadcast_to(prices, Yc.shape)
    axes = [(price_nk, metrics.most_expensive_index(prices))]
    if costs is not None:
        Cc = np.asarray(costs, np.float64)[rows]
        axes.append((Cc, metrics.most_expensive_index(Cc)))

    def stat(r):
        acc = Yc[r, ch[r]].mean()
        best = Yc[r, best_single_index].mean()
        return [acc, best, acc - best] + [100 * metrics.cost_savings(c[r], ch[r], ref) for c, ref in axes]

    ci = bootstrap.bootstrap_ci(stat, rows.size, n_boot=n_boot, seed=seed, alpha=alpha)
    return {key: {"value": float(ci["estimate"][i]), "ci_low": float(ci["low"][i]), "ci_high": float(ci["high"][i])}
            for i, key in enumerate(POINT_KEYS[:len(ci["estimate"])])}
