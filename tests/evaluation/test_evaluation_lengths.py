"""Output-length prediction error: MAE and Spearman against the per-target median, by hand."""
import numpy as np
import pytest

from prefill_router.evaluation.lengths import length_metrics


def test_length_metrics_by_hand():
    t = np.array([[10.0, 100.0], [20.0, np.nan], [30.0, 300.0]])
    pred = np.array([[12.0, 90.0], [20.0, 5.0], [25.0, 320.0]])
    med = np.array([20.0, 200.0])
    r = length_metrics(pred, med, t, np.arange(3), n_boot=10)
    # observed pairs: errors pred 2, 10, 0, 5, 20 → 37/5; median 10, 100, 0, 10, 100 → 220/5
    assert r["pooled"]["mae_pred"]["value"] == pytest.approx(37 / 5)
    assert r["pooled"]["mae_median"]["value"] == pytest.approx(44.0)
    assert r["per_target"]["target_0"]["spearman_pred"] == pytest.approx(1.0)
    assert r["n_pairs"] == 5
