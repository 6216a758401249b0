"""Leak-proof train/val/test splits for a RoutingDataset.

The dedup key (method.md §2) is the prompt lowercased with whitespace collapsed. Rules:
    * `deduplicate` keeps one row per key. Within a key the row kept is the first (in row order)
      of the most held-out split present: test > val > train > unassigned. So a prompt that a
      dataset puts in both train and test is dropped from train. Rows of one key whose observed
      labels disagree on some target are *conflicts*: on_conflict='keep_first' keeps that row
      and counts them (logged, and stored in meta['dedup']); on_conflict='error' raises.
    * `assign_splits` deduplicates, then either honours a complete existing split (the dataset's
      own) or draws a seeded split, stratified by task.
    * `carve_validation` moves a seeded, stratified share of the *train* rows to 'val'.
"""
from __future__ import annotations

import collections
from typing import Sequence

import numpy as np
from absl import logging

from .dataset import SPLIT_NAMES, UNASSIGNED, RoutingDataset

_PRIORITY = {"test": 3, "val": 2, "train": 1, UNASSIGNED: 0}


def normalise_prompt(q: str) -> str:
    """Dedup key: lowercase, every whitespace run -> one space, stripped."""
    return " ".join(q.lower().split())


def _conflicts(labels: np.ndarray, mask: np.ndarray) -> bool:
    """True when two rows of [n, K] labels disagree on a target both observed."""
    for j in range(labels.shape[1]):
        seen = labels[mask[:, j], j]
        if seen.size > 1 and np.any(seen != seen[0]):
            return True
    return False


def deduplicate(ds: RoutingDataset, on_conflict: str = "keep_first") -> RoutingDataset:
    """One row per normalised prompt (see module docstring for which row survives).

    Returns a new dataset whose meta['dedup'] records {'dropped', 'dropped_cross_split',
    'conflicting_groups'} (accumulated over repeated calls: a second call drops nothing).
    """
    if on_conflict not in ("keep_first", "error"):
        raise ValueError(f"on_conflict={on_conflict!r}; use 'keep_first' or 'error'")
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, p in enumerate(ds.prompts):
        groups[normalise_prompt(p)].append(i)
    keep, cross, conflicting, examples = [], 0, 0, []
    for key, idx in groups.items():
        best = max(idx, key=lambda i: (_PRIORITY[ds.split[i]], -i))
        keep.append(best)
        if len(idx) == 1:
            continue
        if len({ds.split[i] for i in idx}) > 1:
            cross += sum(ds.split[i] != ds.split[best] for i in idx)
        if _conflicts(ds.labels[idx], ds.mask[idx]):
            conflicting += 1
            examples.append(key[:80])
    if conflicting and on_conflict == "error":
        raise ValueError(f"{conflicting} normalised prompts have rows with conflicting labels "
                         f"(e.g. {examples[:3]}); fix the source or use on_conflict='keep_first'")
    keep = np.sort(np.asarray(keep, dtype=np.int64))
    dropped = ds.num_rows - keep.size
    logging.info("deduplicate(%s): %d rows -> %d (dropped %d, of which %d from a less held-out "
                 "split; %d groups with conflicting labels kept their first row)",
                 ds.name, ds.num_rows, keep.size, dropped, cross, conflicting)
    out = ds.subset(keep)
    out.allow_unlabelled_targets = ds.allow_unlabelled_targets
    prev = dict(ds.meta.get("dedup", {}))
    out.meta["dedup"] = {"dropped": prev.get("dropped", 0) + dropped,
                         "dropped_cross_split": prev.get("dropped_cross_split", 0) + cross,
                         "conflicting_groups": prev.get("conflicting_groups", 0) + conflicting,
                         "on_conflict": on_conflict}
    return out


def split_overlap(ds: RoutingDataset) -> dict[str, int]:
    """Number of normalised prompts shared by each pair of splits, e.g. {'train/test': 3}."""
    keys = {s: {normalise_prompt(ds.prompts[i]) for i in ds.rows(s)} for s in SPLIT_NAMES}
    return {f"{a}/{b}": len(keys[a] & keys[b])
            for n, a in enumerate(SPLIT_NAMES) for b in SPLIT_NAMES[n + 1:]}


def check_no_leak(ds: RoutingDataset) -> None:
    """Raises ValueError when a normalised prompt sits in two splits."""
    overlap = {k: v for k, v in split_overlap(ds).items() if v}
    if overlap:
        raise ValueError(f"normalised prompts shared between splits: {overlap}; run deduplicate()")


def _strata(ds: RoutingDataset, rows: np.ndarray, stratify_by: str | None) -> list[np.ndarray]:
    """`rows` grouped by task (sorted task names) or as one group."""
    if stratify_by is None:
        return [rows]
    if stratify_by != "task":
        raise ValueError(f"stratify_by={stratify_by!r}; use 'task' or None")
    by_task: dict[str, list[int]] = collections.defaultdict(list)
    for i in rows:
        by_task[ds.tasks[i]].append(int(i))
    return [np.asarray(by_task[t], dtype=np.int64) for t in sorted(by_task)]


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}={value} must be in [0, 1)")


def _draw(ds: RoutingDataset, rows: np.ndarray, shares: Sequence[tuple[str, float]],
          seed: int, stratify_by: str | None) -> np.ndarray:
    """Copy of ds.split where, per stratum of `rows`, round(share * n) rows go to each split name."""
    split = ds.split.copy()
    rng = np.random.default_rng(seed)
    for stratum in _strata(ds, rows, stratify_by):
        order = rng.permutation(stratum)
        start = 0
        for name, share in shares:
            count = int(round(share * stratum.size))
            split[order[start:start + count]] = name
            start += count
    return split


def carve_validation(ds: RoutingDataset, fraction: float, seed: int = 0,
                     stratify_by: str | None = "task") -> RoutingDataset:
    """Moves round(fraction * n_train) train rows per stratum to 'val' (seeded); test untouched."""
    _check_fraction("fraction", fraction)
    train = ds.rows("train")
    if train.size == 0:
        raise ValueError("carve_validation needs train rows; assign splits first")
    split = _draw(ds, train, [("val", fraction)], seed, stratify_by)
    out = ds.with_split(split)
    logging.info("carve_validation(%s): %d train rows -> %d val", ds.name, train.size,
                 int(np.sum(split == "val")) - int(np.sum(ds.split == "val")))
    return out


def assign_splits(ds: RoutingDataset, test_fraction: float = 0.15, val_fraction: float = 0.0,
                  seed: int = 0, stratify_by: str | None = "task", overwrite: bool = False,
                  on_conflict: str = "keep_first") -> RoutingDataset:
    """Deduplicated dataset with every row in train/val/test.

    If every row already has a split and overwrite is False, that split is honoured (test rows stay
    test) and, when val_fraction > 0 and there are no val rows, val_fraction of all rows (per
    stratum, taken from train) are carved into 'val'. Otherwise (no split, or overwrite) each
    stratum of n rows gets round(test_fraction n) test rows, round(val_fraction n) val rows and the
    rest train, from a permutation drawn with `seed`. A partial split is an error.
    """
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("val_fraction", val_fraction)
    if test_fraction + val_fraction >= 1.0:
        raise ValueError(f"test_fraction + val_fraction = {test_fraction + val_fraction} leaves no train rows")
    assigned = ds.split != UNASSIGNED
    if assigned.any() and not assigned.all() and not overwrite:
        raise ValueError(f"{int((~assigned).sum())} of {ds.num_rows} rows have no split; "
                         "assign all rows or pass overwrite=True")
    ds = deduplicate(ds, on_conflict=on_conflict)
    if ds.has_split and not overwrite:
        if val_fraction > 0 and ds.rows("val").size == 0:
            n_train = ds.rows("train").size
            share = min(val_fraction * ds.num_rows / max(n_train, 1), 1.0 - 1e-9)
            ds = carve_validation(ds, share, seed=seed, stratify_by=stratify_by)
        ds.meta["split_source"] = ds.meta.get("split_source", "dataset")
    else:
        split = _draw(ds.with_split(np.full(ds.num_rows, "train")), np.arange(ds.num_rows),
                      [("test", test_fraction), ("val", val_fraction)], seed, stratify_by)
        ds = ds.with_split(split)
        ds.meta["split_source"] = {"seed": seed, "test_fraction": test_fraction,
                                   "val_fraction": val_fraction, "stratify_by": stratify_by}
    check_no_leak(ds)
    logging.info("assign_splits(%s): %s", ds.name,
                 {s: int(ds.rows(s).size) for s in SPLIT_NAMES})
    return ds
