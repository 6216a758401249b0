"""Cross-validated logistic-regression ROC-AUC per (layer, target, PCA width): NVIDIA's toolkit criterion.

Axes: L layers, N rows (training prompts only: the caller slices them), D feature width, K targets,
F folds, P PCA widths.

Per (layer, target, fold), on the rows with a label (M[:, k]):
  1. StandardScaler fitted on the training folds (population std; constant features -> sigma = 1).
  2. PCA fitted on the training folds: top-p eigenvectors of their standardised covariance (eigh, once
     per fold; every p of the grid is a prefix of the same basis). p = None skips PCA.
  3. L2 logistic regression as scikit-learn's ``LogisticRegression(C)``:
        min_{w,b} 0.5 ||w||^2 + C sum_i logloss(y_i, w^T z_i + b)      (intercept b unpenalised)
     solved by damped Newton (Cholesky on the (p+1)x(p+1) Hessian, step halving over a fixed set of
     step sizes) until the Newton decrement g^T H^-1 g / 2 < tol * max(1, f) or max_iter.
  4. ROC-AUC of the held-out fold's scores (Mann-Whitney with average ranks for ties).
The score is the mean AUC over the folds. Folds are stratified per target (`stratified_folds`):
n_splits_k = min(n_splits, minority count of target k); a target with < 2 members in a class gets NaN
and valid = False. Everything is vmapped over folds, targets and layers: one compiled call per layer chunk.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prefill_router.probes.fisher import (DEFAULT_MAX_BYTES, MIN_PER_CLASS, check_inputs, chunk_for,
                                          map_layer_chunks, prestandardize)
from prefill_router.probes.readout import (DEFAULT_C, DEFAULT_MAX_ITER, DEFAULT_TOL, HI, fit_logreg, pca_basis,
                                           weighted_standardize)



class Folds(NamedTuple):
    """ids [N, K] int32: fold of row n for target k (-1 where the label is missing); n_splits [K] int32
    (0 where the target has < 2 members in a class)."""
    ids: np.ndarray
    n_splits: np.ndarray


def stratified_folds(Y, M, n_splits: int = 5, seed: int = 42) -> Folds:
    """Deterministic stratified K-fold assignment per target (numpy, host side).

    For target k, s = min(n_splits, n_0, n_1) over its labelled rows; each class is permuted with
    ``np.random.default_rng([seed, k])`` and dealt round-robin, class 1 continuing the counter where
    class 0 stopped, so every fold holds floor or ceil of n_c / s members of class c (>= 1 each).
    """
    Y = np.asarray(Y)
    M = np.asarray(M, dtype=bool)
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")
    N, K = M.shape
    ids = np.full((N, K), -1, np.int32)
    splits = np.zeros(K, np.int32)
    for k in range(K):
        rows = np.flatnonzero(M[:, k])
        yk = Y[rows, k]
        members = [rows[yk == 0], rows[yk == 1]]
        s = min(n_splits, len(members[0]), len(members[1]))
        if s < MIN_PER_CLASS:
            continue
        splits[k] = s
        rng = np.random.default_rng([seed, k])
        counter = 0
        for cls_rows in members:
            perm = rng.permutation(cls_rows)
            ids[perm, k] = (counter + np.arange(len(perm))) % s
            counter += len(perm)
    return Folds(ids, splits)


# ----------------------------------------------------------------------------------------------
# ROC-AUC (traceable).
# ----------------------------------------------------------------------------------------------
def roc_auc_masked(scores: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
    """ROC-AUC of scores [N] for labels y [N] over the rows with mask [N] true; NaN if a class is empty.

    AUC = (sum_{i: y_i=1} r_i - n1 (n1 + 1) / 2) / (n1 n0), r_i the 1-based rank among the masked
    scores, ties getting their average rank (equals scikit-learn's roc_auc_score). Scores must be finite.
    """
    mask = mask.astype(bool)
    s = jnp.where(mask, scores, jnp.inf)
    srt = jnp.sort(s)
    lo = jnp.searchsorted(srt, s, side="left")
    hi = jnp.searchsorted(srt, s, side="right")
    rank = (lo + hi + 1).astype(jnp.float32) / 2.0
    pos = mask & (y > 0.5)
    n1 = pos.sum().astype(jnp.float32)
    n0 = mask.sum().astype(jnp.float32) - n1
    u = jnp.sum(jnp.where(pos, rank, 0.0)) - n1 * (n1 + 1.0) / 2.0
    return jnp.where((n1 > 0) & (n0 > 0), u / jnp.maximum(n1 * n0, 1.0), jnp.nan)


# ----------------------------------------------------------------------------------------------
# CV kernels.
# ----------------------------------------------------------------------------------------------
def _cv_fold(x, y, m, fid, f, *, pca_dims: tuple, C: float, max_iter: int, tol: float):
    """AUCs [P] for one layer x [N, D], target (y, m, fold ids fid [N]) and held-out fold f."""
    train = m & (fid >= 0) & (fid != f)
    test = m & (fid == f)
    w = train.astype(jnp.float32)
    z, _, _ = weighted_standardize(x, w)
    widths = [p for p in pca_dims if p is not None]
    if widths:
        _, V = pca_basis(z, w, max(widths))
        zp = jnp.einsum("nd,dk->nk", z, V, precision=HI)
    aucs = []
    for p in pca_dims:
        feats = z if p is None else zp[:, :p]
        _, s = fit_logreg(feats, y, w, C=C, max_iter=max_iter, tol=tol)
        aucs.append(roc_auc_masked(s, y, test))
    return jnp.stack(aucs)


def cv_auc_layer_target(X, Y, M, fold_ids, n_splits, *, max_splits: int, pca_dims: tuple,
                        C: float = DEFAULT_C, max_iter: int = DEFAULT_MAX_ITER, tol: float = DEFAULT_TOL):
    """Traceable core: X [L, N, D], Y/M/fold_ids [N, K], n_splits [K] -> mean CV-AUC [L, K, P]."""
    def per_target(x, y, m, fid, ns):
        folds = jnp.arange(max_splits)
        one = lambda f: _cv_fold(x, y, m, fid, f, pca_dims=pca_dims, C=C, max_iter=max_iter, tol=tol)
        aucs = jax.vmap(one)(folds)                                  # [F, P]
        use = (folds < ns)[:, None]
        mean = jnp.sum(jnp.where(use, aucs, 0.0), axis=0) / jnp.maximum(ns, 1)
        return jnp.where(ns >= MIN_PER_CLASS, mean, jnp.nan)

    per_layer = jax.vmap(per_target, in_axes=(None, 1, 1, 1, 0))
    return jax.vmap(per_layer, in_axes=(0, None, None, None, None))(X, Y, M, fold_ids, n_splits)


@functools.partial(jax.jit, static_argnames=("max_splits", "pca_dims", "C", "max_iter", "tol"))
def _cv_jit(X, Y, M, fold_ids, n_splits, *, max_splits, pca_dims, C, max_iter, tol):
    return cv_auc_layer_target(prestandardize(X), Y, M, fold_ids, n_splits, max_splits=max_splits,
                               pca_dims=pca_dims, C=C, max_iter=max_iter, tol=tol)


def normalize_pca_dims(pca_dims, D: int) -> tuple:
    """int | None | sequence -> tuple of (int | None); raises when a width exceeds D."""
    dims = tuple(pca_dims) if isinstance(pca_dims, (list, tuple)) else (pca_dims,)
    if not dims:
        raise ValueError("pca_dims is empty; pass e.g. (50, 100) or None for no PCA")
    for p in dims:
        if p is not None and not 1 <= int(p) <= D:
            raise ValueError(f"pca_dims entry {p} must lie in [1, D={D}]; drop it or use a smaller width")
    return tuple(None if p is None else int(p) for p in dims)


def cv_bytes_per_layer(N: int, D: int, K: int, F: int, pca_dims: tuple) -> float:
    """Rough float32 working set of one layer of `cv_auc` (standardised rows, covariances, designs)."""
    pmax = max([p or D for p in pca_dims])
    return 4.0 * K * F * (3 * N * D + 4 * D * D + 3 * N * (pmax + 1))


def resolve_folds(Y, M, folds: Folds | None, n_splits: int, seed: int) -> Folds:
    """The given folds (checked against Y/M) or fresh `stratified_folds(Y, M, n_splits, seed)`."""
    if folds is None:
        return stratified_folds(Y, M, n_splits, seed)
    ids = np.asarray(folds.ids, np.int32)
    ns = np.asarray(folds.n_splits, np.int32)
    if ids.shape != np.shape(M) or ns.shape != (np.shape(M)[1],):
        raise ValueError(f"folds.ids {ids.shape} must be [N, K] = {np.shape(M)} and n_splits [K]")
    if (ids[~np.asarray(M, bool)] >= 0).any():
        raise ValueError("folds assign a fold to a row whose label is missing; use -1 there")
    return Folds(ids, ns)


def cv_auc(X, Y, M, folds: Folds | None = None, *, pca_dims: int | None | Sequence = None,
           C: float = DEFAULT_C, n_splits: int = 5, seed: int = 42, max_iter: int = DEFAULT_MAX_ITER,
           tol: float = DEFAULT_TOL, layer_chunk: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
           return_valid: bool = False):
    """Stratified K-fold CV ROC-AUC of StandardScaler -> PCA -> LogisticRegression(C), per (layer, target).

    Args:
      X: [L, N, D] (or [N, D]) features of TRAINING rows only.
      Y, M: [N, K] labels in {0, 1} and bool mask (missing labels are excluded per target).
      folds: `Folds` (e.g. from `stratified_folds`, to feed the same folds to a reference); default
        `stratified_folds(Y, M, n_splits, seed)`.
      pca_dims: one width (int), None (no PCA), or a sequence of them (the toolkit's grid is
        (50, 100, 150, 200, 300)).
    Returns:
      [L, K] for a single width, else [L, K, P]; NaN where the target is invalid (and valid [K] when
      return_valid).
    """
    X, Y, M = check_inputs(X, Y, M)
    L, N, D = X.shape
    single = not isinstance(pca_dims, (list, tuple))
    dims = normalize_pca_dims(pca_dims, D)
    folds = resolve_folds(Y, M, folds, n_splits, seed)
    F = max(int(folds.n_splits.max()), 1)
    chunk = chunk_for(cv_bytes_per_layer(N, D, Y.shape[1], F, dims), max_bytes, layer_chunk)
    fn = functools.partial(_cv_jit, max_splits=F, pca_dims=dims, C=float(C), max_iter=int(max_iter),
                           tol=float(tol))
    (auc,) = map_layer_chunks(fn, X, chunk, jnp.asarray(Y), jnp.asarray(M), jnp.asarray(folds.ids),
                              jnp.asarray(folds.n_splits))
    auc = auc[..., 0] if single else auc
    return (auc, folds.n_splits >= MIN_PER_CLASS) if return_valid else auc


def roc_auc(scores, y, mask=None) -> np.ndarray:
    """ROC-AUC over the last axis: scores [..., N], y [N] or [..., N], mask like y (default all)."""
    scores = jnp.asarray(scores, jnp.float32)
    y = jnp.broadcast_to(jnp.asarray(y, jnp.float32), scores.shape)
    mask = jnp.ones(scores.shape, bool) if mask is None else jnp.broadcast_to(jnp.asarray(mask, bool),
                                                                              scores.shape)
    return np.asarray(_roc_auc_nd(scores, y, mask))


@jax.jit
def _roc_auc_nd(scores, y, mask):
    fn = roc_auc_masked
    for _ in range(scores.ndim - 1):
        fn = jax.vmap(fn)
    return fn(scores, y, mask)


__all__ = ["Folds", "stratified_folds", "roc_auc", "roc_auc_masked", "cv_auc"]
