"""Linear readout: StandardScaler -> PCA -> L2 logistic regression, fitted on training rows only."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from prefill_router.probes.cv_auc import fit_logreg

_STD_FLOOR = 1e-12


@dataclasses.dataclass
class LinearProbe:
    """z = ((x - mu) / sigma) V, score = z coef + b.  mu, sigma [D]; V [D, p] (None: no PCA); theta [p + 1]."""
    mu: np.ndarray
    sigma: np.ndarray
    V: np.ndarray | None
    theta: np.ndarray

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Logits [N] for features x [N, D]."""
        z = (np.asarray(x, np.float64) - self.mu) / self.sigma
        if self.V is not None:
            z = z @ self.V
        return z @ self.theta[:-1] + self.theta[-1]


def fit_linear_probe(x: np.ndarray, y: np.ndarray, pca_dim: int | None, C: float = 1.0) -> LinearProbe:
    """Fits the probe on rows x [N, D], labels y [N] in {0, 1} (as scikit-learn's StandardScaler ->
    PCA(pca_dim) -> LogisticRegression(C); constant features get sigma = 1)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"fit_linear_probe expects x [N, D] and y [N]; got {x.shape} and {y.shape}")
    mu = x.mean(axis=0)
    sigma = x.std(axis=0)
    sigma = np.where(sigma > _STD_FLOOR, sigma, 1.0)
    z = (x - mu) / sigma
    V = None
    if pca_dim is not None:
        if not 1 <= pca_dim <= min(x.shape):
            raise ValueError(f"pca_dim={pca_dim} must lie in [1, min(N, D)={min(x.shape)}]")
        evals, evecs = np.linalg.eigh(z.T @ z / len(z))
        V = evecs[:, np.argsort(evals)[::-1][:pca_dim]]
        z = z @ V
    theta, _ = fit_logreg(jnp.asarray(z, jnp.float32), jnp.asarray(y, jnp.float32),
                          jnp.ones(len(y), jnp.float32), C=C)
    return LinearProbe(mu, sigma, V, np.asarray(theta, np.float64))
