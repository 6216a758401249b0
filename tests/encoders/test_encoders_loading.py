"""Weight loading and config conversion without torch: round trip through HF names, every-key
accounting (missing / extra / misshapen tensors named), tied-embedding rules, config whitelists,
HF directory reading (single, sharded, bf16, truncated, missing files)."""
import json
import re

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from prefill_router.encoders import (EncoderConfig, build_model, family_registry, load_hf_dir, random_model,
                                     read_safetensors)
from prefill_router.encoders.keymap import Transform

IDS = np.array([[5, 9, 11, 3, 7, 0], [0, 0, 4, 8, 6, 2]], np.int32)
MASK = np.array([[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]], np.int32)


def hf_config_of(cfg: EncoderConfig) -> dict:
    """A transformers-style config dict for a tiny EncoderConfig (test helper)."""
    d = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
             num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
             num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_norm_eps,
             max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=cfg.tie_word_embeddings,
             bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id,
             rope_theta=cfg.rope_theta, rope_scaling=None, torch_dtype="float32", architectures=["X"])
    if cfg.family == "llama":
        d.update(model_type="llama", attention_bias=cfg.attention_bias, mlp_bias=False, hidden_act="silu")
    elif cfg.family == "qwen2":
        d.update(model_type="qwen2", use_sliding_window=False, sliding_window=4096, max_window_layers=3,
                 hidden_act="silu")
        d.pop("head_dim")
        assert cfg.hidden_size == cfg.num_heads * cfg.head_dim
    elif cfg.family == "qwen3":
        d.update(model_type="qwen3", attention_bias=False, use_sliding_window=False, hidden_act="silu")
    else:
        d.update(model_type="gemma3_text", hidden_activation="gelu_pytorch_tanh", rope_local_base_freq=cfg.rope_local_theta,
                 sliding_window=cfg.sliding_window, layer_types=list(cfg.layer_types),
                 query_pre_attn_scalar=cfg.query_pre_attn_scalar,
                 final_logit_softcapping=cfg.final_logit_softcapping, attn_logit_softcapping=None)
    return d


def hf_tensors_of(model) -> dict[str, np.ndarray]:
    """Invert the family key map: our parameters -> transformers-named tensors (test helper)."""
    family = family_registry(model.config.family)
    params = {"embed": model.embed[...], "final_norm": model.final_norm[...]}
    if model.lm_head is not None:
        params["lm_head"] = model.lm_head[...]
    blocks = model.blocks.arrays()
    out = {}
    for rule in family.KEY_MAP:
        if rule.target[0] == "blocks":
            if rule.target[1] not in blocks:
                continue
            stacked = np.asarray(blocks[rule.target[1]])
            layers = [(str(i), stacked[i]) for i in range(stacked.shape[0])]
        elif rule.target[0] in params:
            layers = [(None, np.asarray(params[rule.target[0]]))]
        else:
            continue
        for idx, x in layers:
            if rule.transform is Transform.LINEAR:
                x = x.reshape(x.shape[0], -1).T
            elif rule.transform is Transform.ATTN_O:
                x = x.reshape(-1, x.shape[-1]).T
            elif rule.transform is Transform.RESHAPE:
                x = x.reshape(-1)
            name = rule.pattern.replace(r"(\d+)", idx or "").replace("\\", "")
            out[name] = np.ascontiguousarray(x)
    return out


@pytest.mark.parametrize("family,overrides", [
    ("llama", {}), ("llama", dict(tie_word_embeddings=False, num_kv_heads=1)),
    ("qwen2", dict(hidden_size=40)), ("qwen3", {}), ("gemma3", dict(tie_word_embeddings=False))])
def test_round_trip_through_hf_names(family, overrides):
    model = random_model(family, seed=3, **overrides)
    loaded = build_model(hf_config_of(model.config), hf_tensors_of(model))
    assert loaded.config == model.config
    a, b = model(IDS, MASK, return_logits=True), loaded(IDS, MASK, return_logits=True)
    np.testing.assert_array_equal(np.asarray(a.last), np.asarray(b.last))
    np.testing.assert_array_equal(np.asarray(a.logits), np.asarray(b.logits))


@pytest.fixture(scope="module")
def tiny_llama():
    model = random_model("llama", seed=1)
    return model, hf_config_of(model.config), hf_tensors_of(model)


def test_missing_extra_and_misshapen_tensors_are_all_named(tiny_llama):
    _, cfg, tensors = tiny_llama
    bad = dict(tensors)
    del bad["model.layers.1.mlp.up_proj.weight"]
    bad["model.layers.0.self_attn.q_proj.bias"] = np.zeros(40, np.float32)   # config has no bias
    bad["model.layers.0.self_attn.k_proj.weight"] = np.zeros((3, 44), np.float32)
    bad["model.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as e:
        build_model(cfg, bad)
    msg = str(e.value)
    for needle in ("blocks/up: no source tensor for layers [1]", "model.layers.0.self_attn.q_proj.bias",
                   "model.layers.0.self_attn.k_proj.weight' has shape (3, 44), expected (20, 44)",
                   "model.extra.weight", "blocks/k: no source tensor for layers [0]"):
        assert needle in msg, msg


def test_rotary_buffers_are_ignored(tiny_llama):
    model, cfg, tensors = tiny_llama
    extra = dict(tensors, **{"model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(5, np.float32)})
    loaded = build_model(cfg, extra)
    np.testing.assert_array_equal(np.asarray(loaded(IDS, MASK).mean), np.asarray(model(IDS, MASK).mean))


def test_tied_embeddings_from_lm_head_only(tiny_llama):
    """transformers' GGUF export of a tied model keeps only lm_head.weight: it becomes the embedding."""
    model, cfg, tensors = tiny_llama
    head_only = dict(tensors)
    head_only["lm_head.weight"] = head_only.pop("model.embed_tokens.weight")
    loaded = build_model(cfg, head_only)
    np.testing.assert_array_equal(np.asarray(loaded.embed[...]), np.asarray(model.embed[...]))
    same = dict(tensors, **{"lm_head.weight": tensors["model.embed_tokens.weight"]})
    build_model(cfg, same)
    different = dict(tensors, **{"lm_head.weight": tensors["model.embed_tokens.weight"] + 1})
    with pytest.raises(ValueError, match="differs from model.embed_tokens.weight"):
        build_model(cfg, different)


def test_untied_needs_lm_head(tiny_llama):
    _, cfg, tensors = tiny_llama
    with pytest.raises(ValueError, match=re.escape("parameter lm_head (44, 61) has no source tensor")):
        build_model(dict(cfg, tie_word_embeddings=False), tensors)


def test_unknown_config_field_raises(tiny_llama):
    _, cfg, tensors = tiny_llama
    with pytest.raises(ValueError, match=r"\['fancy_new_attention'\]"):
        build_model(dict(cfg, fancy_new_attention=True), tensors)
    with pytest.raises(ValueError, match="unsupported model_type 'gpt2'"):
        EncoderConfig.from_hf_config(dict(cfg, model_type="gpt2"))
    with pytest.raises(ValueError, match="mlp_bias=True is not supported"):
        EncoderConfig.from_hf_config(dict(cfg, mlp_bias=True))
    with pytest.raises(ValueError, match="sliding_window=4096 is not supported"):
        EncoderConfig.from_hf_config(dict(cfg, model_type="mistral", sliding_window=4096))


@pytest.mark.parametrize("scaling", [{"rope_type": "linear", "factor": 2.0}, {"type": "yarn", "factor": 4.0},
                                     {"rope_type": "dynamic", "factor": 2.0}])
def test_unsupported_rope_scaling_raises(tiny_llama, scaling):
    _, cfg, _ = tiny_llama
    with pytest.raises(ValueError, match="is not supported"):
        EncoderConfig.from_hf_config(dict(cfg, rope_scaling=scaling))
    new_style = {k: v for k, v in cfg.items() if k not in ("rope_theta", "rope_scaling")}
    with pytest.raises(ValueError, match="is not supported"):
        EncoderConfig.from_hf_config(dict(new_style, rope_parameters=dict(scaling, rope_theta=1e4)))


def test_llama3_scaling_both_styles_agree():
    old = dict(model_type="llama", vocab_size=61, hidden_size=44, intermediate_size=97, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, head_dim=10, max_position_embeddings=64,
               rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    new = {k: v for k, v in old.items() if k not in ("rope_theta", "rope_scaling")}
    new["rope_parameters"] = dict(old["rope_scaling"], rope_theta=500000.0)
    a, b = EncoderConfig.from_hf_config(old), EncoderConfig.from_hf_config(new)
    assert a == b and a.rope_scaling.factor == 32.0 and a.rope_theta == 500000.0


def test_gemma3_configs():
    model = random_model("gemma3")
    d = hf_config_of(model.config)
    assert EncoderConfig.from_hf_config(d) == model.config
    # Older configs give the pattern instead of layer_types: every 2nd block global.
    by_pattern = dict({k: v for k, v in d.items() if k != "layer_types"}, sliding_window_pattern=2)
    assert EncoderConfig.from_hf_config(by_pattern).layer_types == (
        "sliding_attention", "full_attention", "sliding_attention")
    with pytest.raises(ValueError, match="attn_logit_softcapping=50.0 is not supported"):
        EncoderConfig.from_hf_config(dict(d, attn_logit_softcapping=50.0))
    # Multimodal wrapper: text part only, nested tensor names, vision tensors ignored.
    wrapper = {"model_type": "gemma3", "text_config": d, "vision_config": {"hidden_size": 8},
               "mm_tokens_per_image": 256, "architectures": ["Gemma3ForConditionalGeneration"]}
    tensors = {("model.language_model." + k[len("model."):]): v for k, v in hf_tensors_of(model).items()}
    tensors["model.vision_tower.vision_model.embeddings.patch_embedding.weight"] = np.zeros((2, 2), np.float32)
    loaded = build_model(wrapper, tensors)
    np.testing.assert_array_equal(np.asarray(loaded(IDS, MASK).last), np.asarray(model(IDS, MASK).last))


def test_load_hf_dir_single_sharded_bf16(tmp_path, tiny_llama):
    model, cfg, tensors = tiny_llama
    single = tmp_path / "single"
    single.mkdir()
    (single / "config.json").write_text(json.dumps(cfg))
    safetensors.numpy.save_file(tensors, str(single / "model.safetensors"))
    want = np.asarray(model(IDS, MASK).mean)
    np.testing.assert_array_equal(np.asarray(load_hf_dir(single).blocks.q[...]), np.asarray(model.blocks.q[...]))

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text(json.dumps(cfg))
    names = sorted(tensors)
    parts = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for fname, keys in parts.items():
        safetensors.numpy.save_file({k: tensors[k] for k in keys}, str(sharded / fname))
    index = {"metadata": {}, "weight_map": {k: f for f, ks in parts.items() for k in ks}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    np.testing.assert_array_equal(np.asarray(load_hf_dir(sharded)(IDS, MASK).mean), want)

    bf16 = tmp_path / "bf16"
    bf16.mkdir()
    (bf16 / "config.json").write_text(json.dumps(cfg))
    safetensors.numpy.save_file({k: v.astype(ml_dtypes.bfloat16) for k, v in tensors.items()},
                                str(bf16 / "model.safetensors"))
    loaded = load_hf_dir(bf16)
    assert loaded.embed[...].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(loaded.embed[...]),
                                  tensors["model.embed_tokens.weight"].astype(ml_dtypes.bfloat16).astype(np.float32))


def test_load_hf_dir_errors(tmp_path, tiny_llama):
    _, cfg, tensors = tiny_llama
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_hf_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_hf_dir(tmp_path)
    path = tmp_path / "model.safetensors"
    safetensors.numpy.save_file(tensors, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_hf_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_safetensors(tmp_path / "absent.safetensors")
