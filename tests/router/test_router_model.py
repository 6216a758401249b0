"""SharedTrunkNet: shapes, init ranges, masked loss, dropout modes, capacity (overfits a tiny batch)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prefill_router.router import model

CFG = model.TrunkConfig(d_in=7, n_targets=3, hidden=(13, 5), dropout=(0.3, 0.2))
pytestmark = pytest.mark.usefixtures("fast_compile")  # tests/router/conftest.py


def test_shapes_and_pytorch_default_init_ranges():
    cfg = model.TrunkConfig(d_in=400, n_targets=3, hidden=(256, 128))
    params = jax.jit(lambda k: model.init_params(cfg, k)[1])(jax.random.PRNGKey(0))
    layers = params["layers"]
    assert [layers[i]["kernel"].shape for i in range(3)] == [(400, 256), (256, 128), (128, 3)]
    for i, fan_in in enumerate((400, 256, 128)):
        bound = 1 / np.sqrt(fan_in)
        for name in ("kernel", "bias"):
            w = np.asarray(layers[i][name])
            assert np.abs(w).max() <= bound
            assert w.size < 100 or np.abs(w).max() > 0.95 * bound
        # U(-b, b) has std b/sqrt(3)
        np.testing.assert_allclose(np.asarray(layers[i]["kernel"]).std(), bound / np.sqrt(3), rtol=0.05)


def test_masked_bce_ignores_missing_entries_in_value_and_grad():
    graphdef, params = model.init_params(CFG, jax.random.PRNGKey(1))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(6, 7)), jnp.float32)
    y = rng.integers(0, 2, size=(6, 3)).astype(np.float32)
    m = rng.random((6, 3)) > 0.3
    y_nan, y_flip = y.copy(), y.copy()
    y_nan[~m] = np.nan
    y_flip[~m] = 1 - y_flip[~m]

    @jax.jit
    def loss_and_grad(p, yy):
        return jax.value_and_grad(lambda q: model.masked_bce(model.apply(graphdef, q, x), yy, jnp.asarray(m)))(p)

    l0, g0 = loss_and_grad(params, y)
    for other in (y_nan, y_flip):
        l1, g1 = loss_and_grad(params, other)
        assert float(l1) == float(l0)
        for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # value = mean over observed entries of the per-entry BCE
    logits = np.asarray(model.apply(graphdef, params, x), np.float64)
    logits32 = jnp.asarray(logits, jnp.float32)
    per = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    np.testing.assert_allclose(float(l0), per[m].mean(), rtol=1e-6)
    # all observed: the paper's optax mean
    full = model.masked_bce(logits32, jnp.asarray(y), jnp.ones((6, 3)))
    np.testing.assert_allclose(float(full), float(optax.sigmoid_binary_cross_entropy(logits32, y).mean()), rtol=1e-6)


def test_dropout_only_in_training_mode():
    graphdef, params = model.init_params(CFG, jax.random.PRNGKey(2))
    x = jnp.ones((4, 7))
    a = model.apply(graphdef, params, x)
    np.testing.assert_array_equal(a, model.apply(graphdef, params, x, deterministic=True))
    train_fwd = jax.jit(lambda p, k: model.apply(graphdef, p, x, deterministic=False, dropout_key=k))
    t1 = train_fwd(params, jax.random.PRNGKey(0))
    t2 = train_fwd(params, jax.random.PRNGKey(0))
    t3 = train_fwd(params, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(t1, t2)
    assert not np.allclose(t1, a) and not np.allclose(t1, t3)
    with pytest.raises(ValueError, match="dropout_key"):
        model.apply(graphdef, params, x, deterministic=False)


def test_overfits_tiny_batch():
    cfg = model.TrunkConfig(d_in=7, n_targets=3, hidden=(32, 16), dropout=(0.0, 0.0))
    graphdef, params = model.init_params(cfg, jax.random.PRNGKey(3))
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(8, 7)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, size=(8, 3)), jnp.float32)
    m = jnp.ones((8, 3))
    tx = optax.adam(1e-2)

    @jax.jit
    def run(params):
        def step(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(lambda q: model.masked_bce(model.apply(graphdef, q, x), y, m))(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss
        (p, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=300)
        return p, losses

    params, losses = run(params)
    assert float(losses[-1]) < 1e-2 < float(losses[0])
    pred = np.asarray(model.apply(graphdef, params, x)) > 0
    np.testing.assert_array_equal(pred, np.asarray(y) > 0.5)


def test_config_errors():
    with pytest.raises(ValueError, match="same length"):
        model.TrunkConfig(4, 2, hidden=(8, 4), dropout=(0.1,))
    with pytest.raises(ValueError, match="dropout"):
        model.TrunkConfig(4, 2, hidden=(8,), dropout=(1.0,))


def test_dropout_rate_and_scale():
    x = jnp.ones((400, 250))
    out = np.asarray(jax.jit(lambda k: model.dropout(x, 0.3, k))(jax.random.PRNGKey(0)))
    q = round(0.3 * 65536) / 65536  # the drop probability on the 2^-16 grid
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / (1 - q), rtol=1e-6)
    assert abs(1 - kept.mean() - q) < 4 * np.sqrt(q * (1 - q) / x.size)  # within 4 sigma of q
    # both 16-bit halves are used: the two halves of the mask are not copies of each other
    flat = kept.ravel()
    assert not np.array_equal(flat[:flat.size // 2], flat[flat.size // 2:])
    np.testing.assert_array_equal(model.dropout(x, 0.0, jax.random.PRNGKey(0)), x)
