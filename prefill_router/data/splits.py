"""Leak-proof train/val/test splits for a RoutingDataset.

Prompt keys. `question_stem(prompt)` splits a rendered prompt into its normalised stem (lowercased,
whitespace collapsed; the question without its option block) and its option set: the last run of
>= 2 single-line options lettered A., B., ... (else numbered 1., 2., ...), or a trailing run of >= 2
`assert` lines (code tests). `stem_key` = (stem, sorted options), so a question whose options were
shuffled keeps its key. Two prompts are *twins* when one stem equals the other or is a prefix of it,
ending at a word boundary, of at least half its length (a question with an instruction appended), and their option sets are equal or
share an option (a shuffled, or partly changed, option/test list). Rules:
    * `deduplicate` keeps one row per stem key. Within a key the row kept is the first (in row order)
      of the most held-out split present: test > val > train > unassigned. So a prompt that a
      dataset puts in both train and test is dropped from train. Rows of one key whose observed
      labels disagree on some target are *conflicts*: on_conflict='keep_first' keeps that row
      and counts them (logged, and stored in meta['dedup']); on_conflict='error' raises.
    * `assign_splits` deduplicates, then either honours a complete existing split (the dataset's
      own) or draws a seeded split, stratified by task; then `drop_test_twins` drops the train/val
      twins of test prompts, counted per task in meta['dedup']['twins_by_task'].
    * `carve_validation` moves a seeded, stratified share of the *train* rows to 'val'.
"""
from __future__ import annotations

import bisect
import collections
import re
from typing import Sequence

import numpy as np
from absl import logging

from .dataset import SPLIT_NAMES, UNASSIGNED, RoutingDataset

_PRIORITY = {"test": 3, "val": 2, "train": 1, UNASSIGNED: 0}
_LETTERED = re.compile(r"^\s*\(?([A-Z])[.)]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\(?(\d{1,2})[.)]\s+(.*)$")


def normalise_prompt(q: str) -> str:
    """Lowercase, every whitespace run -> one space, stripped."""
    return " ".join(q.lower().split())


def _option_run(lines: list[str], pattern: re.Pattern, first: str) -> tuple[int, int] | None:
    """[start, end) of the last run of >= 2 lines labelled first, first+1, ... (A, B, ... or 1, 2, ...)."""
    for start in range(len(lines) - 1, -1, -1):
        m = pattern.match(lines[start])
        if not m or m.group(1) != first:
            continue
        end, label = start + 1, first
        while end < len(lines):
            label = chr(ord(label) + 1) if label.isalpha() else str(int(label) + 1)
            m = pattern.match(lines[end])
            if not m or m.group(1) != label:
                break
            end += 1
        if end - start >= 2:
            return start, end
    return None


def question_stem(prompt: str) -> tuple[str, tuple[str, ...]]:
    """(normalised stem, sorted normalised options) of a rendered prompt (module docstring)."""
    lines = prompt.split("\n")
    pattern = _LETTERED
    run = _option_run(lines, pattern, "A")
    if run is None:
        pattern = _NUMBERED
        run = _option_run(lines, pattern, "1")
    if run is not None:
        start, end = run
        options = [pattern.match(line).group(2) for line in lines[start:end]]
        stem_lines = lines[:start] + lines[end:]
    else:
        n_tests = 0
        while n_tests < len(lines) and lines[len(lines) - 1 - n_tests].lstrip().startswith("assert "):
            n_tests += 1
        n_tests = n_tests if n_tests >= 2 else 0
        options, stem_lines = lines[len(lines) - n_tests:], lines[:len(lines) - n_tests]
    return normalise_prompt("\n".join(stem_lines)), tuple(sorted(normalise_prompt(o) for o in options))


def stem_key(prompt: str) -> str:
    """De-duplication key: the stem and the sorted option set, joined by a separator."""
    stem, options = question_stem(prompt)
    return "\x1f".join((stem,) + options)


def _conflicts(labels: np.ndarray, mask: np.ndarray) -> bool:
    """True when two rows of [n, K] labels disagree on a target both observed."""
    for j in range(labels.shape[1]):
        seen = labels[mask[:, j], j]
        if seen.size > 1 and np.any(seen != seen[0]):
            return True
    return False


def deduplicate(ds: RoutingDataset, on_conflict: str = "keep_first") -> RoutingDataset:
    """One row per stem key (see module docstring for which row survives).

    Returns a new dataset whose meta['dedup'] records {'dropped', 'dropped_cross_split',
    'conflicting_groups'} (accumulated over repeated calls: a second call drops nothing).
    """
    if on_conflict not in ("keep_first", "error"):
        raise ValueError(f"on_conflict={on_conflict!r}; use 'keep_first' or 'error'")
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, p in enumerate(ds.prompts):
        groups[stem_key(p)].append(i)
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
    """Number of stem keys shared by each pair of splits, e.g. {'train/test': 3}."""
    keys = {s: {stem_key(ds.prompts[i]) for i in ds.rows(s)} for s in SPLIT_NAMES}
    return {f"{a}/{b}": len(keys[a] & keys[b])
            for n, a in enumerate(SPLIT_NAMES) for b in SPLIT_NAMES[n + 1:]}


def _options_match(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return a == b or bool(set(a) & set(b))


def twins_of(prompts: Sequence[str], rows: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """The rows (subset of `rows`, ascending) that are twins of some row in `held_out` (module docstring).

    Stems are compared through two sorted lists, so a prefix match costs a binary search per stem.
    """
    parsed = {int(i): question_stem(prompts[i]) for i in np.concatenate([rows, held_out])}

    def by_stem(idx):
        table = collections.defaultdict(list)
        for i in idx:
            table[parsed[int(i)][0]].append(int(i))
        return table, sorted(table)

    def extensions(stem, table, ordered):
        """Rows of `table` whose stem is `stem` or extends it past a word boundary to at most twice its length."""
        out = []
        for other in ordered[bisect.bisect_left(ordered, stem):]:
            if not other.startswith(stem):
                break
            if len(other) <= 2 * len(stem) and (len(other) == len(stem) or not other[len(stem)].isalnum()):
                out += table[other]
        return out

    held_table, held_sorted = by_stem(held_out)
    own_table, own_sorted = by_stem(rows)
    twins = set()
    for stem, own_rows in own_table.items():
        candidates = extensions(stem, held_table, held_sorted)  # held-out stems extending this one
        for i in own_rows:
            if any(_options_match(parsed[i][1], parsed[j][1]) for j in candidates):
                twins.add(i)
    for stem, held_rows in held_table.items():
        for i in extensions(stem, own_table, own_sorted):  # own stems extending a held-out one
            if any(_options_match(parsed[i][1], parsed[j][1]) for j in held_rows):
                twins.add(i)
    return np.array(sorted(twins), dtype=np.int64)


def drop_test_twins(ds: RoutingDataset) -> RoutingDataset:
    """Drops train/val rows that are twins of a test row; meta['dedup'] gains 'twins_dropped' and
    'twins_by_task' {task: count} (accumulated over calls)."""
    twins = twins_of(ds.prompts, np.flatnonzero(ds.split != "test"), ds.rows("test"))
    by_task = collections.Counter(ds.tasks[i] for i in twins)
    out = ds.subset(np.setdiff1d(np.arange(ds.num_rows), twins))
    out.allow_unlabelled_targets = ds.allow_unlabelled_targets
    dedup = dict(ds.meta.get("dedup", {}))
    prev = collections.Counter(dedup.get("twins_by_task", {}))
    dedup["twins_dropped"] = dedup.get("twins_dropped", 0) + int(twins.size)
    dedup["twins_by_task"] = dict(sorted((prev + by_task).items()))
    out.meta["dedup"] = dedup
    logging.info("drop_test_twins(%s): dropped %d train/val twins of test prompts %s", ds.name, twins.size,
                 dict(by_task))
    return out


def check_no_leak(ds: RoutingDataset) -> None:
    """Raises ValueError when a stem key sits in two splits or a train/val row is a twin of a test row."""
    overlap = {k: v for k, v in split_overlap(ds).items() if v}
    if overlap:
        raise ValueError(f"prompt stems shared between splits: {overlap}; run deduplicate()")
    twins = twins_of(ds.prompts, np.flatnonzero(ds.split != "test"), ds.rows("test"))
    if twins.size:
        raise ValueError(f"{twins.size} train/val prompts are near-duplicates of test prompts "
                         f"(e.g. {ds.prompts[twins[0]][:80]!r}); run drop_test_twins()")


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
    ds = drop_test_twins(ds)
    check_no_leak(ds)
    logging.info("assign_splits(%s): %s", ds.name,
                 {s: int(ds.rows(s).size) for s in SPLIT_NAMES})
    return ds
