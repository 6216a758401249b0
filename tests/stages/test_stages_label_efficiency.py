"""Label-efficiency stage: hand-computed t-intervals, pool scores, label draws, N-to-95 % and the summary."""
import numpy as np
import pytest
import scipy.stats

from configs import label_efficiency as le_config
from prefill_router.data import RoutingDataset
from prefill_router.stages import label_efficiency as le
from prefill_router.stages.data import Split


def test_t_interval_by_hand():
    v = [1.0, 2.0, 4.0]
    half = scipy.stats.t.ppf(0.975, 2) * np.std(v, ddof=1) / np.sqrt(3)
    out = le.t_interval(v + [float("nan"), None])  # non-finite entries are dropped
    assert out["n"] == 3 and out["mean"] == pytest.approx(7 / 3)
    assert out["low"] == pytest.approx(7 / 3 - half) and out["high"] == pytest.approx(7 / 3 + half)
    assert le.t_interval([0.5]) == {"mean": 0.5, "low": 0.5, "high": 0.5, "n": 1}


def _split():
    # 4 train rows (target b is best on them), 4 test rows; targets a, b
    labels = np.array([[0, 1], [1, 1], [0, 1], [1, 0],      # train
                       [1, 0], [0, 1], [1, 1], [0, 0]], np.float32)  # test
    ds = RoutingDataset(prompts=[f"q{i}" for i in range(8)], tasks=["t"] * 8, targets=["a", "b"], labels=labels,
                        mask=None, split=["train"] * 4 + ["test"] * 4, prices={"a": (1, 1), "b": (2, 2)})
    return Split(ds, np.arange(4), np.arange(4, 8), np.zeros((8, 2)), np.array([1.0, 2.0]))


def test_pool_scores_by_hand():
    split = _split()
    P = np.array([[0.9, 0.2], [0.1, 0.8], [0.4, 0.6], [0.3, 0.7]])  # argmax: a, b, b, b
    s = le.pool_scores(P, split, column=0)
    # AUC of a on test: positives rows 0, 2 (0.9, 0.4), negatives rows 1, 3 (0.1, 0.3): all 4 pairs ordered
    assert s["auc"] == 1.0
    # chosen labels 1, 1, 1, 0 -> 0.75; best single on training rows = b (3/4) -> test acc 0.5; oracle 0.75
    assert s["router_acc"] == 0.75 and s["gap_captured_pct"] == pytest.approx(100.0)


def test_draw_needs_both_classes():
    rows = np.arange(100, 130)
    y = np.r_[np.ones(2), np.zeros(28)]
    pick = le.draw(rows, y, 10, seed=0, tries=10_000)
    assert pick is not None and len(pick) == 10 and set(rows[:2]) <= set(pick)  # both positives are needed
    assert le.draw(rows, np.zeros(30), 10, seed=0) is None
    np.testing.assert_array_equal(le.draw(rows, y, 30, seed=0), rows)  # all rows


def test_n_to_fraction_and_summary():
    curve = {"reference": {"auc": 0.8, "router_acc": 0.7, "gap_captured_pct": 50.0}, "n_labelled_train": 100,
             "without_target_router_acc": 0.6,
             "methods": {"head": {"25": [{"auc": 0.70, "router_acc": 0.6, "gap_captured_pct": 10.0},
                                         {"auc": 0.74, "router_acc": 0.6, "gap_captured_pct": 10.0}],
                                  "50": [{"auc": 0.77, "router_acc": 0.65, "gap_captured_pct": 30.0}],
                                  "100": [{"auc": 0.79, "router_acc": 0.7, "gap_captured_pct": 50.0}]}}}
    # 95 % of 0.8 = 0.76: N = 50 (mean 0.72 at 25); 95 % of the lift 0.3 = 0.285 -> AUC >= 0.785: N = 100
    assert le.n_to_fraction(curve, "head") == {"auc": 50, "lift": 100}
    summary = le.summarize({"x": curve}, le_config.get_config("runlocal"))
    assert summary["over_targets"]["head"]["25"]["auc"]["mean"] == pytest.approx(0.72)
    assert set(summary["over_targets"]["head"]) == {"25", "50", "all"}  # 100 = every labelled row
    assert summary["n_to_95pct_auc"] == {"head": 50}
    assert "| head | 50 | 0.770" in le.markdown(summary, "t")
