"""CrossAttentionRouter: shapes, token masking, loss masking, a task solvable only through the query–model
interaction, the length head on a synthetic rule, checkpoint round trip."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from prefill_router.evaluation import metrics
from prefill_router.router import cross_attention as ca
from prefill_router.router import train

pytestmark = pytest.mark.usefixtures("fast_compile")  # tests/router/conftest.py

DIMS = (3, 5, 2)
ARCH = ca.CrossAttentionConfig(DIMS, n_targets=4, width=8, ffn=16)


def _model():
    return ca.CrossAttentionRouter(ARCH, rngs=nnx.Rngs(0))


def test_shapes():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, sum(DIMS))), jnp.float32)
    m = _model()
    logits, s_hat = m(x, deterministic=True)
    assert logits.shape == (6, 4) and s_hat.shape == (6, 4)
    a, v = m.attention(x)
    assert a.shape == (6, 4, 3) and v.shape == (6, 3, 8)
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)
    train_out = m(x, deterministic=False, dropout_key=jax.random.PRNGKey(1))[0]
    assert train_out.shape == (6, 4) and not np.allclose(train_out, logits)  # dropout active in training
    with pytest.raises(ValueError, match="dropout_key"):
        m(x, deterministic=False)
    with pytest.raises(ValueError, match="sum\\(token_dims\\)"):
        m(x[:, :4], deterministic=True)


def test_token_mask():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, sum(DIMS))), jnp.float32)
    mask = jnp.array([[1, 0, 1], [1, 1, 1], [0, 0, 0]], bool)
    m = _model()
    a, _ = m.attention(x, mask)
    np.testing.assert_array_equal(np.asarray(a[0, :, 1]), 0.0)   # masked token: weight 0
    np.testing.assert_allclose(a[0].sum(-1), 1.0, rtol=1e-5)      # the rest renormalised
    np.testing.assert_array_equal(np.asarray(a[2]), 0.0)          # nothing to attend to
    # a masked token's values do not reach the output
    x2 = x.at[0, 3:8].set(100.0)                                  # token 1 of row 0
    np.testing.assert_allclose(m(x2, mask, deterministic=True)[0][0], m(x, mask, deterministic=True)[0][0],
                               rtol=1e-5)
    assert not np.allclose(m(x2, deterministic=True)[0][0], m(x, deterministic=True)[0][0])


def test_loss_masks_by_hand():
    pred = jnp.array([[1.0, 2.0], [0.0, 5.0]])
    target = jnp.array([[0.0, jnp.nan], [2.0, 5.0]])
    mask = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    assert float(ca.masked_mse(pred, target, mask)) == pytest.approx((1 + 4 + 0) / 3)
    g = jax.grad(lambda p: ca.masked_mse(p, target, mask))(pred)
    assert float(g[0, 1]) == 0.0 and np.isfinite(np.asarray(g)).all()
    assert float(ca.masked_mse(pred, target, jnp.zeros((2, 2)))) == 0.0


CFG = train.TrainConfig(learning_rate=3e-3, batch_size=64, max_epochs=60, patience=10, seeds=(0, 1, 2), keep=2)


def _interaction_data(n, seed=0):
    """Target k is right iff token k (4 dims) points along u: labels of different targets are independent
    and every target's base rate is 1/2, so neither the query alone nor the model alone predicts them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    u = np.array([1.0, -1.0, 0.5, 2.0])
    y = np.stack([x[:, 4 * k:4 * k + 4] @ u > 0 for k in range(3)], 1).astype(np.float32)
    tokens = np.exp(3.0 + 0.8 * x[:, :1] + 0.5 * np.arange(3)).astype(np.float32)  # length rule
    return x, y, tokens


@pytest.fixture(scope="module")
def trained():
    x, y, tokens = _interaction_data(480)
    m = np.ones_like(y, bool)
    m[::7, 1] = False                                    # some labels missing
    y = np.where(m, y, np.nan)
    tokens[::5, 2] = np.nan                              # some lengths missing
    return ca.train_cross_attention(x, y, m, tokens, token_dims=(4, 4, 4), width=16, ffn=32, config=CFG,
                                    target_names=("a", "b", "c"))


def test_learns_the_query_model_interaction(trained):
    x, y, _ = _interaction_data(400, seed=1)
    assert abs(np.corrcoef(y.T)[0, 1]) < 0.15 and np.all(np.abs(y.mean(0) - 0.5) < 0.08)
    p = trained.predict(x)
    auc = metrics.per_target_auc(p, y)
    assert np.all(auc > 0.9), auc
    attn = trained.attention(x).mean(axis=0)            # [K, T]
    assert np.all(np.diag(attn) > 0.6), attn             # model k attends to its own token


def test_length_head_on_a_synthetic_rule(trained):
    x, _, tokens = _interaction_data(400, seed=1)
    pred = trained.predict_tokens(x)
    err_head = np.abs(np.log1p(pred) - np.log1p(tokens)).mean(0)
    err_const = np.abs(np.log1p(np.median(tokens, 0)) - np.log1p(tokens)).mean(0)
    assert np.all(err_head < 0.5 * err_const), (err_head, err_const)


def test_no_lengths_leaves_the_head_untrained_and_nan():
    x, y, _ = _interaction_data(120)
    cfg = train.TrainConfig(batch_size=64, max_epochs=2, seeds=(0,), keep=1)
    ens = ca.train_cross_attention(x, y, np.ones_like(y, bool), None, token_dims=(12,), width=8, ffn=8, config=cfg)
    assert np.isnan(ens.predict_tokens(x[:3])).all()
    with pytest.raises(ValueError, match="token_dims sum"):
        ca.train_cross_attention(x, y, np.ones_like(y, bool), token_dims=(4, 4), config=cfg)


def test_checkpoint_round_trip(trained, tmp_path):
    x, _, _ = _interaction_data(20, seed=2)
    path = ca.save_cross_attention(tmp_path / "ca", trained)
    back = ca.load_cross_attention(path)
    np.testing.assert_array_equal(back.predict(x), trained.predict(x))
    np.testing.assert_array_equal(back.predict_tokens(x), trained.predict_tokens(x))
    assert back.target_names == ("a", "b", "c") and back.seeds == trained.seeds
    with pytest.raises(FileNotFoundError, match="not a cross-attention checkpoint"):
        ca.load_cross_attention(tmp_path / "missing")
