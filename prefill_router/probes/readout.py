"""The linear readout: StandardScaler -> PCA -> L2 logistic regression, fitted on training rows only.

One implementation, two forms:

JAX core (traceable; vmapped over layers, targets and folds by `probes.fisher` / `probes.cv_auc`; a 0/1 row
weight w [N] selects the fitting rows, so every fold has the same shapes):
    weighted_standardize(x, w) -> (z, mu, sigma)    weighted_cov(z, w) -> [D, D]    top_eigh(C, k)
    pca_basis(z, w, k) -> (lambda [k], V [D, k])    fit_logreg(Z, y, w, C=1) -> (theta [p + 1], scores [N])
float64 fit (numpy, host side; what the router's feature blocks store and the transfer probe refits):
    fit_scaler_pca(x, k) -> ScalerPCA               fit_linear_probe(x, y, pca_dim, C=1) -> LinearProbe

Conventions shared by both: the population (ddof = 0) std, constant features get sigma = 1 (as
scikit-learn's StandardScaler); logistic regression as scikit-learn's ``LogisticRegression(C)`` (intercept
unpenalised). The float64 PCA is a full SVD of the centred standardised rows, each component's sign fixed
so that its largest-magnitude loading is positive (deterministic across runs and machines).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from prefill_router.probes import linalg

HI = jax.lax.Precision.HIGHEST
STD_FLOOR = 1e-6          # JAX core: std below this (on the pre-standardised scale) -> sigma := 1
GRAM_FLOOR = 1e-6         # relative eigenvalue floor of `pca_basis`'s Gram route
DEFAULT_C = 1.0
DEFAULT_MAX_ITER = 30
DEFAULT_TOL = 1e-10
_STEPS = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625)


# ----------------------------------------------------------------------------------------------
# JAX core (traceable, vmappable).
# ----------------------------------------------------------------------------------------------
def weighted_standardize(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Standardise x [N, D] with the statistics of the rows weighted by w [N] (0/1).

    Returns (z [N, D] = (x - mu) / sigma for all rows, mu [D], sigma [D]); mu and the biased std use
    only rows with w = 1; sigma := 1 where the std is below STD_FLOOR (constant feature).
    """
    n = jnp.maximum(w.sum(), 1.0)
    mu = jnp.einsum("n,nd->d", w, x, precision=HI) / n
    var = jnp.einsum("n,nd->d", w, jnp.square(x - mu), precision=HI) / n
    sigma = jnp.where(var > STD_FLOOR**2, jnp.sqrt(var), 1.0)
    return (x - mu) / sigma, mu, sigma


def weighted_cov(z: jax.Array, w: jax.Array) -> jax.Array:
    """(1/n) sum_i w_i z_i z_i^T for z [N, D] already centred on the weighted rows -> [D, D]."""
    n = jnp.maximum(w.sum(), 1.0)
    return jnp.einsum("nd,ne->de", z * w[:, None], z, precision=HI) / n


def top_eigh(C: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Top-k eigenpairs of a symmetric [D, D] matrix, descending: (lambda [k] >= 0, V [D, k])."""
    evals, evecs = linalg.eigh(C)
    return jnp.maximum(evals[::-1][:k], 0.0), evecs[:, ::-1][:, :k]


def pca_basis(z: jax.Array, w: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Top-k principal axes of the rows z [N, D] (centred on the w-weighted rows): (lambda [k], V [D, k]).

    The axes are the top eigenvectors of C = Z^T W Z / n (`weighted_cov`). When N < D and k <= N the
    eigenproblem is solved on the N x N Gram matrix G = A A^T with A = W^{1/2} Z / sqrt(n), which has the
    same nonzero eigenvalues, and V = A^T U / sqrt(lambda): (D / N)^3 less work. Axes with
    lambda <= GRAM_FLOOR * lambda_max (beyond the rank of the rows) become zero columns.
    """
    N, D = z.shape
    if N >= D or k > N:
        return top_eigh(weighted_cov(z, w), k)
    A = z * jnp.sqrt(w / jnp.maximum(w.sum(), 1.0))[:, None]
    lam, U = top_eigh(jnp.einsum("nd,md->nm", A, A, precision=HI), k)
    keep = lam > GRAM_FLOOR * jnp.maximum(lam[0], 1e-30)
    V = jnp.einsum("nd,nk->dk", A, U, precision=HI) / jnp.sqrt(jnp.where(keep, lam, 1.0))
    return jnp.where(keep, lam, 0.0), jnp.where(keep, V, 0.0)


def fit_logreg(Z: jax.Array, y: jax.Array, w: jax.Array, *, C: float = DEFAULT_C,
               max_iter: int = DEFAULT_MAX_ITER, tol: float = DEFAULT_TOL) -> tuple[jax.Array, jax.Array]:
    """L2 logistic regression on the rows with weight w [N] (0/1) of Z [N, p].

    Minimises 0.5 ||coef||^2 + C sum_i w_i (softplus(s_i) - y_i s_i), s = Z coef + b (b unpenalised).
    Returns (theta [p + 1] = [coef, b], scores s [N] for ALL rows).
    """
    N, p = Z.shape
    Zt = jnp.concatenate([Z, jnp.ones((N, 1), Z.dtype)], axis=1)
    pen = jnp.concatenate([jnp.ones(p, Z.dtype), jnp.zeros(1, Z.dtype)])
    steps = jnp.asarray(_STEPS, Z.dtype)

    def objective(theta, s):
        return 0.5 * jnp.sum(pen * theta * theta) + C * jnp.sum(w * (jax.nn.softplus(s) - y * s))

    def body(state):
        theta, s, it, _ = state
        prob = jax.nn.sigmoid(s)
        g = pen * theta + C * jnp.einsum("n,nq->q", w * (prob - y), Zt, precision=HI)
        h = C * w * prob * (1.0 - prob)
        H = jnp.einsum("nq,n,nr->qr", Zt, h, Zt, precision=HI) + jnp.diag(pen) + 1e-6 * jnp.eye(p + 1)
        d = linalg.cho_solve(linalg.cholesky(H), g)
        zd = Zt @ d
        f0 = objective(theta, s)
        fs = jax.vmap(lambda t: objective(theta - t * d, s - t * zd))(steps)
        ok = fs <= f0 + 1e-7 * jnp.abs(f0)
        t = jnp.where(ok.any(), steps[jnp.argmax(ok)], steps[-1])
        dec = 0.5 * jnp.dot(g, d) / jnp.maximum(1.0, jnp.abs(f0))
        return theta - t * d, s - t * zd, it + 1, dec

    def cond(state):
        _, _, it, dec = state
        return (it < max_iter) & (dec > tol)

    init = (jnp.zeros(p + 1, Z.dtype), jnp.zeros(N, Z.dtype), jnp.asarray(0), jnp.asarray(jnp.inf, Z.dtype))
    theta, s, _, _ = jax.lax.while_loop(cond, body, init)
    return theta, s


# ----------------------------------------------------------------------------------------------
# float64 fit (numpy).
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ScalerPCA:
    """A fitted StandardScaler + PCA: z = ((x - mean) / scale - pca_mean) @ components.T.

    mean, scale, pca_mean: [D] float64; components: [k, D] float64 (orthonormal rows), or None for the
    scaler alone; explained_variance: [k] (population variance of the training scores per component).
    """

    mean: np.ndarray
    scale: np.ndarray
    pca_mean: np.ndarray
    components: np.ndarray | None
    explained_variance: np.ndarray | None

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Rows x [N, D] -> float64 [N, k] ([N, D] without PCA)."""
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        return z if self.components is None else (z - self.pca_mean) @ self.components.T

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def fit_scaler_pca(x: np.ndarray, k: int | None) -> ScalerPCA:
    """StandardScaler (population std; scale 1 for constant features) + top-k PCA of rows x [N, D] (k <= min(N, D);
    None: no PCA). A feature is constant when its std is at the rounding level of its mean."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    scale = np.where(std <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0), 1.0, std)
    xs = (x - mean) / scale
    pca_mean = xs.mean(axis=0)
    if k is None:
        return ScalerPCA(mean, scale, pca_mean, None, None)
    _, s, vt = np.linalg.svd(xs - pca_mean, full_matrices=False)
    vt = vt[:k]
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    return ScalerPCA(mean, scale, pca_mean, vt * signs[:, None], s[:k] ** 2 / len(x))


@dataclasses.dataclass
class LinearProbe:
    """score = transform(x) coef + b.  transform: the fitted scaler + PCA; theta [p + 1] = [coef, b]."""
    transform: ScalerPCA
    theta: np.ndarray

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Logits [N] for features x [N, D]."""
        return self.transform.transform(x) @ self.theta[:-1] + self.theta[-1]


def fit_linear_probe(x: np.ndarray, y: np.ndarray, pca_dim: int | None, C: float = DEFAULT_C) -> LinearProbe:
    """Fits the probe on rows x [N, D], labels y [N] in {0, 1}, as scikit-learn's StandardScaler ->
    PCA(pca_dim) -> LogisticRegression(C): `fit_scaler_pca` in float64, then `fit_logreg` in float32."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"fit_linear_probe expects x [N, D] and y [N]; got {x.shape} and {y.shape}")
    if pca_dim is not None and not 1 <= pca_dim <= min(x.shape):
        raise ValueError(f"pca_dim={pca_dim} must lie in [1, min(N, D)={min(x.shape)}]")
    transform = fit_scaler_pca(x, pca_dim)
    z = transform.transform(x)
    theta, _ = fit_logreg(jnp.asarray(z, jnp.float32), jnp.asarray(y, jnp.float32),
                          jnp.ones(len(y), jnp.float32), C=C)
    return LinearProbe(transform, np.asarray(theta, np.float64))
