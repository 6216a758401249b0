"""Effective dimensionality of pooled layer features, per layer, in one vmapped JAX call.

Axes: L layers, N rows, D feature width.

With C the biased covariance of the (optionally standardised) rows and lambda_i its eigenvalues:

    participation ratio   d_PR  = (sum_i lambda_i)^2 / sum_i lambda_i^2 = tr(C)^2 / ||C||_F^2
    entropy form          d_H   = exp(-sum_i p_i log p_i),   p_i = lambda_i / sum_j lambda_j
    isotropy              d_PR / D

Both lie in [1, rank(C)]: isotropic data gives about D, data spanning r directions with equal variance
exactly r. The non-zero eigenvalues of C = Z^T Z / n equal those of the Gram matrix Z Z^T / n, so when
N < D everything is computed from the [N, N] Gram matrix (less memory, same numbers). The participation
ratio needs no eigendecomposition; the entropy form uses eigh.

Standardisation (default on, as the probes' inputs in method.md section 3) uses the population std;
constant features get sigma = 1 (they are then 0 and add nothing).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from prefill_router.probes import linalg
from prefill_router.probes.fisher import DEFAULT_MAX_BYTES, chunk_for, map_layer_chunks
from prefill_router.probes.readout import HI, weighted_standardize


def _gram(x: jax.Array, w: jax.Array, standardize: bool) -> jax.Array:
    """The smaller of Z^T Z / n [D, D] and Z Z^T / n [N, N] for the weighted, centred rows of x [N, D]."""
    if standardize:
        z, _, _ = weighted_standardize(x, w)
    else:
        n = jnp.maximum(w.sum(), 1.0)
        z = x - jnp.einsum("n,nd->d", w, x, precision=HI) / n
    n = jnp.maximum(w.sum(), 1.0)
    z = z * w[:, None]
    N, D = z.shape
    if N < D:
        return jnp.einsum("nd,md->nm", z, z, precision=HI) / n
    return jnp.einsum("nd,ne->de", z, z, precision=HI) / n


def _pr_one(G: jax.Array) -> jax.Array:
    tr = jnp.trace(G)
    return tr * tr / jnp.sum(G * G)


def _entropy_one(G: jax.Array) -> jax.Array:
    lam = jnp.maximum(linalg.eigh(G)[0], 0.0)
    p = lam / lam.sum()
    H = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.exp(H)


def effdim_layers(X: jax.Array, w: jax.Array, *, standardize: bool = True,
                  entropy: bool = True) -> tuple[jax.Array, jax.Array]:
    """Traceable core: X [L, N, D], row weights w [N] -> (d_PR [L], d_H [L]; NaN when entropy=False)."""
    G = jax.vmap(lambda x: _gram(x, w, standardize))(X)
    pr = jax.vmap(_pr_one)(G)
    ent = jax.vmap(_entropy_one)(G) if entropy else jnp.full_like(pr, jnp.nan)
    return pr, ent


@functools.partial(jax.jit, static_argnames=("standardize", "entropy"))
def _effdim_jit(X, w, *, standardize, entropy):
    return effdim_layers(X, w, standardize=standardize, entropy=entropy)


def _prepare(X, row_mask):
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3:
        raise ValueError(f"features must be [L, N, D], got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN/inf; drop or repair those rows first")
    w = np.ones(X.shape[1], np.float32) if row_mask is None else np.asarray(row_mask, bool).astype(np.float32)
    if w.shape != (X.shape[1],):
        raise ValueError(f"row_mask must be [N={X.shape[1]}], got {w.shape}")
    if w.sum() < 2:
        raise ValueError("effective dimensionality needs at least 2 rows; row_mask selects fewer")
    return X, w


def _run(X, row_mask, standardize, entropy, layer_chunk, max_bytes):
    X, w = _prepare(X, row_mask)
    _, N, D = X.shape
    m = min(N, D)
    chunk = chunk_for(4.0 * (4 * m * m + 2 * N * D), max_bytes, layer_chunk)
    fn = functools.partial(_effdim_jit, standardize=standardize, entropy=entropy)
    return map_layer_chunks(fn, X, chunk, jnp.asarray(w))


def participation_ratio(X, row_mask=None, *, standardize: bool = True, layer_chunk: int | None = None,
                        max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """d_PR = tr(C)^2 / ||C||_F^2 per layer: X [L, N, D] -> [L]. row_mask [N] selects rows (default all)."""
    return _run(X, row_mask, standardize, False, layer_chunk, max_bytes)[0]


def entropy_dim(X, row_mask=None, *, standardize: bool = True, layer_chunk: int | None = None,
                max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """d_H = exp(H(lambda / sum lambda)) per layer: X [L, N, D] -> [L]."""
    return _run(X, row_mask, standardize, True, layer_chunk, max_bytes)[1]


def effective_dims(X, row_mask=None, *, standardize: bool = True, layer_chunk: int | None = None,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """{'d_eff_pr', 'd_eff_entropy', 'isotropy'} per layer ([L] each) from one Gram matrix per layer."""
    pr, ent = _run(X, row_mask, standardize, True, layer_chunk, max_bytes)
    D = np.asarray(X).shape[-1]
    return {"d_eff_pr": pr, "d_eff_entropy": ent, "isotropy": pr / D}


__all__ = ["participation_ratio", "entropy_dim", "effective_dims", "effdim_layers"]
