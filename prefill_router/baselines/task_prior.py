"""Task-prior routers: predict each target's training accuracy on the prompt's task (the control that
separates prefill signal from task identity).

For a group g (a task, or a (task, difficulty) pair) and target k, over training rows with a label for k,

    p_hat_k(g) = Σ_{i∈g} M[i,k] Y[i,k] / Σ_{i∈g} M[i,k]        (masked labels never count as 0).

A group without a training label for k, or never seen in training, falls back to the next coarser level:
(task, difficulty) -> task -> the global training rate of k. Rows that fell back are counted, per level.
Predictions are constant within a group, so the task lookup's within-task AUC is exactly 0.5.
"""
from __future__ import annotations

import collections
import dataclasses

import numpy as np


def _rates(keys: list, labels: np.ndarray, mask: np.ndarray) -> dict:
    """key -> ([K] rate, [K] bool has-a-label) over the rows carrying that key."""
    y = np.where(mask, labels, 0.0)
    sums, counts = collections.defaultdict(float), collections.defaultdict(float)
    for i, key in enumerate(keys):
        sums[key] = sums[key] + y[i]
        counts[key] = counts[key] + mask[i]
    return {key: (sums[key] / np.maximum(counts[key], 1.0), counts[key] > 0) for key in sums}


@dataclasses.dataclass
class TaskPrior:
    """Fitted lookup. levels: ('task',) or ('task', 'difficulty'); rates[level]: key -> ([K] rate, [K] seen)."""
    levels: tuple[str, ...]
    rates: dict
    global_rate: np.ndarray

    def predict(self, tasks, difficulty=None) -> tuple[np.ndarray, dict]:
        """P [N, K] and fallback counts {'task_unseen': rows whose task had no training label for some
        target, 'difficulty_unseen': rows whose (task, difficulty) had none, 'unseen_tasks': {task: rows}}."""
        if "difficulty" in self.levels and difficulty is None:
            raise ValueError("this task x difficulty prior needs the rows' difficulty; pass difficulty=[N]")
        tasks = [str(t) for t in tasks]
        K = self.global_rate.size
        P = np.empty((len(tasks), K))
        counts = {"task_unseen": 0, "difficulty_unseen": 0, "unseen_tasks": collections.Counter()}
        for i, task in enumerate(tasks):
            p = self.global_rate.copy()
            rate, seen = self.rates["task"].get(task, (None, np.zeros(K, bool)))
            if not seen.all():
                counts["task_unseen"] += 1
                if rate is None:
                    counts["unseen_tasks"][task] += 1
            if rate is not None:
                p = np.where(seen, rate, p)
            if "difficulty" in self.levels:
                rate, seen = self.rates["difficulty"].get((task, str(difficulty[i])), (None, np.zeros(K, bool)))
                if not seen.all():
                    counts["difficulty_unseen"] += 1
                if rate is not None:
                    p = np.where(seen, rate, p)
            P[i] = p
        counts["unseen_tasks"] = dict(sorted(counts["unseen_tasks"].items()))
        return P, counts


def fit_task_prior(tasks, labels, mask, difficulty=None) -> TaskPrior:
    """Per-task (and, given `difficulty` [N], per task x difficulty) training accuracy of every target.

    tasks: N task names; labels [N, K] {0, 1} (NaN missing); mask [N, K] bool.
    """
    labels = np.asarray(labels, np.float64)
    mask = np.asarray(mask, bool)
    tasks = [str(t) for t in tasks]
    if labels.ndim != 2 or mask.shape != labels.shape or len(tasks) != labels.shape[0]:
        raise ValueError(f"fit_task_prior needs tasks [N], labels and mask [N, K]; got {len(tasks)} tasks, "
                         f"labels {labels.shape}, mask {mask.shape}")
    if labels.shape[0] == 0:
        raise ValueError("fit_task_prior needs training rows; got none")
    y = np.where(mask, labels, 0.0)
    global_rate = y.sum(0) / np.maximum(mask.sum(0), 1)
    rates = {"task": _rates(tasks, labels, mask)}
    levels = ("task",)
    if difficulty is not None:
        if len(difficulty) != len(tasks):
            raise ValueError(f"difficulty has {len(difficulty)} entries for {len(tasks)} rows")
        rates["difficulty"] = _rates([(t, str(d)) for t, d in zip(tasks, difficulty)], labels, mask)
        levels = ("task", "difficulty")
    return TaskPrior(levels, rates, global_rate)
