"""Chooses the `local_targets` item mix from the local targets' labels on items of a *tuning* seed.

    python -m prefill_router.labels.tune_mix --item_seed=1 --items=1200

Generates `items` items with the uniform mix on `item_seed` (keep it apart from the evaluated item seed,
0 in configs/default.py), collects the targets' labels (cached like the pipeline's) and prints, per
(family, difficulty) cell, each target's accuracy next to chance. Rule: a cell is kept iff some target's
accuracy is at least chance + `min_gain` on >= `min_items` items (cells where every target guesses only
add label noise); kept cells are drawn equally often. Prints the `LOCAL_TARGETS_MIX` and
`LOCAL_TARGETS_DIFFICULTIES` literals for data/synthetic.py.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from absl import app, flags

from prefill_router.data import synthetic
from prefill_router.labels import cloze, collect

_ITEM_SEED = flags.DEFINE_integer("item_seed", 1, "item seed to tune on (not the evaluated one)")
_ITEMS = flags.DEFINE_integer("items", 1200, "items generated with the uniform mix")
_TARGETS = flags.DEFINE_list("targets", ["smollm2_135m", "gemma3_270m", "qwen25_coder_05b"], "target registry names")
_MIN_GAIN = flags.DEFINE_float("min_gain", 0.2, "keep a cell iff some target's accuracy >= chance + min_gain")
_MIN_ITEMS = flags.DEFINE_integer("min_items", 15, "cells with fewer tuning items are dropped")


def select_cells(tasks: Sequence[str], difficulty: Sequence[int], labels: np.ndarray, chance: Sequence[float],
                 min_gain: float = 0.2, min_items: int = 15) -> tuple[dict, dict, list[dict]]:
    """labels [N, K] in {0, 1}, chance [N] -> (mix, difficulties, per-cell table); see the module docstring.

    mix[family] = number of kept levels, difficulties[family] = the kept levels, so every kept cell has
    the same probability in `generate_items`."""
    tasks, difficulty, chance = np.asarray(tasks), np.asarray(difficulty), np.asarray(chance, np.float64)
    table, kept = [], {}
    for task, level in sorted({(str(t), int(d)) for t, d in zip(tasks, difficulty)}):
        rows = (tasks == task) & (difficulty == level)
        acc = labels[rows].mean(0)
        keep = bool(rows.sum() >= min_items and acc.max() >= chance[rows].mean() + min_gain)
        table.append({"task": task, "difficulty": level, "n": int(rows.sum()), "chance": float(chance[rows].mean()),
                      "accuracy": acc.round(3).tolist(), "keep": keep})
        if keep:
            kept.setdefault(task, []).append(level)
    if not kept:
        raise ValueError(f"no cell has a target at chance + {min_gain}; lower min_gain or use the uniform mix")
    return {t: float(len(levels)) for t, levels in kept.items()}, {t: tuple(v) for t, v in kept.items()}, table


def main(argv):
    del argv
    items = synthetic.generate_items(_ITEMS.value, seed=_ITEM_SEED.value)
    scores = [collect.collect_target(name, items) for name in _TARGETS.value]
    labels = np.stack([cloze.correctness(s.sums, items) for s in scores], 1)
    mix, difficulties, table = select_cells([it.task for it in items], [it.difficulty for it in items], labels,
                                            [1.0 / len(it.options) for it in items], _MIN_GAIN.value, _MIN_ITEMS.value)
    print(f"{len(items)} items, item seed {_ITEM_SEED.value}; accuracy of {', '.join(s.name for s in scores)} "
          "('sum' scores)")
    for row in table:
        print(f"  {row['task']:12s} d{row['difficulty']}  n={row['n']:3d}  chance {row['chance']:.2f}  "
              f"accuracy {row['accuracy']}  {'keep' if row['keep'] else ''}")
    print(f"LOCAL_TARGETS_MIX = {mix!r}\nLOCAL_TARGETS_DIFFICULTIES = {difficulties!r}")


if __name__ == "__main__":
    app.run(main)
