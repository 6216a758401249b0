"""Error of per-query output-length predictions (``router.cost_model``) against the per-target median.

Axis letters: N prompts, K targets.

``length_metrics``: MAE (tokens) of a prediction vs the median baseline, and Spearman ρ pooled over all observed
(query, target) pairs (the median ranks targets only) and within target (the median is a constant there: ρ
undefined), with percentile bootstrap CIs over queries.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as sp_stats

from prefill_router.evaluation import bootstrap
from prefill_router.router.cost_model import check_tokens, mae


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(sp_stats.rankdata(a), sp_stats.rankdata(b))[0, 1])


def length_metrics(pred, medians, tokens, rows, target_names=None, *, n_boot: int = 1000, seed: int = 0,
                   alpha: float = 0.05) -> dict:
    """Error of predicted output tokens vs the per-target median on ``rows`` (observed entries only).

    pred [N, K] tokens; medians [K]; tokens [N, K] observed (NaN unknown). Returns {'pooled': {metric:
    {value, ci_low, ci_high}} for mae_pred, mae_median, mae_diff (pred − median), spearman_pred,
    spearman_median (pooled over (query, target) pairs), 'per_target': {name: {mae_pred, mae_median,
    spearman_pred, n}}}; CIs are percentile bootstrap over queries (rows resampled with their K entries).
    """
    t = check_tokens(tokens)
    pred = np.asarray(pred, np.float64)
    med = np.broadcast_to(np.asarray(medians, np.float64), t.shape)
    rows = np.asarray(rows)
    names = list(target_names) if target_names is not None else [f"target_{k}" for k in range(t.shape[1])]
    obs = ~np.isnan(t) & ~np.isnan(pred) & ~np.isnan(med)

    def stat(r):
        rr = rows[r]
        o = obs[rr]
        tp, pp, mp = t[rr][o], pred[rr][o], med[rr][o]
        mae_pred, mae_median = mae(pp, tp), mae(mp, tp)
        return np.array([mae_pred, mae_median, mae_pred - mae_median, _spearman(pp, tp), _spearman(mp, tp)])

    ci = bootstrap.bootstrap_ci(stat, rows.size, n_boot=n_boot, seed=seed, alpha=alpha)
    keys = ("mae_pred", "mae_median", "mae_diff", "spearman_pred", "spearman_median")
    pooled = {k: {"value": float(ci["estimate"][i]), "ci_low": float(ci["low"][i]), "ci_high": float(ci["high"][i])}
              for i, k in enumerate(keys)}
    per_target = {}
    for k, name in enumerate(names):
        o = rows[obs[rows, k]]
        per_target[name] = {"n": int(o.size),
                            "mae_pred": mae(pred[o, k], t[o, k]) if o.size else float("nan"),
                            "mae_median": mae(med[o, k], t[o, k]) if o.size else float("nan"),
                            "spearman_pred": _spearman(pred[o, k], t[o, k])}
    return {"pooled": pooled, "per_target": per_target, "n_rows": int(rows.size), "n_pairs": int(obs[rows].sum())}
