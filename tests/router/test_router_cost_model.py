"""Per-query output-length prediction vs the per-model median (scored by evaluation.lengths); cost formulas on
hand-computed values."""
import numpy as np
import pytest

from prefill_router.data.dataset import RoutingDataset
from prefill_router.evaluation.lengths import length_metrics
from prefill_router.router import cost_model as cm


def _lengths(n=400, seed=0):
    """Target 0: tokens = exp(4 + 0.7·x0) (learnable); target 1: noise around 50 (not); target 2: unobserved."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    t = np.stack([np.exp(4 + 0.7 * x[:, 0]), 50 + rng.integers(-5, 6, n), np.full(n, np.nan)], 1)
    return x, t


def test_ridge_beats_median_where_length_depends_on_the_query():
    x, t = _lengths()
    train = np.arange(300)
    lp = cm.fit_length_predictor(x, t, train, seed=0)
    assert lp.source[0] == "ridge" and lp.source[2] == "median"
    assert lp.val_mae["ridge"][0] < 0.3 * lp.val_mae["median"][0]
    np.testing.assert_allclose(lp.medians[:2], np.median(t[train, :2], axis=0))
    assert np.isnan(lp.medians[2])
    test = np.arange(300, 400)
    pred = lp.predict(x)
    assert np.abs(pred[test, 0] - t[test, 0]).mean() < 0.3 * np.abs(lp.medians[0] - t[test, 0]).mean()
    np.testing.assert_array_equal(lp.predict(x, source="median")[:, 0], lp.medians[0])
    rep = length_metrics(pred, lp.medians, t, test, ["a", "b", "c"], n_boot=50)
    assert rep["pooled"]["mae_diff"]["ci_high"] < 0
    assert rep["per_target"]["a"]["spearman_pred"] > 0.95 and rep["per_target"]["c"]["n"] == 0


def test_query_and_realised_costs_by_hand():
    prices = {"a": (1.0, 2.0), "b": (10.0, 30.0)}
    c = cm.query_costs([100.0, 10.0], [5.0, 1.0], prices, ["a", "b"])
    # row 0: 100·1e-6 + 5·2e-6, 100·10e-6 + 1·30e-6
    np.testing.assert_allclose(c[0], [110e-6, 1030e-6])
    with pytest.raises(ValueError, match="NaN"):
        cm.query_costs([1.0], [np.nan, 1.0], prices, ["a", "b"])
    ds = RoutingDataset(prompts=["one two", "three four five"], tasks=["t", "t"], targets=["a", "b"],
                        labels=np.ones((2, 2)), mask=None, split=None, prices=prices,
                        output_tokens=np.array([[4.0, np.nan], [np.nan, np.nan]]),
                        costs=np.array([[np.nan, 0.5], [np.nan, np.nan]]))
    real, fallback = cm.realised_costs(ds, [10.0, 20.0])
    # n_in = 2 × words: 4, 6. (0,0) from observed tokens; (0,1) the real cost; row 1 the fallback tokens
    np.testing.assert_allclose(real, [[4e-6 + 8e-6, 0.5], [6e-6 + 20e-6, 60e-6 + 600e-6]])
    assert fallback == 0.5


def test_input_errors():
    x, t = _lengths(50)
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        cm.fit_length_predictor(x, t[:10], np.arange(40))
    t[0, 0] = -1
    with pytest.raises(ValueError, match=">= 0"):
        cm.fit_length_predictor(x, t, np.arange(40))
