"""Effective dimensionality: closed forms and the Gram-matrix path."""
import numpy as np
import pytest

from prefill_router.probes import effective_dims, entropy_dim, participation_ratio


def _rank_r(N, D, r, seed):
    """Rows whose covariance is exactly the projection onto r directions (r equal eigenvalues)."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(N, r))
    U -= U.mean(0)
    U, _ = np.linalg.qr(U)                       # orthonormal, centred columns
    V, _ = np.linalg.qr(rng.normal(size=(D, r)))
    return (np.sqrt(N) * U @ V.T).astype(np.float32) + 7.0


def test_isotropic_is_about_d():
    X = np.random.default_rng(0).normal(size=(2, 6000, 12)).astype(np.float32)
    d = effective_dims(X)
    np.testing.assert_allclose(d["d_eff_pr"], 12, rtol=0.02)
    np.testing.assert_allclose(d["d_eff_entropy"], 12, rtol=0.01)
    np.testing.assert_allclose(d["isotropy"], 1.0, rtol=0.02)


@pytest.mark.parametrize("N,D", [(200, 30), (12, 40)])  # D x D path and the N < D Gram path
def test_rank_r_equal_eigenvalues_exact(N, D):
    r = 5
    X = np.stack([_rank_r(N, D, r, s) for s in range(2)])
    np.testing.assert_allclose(participation_ratio(X, standardize=False), r, rtol=1e-4)
    np.testing.assert_allclose(entropy_dim(X, standardize=False), r, rtol=1e-4)


@pytest.mark.parametrize("N,D", [(50, 9), (9, 50)])
def test_matches_numpy_and_layer_loop(N, D):
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(3, N, D)) @ rng.normal(size=(D, D))).astype(np.float32) * rng.uniform(0.1, 9, D)
    X[:, :, 0] = 1.0  # constant feature: becomes 0 after standardisation
    rows = rng.random(N) < 0.8
    d = effective_dims(X, rows)
    for l in range(3):
        x = X[l][rows].astype(np.float64)
        sd = x.std(0)
        z = (x - x.mean(0)) / np.where(sd > 1e-6, sd, 1.0)
        lam = np.clip(np.linalg.eigvalsh(z.T @ z / len(z)), 0, None)
        p = lam / lam.sum()
        assert d["d_eff_pr"][l] == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-4)
        assert d["d_eff_entropy"][l] == pytest.approx(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))), rel=1e-3)
    np.testing.assert_allclose(d["d_eff_pr"], [participation_ratio(X[l], rows)[0] for l in range(3)], rtol=1e-5)
    np.testing.assert_allclose(d["isotropy"], d["d_eff_pr"] / D)
