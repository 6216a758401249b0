"""Feature blocks: scaler + PCA against scikit-learn, train-only fitting, layouts, input errors."""
import numpy as np
import pytest

from prefill_router.router import blocks


def _features(n=41, d=11, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 3
    x[:, 4] = 2.5  # a constant feature
    return x


def test_fit_matches_sklearn_scaler_and_pca():
    sk_pre = pytest.importorskip("sklearn.preprocessing")
    sk_dec = pytest.importorskip("sklearn.decomposition")
    x = _features()
    t = blocks.fit_transform(x, pca_dim=5)
    xs = sk_pre.StandardScaler().fit_transform(x)
    ref = sk_dec.PCA(n_components=5, svd_solver="full", random_state=42).fit(xs)
    z = t.apply(x)
    z_ref = ref.transform(xs)
    # scikit-learn uses the same sign convention (largest |loading| positive); compare exactly, not up to sign.
    np.testing.assert_allclose(t.components, ref.components_, atol=1e-10)
    np.testing.assert_allclose(z, z_ref, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(t.explained_variance * len(x) / (len(x) - 1), ref.explained_variance_, rtol=1e-9)
    assert z.dtype == np.float32 and z.shape == (41, 5)
    assert t.scale[4] == 1.0 and np.all(z[:, :] == z[:, :])  # constant feature: scale 1, no NaN


def test_fitted_on_train_rows_only():
    x = _features(n=50)
    lookup = {("enc", 3, "mean"): x}
    specs = [blocks.BlockSpec("t0", "enc", 3, "mean", 4)]
    train = np.arange(50) < 35
    t1, z1 = blocks.build_design(lookup, specs, train)
    x2 = x.copy()
    x2[35:] = 1e3 * np.random.default_rng(1).normal(size=(15, x.shape[1]))  # change only the test rows
    t2, z2 = blocks.build_design({("enc", 3, "mean"): x2}, specs, np.flatnonzero(train))
    np.testing.assert_array_equal(t1[0].components, t2[0].components)
    np.testing.assert_array_equal(z1[:35], z2[:35])
    assert not np.allclose(z1[35:], z2[35:])
    # and the fit equals a direct fit on the training rows
    np.testing.assert_array_equal(blocks.fit_transform(x[:35], 4).components, t1[0].components)


def test_per_target_concat_order_and_shared_layout():
    xa, xb = _features(seed=1), _features(seed=2)[:, :7]
    src_b = blocks.FeatureSource("enc", 5, "last", {"enable_thinking": True})
    lookup = {("enc", 2, "mean"): xa, src_b: xb}
    specs = [blocks.BlockSpec("t0", "enc", 2, "mean", 3),
             blocks.BlockSpec("t1", "enc", 5, "last", 2, {"enable_thinking": True})]
    rows = np.arange(30)
    ts, z = blocks.build_design(lookup, specs, rows)
    assert z.shape == (41, 5)
    np.testing.assert_array_equal(z[:, :3], blocks.fit_transform(xa[rows], 3).apply(xa))
    np.testing.assert_array_equal(z[:, 3:], blocks.fit_transform(xb[rows], 2).apply(xb))
    np.testing.assert_array_equal(blocks.apply_design(lookup, specs, ts), z)

    shared = blocks.SharedBlockSpec((blocks.FeatureSource("enc", 2, "mean"), src_b), pca_dim=6)
    ts, z = blocks.build_design(lookup, [shared], rows)
    both = np.concatenate([xa, xb], axis=1)
    np.testing.assert_array_equal(z, blocks.fit_transform(both[rows], 6).apply(both))
    assert blocks.spec_from_json(shared.to_json()) == shared
    assert blocks.spec_from_json(specs[1].to_json()) == specs[1]


def test_nan_features_name_rows_and_block():
    x = _features()
    x[[3, 17], 2] = np.nan
    x[29, 0] = np.inf
    with pytest.raises(ValueError, match=r"block 'tgt'.*3 row\(s\).*\[3, 17, 29\]"):
        blocks.build_design({("enc", 1, "last"): x}, [blocks.BlockSpec("tgt", "enc", 1, "last", 2)], np.arange(41))


def test_pca_dim_clamped_and_shape_errors(caplog):
    x = _features(n=6, d=11)
    t = blocks.fit_transform(x, pca_dim=9)
    assert t.out_dim == 6
    with pytest.raises(ValueError, match=r"expects \[N, 11\]"):
        t.apply(np.zeros((2, 10)), "t0")
    with pytest.raises(KeyError, match="no features for enc"):
        blocks.build_design({}, [blocks.BlockSpec("t0", "enc", 1, "last", 2)], np.arange(3))
    with pytest.raises(ValueError, match="pooling"):
        blocks.BlockSpec("t0", "enc", 1, "max", 2)
