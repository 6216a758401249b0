"""Reward routing swept to full cost–quality curves: AIQ, P-AUCCC, savings at ≥ best-single accuracy,
λ-stability, each with percentile bootstrap CIs; routers compared on shared resamples (paired).

Axis letters: N prompts, K targets, G λ values, B bootstrap replicates.

Per router and reward form (``router.policies.route_reward``: 'linear' λ·p − c, 'exponential' p·exp(−c/λ)):
the router DECIDES with its own per-query cost estimate (``decide_costs`` [N, K], e.g. median or predicted
output tokens), and every point is MEASURED with ``measure_costs`` [N, K] (realised $ where known). The λ grid
(``reward_lambda_grid``, log-spaced over every tie point of the decision costs) runs from the cheapest choice to
argmax p, and the choices c_q(λ) [G, N] are fixed across replicates (a replicate re-weights rows). On the rows
with every label (as ``report.evaluate_router``):

* curve: acc(λ) = mean_q y_{q,c_q(λ)}, cost(λ) = mean_q measure_cost_{q,c_q(λ)};
* ``aiq``: RouterBench AIQ of the curve ('range' variant over the single models' measured cost range);
* ``p_auccc``: the toolkit's padded area on the same axis (floor = accuracy of the cheapest model);
* operating point: the cheapest curve point with acc ≥ the best single model's accuracy (best single chosen
  on training rows when ``best_single_index`` is given); ``savings_pct`` = 100·(1 − cost/cost of the best
  single model), NaN when no point reaches it; read off the evaluated curve, like AIQ (not a validated choice);
* λ-stability at that point (λ*): ``change_pct`` = % of prompts whose choice differs between λ*/2 and 2λ*,
  ``acc_span`` = acc(2λ*) − acc(λ*/2), ``cost_ratio`` = cost(2λ*)/cost(λ*/2) (nearest grid λ; the grid is
  log-uniform, so "×2" means the same number of grid steps in both forms).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from prefill_router.evaluation import curves, metrics
from prefill_router.evaluation.bootstrap import _paired_summary, _percentile_ci, resample_indices
from prefill_router.evaluation.report import format_ci, markdown_table
from prefill_router.router import policies

METRICS = ("aiq", "p_auccc", "savings_pct", "operating_acc", "change_pct", "acc_span", "cost_ratio")


def _curve_scalars(ch: np.ndarray, lams: np.ndarray, Y: np.ndarray, C: np.ndarray, w: np.ndarray,
                   best_index: int) -> np.ndarray:
    """METRICS for fixed choices ch [G, n] on complete rows with labels Y [n, K], costs C [n, K], weights w [n]."""
    rows = np.arange(Y.shape[0])
    total = w.sum()
    acc = (Y[rows[None, :], ch] @ w) / total
    cost = (C[rows[None, :], ch] @ w) / total
    model_acc, model_cost = (w @ Y) / total, (w @ C) / total
    c_min, c_max = float(model_cost.min()), float(model_cost.max())
    oracle = float(w @ Y.max(axis=1) / total)
    fam = curves.p_auccc_family(cost, acc, model_cost, model_acc, oracle=oracle)
    aiq = curves.aiq(cost, acc, c_min, c_max) if c_max > c_min else float("nan")
    ok = np.flatnonzero(acc >= model_acc[best_index] - 1e-12)
    if ok.size == 0:
        return np.array([aiq, fam["p_auccc"]] + [np.nan] * 5)
    g = int(ok[np.argmin(cost[ok])])
    savings = 100.0 * (1.0 - cost[g] / model_cost[best_index]) if model_cost[best_index] > 0 else np.nan
    if lams.size > 1:
        step = max(1, int(round(np.log(2.0) / np.log(lams[1] / lams[0]))))
        lo, hi = max(g - step, 0), min(g + step, lams.size - 1)
    else:
        lo = hi = g
    change = 100.0 * float(w @ (ch[lo] != ch[hi]) / total)
    ratio = cost[hi] / cost[lo] if cost[lo] > 0 else np.nan
    return np.array([aiq, fam["p_auccc"], savings, acc[g], change, acc[hi] - acc[lo], ratio])


def compare_rewards(routers: Mapping[str, tuple[np.ndarray, np.ndarray]], Y, M, measure_costs, *,
                    forms=policies.REWARD_FORMS, n_lambdas: int = 201, best_single_index: int | None = None,
                    reference: str | None = None, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                    digits: int = 3) -> dict:
    """Reward-curve metrics of several routers on the same rows and resamples.

    Args:
      routers: name -> (P [N, K] P(correct), decide_costs [N, K] or [K] the router's cost estimate).
      Y [N, K] labels (NaN missing), M [N, K] bool (None: ~isnan(Y)); measure_costs [N, K] measured $.
      forms: reward forms swept; n_lambdas: grid size per (router, form); best_single_index: best single
        target chosen on training rows (None: on these rows); reference: router the paired tests compare to.
    Returns {'rows': {router: {form: {metric: {value, ci_low, ci_high, n_nan}}}}, 'curves': {router: {form:
      {lam, acc, cost}}}, 'paired': {router: {form: {metric: {diff, low, high, p_value}}}}, 'markdown', ...}.
    """
    if not routers:
        raise ValueError("compare_rewards needs at least one router")
    for form in forms:
        if form not in policies.REWARD_FORMS:
            raise ValueError(f"unknown reward form {form!r}; use one of {policies.REWARD_FORMS}")
    _, Y, M, C, _ = metrics.check_inputs(None, Y, M, measure_costs, None)
    if C is None:
        raise ValueError("measure_costs [N, K] are required: reward curves are measured in $")
    complete = metrics.complete_rows(M)
    if not complete.any():
        raise ValueError("no row has every target's label; reward curves need complete rows")
    Yc, Cc = Y[complete], C[complete]
    best = metrics.best_single(Yc, best_single_index)[1]
    names = list(routers)
    reference = names[0] if reference is None else reference
    if reference not in routers:
        raise ValueError(f"reference {reference!r} is not one of the routers {names}")
    n = int(complete.sum())
    idx = resample_indices(n, n_boot, seed)
    rows_out, curve_out, reps = {}, {}, {}
    for name, (P, decide) in routers.items():
        P = np.asarray(P, np.float64)[complete]
        D = np.asarray(decide, np.float64)
        D = D[complete] if D.ndim == 2 else D
        rows_out[name], curve_out[name], reps[name] = {}, {}, {}
        for form in forms:
            lams = policies.reward_lambda_grid(P, D, form, n_lambdas)
            ch = policies.reward_choices(P, D, lams, form)
            full = _curve_scalars(ch, lams, Yc, Cc, np.ones(n), best)
            r = np.stack([_curve_scalars(ch, lams, Yc, Cc, np.bincount(i, minlength=n).astype(float), best)
                          for i in idx])
            lo, hi, n_nan = _percentile_ci(r, alpha)
            rows_out[name][form] = {m: {"value": float(full[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]),
                                        "n_nan": int(n_nan[j])} for j, m in enumerate(METRICS)}
            rr = np.arange(n)
            curve_out[name][form] = {"lam": lams, "acc": Yc[rr[None, :], ch].mean(axis=1),
                                     "cost": Cc[rr[None, :], ch].mean(axis=1)}
            reps[name][form] = (full, r)
    paired = {}
    for name in names:
        if name == reference:
            continue
        paired[name] = {form: {m: _paired_summary(float(reps[name][form][0][j] - reps[reference][form][0][j]),
                                                  reps[name][form][1][:, j] - reps[reference][form][1][:, j], alpha)
                               for j, m in enumerate(METRICS[:3])} for form in forms}
    model_acc, model_cost = Yc.mean(axis=0), Cc.mean(axis=0)
    return {"rows": rows_out, "curves": curve_out, "paired": paired, "reference": reference,
            "best_single": {"index": best, "acc": float(model_acc[best]), "cost": float(model_cost[best])},
            "model_points": {"acc": model_acc, "cost": model_cost}, "n_complete": n,
            "markdown": _markdown(rows_out, paired, reference, forms, digits, len(idx))}


OPERATING = ("savings_pct", "operating_acc", "change_pct", "acc_span")  # NaN where best single is not reached


def _markdown(rows, paired, reference, forms, digits, n_boot) -> str:
    """Table of ``rows``; where the curve never reaches best-single accuracy the savings cell reads 'not reached
    (x/B resamples reach)' and the other operating-point cells '—' (no NaN point estimate beside a CI)."""
    def fmt(m, metric):
        if metric in OPERATING and np.isnan(m["value"]):
            return f"not reached ({n_boot - m['n_nan']}/{n_boot} resamples reach)" if metric == "savings_pct" else "—"
        return format_ci(m["value"], m["ci_low"], m["ci_high"], digits)

    table = [["router", "reward", "AIQ", "P-AUCCC", "savings % at ≥ best single", "acc there",
              "choices changed % (λ/2→2λ)", "Δacc (λ/2→2λ)", f"ΔAIQ vs {reference} (p)"]]
    for name, by_form in rows.items():
        for form in forms:
            r = by_form[form]
            cells = [name, form] + [fmt(r[m], m) for m in ("aiq", "p_auccc", "savings_pct", "operating_acc",
                                                            "change_pct", "acc_span")]
            if name == reference:
                cells.append("ref")
            else:
                d = paired[name][form]["aiq"]
                cells.append(f"{format_ci(d['diff'], d['low'], d['high'], digits)} (p={d['p_value']:.3g})")
            table.append(cells)
    return markdown_table(table)
