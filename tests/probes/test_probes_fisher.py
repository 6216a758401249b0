"""Fisher J / J_diag against closed forms and a numpy reference."""
import numpy as np
import pytest

from prefill_router.probes import fisher_j, fisher_j_diag, label_validity


def _np_fisher(x, y, shrink=1e-3, pca_dim=None, lw=False):
    """Direct numpy transcription of the definition (float64): standardise, S_W from class scatter."""
    x = x.astype(np.float64)
    sd = x.std(0)
    z = (x - x.mean(0)) / np.where(sd > 1e-6, sd, 1.0)
    mu1, mu0 = z[y == 1].mean(0), z[y == 0].mean(0)
    R = np.where((y == 1)[:, None], z - mu1, z - mu0)
    delta = mu1 - mu0
    if pca_dim is not None:
        lam, V = np.linalg.eigh(z.T @ z / len(z))
        V = V[:, ::-1][:, :pca_dim]
        R, delta = R @ V, delta @ V
    Sw = R.T @ R / len(z)
    k = len(delta)
    if lw:
        from sklearn.covariance import ledoit_wolf_shrinkage
        rho = ledoit_wolf_shrinkage(R, assume_centered=True)
        S = (1 - rho) * Sw + rho * np.trace(Sw) / k * np.eye(k)
    else:
        S = Sw + shrink * np.trace(Sw) / k * np.eye(k)
    return delta @ np.linalg.solve(S, delta)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    L, N, D, K = 3, 120, 7, 3
    X = rng.normal(size=(L, N, D)).astype(np.float32) * rng.uniform(0.5, 20, D) + 50.0
    Y = (rng.random((N, K)) < 0.35).astype(np.float32)
    X += 2.0 * Y[None, :, :1] * rng.normal(size=(L, 1, D)).astype(np.float32)
    M = rng.random((N, K)) < 0.85
    return X, Y, M


def test_two_gaussians_closed_form():
    rng = np.random.default_rng(1)
    D, N, p1 = 4, 40000, 0.3
    A = rng.normal(size=(D, D))
    sigma = A @ A.T + D * np.eye(D)
    delta = rng.normal(size=D)
    delta *= 2.0 / np.sqrt(delta @ np.linalg.solve(sigma, delta))  # J = 4: sampling error ~1%
    y = (rng.random(N) < p1).astype(np.float32)
    x = rng.multivariate_normal(np.zeros(D), sigma, size=N) + y[:, None] * delta
    J = fisher_j(x[None].astype(np.float32), y[:, None], np.ones((N, 1), bool), shrink=0.0)[0, 0]
    expected = delta @ np.linalg.solve(sigma, delta)  # J has no p0 p1 factor
    assert J == pytest.approx(expected, rel=0.03)
    # class-weighted between-class scatter gives p0 p1 J: tr(S_W^-1 S_B), S_B = sum_c p_c (mu_c - mu)(..)^T
    mu, mus = x.mean(0), [x[y == c].mean(0) for c in (0, 1)]
    pc = [np.mean(y == c) for c in (0, 1)]
    S_B = sum(p * np.outer(m - mu, m - mu) for p, m in zip(pc, mus))
    S_W = sum(p * np.cov(x[y == c].T, bias=True) for p, c in zip(pc, (0, 1)))
    assert np.trace(np.linalg.solve(S_W, S_B)) == pytest.approx(pc[0] * pc[1] * J, rel=1e-3)


@pytest.mark.parametrize("kw", [{}, {"pca_dim": 4}, {"shrinkage": "ledoit_wolf"},
                                {"shrinkage": "ledoit_wolf", "pca_dim": 3}, {"shrink": 0.1}])
def test_matches_numpy_reference_per_target_mask(data, kw):
    X, Y, M = data
    J = fisher_j(X, Y, M, **kw)
    for l in range(X.shape[0]):
        for k in range(Y.shape[1]):
            rows = M[:, k]
            ref = _np_fisher(X[l][rows], Y[rows, k], shrink=kw.get("shrink", 1e-3), pca_dim=kw.get("pca_dim"),
                             lw=kw.get("shrinkage") == "ledoit_wolf")
            assert J[l, k] == pytest.approx(ref, rel=2e-3)


@pytest.mark.parametrize("shrinkage", ["fixed", "ledoit_wolf"])
def test_pca_through_gram_matrix_when_rows_are_fewer_than_features(shrinkage):
    # N < D takes pca_basis's N x N Gram route; the reference uses the D x D covariance.
    rng = np.random.default_rng(3)
    N, D = 40, 90
    x = rng.normal(size=(N, D)) @ rng.normal(size=(D, D)) * 0.1
    y = (rng.random(N) < 0.5).astype(np.float32)
    x = (x + 0.8 * y[:, None] * rng.normal(size=D)).astype(np.float32)
    M = rng.random((N, 1)) < 0.9
    J = fisher_j(x[None], y[:, None], M, pca_dim=12, shrinkage=shrinkage)[0, 0]
    rows = M[:, 0]
    ref = _np_fisher(x[rows], y[rows], pca_dim=12, lw=shrinkage == "ledoit_wolf")
    assert J == pytest.approx(ref, rel=2e-3)


def test_vmapped_equals_layer_loop_and_chunking(data):
    X, Y, M = data
    J = fisher_j(X, Y, M)
    loop = np.concatenate([fisher_j(X[l], Y, M) for l in range(X.shape[0])])
    np.testing.assert_allclose(J, loop, rtol=1e-5)
    np.testing.assert_allclose(J, fisher_j(X, Y, M, layer_chunk=1), rtol=1e-5)  # chunked: same compiled shape
    Jd = fisher_j_diag(X, Y, M)
    np.testing.assert_allclose(Jd, fisher_j_diag(X, Y, M, layer_chunk=1), rtol=1e-5)
    np.testing.assert_allclose(Jd, np.concatenate([fisher_j_diag(X[l], Y, M) for l in range(3)]), rtol=1e-5)


def test_masked_labels_do_not_matter(data):
    X, Y, M = data
    Y2 = Y.copy()
    Y2[~M] = 1.0 - Y2[~M]
    Y3 = Y.copy()
    Y3[~M] = np.nan
    for fn in (fisher_j, fisher_j_diag):
        a = fn(X, Y, M)
        np.testing.assert_array_equal(a, fn(X, Y2, M))
        np.testing.assert_array_equal(a, fn(X, Y3, M))


def test_diag_matches_numpy(data):
    X, Y, M = data
    Jd = fisher_j_diag(X, Y, M)
    for k in range(Y.shape[1]):
        x, y = X[1][M[:, k]].astype(np.float64), Y[M[:, k], k]
        a, b = x[y == 1], x[y == 0]
        ref = np.mean((a.mean(0) - b.mean(0)) ** 2 / (a.var(0) + b.var(0)))
        assert Jd[1, k] == pytest.approx(ref, rel=1e-4)


def test_empty_or_singleton_class_is_nan_and_flagged(data):
    X, Y, M = data
    Y = Y.copy()
    Y[:, 1] = 0.0                       # empty positive class
    Y[:, 2] = 0.0
    Y[np.flatnonzero(M[:, 2])[0], 2] = 1.0  # a single positive
    J, valid = fisher_j(X, Y, M, return_valid=True)
    Jd = fisher_j_diag(X, Y, M)
    assert valid.tolist() == [True, False, False]
    assert np.isfinite(J[:, 0]).all() and np.isnan(J[:, 1:]).all() and np.isnan(Jd[:, 1:]).all()
    np.testing.assert_array_equal(label_validity(Y, M), valid)


def test_n_less_than_d_and_constant_features():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2, 12, 40)).astype(np.float32)
    X[:, :, 5] = 3.0  # constant feature
    Y = np.tile([0.0, 1.0], 6)[:, None]
    M = np.ones_like(Y, bool)
    for kw in ({}, {"shrinkage": "ledoit_wolf", "pca_dim": 8}):
        J = fisher_j(X, Y, M, **kw)
        assert np.isfinite(J).all() and (J > 0).all()
    assert np.isfinite(fisher_j_diag(X, Y, M)).all()


def test_bad_inputs_raise():
    X = np.zeros((1, 4, 3), np.float32)
    with pytest.raises(ValueError, match="not in"):
        fisher_j(X, np.full((4, 1), 2.0), np.ones((4, 1), bool))
    with pytest.raises(ValueError, match="pca_dim"):
        fisher_j(X, np.zeros((4, 1)), np.ones((4, 1), bool), pca_dim=5)
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        fisher_j(X, np.zeros((5, 1)), np.ones((5, 1), bool))
