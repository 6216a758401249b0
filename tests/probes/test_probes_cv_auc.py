"""CV ROC-AUC and ROC-AUC against scikit-learn on the same folds."""
import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from prefill_router.probes import cv_auc, fit_logreg, roc_auc, stratified_folds  # noqa: E402

PCA_DIMS = (4, None)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    L, N, D, K = 2, 160, 10, 3
    Y = (rng.random((N, K)) < np.array([0.4, 0.25, 0.5])).astype(np.float32)
    X = rng.normal(size=(L, N, D)).astype(np.float32) * rng.uniform(0.5, 30, D) + 100.0
    X[:, :, :3] += 25.0 * (Y[None] - 0.5) * rng.uniform(0.3, 1.0, (L, 1, 3))
    X[:, :, 9] = 2.0  # constant feature
    M = rng.random((N, K)) < 0.85
    return X, Y, M


def _sklearn_cv(x, y, m, fid, n_splits, pca, **lr):
    aucs = []
    for f in range(n_splits):
        tr, te = m & (fid != f) & (fid >= 0), fid == f
        sc = StandardScaler().fit(x[tr])
        a, b = sc.transform(x[tr]), sc.transform(x[te])
        if pca is not None:
            p = PCA(pca, svd_solver="full").fit(a)
            a, b = p.transform(a), p.transform(b)
        clf = LogisticRegression(C=1.0, random_state=42, **lr).fit(a, y[tr])
        aucs.append(roc_auc_score(y[te], clf.decision_function(b)))
    return np.mean(aucs)


def test_folds_are_stratified_and_deterministic(data):
    _, Y, M = data
    f = stratified_folds(Y, M, 5, seed=7)
    np.testing.assert_array_equal(f.ids, stratified_folds(Y, M, 5, seed=7).ids)
    assert (f.ids[~M] == -1).all() and (f.ids[M] >= 0).all()
    for k in range(Y.shape[1]):
        for c in (0, 1):
            counts = np.bincount(f.ids[M[:, k] & (Y[:, k] == c), k], minlength=5)
            assert counts.max() - counts.min() <= 1 and counts.min() >= 1
    capped = stratified_folds(np.array([[0.0], [0], [0], [0], [1], [1]]), np.ones((6, 1), bool), 5)
    assert capped.n_splits.tolist() == [2]  # capped by the minority count


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cv_auc_matches_sklearn_on_same_folds(data):
    X, Y, M = data
    folds = stratified_folds(Y, M, 5, seed=3)
    ours = cv_auc(X, Y, M, folds, pca_dims=PCA_DIMS)
    assert ours.shape == (2, 3, 2)
    for l in range(2):
        for k in range(3):
            for j, p in enumerate(PCA_DIMS):
                args = (X[l], Y[:, k], M[:, k], folds.ids[:, k], folds.n_splits[k], p)
                toolkit = _sklearn_cv(*args, max_iter=500)  # the toolkit's settings (lbfgs, tol 1e-4)
                assert ours[l, k, j] == pytest.approx(toolkit, abs=1e-3)
                if l == 0:  # a tightly converged reference agrees much closer
                    tight = _sklearn_cv(*args, solver="newton-cholesky", tol=1e-10, max_iter=1000)
                    assert ours[l, k, j] == pytest.approx(tight, abs=2e-5)
    single = cv_auc(X, Y, M, folds, pca_dims=4)
    np.testing.assert_allclose(single, ours[..., 0], atol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cv_auc_with_fewer_rows_than_features_matches_sklearn():
    # N < D: the PCA basis comes from the N x N Gram matrix of each fold's training rows.
    rng = np.random.default_rng(5)
    N, D = 50, 80
    y = (rng.random(N) < 0.4).astype(np.float32)
    x = (rng.normal(size=(N, D)) + 0.6 * y[:, None] * rng.normal(size=D)).astype(np.float32)
    M = np.ones((N, 1), bool)
    folds = stratified_folds(y[:, None], M, 5, seed=1)
    ours = cv_auc(x[None], y[:, None], M, folds, pca_dims=(6, 20))[0, 0]
    for j, p in enumerate((6, 20)):
        ref = _sklearn_cv(x, y, M[:, 0], folds.ids[:, 0], folds.n_splits[0], p, solver="newton-cholesky",
                          tol=1e-10, max_iter=1000)
        assert ours[j] == pytest.approx(ref, abs=1e-4)


def test_masked_labels_do_not_matter_and_invalid_target_nan(data):
    X, Y, M = data
    Y2 = Y.copy()
    Y2[~M] = np.nan
    Y2[:, 2] = np.where(M[:, 2], 0.0, np.nan)  # target 2: no positives
    a, valid = cv_auc(X, Y, M, pca_dims=4, return_valid=True)
    b, valid2 = cv_auc(X, Y2, M, pca_dims=4, return_valid=True)
    np.testing.assert_array_equal(a[:, :2], b[:, :2])
    assert valid.all() and valid2.tolist() == [True, True, False] and np.isnan(b[:, 2]).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_logreg_matches_sklearn_coefficients():
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(300, 6)).astype(np.float32)
    y = (Z @ rng.normal(size=6) + 0.5 + rng.normal(size=300) > 0).astype(np.float32)
    w = (rng.random(300) < 0.7).astype(np.float32)
    theta, _ = fit_logreg(Z, y, w)
    ref = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-10).fit(Z[w > 0], y[w > 0])
    np.testing.assert_allclose(theta[:-1], ref.coef_[0], atol=1e-4)
    assert float(theta[-1]) == pytest.approx(ref.intercept_[0], abs=1e-4)


def test_roc_auc_with_ties_matches_sklearn():
    rng = np.random.default_rng(6)
    scores = rng.integers(0, 5, size=(4, 80)).astype(np.float32)   # many ties
    y = (rng.random(80) < 0.4).astype(np.float32)
    mask = rng.random(80) < 0.8
    ours = roc_auc(scores, y, mask)
    for i in range(4):
        assert ours[i] == pytest.approx(roc_auc_score(y[mask], scores[i][mask]), abs=1e-6)
    assert np.isnan(roc_auc(scores[0], np.zeros(80)))
