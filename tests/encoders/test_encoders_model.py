"""Encoder model behaviour without torch: preset parameter counts (abstract, no allocation), pooling
conventions, jit-once per shape, functional `encode` under sharding, bf16 compute (and its scratch memory), input checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from prefill_router.encoders import abstract_model, count_params, encode, preset_config, random_model

IDS = np.array([[5, 9, 11, 3, 7, 0, 0], [0, 0, 4, 8, 6, 2, 9]], np.int32)
MASK = np.array([[1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1]], np.int32)


@pytest.mark.parametrize("preset,count", [("smollm2_135m", 134_515_008), ("gemma3_270m", 268_098_176),
                                          ("qwen25_05b", 630_167_424), ("qwen3_06b", 596_049_920),
                                          ("llama32_1b", 1_235_814_400)])
def test_preset_parameter_counts_without_allocation(preset, count):
    model = abstract_model(preset_config(preset))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(nnx.state(model)))
    assert count_params(model) == count


@pytest.fixture(scope="module")
def gemma():
    return random_model("gemma3", seed=2)


def test_pooling_matches_hidden_and_logits_match_unembed(gemma):
    out = gemma(IDS, MASK, return_hidden=True, return_logits=True, return_final_hidden=True)
    cfg = gemma.config
    assert out.last.shape == out.mean.shape == (cfg.num_layers + 1, 2, cfg.hidden_size)
    assert out.last.dtype == jnp.float32 and out.logits.shape == (2, 7, cfg.vocab_size)
    h = np.asarray(out.hidden)
    np.testing.assert_allclose(out.last[:, 0], h[:, 0, 4], atol=1e-6)
    np.testing.assert_allclose(out.last[:, 1], h[:, 1, 6], atol=1e-6)
    np.testing.assert_allclose(out.mean[:, 1], h[:, 1, 2:].mean(1), atol=1e-5)
    emb = np.asarray(gemma.embed[...])[IDS[0, 0]] * np.sqrt(cfg.hidden_size)   # l = 0: scaled embedding
    np.testing.assert_allclose(h[0, 0, 0], emb, rtol=1e-6)
    picked = gemma.unembed(out.final_hidden[:, 3])
    np.testing.assert_allclose(picked, out.logits[:, 3], atol=1e-5)
    assert np.abs(np.asarray(out.logits)).max() <= cfg.final_logit_softcapping
    no_extras = gemma(IDS, MASK)
    assert no_extras.hidden is None and no_extras.logits is None and no_extras.final_hidden is None


def test_jits_once_per_shape_and_encode_under_sharding(gemma):
    graphdef, state = nnx.split(gemma)
    traces = []

    def counted(g, s, i, m):
        traces.append(i.shape)
        return encode(g, s, i, m)

    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
    batch = NamedSharding(mesh, P("data"))
    fn = jax.jit(counted, static_argnums=0, in_shardings=(NamedSharding(mesh, P()), batch, batch),
                 out_shardings=NamedSharding(mesh, P(None, "data")))
    want = gemma(IDS, MASK)
    last, mean = fn(graphdef, state, IDS, MASK)
    np.testing.assert_allclose(last, want.last, atol=1e-5)
    np.testing.assert_allclose(mean, want.mean, atol=1e-5)
    fn(graphdef, state, IDS[::-1].copy(), MASK[::-1].copy())
    assert len(traces) == 1
    fn(graphdef, state, IDS[:, :6], MASK[:, :6])
    assert len(traces) == 2


def test_bf16_compute_returns_float32_close_to_float32():
    """bf16 keeps ~3 significant digits: a loose relative tolerance is the point of the check."""
    f32 = random_model("llama", seed=5)
    bf16 = random_model("llama", seed=5, dtype=jnp.bfloat16)
    a, b = f32(IDS, MASK), bf16(IDS, MASK)
    assert b.last.dtype == jnp.float32 and bf16.blocks.q[...].dtype == jnp.bfloat16
    scale = np.abs(np.asarray(a.mean)).max()
    np.testing.assert_allclose(b.mean, a.mean, atol=0.05 * scale)


def test_bf16_forward_holds_no_float32_copy_of_the_blocks():
    """XLA:CPU converts a bf16 scan operand to float32 whole before the loop; the forward scans over the
    blocks' 16-bit patterns instead (base._forward), so its scratch memory stays under their float32 size."""
    model = random_model("llama", seed=0, dtype=jnp.bfloat16, num_layers=4, hidden_size=256, intermediate_size=1024)
    graphdef, state = nnx.split(model)
    compiled = jax.jit(encode, static_argnums=0).lower(graphdef, state, IDS, MASK).compile()
    blocks_f32 = 4 * sum(x.size for x in jax.tree.leaves(nnx.state(model.blocks)))
    assert compiled.memory_analysis().temp_size_in_bytes < 0.75 * blocks_f32


def test_input_checks():
    model = random_model("llama", max_position_embeddings=6)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=6"):
        model(IDS, MASK)
    with pytest.raises(ValueError, match="at least one real token"):
        model(IDS[:, :6], np.zeros((2, 6), np.int32))
    with pytest.raises(ValueError, match="attention_mask shape"):
        model(IDS[:, :6], MASK[:, :5])
    with pytest.raises(ValueError, match="unknown encoder family"):
        random_model("gpt2")


@pytest.mark.parametrize("padding", ["left", "right"])
@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("block", [3, 4, 11, 64])
def test_blocked_causal_attention_equals_dense(padding, window, block):
    """Query blocks that skip the upper triangle give the dense result (causal, padded, sliding-window masks)."""
    from prefill_router.encoders import base
    b, t, n, kv, h = 3, 11, 6, 2, 5
    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (b, t, n, h))
    k = jax.random.normal(keys[1], (b, t, kv, h))
    v = jax.random.normal(keys[2], (b, t, kv, h))
    lengths = np.array([11, 6, 1])
    cols = np.arange(t)
    mask = (cols[None] >= t - lengths[:, None]) if padding == "left" else (cols[None] < lengths[:, None])
    allowed = (cols[None, :] <= cols[:, None])[None] & mask[:, None, :]
    if window is not None:
        allowed &= ((cols[:, None] - cols[None, :]) < window)[None]
    dense = base._attend(q, k, v, jnp.asarray(allowed))
    blocked = base.attention(q, k, v, jnp.asarray(allowed), block=block)
    attends = allowed.any(-1)  # [B, T]; queries without an allowed key are padding, their output is unspecified
    np.testing.assert_allclose(np.asarray(blocked)[attends], np.asarray(dense)[attends], atol=1e-6, rtol=0)
    # reference: softmax over the allowed keys, kv head n // (n / kv); rows with no allowed key are padding
    s = np.einsum("btnh,bsnh->bnts", np.asarray(q), np.repeat(np.asarray(k), n // kv, axis=2))
    s = np.where(allowed[:, None], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = np.einsum("bnts,bsnh->btnh", p / p.sum(-1, keepdims=True), np.repeat(np.asarray(v), n // kv, axis=2))
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(blocked)[real], want[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_packed_continuations_equal_separate_rows(family):
    """A prefix (segment 0) and two continuations (segments 1, 2, positions restarting after the prefix) in one
    row give each continuation the states it has after the prefix alone (gemma3: window 4 < lengths, by position)."""
    model = random_model(family, seed=6)
    prefix, cont = [5, 9, 11, 3, 7], ([4, 8, 6], [2, 9, 10, 12])
    ids = np.array([prefix + cont[0] + cont[1] + [0]], np.int32)
    mask = np.array([[1] * 12 + [0]], np.int32)
    seg = np.array([[0] * 5 + [1] * 3 + [2] * 4 + [0]], np.int32)
    pos = np.array([list(range(5)) + [5, 6, 7] + [5, 6, 7, 8] + [0]], np.int32)
    packed = np.asarray(model(ids, mask, positions=pos, segment_ids=seg, return_hidden=True).hidden)
    for c, start in zip(cont, (5, 8)):
        alone = np.asarray(model(np.array([prefix + c], np.int32), np.ones((1, 5 + len(c)), np.int32),
                                 return_hidden=True).hidden)
        np.testing.assert_allclose(packed[:, 0, :5], alone[:, 0, :5], atol=1e-5, rtol=0)
        np.testing.assert_allclose(packed[:, 0, start:start + len(c)], alone[:, 0, 5:], atol=1e-5, rtol=0)
    unpacked = np.asarray(model(ids, mask, return_hidden=True).hidden)   # segments matter: the check can fail
    assert np.abs(unpacked[:, 0, 8:12] - packed[:, 0, 8:12]).max() > 1e-2
    with pytest.raises(ValueError, match="segment_ids shape"):
        model(ids, mask, segment_ids=seg[:, :5])
