"""Parity of the NNX encoder ports with transformers (PyTorch, eager attention, float32).

Each case builds a tiny random transformers model with odd/prime dims (torch.manual_seed(0); norm
weights and biases perturbed so that (1 + w) vs w, or a dropped bias, cannot pass), saves it as
safetensors, loads it with `load_hf_dir`, and runs one padded batch of varying lengths with LEFT and
RIGHT padding, as one attention block and as blocks of 4 query rows. Compared at float32 atol 1e-5:
every layer's residual stream at the real tokens, its last-token and masked-mean pooling, the
final-normed states and the logits. transformers gets
the same positions (cumsum(mask) - 1) that the port derives from the mask. The reference pre-norm
states come from forward hooks on the decoder layers (transformers' `hidden_states[L]` is after the
final norm; `hidden_states[0]` is checked to equal our layer 0).

The other direction, per registered family: our tiny random model written out with `to_hf_config` and
the `hf_tensors_of` fixture is read by transformers' own config class and strict state-dict loading, and
computes the same states; this validates the inputs of the torch-free round trip in test_encoders_loading.
"""
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from prefill_router.encoders import (FAMILIES, EncoderConfig, base, config_from_hf, load_hf_dir,  # noqa: E402
                                     random_model, to_hf_config)

ATOL = 1e-5
LENGTHS = (9, 5, 2)   # B = 3, T = 9
T = max(LENGTHS)


def _common(**kw):
    base = dict(vocab_size=61, hidden_size=44, intermediate_size=97, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, bos_token_id=1,
                eos_token_id=2, pad_token_id=0, attn_implementation="eager")
    base.update(kw)
    return base


CASES = {
    "llama_mha_tied": lambda: transformers.LlamaConfig(**_common(num_key_value_heads=4, head_dim=10,
                                                                 tie_word_embeddings=True)),
    "llama_gqa_untied": lambda: transformers.LlamaConfig(**_common(head_dim=10, tie_word_embeddings=False)),
    "llama_mqa_llama3_rope": lambda: transformers.LlamaConfig(**_common(
        num_key_value_heads=1, head_dim=10, tie_word_embeddings=True, max_position_embeddings=64,
        # wavelengths 6.3 (smoothed band), 22, 76, 261, 907 (scaled by 1/factor)
        rope_parameters=dict(rope_type="llama3", rope_theta=500.0, factor=4.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=16))),
    "mistral_gqa": lambda: transformers.MistralConfig(**_common(head_dim=10, sliding_window=None,
                                                                tie_word_embeddings=False)),
    "qwen2_gqa_bias_untied": lambda: transformers.Qwen2Config(**_common(hidden_size=56, tie_word_embeddings=False)),
    "qwen3_mqa_tied": lambda: transformers.Qwen3Config(**_common(num_key_value_heads=1, head_dim=10,
                                                                 tie_word_embeddings=True)),
    "gemma3_mixed_window": lambda: transformers.Gemma3TextConfig(**_common(
        head_dim=10, sliding_window=3, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        query_pre_attn_scalar=12, final_logit_softcapping=30.0, rms_norm_eps=1e-6,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}})),
    "gemma3_mqa_untied": lambda: transformers.Gemma3TextConfig(**_common(
        num_key_value_heads=1, head_dim=12, sliding_window=4, query_pre_attn_scalar=10, tie_word_embeddings=False,
        layer_types=["full_attention", "sliding_attention", "sliding_attention"])),
}


def _hf_model(hf_config):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    return model


def _batch(padding: str):
    rng = np.random.default_rng(1)
    ids = np.zeros((len(LENGTHS), T), np.int32)
    mask = np.zeros((len(LENGTHS), T), np.int32)
    for b, n in enumerate(LENGTHS):
        sl = slice(T - n, T) if padding == "left" else slice(0, n)
        ids[b, sl] = rng.integers(3, 61, n)
        mask[b, sl] = 1
    return ids, mask


def _hf_forward(model, ids, mask):
    """-> pre-norm states [L+1, B, T, D], hidden_states[0], post-norm last state, logits (numpy)."""
    captured = []
    hooks = [layer.register_forward_hook(
        lambda _m, _i, out: captured.append((out[0] if isinstance(out, tuple) else out).detach()))
        for layer in model.model.layers]
    positions = np.clip(np.cumsum(mask, -1) - 1, 0, None)
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                        position_ids=torch.tensor(positions, dtype=torch.long), output_hidden_states=True,
                        use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    pre = np.stack([out.hidden_states[0].numpy()] + [c.numpy() for c in captured])
    return pre, out.hidden_states[-1].numpy(), out.logits.numpy()


def _pool(h, mask):
    """h [L+1, B, T, D] -> last, mean [L+1, B, D] from the mask."""
    last_idx = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    last = h[:, np.arange(mask.shape[0]), last_idx]
    mean = (h * mask[None, :, :, None]).sum(2) / mask.sum(1)[None, :, None]
    return last, mean


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    hf_config = CASES[request.param]()
    hf_model = _hf_model(hf_config)
    path = tmp_path_factory.mktemp(request.param)
    hf_model.save_pretrained(path, safe_serialization=True)
    model = load_hf_dir(path)
    forward = jax.jit(lambda m, i, k: m(i, k, return_hidden=True, return_logits=True, return_final_hidden=True))
    return request.param, hf_model, model, forward


@pytest.fixture(params=[None, 4], ids=["dense", "blocked4"])
def attention_block(request, monkeypatch):
    """None: T = 9 fits one attention block; 4: query blocks [0,4), [4,8), [8,9) (blocked causal path)."""
    if request.param is not None:
        monkeypatch.setattr(base, "ATTENTION_BLOCK", request.param)
    jax.clear_caches()  # the block size is read at trace time
    yield request.param
    jax.clear_caches()


@pytest.mark.parametrize("padding", ["left", "right"])
def test_every_layer_matches_transformers(case, padding, attention_block):
    name, hf_model, model, _ = case
    forward = jax.jit(lambda m, i, k: m(i, k, return_hidden=True, return_logits=True, return_final_hidden=True))
    ids, mask = _batch(padding)
    pre, post, logits = _hf_forward(hf_model, ids, mask)
    out = forward(model, ids, mask)
    real = mask.astype(bool)
    hidden = np.asarray(out.hidden)
    assert hidden.shape == pre.shape == (model.config.num_layers + 1, len(LENGTHS), T, model.config.hidden_size)
    for layer in range(hidden.shape[0]):
        np.testing.assert_allclose(hidden[layer][real], pre[layer][real], atol=ATOL, rtol=0,
                                   err_msg=f"{name} {padding}: layer {layer}")
    want_last, want_mean = _pool(pre, mask.astype(np.float32))
    np.testing.assert_allclose(np.asarray(out.last), want_last, atol=ATOL, rtol=0, err_msg=f"{name} last")
    np.testing.assert_allclose(np.asarray(out.mean), want_mean, atol=ATOL, rtol=0, err_msg=f"{name} mean")
    np.testing.assert_allclose(np.asarray(out.final_hidden)[real], post[real], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(model.final_norm_apply(out.last[-1])), _pool(post[None], mask)[0][0],
                               atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(out.logits)[real], logits[real], atol=ATOL, rtol=1e-5)  # |logits| ~ 20


def test_left_equals_right_padding_and_alone(case):
    """Pooled features do not depend on the padding side, nor on the batch a prompt sits in."""
    _, _, model, forward = case
    left = forward(model, *_batch("left"))
    right = forward(model, *_batch("right"))
    np.testing.assert_allclose(np.asarray(left.last), np.asarray(right.last), atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(left.mean), np.asarray(right.mean), atol=ATOL, rtol=0)
    ids, mask = _batch("right")
    n = LENGTHS[1]
    alone = model(ids[1:2, :n], mask[1:2, :n])
    np.testing.assert_allclose(np.asarray(alone.last[:, 0]), np.asarray(right.last[:, 1]), atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(alone.mean[:, 0]), np.asarray(right.mean[:, 1]), atol=ATOL, rtol=0)


def test_config_roundtrip_matches_hf_fields(case):
    """The converted config carries transformers' shapes (guards silent defaults)."""
    _, hf_model, model, _ = case
    hc, cfg = hf_model.config, model.config
    assert isinstance(cfg, EncoderConfig)
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size) == (
        hc.num_hidden_layers, hc.hidden_size, hc.num_attention_heads, hc.num_key_value_heads, hc.vocab_size)
    assert cfg.tie_word_embeddings == bool(hc.tie_word_embeddings)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_to_hf_config_and_tensors_are_a_transformers_model(family, hf_tensors_of):
    model = random_model(family, seed=4, vocab_size=61)
    hf_config = transformers.AutoConfig.for_model(**to_hf_config(model.config))
    assert config_from_hf(hf_config.to_dict()) == model.config
    hf_config._attn_implementation = "eager"
    hf_model = transformers.AutoModelForCausalLM.from_config(hf_config).eval()
    state = {k: torch.tensor(v) for k, v in hf_tensors_of(model).items()}
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    assert unexpected == [] and set(missing) <= ({"lm_head.weight"} if model.config.tie_word_embeddings else set())
    ids, mask = _batch("left")
    pre, _, logits = _hf_forward(hf_model, ids, mask)
    out = model(ids, mask, return_hidden=True, return_logits=True)
    real = mask.astype(bool)
    for layer in range(pre.shape[0]):
        np.testing.assert_allclose(np.asarray(out.hidden[layer])[real], pre[layer][real], atol=ATOL, rtol=0,
                                   err_msg=f"{family}: layer {layer}")
    np.testing.assert_allclose(np.asarray(out.logits)[real], logits[real], atol=ATOL, rtol=1e-5)  # |logits| ~ 20
