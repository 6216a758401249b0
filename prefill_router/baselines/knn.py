"""Semantic kNN router (RouterBench / LLMRouter style) on unit-norm sentence embeddings.

For a query q with cosine-nearest training prompts N_k(q) (|N_k| = k),

    p_hat_t(q) = sum_{i in N_k(q)} M[i,t] Y[i,t] / sum_{i in N_k(q)} M[i,t],

i.e. the neighbours' success rate on target t, over neighbours whose label for t exists; where
no neighbour has a label for t, the training base rate of t is used. k is chosen on a validation
split carved from the training rows (mean ROC-AUC over targets).
"""
import dataclasses

import numpy as np

from prefill_router.evaluation.metrics import roc_auc


def knn_predict(train_emb: np.ndarray, labels: np.ndarray, mask: np.ndarray, query_emb: np.ndarray,
                k: int, batch: int = 1024) -> np.ndarray:
    """train_emb [Ntr, D], labels/mask [Ntr, K], query_emb [Nq, D] -> P [Nq, K]."""
    if k < 1 or k > len(train_emb):
        raise ValueError(f"k={k} must be in [1, {len(train_emb)}] (the number of training prompts)")
    y = np.where(mask, labels, 0.0)
    m = mask.astype(np.float64)
    base = y.sum(0) / np.maximum(m.sum(0), 1.0)
    out = np.empty((len(query_emb), labels.shape[1]))
    for start in range(0, len(query_emb), batch):
        sims = query_emb[start:start + batch] @ train_emb.T
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        hits, counts = y[nearest].sum(1), m[nearest].sum(1)
        out[start:start + batch] = np.where(counts > 0, hits / np.maximum(counts, 1.0), base)
    return out


@dataclasses.dataclass
class KNNRouter:
    k: int
    train_emb: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    val_auc: dict

    def predict(self, query_emb: np.ndarray) -> np.ndarray:
        return knn_predict(self.train_emb, self.labels, self.mask, query_emb, self.k)


def fit_knn(train_emb, labels, mask, ks=(5, 10, 20, 50, 100), val_fraction=0.15, seed=0) -> KNNRouter:
    """Picks k by mean validation AUC (validation carved from the training rows), then keeps all rows."""
    n = len(train_emb)
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    val, fit = order[:n_val], order[n_val:]
    scores = {}
    for k in ks:
        if k > len(fit):
            continue
        p = knn_predict(train_emb[fit], labels[fit], mask[fit], train_emb[val], k)
        aucs = [roc_auc(p[mask[val, t], t], labels[val][mask[val, t], t]) for t in range(labels.shape[1])]
        scores[k] = float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan")
    if not scores:
        raise ValueError(f"too few training prompts ({n}) for any k in {ks}")
    best = max(scores, key=lambda k: (np.nan_to_num(scores[k], nan=-1.0), -k))
    return KNNRouter(best, train_emb, labels, mask, scores)
