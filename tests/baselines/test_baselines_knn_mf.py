"""kNN and matrix-factorisation baselines: hand-computed kNN cases, MF learns planted structure."""
import numpy as np
import pytest

from prefill_router.baselines import knn, mf
from prefill_router.evaluation.metrics import roc_auc


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_knn_averages_neighbour_labels_and_skips_missing():
    train = _unit([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    labels = np.array([[1, 0], [0, np.nan], [0, 1], [0, 1]], np.float64)
    mask = ~np.isnan(labels)
    p = knn.knn_predict(train, labels, mask, _unit([[1, 0.05], [0.05, 1]]), k=2)
    # Query 0: neighbours rows 0,1 -> target 0: (1+0)/2; target 1: only row 0 labelled -> 0.
    # Query 1: neighbours rows 2,3 -> target 0: 0, target 1: 1.
    np.testing.assert_allclose(p, [[0.5, 0.0], [0.0, 1.0]])


def test_knn_falls_back_to_base_rate_without_labelled_neighbours():
    train = _unit([[1, 0], [0, 1], [0.1, 1]])
    labels = np.array([[np.nan], [1.0], [0.0]])
    p = knn.knn_predict(train, labels, ~np.isnan(labels), _unit([[1, 0.0]]), k=1)
    np.testing.assert_allclose(p, [[0.5]])  # base rate of target 0 over labelled rows 1, 2


def test_knn_rejects_bad_k():
    with pytest.raises(ValueError, match="k=0"):
        knn.knn_predict(np.eye(2), np.zeros((2, 1)), np.ones((2, 1), bool), np.eye(2), k=0)


def test_fit_knn_picks_a_k_that_separates_clusters():
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(2, 8)))
    which = rng.integers(0, 2, 400)
    emb = _unit(centres[which] + 0.3 * rng.normal(size=(400, 8)))
    labels = np.stack([which, 1 - which], 1).astype(np.float64)
    router = knn.fit_knn(emb, labels, np.ones_like(labels, bool), ks=(1, 5, 25))
    assert router.val_auc[router.k] > 0.95


def test_mf_learns_planted_low_rank_correctness():
    rng = np.random.default_rng(1)
    n, d, k = 600, 16, 4
    emb = _unit(rng.normal(size=(n, d)))
    true_logits = (emb @ rng.normal(size=(d, 2))) @ rng.normal(size=(k, 2)).T * 4
    labels = (rng.random((n, k)) < 1 / (1 + np.exp(-true_logits))).astype(np.float64)
    mask = rng.random((n, k)) > 0.1
    labels[~mask] = np.nan
    router = mf.fit_mf(emb[:500], labels[:500], mask[:500], mf.MFConfig(rank=4, max_steps=800))
    p = router.predict(emb[500:])
    aucs = [roc_auc(p[mask[500:, t], t], labels[500:][mask[500:, t], t]) for t in range(k)]
    assert np.mean(aucs) > 0.75, aucs
