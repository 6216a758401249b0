"""Per-target and routing metrics on the same predictions (method.md §7).

Axis letters: N prompts (rows), K targets.

Inputs convention (every function validates what it takes):
    P       [N, K] float  predicted P(target k answers prompt q correctly)
    Y       [N, K] float  labels in {0, 1}, NaN where missing
    M       [N, K] bool   True where a label exists (must equal ~isnan(Y))
    costs   [N, K] float  per-prompt $ cost (a per-model price [K] is broadcast by the caller)
    choices [N]    int    routed target per prompt

Missing-label rules (a missing label is never turned into 0):
    * per-target metrics (AUC, Brier, ECE, accuracy) use the rows where that target's label exists;
    * ``router_accuracy`` uses the rows where the *chosen* target's label exists; the excluded rows are
      counted by ``n_missing_chosen``;
    * oracle / best-single / random / cheapest / agreement zones need every label of a row (the
      oracle of a row with a missing label is unknown), so they raise on incomplete rows: pass
      ``Y[complete_rows(M)]``. ``evaluate_router`` does this and reports how many rows it dropped.
All arithmetic is float64 numpy.
"""
from __future__ import annotations

import numpy as np
import scipy.stats

__all__ = [
    "check_inputs", "complete_rows", "roc_auc", "per_target_auc", "brier_score", "per_target_brier",
    "target_accuracy", "chosen_labels", "router_accuracy", "n_missing_chosen", "oracle_accuracy",
    "best_single", "random_accuracy", "cheapest_index", "gap_captured", "cost_savings",
    "most_expensive_index", "agreement_zones", "unique_solver_recall", "near_misses",
    "pairwise_win_rates", "within_task_auc", "grouped_auc", "disagreement_rows", "task_codes",
]


# ----------------------------------------------------------------------------- validation
def check_inputs(P=None, Y=None, M=None, costs=None, choices=None) -> tuple:
    """Validate and convert the standard inputs; returns (P, Y, M, costs, choices) as float64/bool/int.

    ``M`` defaults to ``~isnan(Y)``. Raises ValueError naming the problem and the fix.
    """
    shape = None
    if Y is not None:
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim != 2:
            raise ValueError(f"Y must be [N, K] labels; got shape {Y.shape}. Reshape single-target labels to [N, 1].")
        shape = Y.shape
        ok = np.isnan(Y) | (Y == 0) | (Y == 1)
        if not ok.all():
            raise ValueError("Y must hold 0/1 labels (NaN for missing); binarise graded scores before evaluating.")
        if M is None:
            M = ~np.isnan(Y)
    if M is not None:
        M = np.asarray(M)
        if M.dtype != bool:
            raise ValueError(f"M must be a bool mask; got dtype {M.dtype}. Pass M.astype(bool).")
        if shape is not None and M.shape != shape:
            raise ValueError(f"M shape {M.shape} != Y shape {shape}.")
        if Y is not None and np.any(M != ~np.isnan(Y)):
            raise ValueError("M disagrees with Y: M must be True exactly where Y is not NaN. Build M as ~np.isnan(Y).")
        shape = shape or M.shape
    if P is not None:
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 2 or (shape is not None and P.shape != shape):
            raise ValueError(f"P must be [N, K] matching the labels {shape}; got {P.shape}.")
        if not np.all(np.isfinite(P)):
            raise ValueError("P holds NaN/inf; predictions must be finite probabilities.")
        shape = shape or P.shape
    if costs is not None:
        costs = np.asarray(costs, dtype=np.float64)
        if costs.ndim == 1 and shape is not None:
            if costs.shape[0] != shape[1]:
                raise ValueError(f"costs [K] has {costs.shape[0]} entries for K={shape[1]} targets.")
            costs = np.broadcast_to(costs, shape)
        if shape is not None and costs.shape != shape:
            raise ValueError(f"costs must be [N, K] = {shape} (or [K] prices); got {costs.shape}.")
        if not np.all(np.isfinite(costs)) or np.any(costs < 0):
            raise ValueError("costs must be finite and >= 0; fill unknown costs before evaluating.")
    if choices is not None:
        choices = np.asarray(choices)
        if choices.ndim != 1 or not np.issubdtype(choices.dtype, np.integer):
            raise ValueError(f"choices must be a 1-D int array [N]; got {choices.dtype} {choices.shape}.")
        if shape is not None:
            if choices.shape[0] != shape[0]:
                raise ValueError(f"choices has {choices.shape[0]} rows, labels have N={shape[0]}.")
            if choices.size and (choices.min() < 0 or choices.max() >= shape[1]):
                raise ValueError(f"choices must index targets in [0, {shape[1]}).")
    return P, Y, M, costs, choices


def complete_rows(M) -> np.ndarray:
    """[N] bool: rows where every target's label exists."""
    return np.asarray(M, dtype=bool).all(axis=1)


def _require_complete(Y: np.ndarray, what: str) -> None:
    if np.isnan(Y).any():
        raise ValueError(f"{what} needs every label of a row; pass Y[complete_rows(M)] (rows with a missing "
                         f"label have an unknown oracle).")
    if Y.shape[0] == 0:
        raise ValueError(f"{what}: no rows to evaluate.")


# ----------------------------------------------------------------------------- per-target
def roc_auc(scores, labels) -> float:
    """ROC-AUC = P(s+ > s-) + 0.5·P(s+ = s-) (Mann–Whitney U with mid-ranks for ties).

    AUC = (Σ_{i∈pos} rank_i − n₊(n₊+1)/2) / (n₊·n₋), ranks 1-based, tied scores share their mean rank.
    NaN when a class is empty.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    n_pos = int((y == 1).sum())
    n_neg = int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = scipy.stats.rankdata(s, method="average")
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def per_target_auc(P, Y, M=None) -> np.ndarray:
    """[K] ROC-AUC of P[:, k] vs Y[:, k] over rows with a label for k; NaN where a class is empty."""
    P, Y, M, _, _ = check_inputs(P, Y, M)
    return np.array([roc_auc(P[M[:, k], k], Y[M[:, k], k]) for k in range(Y.shape[1])])


def brier_score(p, y) -> float:
    """Brier = mean_i (p_i − y_i)²; NaN for no rows."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if p.size else float("nan")


def per_target_brier(P, Y, M=None) -> np.ndarray:
    """[K] Brier score per target over rows with a label for k."""
    P, Y, M, _, _ = check_inputs(P, Y, M)
    return np.array([brier_score(P[M[:, k], k], Y[M[:, k], k]) for k in range(Y.shape[1])])


def target_accuracy(Y, M=None) -> np.ndarray:
    """[K] accuracy of each single target = mean_q y_{q,k} over rows with a label for k (NaN if none)."""
    _, Y, M, _, _ = check_inputs(Y=Y, M=M)
    n = M.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(Y, axis=0) / n, np.nan)


def task_codes(tasks) -> tuple[np.ndarray, list[str]]:
    """([N] int codes, sorted distinct task names) of N task names."""
    names, codes = np.unique(np.asarray([str(t) for t in tasks]), return_inverse=True)
    return codes.astype(np.int64), names.tolist()


def grouped_auc(scores, labels, groups, n_groups: int) -> np.ndarray:
    """[G] ROC-AUC of ``scores`` vs ``labels`` within each group (``groups`` [n] int in [0, G)), mid-ranks for
    ties as in ``roc_auc``; NaN where a group lacks a class. One lexsort for all groups."""
    s, y, g = (np.asarray(a) for a in (scores, labels, groups))
    order = np.lexsort((s, g))
    s, y, g = s[order], y[order].astype(np.float64), g[order]
    n = s.size
    pos = np.arange(n)
    new_run = np.r_[True, (np.diff(s) != 0) | (np.diff(g) != 0)] if n else np.zeros(0, bool)
    starts = pos[new_run]
    ends = np.r_[starts[1:], n]
    mid = (starts + ends - 1) / 2.0                              # mean 0-based position of each tie run
    group_first = np.maximum.accumulate(np.where(np.r_[True, np.diff(g) != 0] if n else new_run, pos, 0))
    rank = mid[np.cumsum(new_run) - 1] - group_first + 1.0       # 1-based mid-rank within the group
    n_pos = np.bincount(g, weights=y, minlength=n_groups)
    n_neg = np.bincount(g, minlength=n_groups) - n_pos
    rank_sum = np.bincount(g, weights=rank * y, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def within_task_auc(P, Y, M, tasks) -> dict:
    """Per-target AUC within tasks: the prompt-weighted mean of per-task AUCs.

    For target k, T_k = tasks whose rows with a label for k hold both classes; with n_{g,k} those rows,
        AUC^within_k = Σ_{g∈T_k} n_{g,k} · AUC(P[g, k], Y[g, k]) / Σ_{g∈T_k} n_{g,k}   (NaN if T_k is empty).
    A router that only knows the task scores exactly 0.5 (its predictions are constant within a task).
    Returns {'auc': [K], 'tasks_used': [K] int, 'tasks_excluded': [K] int (tasks with one class, or no
    label, for k), 'excluded': [K] lists of excluded task names}.
    """
    P, Y, M, _, _ = check_inputs(P, Y, M)
    if len(tasks) != Y.shape[0]:
        raise ValueError(f"tasks has {len(tasks)} entries for N={Y.shape[0]} rows; pass one task name per row.")
    codes, names = task_codes(tasks)
    G, K = len(names), Y.shape[1]
    out = {"auc": np.full(K, np.nan), "tasks_used": np.zeros(K, np.int64), "tasks_excluded": np.zeros(K, np.int64),
           "excluded": [[] for _ in range(K)]}
    for k in range(K):
        r = M[:, k]
        auc = grouped_auc(P[r, k], Y[r, k], codes[r], G)
        n = np.bincount(codes[r], minlength=G)
        used = ~np.isnan(auc)
        out["tasks_used"][k] = int(used.sum())
        out["tasks_excluded"][k] = G - int(used.sum())
        out["excluded"][k] = [names[g] for g in np.flatnonzero(~used)]
        if used.any():
            out["auc"][k] = float(np.sum(n[used] * auc[used]) / np.sum(n[used]))
    return out


def disagreement_rows(Y) -> np.ndarray:
    """[N] bool on complete rows: the targets do not all agree (some but not all correct)."""
    Y = np.asarray(Y, dtype=np.float64)
    _require_complete(Y, "disagreement_rows")
    n_correct = Y.sum(axis=1)
    return (n_correct > 0) & (n_correct < Y.shape[1])


# ----------------------------------------------------------------------------- routing
def chosen_labels(Y, choices) -> np.ndarray:
    """[N] y_{q, c(q)} (NaN where the chosen target's label is missing)."""
    Y = np.asarray(Y, dtype=np.float64)
    choices = np.asarray(choices)
    return Y[np.arange(Y.shape[0]), choices]


def router_accuracy(Y, M, choices) -> float:
    """Router acc = mean_q y_{q,c(q)} over rows where the chosen target's label exists (method.md §7)."""
    _, Y, M, _, choices = check_inputs(Y=Y, M=M, choices=choices)
    y = chosen_labels(Y, choices)
    keep = ~np.isnan(y)
    return float(y[keep].mean()) if keep.any() else float("nan")


def n_missing_chosen(M, choices) -> int:
    """Rows excluded from ``router_accuracy`` because the chosen target's label is missing."""
    M = np.asarray(M, dtype=bool)
    return int((~M[np.arange(M.shape[0]), np.asarray(choices)]).sum())


def oracle_accuracy(Y) -> float:
    """Oracle = mean_q max_k y_{q,k} (complete rows only)."""
    Y = np.asarray(Y, dtype=np.float64)
    _require_complete(Y, "oracle_accuracy")
    return float(Y.max(axis=1).mean())


def best_single(Y, index: int | None = None) -> tuple[float, int]:
    """(accuracy, index) of the best single target = max_k mean_q y_{q,k} (complete rows).

    Honest protocol: pick ``index`` on TRAINING rows and pass it here; with ``index=None`` the target is
    chosen on these (evaluation) rows, which flatters the baseline by selection (ties → lowest index).
    """
    Y = np.asarray(Y, dtype=np.float64)
    _require_complete(Y, "best_single")
    acc = Y.mean(axis=0)
    k = int(np.argmax(acc)) if index is None else int(index)
    if not 0 <= k < Y.shape[1]:
        raise ValueError(f"best_single index {k} is outside [0, {Y.shape[1]}).")
    return float(acc[k]), k


def random_accuracy(Y) -> float:
    """Expected accuracy of the uniform random router = mean_q mean_k y_{q,k} (complete rows)."""
    Y = np.asarray(Y, dtype=np.float64)
    _require_complete(Y, "random_accuracy")
    return float(Y.mean())


def cheapest_index(prices) -> int:
    """Index of the cheapest target (argmin of the per-model price, ties → lowest index)."""
    return int(np.argmin(np.asarray(prices, dtype=np.float64)))


def most_expensive_index(costs) -> int:
    """Index of the most expensive target: argmax_k Σ_q cost_{q,k} ([N, K]) or argmax price ([K])."""
    c = np.asarray(costs, dtype=np.float64)
    return int(np.argmax(c.sum(axis=0) if c.ndim == 2 else c))


def gap_captured(acc_router: float, acc_best_single: float, acc_oracle: float, *, eps: float = 1e-12) -> float:
    """Gap captured (%) = (Acc_router − Acc_best) / (Acc_oracle − Acc_best) × 100 (method.md §7).

    Returns NaN (not an error) when Acc_oracle − Acc_best ≤ eps: no headroom, the ratio is undefined;
    ``evaluate_router`` sets the flag ``gap_captured_degenerate``.
    """
    head = acc_oracle - acc_best_single
    if not np.isfinite(head) or head <= eps:
        return float("nan")
    return float((acc_router - acc_best_single) / head * 100.0)


def cost_savings(costs, choices, reference_index: int | None = None) -> float:
    """Cost savings = 1 − Σ_q cost_{q,c(q)} / Σ_q cost_{q,k_ref}; k_ref defaults to the most expensive target.

    ``costs`` is [N, K] per-prompt $ or [K] per-model prices (the price axis: Σ price_{c(q)} / (N·price_ref)).
    """
    choices = np.asarray(choices)
    c = np.asarray(costs, dtype=np.float64)
    if c.ndim == 1:
        c = np.broadcast_to(c, (choices.shape[0], c.shape[0]))
    _, _, _, c, choices = check_inputs(costs=c, choices=choices)
    k_ref = most_expensive_index(c) if reference_index is None else int(reference_index)
    ref = c[:, k_ref].sum()
    if ref <= 0:
        return float("nan")
    return float(1.0 - c[np.arange(c.shape[0]), choices].sum() / ref)


# ----------------------------------------------------------------------------- diagnostics
def agreement_zones(Y, choices=None) -> dict:
    """Toolkit agreement zones on complete rows: all-correct, disagree (some but not all), all-wrong.

    Returns per zone the row fraction and, when ``choices`` is given, the router accuracy in the zone.
    """
    Y = np.asarray(Y, dtype=np.float64)
    _require_complete(Y, "agreement_zones")
    n_correct = Y.sum(axis=1)
    K = Y.shape[1]
    zones = {"all_correct": n_correct == K, "disagree": (n_correct > 0) & (n_correct < K),
             "all_wrong": n_correct == 0}
    out = {}
    y_chosen = None if choices is None else chosen_labels(Y, choices)
    for name, rows in zones.items():
        entry = {"fraction": float(rows.mean()), "n": int(rows.sum())}
        if y_chosen is not None:
            entry["router_accuracy"] = float(y_chosen[rows].mean()) if rows.any() else float("nan")
        out[name] = entry
    return out


def unique_solver_recall(Y, choices) -> np.ndarray:
    """[K] recall of "the only model that gets it right": among complete rows where k alone is correct,
    the fraction routed to k (NaN where target k is never the unique solver)."""
    Y = np.asarray(Y, dtype=np.float64)
    _require_complete(Y, "unique_solver_recall")
    choices = np.asarray(choices)
    only = (Y.sum(axis=1) == 1)
    out = np.full(Y.shape[1], np.nan)
    for k in range(Y.shape[1]):
        rows = only & (Y[:, k] == 1)
        if rows.any():
            out[k] = float((choices[rows] == k).mean())
    return out


def near_misses(P, Y, choices, *, flip_gap: float = 0.05) -> dict:
    """Toolkit near-miss analysis on complete rows of the disagree zone where the router chose wrong.

    gap_q = p̂_{q,c(q)} − max_{k: y_{q,k}=1} p̂_{q,k};  flippable iff gap_q < flip_gap (toolkit: 0.05).
    Returns n_disagree, n_wrong, fraction_flippable (of n_wrong), mean/median gap.
    """
    P, Y, _, _, choices = check_inputs(P, Y, None, None, choices)
    _require_complete(Y, "near_misses")
    n_correct = Y.sum(axis=1)
    disagree = (n_correct > 0) & (n_correct < Y.shape[1])
    rows = np.arange(Y.shape[0])
    wrong = disagree & (Y[rows, choices] == 0)
    best_correct = np.where(Y == 1, P, -np.inf).max(axis=1)
    gaps = (P[rows, choices] - best_correct)[wrong]
    n_wrong = int(wrong.sum())
    return {
        "n_disagree": int(disagree.sum()),
        "n_wrong": n_wrong,
        "n_flippable": int((gaps < flip_gap).sum()),
        "fraction_flippable": float((gaps < flip_gap).mean()) if n_wrong else float("nan"),
        "mean_gap": float(gaps.mean()) if n_wrong else float("nan"),
        "median_gap": float(np.median(gaps)) if n_wrong else float("nan"),
    }


def pairwise_win_rates(P, Y, M=None) -> np.ndarray:
    """[K, K] W[a, b] = P(p̂_a > p̂_b | y_a = 1, y_b = 0) over rows where both labels exist (toolkit:
    strict >, ties count as losses); NaN on the diagonal and where no such row exists.

    The toolkit restricts to its disagree zone; a row with y_a = 1, y_b = 0 is always in it, so the
    definitions agree on complete rows.
    """
    P, Y, M, _, _ = check_inputs(P, Y, M)
    K = Y.shape[1]
    W = np.full((K, K), np.nan)
    for a in range(K):
        for b in range(K):
            if a == b:
                continue
            rows = M[:, a] & M[:, b] & (Y[:, a] == 1) & (Y[:, b] == 0)
            if rows.any():
                W[a, b] = float((P[rows, a] > P[rows, b]).mean())
    return W
