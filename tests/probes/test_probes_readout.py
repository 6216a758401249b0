"""The linear readout (StandardScaler -> PCA -> logistic regression) against scikit-learn."""
import numpy as np
import pytest

from prefill_router.probes import readout


@pytest.mark.parametrize("pca_dim", [None, 3])
def test_linear_probe_matches_sklearn_pipeline(pca_dim):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6)) * np.array([1.0, 5.0, 0.1, 2.0, 1.0, 3.0]) + 4.0
    x[:, 4] = 7.0  # a constant feature: sigma -> 1, as StandardScaler
    y = (x[:, 0] + 0.3 * x[:, 1] + rng.normal(size=60) > 5.0).astype(float)
    xt = rng.normal(size=(25, 6)) * 2.0 + 4.0
    steps = [StandardScaler()] + ([PCA(pca_dim, svd_solver="full")] if pca_dim else []) + [
        LogisticRegression(C=1.0, tol=1e-10, max_iter=1000)]
    ref = make_pipeline(*steps).fit(x, y).decision_function(xt)
    ours = readout.fit_linear_probe(x, y, pca_dim, C=1.0).scores(xt)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3)


def test_linear_probe_rejects_bad_pca_width():
    with pytest.raises(ValueError, match="pca_dim"):
        readout.fit_linear_probe(np.zeros((5, 3)), np.array([0, 1, 0, 1, 0.0]), 4)
