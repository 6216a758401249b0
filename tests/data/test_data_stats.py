"""dataset_stats on a hand-computed example."""
import json

import numpy as np
import pytest

from prefill_router.data import RoutingDataset, dataset_stats, format_stats_markdown, write_stats

NAN = np.nan
LABELS = [[1, 0, 1],
          [0, 0, 1],
          [0, 0, NAN],
          [1, NAN, 1],
          [NAN, NAN, NAN]]


def make(labels=LABELS, costs=None):
    labels = np.array(labels, dtype=np.float32)
    n = labels.shape[0]
    return RoutingDataset(prompts=[f"w{i} " * (i + 1) for i in range(n)], tasks=["x", "x", "y", "y", "y"][:n],
                          targets=["a", "b", "c"], labels=labels, mask=None,
                          split=["train", "train", "train", "test", "test"][:n],
                          prices={"a": (1, 1), "b": (2, 2), "c": (3, 3)}, costs=costs)


def test_stats_hand_computed():
    s = dataset_stats(make())
    assert s["num_rows"] == 5 and s["rows_with_labels"] == 4
    assert s["per_target"]["a"]["accuracy"] == pytest.approx(2 / 4)
    assert s["per_target"]["c"]["accuracy"] == pytest.approx(1.0)
    assert s["per_target"]["b"]["labelled"] == 3 and s["per_target"]["b"]["missing_share"] == pytest.approx(0.4)
    assert s["best_single"] == {"target": "c", "accuracy": 1.0}
    assert s["oracle"] == pytest.approx(3 / 4) and s["all_wrong"] == pytest.approx(1 / 4)
    assert s["all_correct"] == pytest.approx(1 / 4)  # row 3: a=1, c=1 (b missing)
    d = np.array(s["disagreement"], dtype=float)
    assert d[0, 1] == pytest.approx(1 / 3)          # rows 0,1,2: differ on row 0
    assert d[0, 2] == pytest.approx(1 / 3)          # rows 0,1,3: differ on row 1
    assert d[1, 2] == pytest.approx(1.0)            # rows 0,1: both differ
    np.testing.assert_allclose(d, d.T)
    assert np.all(np.diag(d) == 0)
    assert s["single_class_targets"] == ["b", "c"]
    assert s["task_counts"] == {"x": 2, "y": 3}
    assert s["task_accuracy"]["y"]["a"] == pytest.approx(0.5) and s["task_accuracy"]["y"]["b"] == 0.0
    assert s["split_counts"] == {"train": 3, "val": 0, "test": 2}
    assert s["missing_share"] == pytest.approx(5 / 15)
    json.dumps(s)  # JSON-ready


def test_stats_rows_and_costs():
    costs = np.arange(15, dtype=np.float64).reshape(5, 3)
    s = dataset_stats(make(), rows=[0, 1], costs=costs)
    assert s["num_rows"] == 2 and s["oracle"] == 1.0 and s["all_wrong"] == 0.0
    assert s["per_target"]["b"]["cost_min"] == 1 and s["per_target"]["b"]["cost_max"] == 4
    assert s["per_target"]["b"]["cost_median"] == 2.5 and s["cost_source"] == "given"
    real = dataset_stats(make(costs=costs.astype(np.float32)))
    assert real["cost_source"] == "real" and real["per_target"]["c"]["cost_max"] == 14
    est = dataset_stats(make())
    assert est["cost_source"] == "estimated"
    # a: $1/M, 256 default output tokens; row 0 has 1 word -> 2 input tokens
    assert est["per_target"]["a"]["cost_min"] == pytest.approx((2 + 256) * 1e-6)
    with pytest.raises(ValueError, match="costs have shape"):
        dataset_stats(make(), costs=np.zeros((2, 3)))


def test_stats_markdown():
    md = format_stats_markdown(dataset_stats(make()))
    assert "best single: c (1.000)" in md and "Oracle: 0.750" in md
    assert "**single-class targets**" in md and "| x | 2 |" in md
    assert "| t1 | 0.33 | 0.00 | 1.00 |" in md


def test_write_stats(tmp_path):
    stats = dataset_stats(make())
    js, md = write_stats(stats, tmp_path / "out" / "llm")
    assert js.name == "llm.json" and md.name == "llm.md"
    assert json.loads(js.read_text())["oracle"] == pytest.approx(0.75)
    assert md.read_text() == format_stats_markdown(stats) and not list(tmp_path.glob("out/*.tmp"))
