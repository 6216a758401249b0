"""Fisher separability of pooled layer features, per (layer, target), in one vmapped JAX call.

Axes: L layers (any stack of layers x poolings x encoders sharing D), N rows (training prompts only:
the caller slices them), D feature width, K targets, P PCA widths.

Per (layer, target) only the rows with a label (``M[:, k]``) are used: n = sum_i M_ik rows,
n_c rows of class c, p_c = n_c / n. The features are standardised with the mean and the biased (population)
std of exactly those rows, z = (x - mu) / sigma; a feature whose variance is below ``STD_FLOOR**2``
(constant on those rows) gets sigma = 1, as scikit-learn's StandardScaler does, so it becomes exactly 0.

Fisher J (binary), with Delta = mu_1 - mu_0 the class-mean gap of z:

    C   = (1/n) sum_i z_i z_i^T                          biased total covariance (z is centred)
    S_W = (1/n) sum_c sum_{i in c} (z_i - mu_c)(z_i - mu_c)^T = C - p0 p1 Delta Delta^T
    J   = Delta^T (S_W + eps I)^{-1} Delta                  (Cholesky solve, never inv)

Shrinkage: ``'fixed'``: eps = shrink * tr(S_W) / k (k = feature dim after optional PCA; default
shrink = 1e-3); ``'ledoit_wolf'``: S_W -> (1 - rho) S_W + rho tr(S_W)/k I with scikit-learn's Ledoit-Wolf
rho computed from the within-class-centred rows. With shrink = 0 and S_W singular the result is NaN.

Relation to the two-Gaussian closed form: if x|c ~ N(mu_c, Sigma) then S_W -> Sigma and
J -> delta^T Sigma^{-1} delta (the squared Mahalanobis gap) as n -> inf; the class-weighted between-class
scatter S_B = p0 p1 Delta Delta^T would give p0 p1 J instead (J does NOT carry the p0 p1 factor).
Standardisation rescales Sigma and delta by the same per-feature sigma, so J is invariant to it.

Optional PCA (``pca_dim=k``): keep the top-k eigenvectors V of C (eigh); since V^T C V = diag(lambda_top),
S_W in PCA space is diag(lambda_top) - p0 p1 (V^T Delta)(V^T Delta)^T: no projected data needed.

Diagonal variant: J_diag = mean_d (mu_1d - mu_0d)^2 / max(s_1d^2 + s_0d^2, DIAG_FLOOR), s_c^2 the biased
within-class variance of z (scale invariant per feature, so standardisation does not change it).

Validity: a target with fewer than 2 rows in either class gets NaN and ``valid = False``.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from prefill_router.probes import linalg
from prefill_router.probes.readout import HI, STD_FLOOR, pca_basis, weighted_cov, weighted_standardize

DIAG_FLOOR = 1e-6         # floor of s_1^2 + s_0^2 in J_diag (standardised units)
MIN_PER_CLASS = 2         # fewer members in a class -> NaN + valid=False
DEFAULT_SHRINK = 1e-3
DEFAULT_MAX_BYTES = 2 << 30
SHRINKAGES = ("fixed", "ledoit_wolf")


# ----------------------------------------------------------------------------------------------
# Input checks and shared helpers.
# ----------------------------------------------------------------------------------------------
def check_inputs(X, Y, M) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates shapes/values and returns (X float32 [L,N,D], Y float32 [N,K], M bool [N,K]).

    Labels outside {0, 1} on masked-in entries raise; masked-out entries may hold anything (NaN too).
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 2:
        X = X[None]
    Y = np.asarray(Y, dtype=np.float32)
    M = np.asarray(M, dtype=bool)
    if Y.ndim == 1:
        Y = Y[:, None]
    if M.ndim == 1:
        M = M[:, None]
    if X.ndim != 3:
        raise ValueError(f"features must be [L, N, D], got shape {X.shape}")
    if Y.shape != M.shape or Y.shape[0] != X.shape[1]:
        raise ValueError(
            f"labels {Y.shape} and mask {M.shape} must both be [N, K] with N = {X.shape[1]} (rows of X)")
    bad = M & ~np.isin(Y, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} labelled entries are not in {{0, 1}}; fix the labels or mask them out")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN/inf; drop or repair those rows before probing")
    Y = np.where(M, Y, 0.0).astype(np.float32)  # masked entries never reach a statistic (weight 0)
    return X, Y, M


def label_validity(Y, M, min_per_class: int = MIN_PER_CLASS) -> np.ndarray:
    """[K] bool: True where target k has >= min_per_class labelled rows in each class."""
    Y = np.asarray(Y, dtype=np.float32)
    M = np.asarray(M, dtype=bool)
    n1 = (M & (Y == 1)).sum(0)
    n0 = (M & (Y == 0)).sum(0)
    return (n1 >= min_per_class) & (n0 >= min_per_class)


def prestandardize(X: jax.Array) -> jax.Array:
    """[L, N, D] -> the same features centred and scaled per (layer, feature) over all N rows.

    An invertible per-feature affine map (constant features: scale 1), so every statistic computed
    after the per-target standardisation is unchanged; it only removes the large offsets of residual
    streams (massive activations) that would cost float32 precision in the Gram matrices.
    """
    mu = X.mean(axis=1, keepdims=True)
    sd = X.std(axis=1, keepdims=True)
    return (X - mu) / jnp.where(sd > STD_FLOOR, sd, 1.0)


def map_layer_chunks(fn: Callable, X: np.ndarray, chunk: int, *args) -> list[np.ndarray]:
    """Applies a jitted fn(X_chunk [c, N, D], *args) -> tuple of [c, ...] arrays over layer chunks.

    The last chunk is padded by repeating its final layer so every call has the same shape (one
    compilation); the padding is sliced off. Returns the concatenated outputs as numpy arrays.
    """
    L = X.shape[0]
    chunk = max(1, min(chunk, L))
    outs = []
    for start in range(0, L, chunk):
        xc = X[start:start + chunk]
        real = xc.shape[0]
        if real < chunk:
            xc = np.concatenate([xc, np.repeat(xc[-1:], chunk - real, axis=0)], axis=0)
        res = fn(jnp.asarray(xc), *args)
        res = res if isinstance(res, tuple) else (res,)
        outs.append([np.asarray(r)[:real] for r in res])
    return [np.concatenate(parts, axis=0) for parts in zip(*outs)]


def chunk_for(bytes_per_layer: float, max_bytes: int, layer_chunk: int | None) -> int:
    """Layer-chunk size: ``layer_chunk`` if given, else the most layers whose working set fits max_bytes."""
    if layer_chunk is not None:
        if layer_chunk < 1:
            raise ValueError(f"layer_chunk must be >= 1, got {layer_chunk}")
        return int(layer_chunk)
    return max(1, int(max_bytes // max(bytes_per_layer, 1.0)))


# ----------------------------------------------------------------------------------------------
# Single (layer, target) kernels.
# ----------------------------------------------------------------------------------------------
def _ledoit_wolf_rho(R: jax.Array, w: jax.Array, S: jax.Array) -> jax.Array:
    """scikit-learn's Ledoit-Wolf shrinkage for rows R [N, k] (centred, weight w) with S = R^T W R / n."""
    n = jnp.maximum(w.sum(), 1.0)
    k = S.shape[0]
    mu = jnp.trace(S) / k
    delta_ = jnp.sum(S * S)                                     # ||S||_F^2
    beta_ = jnp.sum(w * jnp.square(jnp.sum(R * R, axis=1)))     # sum_i ||r_i||^4
    beta = (beta_ / n - delta_) / (k * n)
    delta = (delta_ - k * mu**2) / k
    beta = jnp.minimum(beta, delta)
    return jnp.where(beta > 0, beta / jnp.where(delta > 0, delta, 1.0), 0.0)


def _fisher_one(x, y, m, *, shrink: float, shrinkage: str, pca_dim: int | None):
    """J for one layer x [N, D] and one target (y [N], m [N] bool). Returns a float32 scalar."""
    w = m.astype(jnp.float32)
    n = jnp.maximum(w.sum(), 1.0)
    w1 = w * y
    w0 = w - w1
    n1, n0 = w1.sum(), w0.sum()
    valid = (n1 >= MIN_PER_CLASS) & (n0 >= MIN_PER_CLASS)
    z, _, _ = weighted_standardize(x, w)
    mu1 = jnp.einsum("n,nd->d", w1, z, precision=HI) / jnp.maximum(n1, 1.0)
    mu0 = jnp.einsum("n,nd->d", w0, z, precision=HI) / jnp.maximum(n0, 1.0)
    delta = mu1 - mu0
    p1, p0 = n1 / n, n0 / n
    R = z - y[:, None] * mu1 - (1.0 - y)[:, None] * mu0            # within-class centred rows
    if pca_dim is None:
        C = weighted_cov(z, w)
    else:
        lam, V = pca_basis(z, w, pca_dim)
        delta = delta @ V
        C = jnp.diag(lam)
        R = jnp.einsum("nd,dk->nk", R, V, precision=HI)
    S_w = C - p0 * p1 * jnp.outer(delta, delta)
    k = S_w.shape[0]
    eye = jnp.eye(k, dtype=S_w.dtype)
    tr = jnp.trace(S_w)
    if shrinkage == "fixed":
        S = S_w + shrink * tr / k * eye
    else:
        rho = _ledoit_wolf_rho(R, w, S_w)
        S = (1.0 - rho) * S_w + rho * tr / k * eye
    sol = linalg.cho_solve(linalg.cholesky(S), delta)
    J = delta @ sol
    return jnp.where(valid, J, jnp.nan)


def _fisher_diag_one(x, y, m):
    """J_diag for one layer x [N, D] and one target. Returns a float32 scalar."""
    w = m.astype(jnp.float32)
    w1 = w * y
    w0 = w - w1
    n1, n0 = w1.sum(), w0.sum()
    valid = (n1 >= MIN_PER_CLASS) & (n0 >= MIN_PER_CLASS)
    z, _, _ = weighted_standardize(x, w)

    def moments(wc, nc):
        nc = jnp.maximum(nc, 1.0)
        mu = jnp.einsum("n,nd->d", wc, z, precision=HI) / nc
        var = jnp.einsum("n,nd->d", wc, jnp.square(z - mu), precision=HI) / nc
        return mu, var

    mu1, v1 = moments(w1, n1)
    mu0, v0 = moments(w0, n0)
    Jd = jnp.mean(jnp.square(mu1 - mu0) / jnp.maximum(v1 + v0, DIAG_FLOOR))
    return jnp.where(valid, Jd, jnp.nan)


def fisher_layer_target(X: jax.Array, Y: jax.Array, M: jax.Array, *, shrink=DEFAULT_SHRINK,
                        shrinkage="fixed", pca_dim=None) -> jax.Array:
    """Traceable core: X [L, N, D], Y [N, K], M [N, K] -> J [L, K] (vmap over layers and targets)."""
    one = lambda x, y, m: _fisher_one(x, y, m, shrink=shrink, shrinkage=shrinkage, pca_dim=pca_dim)
    per_target = jax.vmap(one, in_axes=(None, 1, 1))
    return jax.vmap(per_target, in_axes=(0, None, None))(X, Y, M)


def fisher_diag_layer_target(X: jax.Array, Y: jax.Array, M: jax.Array) -> jax.Array:
    """Traceable core: X [L, N, D], Y [N, K], M [N, K] -> J_diag [L, K]."""
    per_target = jax.vmap(_fisher_diag_one, in_axes=(None, 1, 1))
    return jax.vmap(per_target, in_axes=(0, None, None))(X, Y, M)


@functools.partial(jax.jit, static_argnames=("shrink", "shrinkage", "pca_dim"))
def _fisher_jit(X, Y, M, *, shrink, shrinkage, pca_dim):
    return fisher_layer_target(prestandardize(X), Y, M, shrink=shrink, shrinkage=shrinkage, pca_dim=pca_dim)


@jax.jit
def _fisher_diag_jit(X, Y, M):
    return fisher_diag_layer_target(prestandardize(X), Y, M)


def _check_options(shrink, shrinkage, pca_dim, D):
    if shrinkage not in SHRINKAGES:
        raise ValueError(f"shrinkage must be one of {SHRINKAGES}, got {shrinkage!r}")
    if shrink < 0:
        raise ValueError(f"shrink must be >= 0, got {shrink}")
    if pca_dim is not None and not 1 <= pca_dim <= D:
        raise ValueError(f"pca_dim={pca_dim} must lie in [1, D={D}]; pass a smaller pca_dim or None")


def fisher_bytes_per_layer(N: int, D: int, K: int) -> float:
    """Rough float32 working set of one layer of `fisher_j` (covariances, factors, standardised rows)."""
    return 4.0 * K * (4 * D * D + 3 * N * D)


# ----------------------------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------------------------
def fisher_j(X, Y, M, *, shrink: float = DEFAULT_SHRINK, shrinkage: str = "fixed",
             pca_dim: int | None = None, layer_chunk: int | None = None,
             max_bytes: int = DEFAULT_MAX_BYTES, return_valid: bool = False):
    """Fisher J per (layer, target); see the module docstring for the formulas.

    Args:
      X: [L, N, D] (or [N, D]) features of TRAINING rows only.
      Y: [N, K] labels in {0, 1}; entries with M false are ignored (may be NaN).
      M: [N, K] bool, True where the label exists.
      shrink: eps = shrink * tr(S_W) / k for shrinkage='fixed' (default 1e-3).
      shrinkage: 'fixed' or 'ledoit_wolf'.
      pca_dim: keep the top pca_dim principal components of the standardised rows first (None: all D).
      layer_chunk / max_bytes: layers per compiled call (default: as many as fit max_bytes).
      return_valid: also return valid [K] (>= 2 rows per class).

    Returns:
      J [L, K] float32 with NaN where invalid (and valid [K] when return_valid).
    """
    X, Y, M = check_inputs(X, Y, M)
    L, N, D = X.shape
    _check_options(shrink, shrinkage, pca_dim, D)
    chunk = chunk_for(fisher_bytes_per_layer(N, D, Y.shape[1]), max_bytes, layer_chunk)
    fn = functools.partial(_fisher_jit, shrink=float(shrink), shrinkage=shrinkage, pca_dim=pca_dim)
    (J,) = map_layer_chunks(fn, X, chunk, jnp.asarray(Y), jnp.asarray(M))
    return (J, label_validity(Y, M)) if return_valid else J


def fisher_j_diag(X, Y, M, *, layer_chunk: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                  return_valid: bool = False):
    """Diagonal Fisher J_diag [L, K] (NaN where invalid); arguments as in `fisher_j`."""
    X, Y, M = check_inputs(X, Y, M)
    L, N, D = X.shape
    chunk = chunk_for(4.0 * Y.shape[1] * 3 * N * D, max_bytes, layer_chunk)
    (J,) = map_layer_chunks(_fisher_diag_jit, X, chunk, jnp.asarray(Y), jnp.asarray(M))
    return (J, label_validity(Y, M)) if return_valid else J


def gaussian_fisher_closed_form(delta: np.ndarray, sigma: np.ndarray) -> float:
    """delta^T Sigma^{-1} delta: the large-n limit of J for two Gaussians with shared covariance."""
    return float(delta @ np.linalg.solve(sigma, delta))


__all__ = ["fisher_j", "fisher_j_diag", "label_validity", "gaussian_fisher_closed_form",
           "DEFAULT_SHRINK", "DIAG_FLOOR", "MIN_PER_CLASS"]
