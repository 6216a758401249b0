"""Descriptive statistics of a RoutingDataset (JSON-ready dict + Markdown rendering).

Axes: N prompts (rows), K targets. Accuracies are over each target's observed labels; row-level
shares (Oracle, all-wrong, all-correct) are over rows with at least one observed label:
    oracle      = mean_i max_k y_ik               (some target is right)
    all_wrong   = mean_i [max_k y_ik = 0]         (= 1 - oracle)
    all_correct = mean_i [min_k y_ik = 1]
    disagreement[a, b] = #{i : both observed, y_ia != y_ib} / #{i : both observed}
"""
from __future__ import annotations

import collections
import json
import math
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from prefill_router import fileio

from .costs import per_prompt_costs
from .dataset import SPLIT_NAMES, RoutingDataset


def _f(x: float) -> float | None:
    """JSON-friendly float (None for NaN)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _cost_matrix(ds: RoutingDataset, costs: np.ndarray | None) -> tuple[np.ndarray, str]:
    """[N, K] costs: given, the dataset's real costs (estimates where missing), or estimates."""
    if costs is not None:
        return np.asarray(costs, dtype=np.float64), "given"
    train = ds.rows("train")
    rows = train if train.size else np.arange(ds.num_rows)
    source = "real" if ds.costs is not None else "estimated"
    return per_prompt_costs(ds, train_rows=rows, use_real_costs=True), source


def dataset_stats(ds: RoutingDataset, rows: Sequence[int] | np.ndarray | None = None,
                  costs: np.ndarray | None = None) -> dict[str, Any]:
    """Statistics of `ds` restricted to `rows` (default: all rows); see the module docstring.

    costs: optional [N, K] matrix (over all rows of ds); default: real costs where the dataset has
    them, else `costs.per_prompt_costs` estimates (medians over train rows, or all rows if none).
    """
    cost_matrix, cost_source = _cost_matrix(ds, costs)
    if cost_matrix.shape != (ds.num_rows, ds.num_targets):
        raise ValueError(f"costs have shape {cost_matrix.shape}, expected {(ds.num_rows, ds.num_targets)}")
    if rows is not None:
        rows = np.asarray(rows)
        cost_matrix = cost_matrix[rows]
        ds = ds.subset(rows)
    labels, mask, targets = ds.labels, ds.mask, ds.targets
    n, k = labels.shape
    counts = mask.sum(0)
    positives = np.where(mask, labels, 0).sum(0)
    acc = np.where(counts > 0, positives / np.maximum(counts, 1), np.nan)
    per_target = {}
    single_class = []
    for j, t in enumerate(targets):
        col_cost = cost_matrix[:, j]
        col_cost = col_cost[~np.isnan(col_cost)]
        per_target[t] = {
                "accuracy": _f(acc[j]), "labelled": int(counts[j]), "positives": int(positives[j]),
                "missing_share": _f(1.0 - counts[j] / n) if n else None,
                "cost_min": _f(col_cost.min()) if col_cost.size else None,
                "cost_median": _f(np.median(col_cost)) if col_cost.size else None,
                "cost_max": _f(col_cost.max()) if col_cost.size else None,
                "price_in_per_m": ds.prices[t][0], "price_out_per_m": ds.prices[t][1]}
        if counts[j] > 0 and positives[j] in (0, counts[j]):
            single_class.append(t)
    any_label = mask.any(1)
    filled_hi = np.where(mask, labels, -np.inf).max(1)
    filled_lo = np.where(mask, labels, np.inf).min(1)
    m = int(any_label.sum())
    oracle = float(np.mean(filled_hi[any_label] == 1)) if m else math.nan
    all_wrong = float(np.mean(filled_hi[any_label] == 0)) if m else math.nan
    all_correct = float(np.mean(filled_lo[any_label] == 1)) if m else math.nan
    disagreement = np.full((k, k), np.nan)
    for a in range(k):
        for b in range(k):
            both = mask[:, a] & mask[:, b]
            if both.any():
                disagreement[a, b] = float(np.mean(labels[both, a] != labels[both, b]))
    best = int(np.nanargmax(acc)) if np.any(~np.isnan(acc)) else None
    per_task = collections.Counter(ds.tasks)
    task_acc = {}
    tasks_arr = np.asarray(ds.tasks)
    for task in sorted(per_task):
        sel = tasks_arr == task
        c = mask[sel].sum(0)
        p = np.where(mask[sel], labels[sel], 0).sum(0)
        task_acc[task] = {t: _f(p[j] / c[j]) if c[j] else None for j, t in enumerate(targets)}
    return {
            "name": ds.name, "num_rows": n, "num_targets": k, "targets": list(targets),
            "rows_with_labels": m, "split_counts": {s: int(np.sum(ds.split == s)) for s in SPLIT_NAMES},
            "per_target": per_target,
            "best_single": {"target": targets[best], "accuracy": _f(acc[best])} if best is not None else None,
            "oracle": _f(oracle), "all_wrong": _f(all_wrong), "all_correct": _f(all_correct),
            "disagreement": [[_f(x) for x in row] for row in disagreement],
            "single_class_targets": single_class, "missing_share": _f(1.0 - mask.mean()) if n else None,
            "task_counts": dict(sorted(per_task.items())), "task_accuracy": task_acc,
            "cost_source": cost_source, "dedup": ds.meta.get("dedup")}


def _cell(x: Any, fmt: str = "{:.3f}") -> str:
    return "–" if x is None else fmt.format(x)


def format_stats_markdown(stats: dict[str, Any]) -> str:
    """Markdown report of `dataset_stats` output: summary, per-target table, disagreement, tasks."""
    targets = stats["targets"]
    best = stats["best_single"]
    lines = [f"# Dataset `{stats['name']}`", "",
             f"{stats['num_rows']} prompts x {stats['num_targets']} targets; splits "
             + ", ".join(f"{s}={c}" for s, c in stats["split_counts"].items()) + ".", "",
             f"- best single: {best['target']} ({_cell(best['accuracy'])})" if best else "- best single: –",
             f"- Oracle: {_cell(stats['oracle'])}; all wrong: {_cell(stats['all_wrong'])}; "
             f"all correct: {_cell(stats['all_correct'])}",
             f"- missing labels: {_cell(stats['missing_share'])}; costs: {stats['cost_source']}"]
    dedup = stats.get("dedup")
    if dedup:
        lines.append(f"- de-duplication (stem + option set): {dedup.get('dropped', 0)} duplicate rows dropped "
                     f"({dedup.get('dropped_cross_split', 0)} from a less held-out split); "
                     f"{dedup.get('twins_dropped', 0)} train/val twins of test prompts dropped, per task: "
                     + (", ".join(f"{t} {n}" for t, n in dedup.get("twins_by_task", {}).items()) or "none"))
    if stats["single_class_targets"]:
        lines.append(f"- **single-class targets** (all labels equal): {stats['single_class_targets']}")
    lines += ["", "| target | acc | labelled | missing | $/M in | $/M out | cost min | cost median | cost max |",
              "|---|---|---|---|---|---|---|---|---|"]
    for t in targets:
        r = stats["per_target"][t]
        lines.append(f"| {t} | {_cell(r['accuracy'])} | {r['labelled']} | {_cell(r['missing_share'])} | "
                     f"{r['price_in_per_m']:g} | {r['price_out_per_m']:g} | {_cell(r['cost_min'], '{:.3g}')} | "
                     f"{_cell(r['cost_median'], '{:.3g}')} | {_cell(r['cost_max'], '{:.3g}')} |")
    idx = [f"t{j}" for j in range(len(targets))]
    lines += ["", "Pairwise disagreement (share of rows where both labels exist and differ; "
              + ", ".join(f"{i} = {t}" for i, t in zip(idx, targets)) + "):", "",
              "| | " + " | ".join(idx) + " |", "|---" * (len(idx) + 1) + "|"]
    for i, row in zip(idx, stats["disagreement"]):
        lines.append(f"| {i} | " + " | ".join(_cell(x, "{:.2f}") for x in row) + " |")
    lines += ["", "| task | rows | " + " | ".join(idx) + " |", "|---" * (len(idx) + 2) + "|"]
    for task, count in stats["task_counts"].items():
        accs = stats["task_accuracy"][task]
        lines.append(f"| {task} | {count} | " + " | ".join(_cell(accs[t], "{:.2f}") for t in targets) + " |")
    return "\n".join(lines) + "\n"


def write_stats(stats: dict[str, Any], prefix: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes `<prefix>.json` and `<prefix>.md` atomically; returns both paths."""
    prefix = pathlib.Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix, text in ((".json", json.dumps(stats, indent=1)), (".md", format_stats_markdown(stats))):
        path = prefix.with_name(prefix.name + suffix)
        fileio.atomic_write_text(path, text)
        out.append(path)
    return out[0], out[1]
