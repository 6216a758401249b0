"""The local-targets mix rule on a hand-made label table."""
import numpy as np
import pytest

from prefill_router.data import synthetic
from prefill_router.labels.tune_mix import select_cells


def test_keeps_cells_where_some_target_beats_chance():
    # add d1: target 1 right on 18 / 20 (0.9 >= 0.25 + 0.2); add d2: both at 0.3 (< 0.45); mul d3: 12 / 20 = 0.6
    # for target 0 but only 10 items (< min_items 15); boolean d1: 15 / 20 = 0.75 >= 0.5 + 0.2.
    tasks = ["add"] * 40 + ["mul"] * 10 + ["boolean"] * 20
    difficulty = [1] * 20 + [2] * 20 + [3] * 10 + [1] * 20
    labels = np.zeros((70, 2))
    labels[:18, 1] = 1
    labels[20:26, :] = 1
    labels[40:46, 0] = 1
    labels[50:65, 0] = 1
    chance = [0.25] * 50 + [0.5] * 20
    mix, difficulties, table = select_cells(tasks, difficulty, labels, chance, min_gain=0.2, min_items=15)
    assert mix == {"add": 1.0, "boolean": 1.0} and difficulties == {"add": (1,), "boolean": (1,)}
    assert [(r["task"], r["difficulty"], r["keep"]) for r in table] == [
        ("add", 1, True), ("add", 2, False), ("boolean", 1, True), ("mul", 3, False)]
    assert table[0]["accuracy"] == [0.0, 0.9]
    items = synthetic.generate_items(50, seed=0, mix=mix, difficulties=difficulties)  # a valid preset
    assert {(it.task, it.difficulty) for it in items} == {("add", 1), ("boolean", 1)}
    with pytest.raises(ValueError, match="no cell"):
        select_cells(tasks, difficulty, labels, chance, min_gain=0.8)
