"""Headline evaluation of routers with bootstrap CIs, router comparison, Markdown and JSON output.

Axis letters: N prompts, K targets, T tolerances, G λ values, B bootstrap replicates.

Protocol (recorded in every result under ``protocol``):
    * per-target metrics (AUC, Brier, ECE, accuracy) use the rows where that target's label exists;
      routing metrics (router/oracle/best-single/random/cheapest accuracy, gap captured, cost savings,
      curves, AIQ, zones) use the *complete* rows (every label present); dropped rows are counted.
    * best single: pass ``best_single_index`` chosen on TRAINING rows (honest); otherwise it is picked on
      the evaluated rows (flagged ``best_single_selected_on='eval'``; this flatters the baseline). The
      index stays fixed across bootstrap replicates, as do the most expensive target (cost savings
      reference), the cheapest target (P-AUCCC floor) and the tolerance grid.
    * tolerance rule ranks targets by ``prices_in`` ($/M input tokens, toolkit); P-AUCCC's price axis is
      the mean price_in of the chosen targets; the per-query axis is the mean per-prompt $ of ``costs``.
    * percentages: gap captured and cost savings are in %; accuracies, AUC, P-AUCCC, AIQ are fractions.
    * every headline has a percentile bootstrap CI over prompts (``bootstrap.py``); all routers of one
      ``compare_routers`` call share the resamples, so their differences are paired.
    * controls (given ``tasks``): within-task AUC (``metrics.within_task_auc``; a task-only router scores
      0.5) and router / best-single accuracy on the disagreement zone (complete rows where the targets do not
      all agree). Gap captured equals its own disagreement-zone value: agreement rows add the same to the
      router's, the best single's and the Oracle's accuracy.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
from absl import logging

from prefill_router.fileio import to_jsonable  # exported: results -> JSON-ready values
from prefill_router.evaluation import calibration, curves, metrics
from prefill_router.evaluation.bootstrap import _paired_summary, _percentile_ci, resample_indices

__all__ = ["evaluate_router", "compare_routers", "format_ci", "markdown_table", "markdown_report",
           "to_jsonable"]

VARIANTS = {
    "gap_captured_pct": "argmax router; (acc − best single)/(oracle − best single)·100; NaN if no headroom",
    "cost_savings": "1 − Σ cost of chosen / Σ cost of the most expensive target (on the evaluated rows), in %",
    "p_auccc": "toolkit padded area over the tolerance curve, floor = cheapest model's accuracy, /(c_max − c_min)",
    "p_auccc_norm": "P-AUCCC / (oracle − floor) [our normalisation; the paper's is unknown]",
    "aiq": "RouterBench AIQ, λ-utility sweep, non-decreasing convex hull, 'range' variant over [c_min, c_max]",
    "aiq_zero": "AIQ of the single models alone (RouterBench Zero router), same variant",
    "within_task_auc_mean": "per target, prompt-weighted mean of per-task AUCs over the tasks with both classes "
                            "(others excluded, counted); mean over targets; a task-only router scores 0.5",
    "disagree_*": "complete rows where the targets do not all agree (Oracle = 1 there); gap captured needs no "
                  "zone version: on agreement rows router, best single and Oracle score alike, so restricting "
                  "to the zone leaves it unchanged",
    "ece_mean": "mean over targets of ECE with 15 equal-width bins; ECE is biased upward under resampling, so "
                "its percentile CI can sit above the point estimate",
}


# ----------------------------------------------------------------------------- core statistic
class _Setup:
    """Everything fixed across bootstrap replicates (validated inputs, indices, grids)."""

    def __init__(self, Y, M, costs, prices_in, target_names, best_single_index, tolerances, lambdas,
                 n_bins, operating_tolerance, tasks=None):
        _, self.Y, self.M, self.costs, _ = metrics.check_inputs(None, Y, M, costs, None)
        self.N, self.K = self.Y.shape
        self.prices = np.asarray(prices_in, dtype=np.float64)
        if self.prices.shape != (self.K,) or np.any(self.prices < 0) or not np.all(np.isfinite(self.prices)):
            raise ValueError(f"prices_in must be [K]={self.K} finite non-negative $/M input-token prices.")
        self.names = list(target_names) if target_names is not None else [f"target_{k}" for k in range(self.K)]
        if len(self.names) != self.K:
            raise ValueError(f"target_names has {len(self.names)} names for K={self.K} targets.")
        self.complete = metrics.complete_rows(self.M)
        if not self.complete.any():
            raise ValueError("no row has every target's label; routing metrics need complete rows.")
        self.n_complete = int(self.complete.sum())
        self.complete_pos = np.cumsum(self.complete) - 1  # full row index -> position among complete rows
        Yc = self.Y[self.complete]
        if best_single_index is None:
            self.best_index = metrics.best_single(Yc)[1]
            self.best_selected_on = "eval"
        else:
            self.best_index = metrics.best_single(Yc, best_single_index)[1]
            self.best_selected_on = "given"
        self.cheapest = metrics.cheapest_index(self.prices)
        self.expensive_price = metrics.most_expensive_index(self.prices)
        self.expensive_cost = None if self.costs is None else metrics.most_expensive_index(self.costs[self.complete])
        self.tolerances = None if tolerances is None else np.asarray(tolerances, dtype=np.float64)
        self.lambdas = np.linspace(0.0, 1.0, 101) if lambdas is None else np.asarray(lambdas, dtype=np.float64)
        self.n_bins = n_bins
        self.operating_tolerance = operating_tolerance
        if tasks is not None and len(tasks) != self.N:
            raise ValueError(f"tasks has {len(tasks)} entries for N={self.N} rows; pass one task name per row.")
        self.tasks = None if tasks is None else metrics.task_codes(tasks)[0]
        self.disagree = np.zeros(self.N, bool)
        self.disagree[self.complete] = metrics.disagreement_rows(Yc)

    def axes(self, rc: np.ndarray) -> dict:
        """Cost axes on complete rows rc: name -> [n, K] per-row cost matrix."""
        out = {"price": np.broadcast_to(self.prices, (rc.size, self.K))}
        if self.costs is not None:
            out["query"] = self.costs[rc]
        return out


def _choice_stats(s: _Setup, rows: np.ndarray, choices_all: np.ndarray) -> dict:
    """Accuracy-and-cost statistics of fixed per-row choices on the complete rows among ``rows``."""
    rc = rows[s.complete[rows]]
    Yc = s.Y[rc]
    ch = choices_all[rc]
    acc = float(Yc[np.arange(rc.size), ch].mean())
    best = float(Yc[:, s.best_index].mean())
    oracle = float(Yc.max(axis=1).mean())
    out = {"router_acc": acc, "oracle_acc": oracle, "best_single_acc": best,
           "random_acc": float(Yc.mean()), "cheapest_acc": float(Yc[:, s.cheapest].mean()),
           "gap_captured_pct": metrics.gap_captured(acc, best, oracle),
           "cost_savings_price_pct": 100 * metrics.cost_savings(s.prices[None, :].repeat(rc.size, 0), ch,
                                                                s.expensive_price)}
    if s.costs is not None:
        out["cost_savings_query_pct"] = 100 * metrics.cost_savings(s.costs[rc], ch, s.expensive_cost)
    dz = s.disagree[rc]
    if dz.any():
        acc_dz = float(Yc[dz, ch[dz]].mean())
        best_dz = float(Yc[dz, s.best_index].mean())
        out.update(disagree_router_acc=acc_dz, disagree_best_single_acc=best_dz)
    return out


def _prob_context(s: _Setup, P: np.ndarray) -> dict:
    """Per-router quantities fixed across replicates: choices of every rule and the tolerance event plan
    (all on the complete rows), so that a replicate only re-weights rows."""
    Pc = P[s.complete]
    ctx = {"P": P, "argmax": np.argmax(P, axis=1), "tol_plan": curves.ToleranceSweep(Pc, s.prices),
           "lam_choices": curves.utility_choices(Pc, s.prices, s.lambdas)}
    ctx["tols"] = ctx["tol_plan"].grid if s.tolerances is None else s.tolerances
    if s.operating_tolerance is not None:
        ctx["tol_choice"] = curves.tolerance_choices(P, s.prices, s.operating_tolerance)
    return ctx


def _prob_stats(s: _Setup, rows: np.ndarray, ctx: dict) -> dict:
    """All headline statistics of one probability matrix on the resample ``rows`` (flat name -> float)."""
    P = ctx["P"]
    out = {}
    aucs, briers, eces = [], [], []
    for k, name in enumerate(s.names):
        r = rows[s.M[rows, k]]
        aucs.append(metrics.roc_auc(P[r, k], s.Y[r, k]))
        briers.append(metrics.brier_score(P[r, k], s.Y[r, k]))
        eces.append(calibration.expected_calibration_error(P[r, k], s.Y[r, k], s.n_bins))
        out[f"auc/{name}"] = aucs[-1]
    out["auc_mean"] = float(np.mean(aucs))  # NaN if any target's AUC is undefined on this resample
    if s.tasks is not None:
        within = metrics.within_task_auc(P[rows], s.Y[rows], s.M[rows], s.tasks[rows])["auc"]
        out["within_task_auc_mean"] = float(np.nanmean(within)) if np.isfinite(within).any() else float("nan")
    out["brier_mean"] = float(np.mean(briers))
    out["ece_mean"] = float(np.mean(eces))
    out.update(_choice_stats(s, rows, ctx["argmax"]))
    if "tol_choice" in ctx:
        tstats = _choice_stats(s, rows, ctx["tol_choice"])
        for key in ("router_acc", "cost_savings_price_pct", "cost_savings_query_pct"):
            if key in tstats:
                out[f"tol/{key}"] = tstats[key]
    out.update(_curve_stats(s, rows, ctx)["scalars"])
    return out


def _curve_stats(s: _Setup, rows: np.ndarray, ctx: dict) -> dict:
    """Tolerance and λ curves on the complete rows of ``rows`` plus their area metrics per cost axis.

    A resample enters as integer weights w (how often each complete row was drawn).
    """
    w = np.bincount(s.complete_pos[rows[s.complete[rows]]], minlength=s.n_complete).astype(np.float64)
    Yc = s.Y[s.complete]
    axes = s.axes(np.flatnonzero(s.complete))
    values = {"acc": Yc, **axes}
    tol_curve = ctx["tol_plan"](values, ctx["tols"], w)
    lam_curve = curves.utility_sweep(ctx["P"][s.complete], s.prices, values, s.lambdas, w,
                                     choices=ctx["lam_choices"])
    total = w.sum()
    oracle = float(w @ Yc.max(axis=1) / total)
    model_acc = w @ Yc / total
    scalars, model_points = {}, {}
    for ax, C in axes.items():
        model_cost = w @ C / total
        model_points[ax] = model_cost
        fam = curves.p_auccc_family(tol_curve[ax], tol_curve["acc"], model_cost, model_acc, oracle=oracle)
        suffix = "" if ax == "price" else "_query"
        for key in ("p_auccc", "pareto_auccc", "mdp_auccc", "pdp_auccc", "p_auccc_norm"):
            scalars[key + suffix] = fam[key]
        c_min, c_max = fam["c_min"], fam["c_max"]
        if c_max > c_min:
            scalars["aiq" + suffix] = curves.aiq(lam_curve[ax], lam_curve["acc"], c_min, c_max)
            scalars["aiq_zero" + suffix] = curves.aiq(model_cost, model_acc, c_min, c_max)
        else:
            scalars["aiq" + suffix] = scalars["aiq_zero" + suffix] = float("nan")
    return {"scalars": scalars, "tolerance": tol_curve, "lambda": lam_curve, "model_cost": model_points,
            "model_acc": model_acc, "oracle": oracle}


def _bootstrap_dict(stat: Callable[[np.ndarray], dict], n: int, n_boot: int, seed: int, alpha: float,
                    idx: np.ndarray | None = None) -> tuple[dict, np.ndarray, list]:
    """Run a dict-valued statistic on the full data and on each resample; returns (headline, reps, keys)."""
    full = stat(np.arange(n))
    keys = list(full)
    idx = resample_indices(n, n_boot, seed) if idx is None else idx
    reps = np.empty((idx.shape[0], len(keys)))
    for b, r in enumerate(idx):
        d = stat(r)
        reps[b] = [d.get(k, np.nan) for k in keys]
    lo, hi, n_nan = _percentile_ci(reps, alpha)
    head = {k: {"value": float(full[k]), "ci_low": float(lo[i]), "ci_high": float(hi[i]), "n_nan": int(n_nan[i])}
            for i, k in enumerate(keys)}
    return head, reps, keys


_BASELINE_KEYS = ("oracle_acc", "best_single_acc", "random_acc", "cheapest_acc", "disagree_best_single_acc")


# ----------------------------------------------------------------------------- public API
def evaluate_router(P, Y, M, costs, prices_in, target_names=None, *, tolerances=None, lambdas=None,
                    n_boot: int = 1000, seed: int = 0, best_single_index: int | None = None,
                    operating_tolerance: float | None = 0.2, n_bins: int = 15, alpha: float = 0.05,
                    tasks=None, headline: dict | None = None) -> dict:
    """Full headline metrics of one router's predictions, each with a percentile bootstrap CI.

    Args:
      P: [N, K] predicted P(correct). Y: [N, K] {0, 1} labels, NaN missing. M: [N, K] bool (None: ~isnan(Y)).
      costs: [N, K] per-prompt $ (per-query cost axis) or None. prices_in: [K] $/M input tokens (ranking
        and price axis). target_names: K names.
      tolerances: [T] tolerance grid (default: every distinct p_max − p̂ gap on the complete rows).
      lambdas: [G] λ grid for the utility sweep / AIQ (default linspace(0, 1, 101)).
      best_single_index: best single target chosen on TRAINING rows (honest); None picks it on these rows.
      operating_tolerance: τ of the reported tolerance operating point (toolkit default 0.2), or None.
      tasks: N task names: adds within-task AUC (headline ``within_task_auc_mean``, ``per_target[.]
        ['within_task_auc']``, task counts under ``within_task``); None leaves it out.
      headline: this router's bootstrap headline already computed with the same arguments and default grids,
        i.e. ``compare_routers(...)['rows'][name]`` (same rows, resamples and statistics): reused instead of
        bootstrapping again; ValueError if its point estimates are not this router's.
    Returns a dict: ``headline`` {metric: {value, ci_low, ci_high, n_nan}}, ``per_target`` {name: {...}},
      ``curves`` (tolerance/λ curves and model points per axis), ``diagnostics`` (zones, near-misses, win
      rates, unique-solver recall, choice distribution), ``calibration`` (reliability data), ``counts``,
      ``protocol`` and ``variants`` (definitions of each number).
    """
    s = _Setup(Y, M, costs, prices_in, target_names, best_single_index, tolerances, lambdas, n_bins,
               operating_tolerance, tasks)
    P, _, _, _, _ = metrics.check_inputs(P, s.Y, s.M)
    logging.info("evaluate_router: N=%d (complete %d), K=%d, n_boot=%d", s.N, int(s.complete.sum()), s.K, n_boot)
    ctx = _prob_context(s, P)
    if headline is None:
        head, _, _ = _bootstrap_dict(lambda r: _prob_stats(s, r, ctx), s.N, n_boot, seed, alpha)
    else:
        full = _prob_stats(s, np.arange(s.N), ctx)
        if list(full) != list(headline) or any(
                not np.array_equal(float(full[k]), headline[k]["value"], equal_nan=True) for k in full):
            raise ValueError("evaluate_router got a headline computed from other predictions or settings; pass "
                             "compare_routers(...)['rows'][name] of the same P, rows and arguments, or none.")
        head = {k: dict(v) for k, v in headline.items()}
    gap_degenerate = bool(np.isnan(head["gap_captured_pct"]["value"]))

    all_rows = np.arange(s.N)
    cv = _curve_stats(s, all_rows, ctx)
    rc = all_rows[s.complete]
    Yc, Pc = s.Y[rc], P[rc]
    argmax = np.argmax(Pc, axis=1)
    per_target = {}
    acc_k = metrics.target_accuracy(s.Y, s.M)
    brier_k = metrics.per_target_brier(P, s.Y, s.M)
    ece_k = calibration.per_target_ece(P, s.Y, s.M, n_bins)
    ece_q = calibration.per_target_ece(P, s.Y, s.M, n_bins, "quantile")
    for k, name in enumerate(s.names):
        a = head[f"auc/{name}"]
        per_target[name] = {"auc": a["value"], "auc_ci": [a["ci_low"], a["ci_high"]], "accuracy": float(acc_k[k]),
                            "brier": float(brier_k[k]), "ece_uniform": float(ece_k[k]),
                            "ece_quantile": float(ece_q[k]), "n": int(s.M[:, k].sum()),
                            "n_pos": int(np.nansum(s.Y[:, k])), "price_in": float(s.prices[k])}
    within = None
    if tasks is not None:
        w = metrics.within_task_auc(P, s.Y, s.M, tasks)
        within = {name: {"auc": float(w["auc"][k]), "tasks_used": int(w["tasks_used"][k]),
                         "tasks_excluded": int(w["tasks_excluded"][k]), "excluded": w["excluded"][k]}
                  for k, name in enumerate(s.names)}
        for name in s.names:
            per_target[name]["within_task_auc"] = within[name]["auc"]
    return {
        "headline": head,
        "per_target": per_target,
        "target_names": s.names,
        "best_single": {"index": s.best_index, "name": s.names[s.best_index], "selected_on": s.best_selected_on},
        "gap_captured_degenerate": gap_degenerate,
        "curves": {"tolerance": cv["tolerance"], "lambda": cv["lambda"], "model_cost": cv["model_cost"],
                   "model_acc": cv["model_acc"], "oracle": cv["oracle"]},
        "diagnostics": {
            "agreement_zones": metrics.agreement_zones(Yc, argmax),
            "near_misses": metrics.near_misses(Pc, Yc, argmax),
            "pairwise_win_rates": metrics.pairwise_win_rates(P, s.Y, s.M),
            "unique_solver_recall": metrics.unique_solver_recall(Yc, argmax),
            "choice_fraction": np.bincount(argmax, minlength=s.K) / max(rc.size, 1),
        },
        "calibration": {"uniform": calibration.per_target_reliability(P, s.Y, s.M, 10, "uniform"),
                        "quantile": calibration.per_target_reliability(P, s.Y, s.M, 10, "quantile")},
        "within_task": within,
        "counts": {"n_rows": s.N, "n_complete": s.n_complete, "n_incomplete_dropped": s.N - s.n_complete,
                   "n_disagree": int(s.disagree.sum())},
        "protocol": {"n_boot": n_boot, "seed": seed, "alpha": alpha, "operating_tolerance": operating_tolerance,
                     "rank_cost": "prices_in ($/M input tokens)", "n_bins": n_bins},
        "variants": dict(VARIANTS),
    }


def compare_routers(routers: Mapping[str, np.ndarray], Y, M, costs, prices_in, target_names=None, *,
                    reference: str | None = None, n_boot: int = 1000, seed: int = 0,
                    best_single_index: int | None = None, operating_tolerance: float | None = 0.2,
                    alpha: float = 0.05, digits: int = 3, tasks=None) -> dict:
    """Compare routers on the same rows and resamples.

    Args:
      routers: name -> P [N, K] probabilities (full metric set, argmax choices) or choices [N] int
        (accuracy/cost metrics only).
      reference: router the others are tested against (default: the first); paired bootstrap of each
        metric's difference (router − reference) with a two-sided p-value; the table shows router accuracy.
      tasks: N task names (adds within-task AUC, see ``evaluate_router``).
    Returns {'rows': {router: {metric: {value, ci_low, ci_high}}}, 'baselines': {...}, 'paired': {router:
      {metric: {diff, low, high, p_value}}} for every metric both routers have, 'markdown': str}.
    """
    if not routers:
        raise ValueError("compare_routers needs at least one router.")
    s = _Setup(Y, M, costs, prices_in, target_names, best_single_index, None, None, 15, operating_tolerance, tasks)
    names = list(routers)
    reference = names[0] if reference is None else reference
    if reference not in routers:
        raise ValueError(f"reference {reference!r} is not one of the routers {names}.")
    idx = resample_indices(s.N, n_boot, seed)
    rows, reps_by = {}, {}
    for name, arr in routers.items():
        arr = np.asarray(arr)
        if arr.ndim == 2:
            P, _, _, _, _ = metrics.check_inputs(arr, s.Y, s.M)
            stat = (lambda c_: lambda r: _prob_stats(s, r, c_))(_prob_context(s, P))
        elif arr.ndim == 1:
            _, _, _, _, ch = metrics.check_inputs(None, s.Y, s.M, None, arr)
            stat = (lambda c_: lambda r: _choice_stats(s, r, c_))(ch)
        else:
            raise ValueError(f"router {name!r}: expected P [N, K] or choices [N]; got shape {arr.shape}.")
        head, reps, keys = _bootstrap_dict(stat, s.N, n_boot, seed, alpha, idx)
        rows[name] = head
        reps_by[name] = dict(zip(keys, reps.T))
    paired = {}
    for name in names:
        if name == reference:
            continue
        shared = [k for k in reps_by[name] if k in reps_by[reference] and k not in _BASELINE_KEYS]
        paired[name] = {k: _paired_summary(rows[name][k]["value"] - rows[reference][k]["value"],
                                           reps_by[name][k] - reps_by[reference][k], alpha) for k in shared}
    first = rows[names[0]]
    baselines = {key: first[key] for key in _BASELINE_KEYS}
    columns = [("router_acc", "router acc"), ("gap_captured_pct", "gap captured %"),
               ("cost_savings_price_pct", "savings % (price)"), ("cost_savings_query_pct", "savings % (per-query)"),
               ("auc_mean", "mean AUC"), ("within_task_auc_mean", "within-task AUC"),
               ("disagree_router_acc", "acc (disagree zone)"),
               ("p_auccc", "P-AUCCC"), ("aiq", "AIQ")]
    columns = [c for c in columns if any(c[0] in r for r in rows.values())]
    table = [["router"] + [c[1] for c in columns] + [f"Δacc vs {reference} (p)"]]
    for name in names:
        cells = [name]
        for key, _ in columns:
            m = rows[name].get(key)
            cells.append("—" if m is None else format_ci(m["value"], m["ci_low"], m["ci_high"], digits))
        if name == reference:
            cells.append("ref")
        else:
            pr = paired[name]["router_acc"]
            cells.append(f"{format_ci(pr['diff'], pr['low'], pr['high'], digits)} (p={pr['p_value']:.3g})")
        table.append(cells)
    for key, label in (("oracle_acc", "Oracle"), ("best_single_acc", f"best single ({s.names[s.best_index]})"),
                       ("random_acc", "random"), ("cheapest_acc", f"cheapest ({s.names[s.cheapest]})")):
        m = baselines[key]
        table.append([label, format_ci(m["value"], m["ci_low"], m["ci_high"], digits)] + [""] * len(columns))
    return {"rows": rows, "baselines": baselines, "paired": paired, "reference": reference,
            "best_single": {"index": s.best_index, "name": s.names[s.best_index], "selected_on": s.best_selected_on},
            "markdown": markdown_table(table)}


# ----------------------------------------------------------------------------- formatting
def format_ci(value: float, low: float, high: float, digits: int = 3) -> str:
    """'0.712 [0.690, 0.735]' ('nan' parts printed as 'nan')."""
    f = f"{{:.{digits}f}}"
    return f"{f.format(value)} [{f.format(low)}, {f.format(high)}]"


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table from rows of cells; the first row is the header."""
    header, *body = [[str(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r + [""] * (len(header) - len(r))) + " |" for r in body]
    return "\n".join(lines)


_HEADLINE_ORDER = [
    ("auc_mean", "mean per-target AUC"), ("within_task_auc_mean", "mean within-task AUC"),
    ("brier_mean", "mean Brier"), ("ece_mean", "mean ECE (15 equal-width bins)"),
    ("router_acc", "router accuracy (argmax)"), ("oracle_acc", "Oracle accuracy"),
    ("best_single_acc", "best single accuracy"), ("random_acc", "random router accuracy"),
    ("cheapest_acc", "cheapest model accuracy"), ("gap_captured_pct", "gap captured % (argmax)"),
    ("disagree_router_acc", "router accuracy on the disagreement zone"),
    ("disagree_best_single_acc", "best single accuracy on the disagreement zone"),
    ("cost_savings_price_pct", "cost savings % vs most expensive (price axis, argmax)"),
    ("cost_savings_query_pct", "cost savings % vs most expensive (per-query $, argmax)"),
    ("tol/router_acc", "router accuracy (tolerance τ)"),
    ("tol/cost_savings_price_pct", "cost savings % (price axis, tolerance τ)"),
    ("tol/cost_savings_query_pct", "cost savings % (per-query $, tolerance τ)"),
    ("p_auccc", "P-AUCCC (price axis)"), ("pareto_auccc", "Pareto-AUCCC (price axis)"),
    ("mdp_auccc", "MDP-AUCCC (price axis)"), ("pdp_auccc", "PDP-AUCCC (price axis)"),
    ("p_auccc_norm", "P-AUCCC / (oracle − floor)"), ("aiq", "AIQ (price axis)"),
    ("aiq_zero", "AIQ Zero router (price axis)"),
    ("p_auccc_query", "P-AUCCC (per-query $)"), ("aiq_query", "AIQ (per-query $)"),
    ("aiq_zero_query", "AIQ Zero router (per-query $)"),
]


def markdown_report(result: dict, title: str = "Routing evaluation", digits: int = 3) -> str:
    """Markdown section for one ``evaluate_router`` result: headline table with CIs, per-target table, notes."""
    head = result["headline"]
    proto = result["protocol"]
    lines = [f"## {title}", "",
             f"Rows: {result['counts']['n_rows']} ({result['counts']['n_complete']} complete, "
             f"{result['counts']['n_incomplete_dropped']} dropped from routing metrics). "
             f"95% percentile bootstrap CIs over prompts (B={proto['n_boot']}, seed {proto['seed']}). "
             f"Best single: {result['best_single']['name']} (selected on {result['best_single']['selected_on']} rows). "
             f"Tolerance operating point τ = {proto['operating_tolerance']}.", ""]
    table = [["metric", "value [95% CI]"]]
    for key, label in _HEADLINE_ORDER:
        if key in head:
            m = head[key]
            table.append([label, format_ci(m["value"], m["ci_low"], m["ci_high"], digits)])
    lines += [markdown_table(table), ""]
    if result.get("gap_captured_degenerate"):
        lines += ["*Gap captured is undefined: the Oracle equals the best single model on these rows.*", ""]
    within = result.get("within_task")
    pt = [["target", "price $/M in", "accuracy", "AUC [95% CI]", "Brier", "ECE (width)", "ECE (mass)", "n"]
          + (["within-task AUC (tasks used / excluded)"] if within else [])]
    for name, d in result["per_target"].items():
        pt.append([name, f"{d['price_in']:.3g}", f"{d['accuracy']:.{digits}f}",
                   format_ci(d["auc"], d["auc_ci"][0], d["auc_ci"][1], digits), f"{d['brier']:.{digits}f}",
                   f"{d['ece_uniform']:.{digits}f}", f"{d['ece_quantile']:.{digits}f}", str(d["n"])]
                  + ([f"{within[name]['auc']:.{digits}f} ({within[name]['tasks_used']} / "
                      f"{within[name]['tasks_excluded']})"] if within else []))
    lines += [markdown_table(pt), "", "Definitions:", ""]
    lines += [f"- `{k}`: {v}" for k, v in result["variants"].items()]
    return "\n".join(lines) + "\n"
