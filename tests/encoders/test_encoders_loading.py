"""Weight loading and config conversion without torch: round trip through HF names (`to_hf_config` and the
`hf_tensors_of` fixture, both checked against transformers in test_encoders_parity.py), every-key accounting
(missing / extra / misshapen tensors named), tied-embedding rules, config whitelists, HF directory reading
(single, sharded, bf16, truncated, missing files); bfloat16 loading (parameters, outputs, one read per tensor),
head=False, lazy reading."""
import functools
import json
import re

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

from prefill_router.encoders import (FAMILIES, build_model, config_from_hf, load_hf_dir, preset_config, random_model,
                                     read_hf_dir, read_safetensors, to_hf_config)
from prefill_router.encoders.loading import LazyTensors

IDS = np.array([[5, 9, 11, 3, 7, 0], [0, 0, 4, 8, 6, 2]], np.int32)
MASK = np.array([[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]], np.int32)


@pytest.mark.parametrize("family,overrides", [
    ("llama", {}), ("llama", dict(tie_word_embeddings=False, num_kv_heads=1)),
    ("qwen2", dict(hidden_size=40)), ("qwen3", {}), ("gemma3", dict(tie_word_embeddings=False))])
def test_round_trip_through_hf_names(family, overrides, hf_tensors_of):
    model = random_model(family, seed=3, **overrides)
    loaded = build_model(to_hf_config(model.config), hf_tensors_of(model))
    assert loaded.config == model.config
    a, b = model(IDS, MASK, return_logits=True), loaded(IDS, MASK, return_logits=True)
    np.testing.assert_array_equal(np.asarray(a.last), np.asarray(b.last))
    np.testing.assert_array_equal(np.asarray(a.logits), np.asarray(b.logits))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_to_hf_config_reads_back_tiny_and_presets(name):
    family = FAMILIES[name]
    for cfg in [family.tiny_config(), *(preset_config(p) for p in family.presets)]:
        d = to_hf_config(cfg)
        assert d["model_type"] == family.model_types[0] and config_from_hf(d) == cfg
    assert to_hf_config(preset_config("llama32_1b"))["rope_parameters"] == {
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    with pytest.raises(ValueError, match="unknown preset 'gpt2_small'"):
        preset_config("gpt2_small")


@pytest.fixture(scope="module")
def tiny_llama(hf_tensors_of):
    model = random_model("llama", seed=1)
    bookkeeping = dict(torch_dtype="float32", architectures=["LlamaForCausalLM"])  # COMMON_IGNORED fields
    return model, dict(to_hf_config(model.config), **bookkeeping), hf_tensors_of(model)


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
        config_from_hf(dict(cfg, model_type="gpt2"))
    with pytest.raises(ValueError, match="mlp_bias=True is not supported"):
        config_from_hf(dict(cfg, mlp_bias=True))
    with pytest.raises(ValueError, match="sliding_window=4096 is not supported"):
        config_from_hf(dict(cfg, model_type="mistral", sliding_window=4096))


@pytest.mark.parametrize("scaling", [{"rope_type": "linear", "factor": 2.0}, {"type": "yarn", "factor": 4.0},
                                     {"rope_type": "dynamic", "factor": 2.0}])
def test_unsupported_rope_scaling_raises(tiny_llama, scaling):
    _, cfg, _ = tiny_llama
    old_style = {k: v for k, v in cfg.items() if k != "rope_parameters"}
    with pytest.raises(ValueError, match="is not supported"):
        config_from_hf(dict(old_style, rope_theta=1e4, rope_scaling=scaling))
    with pytest.raises(ValueError, match="is not supported"):
        config_from_hf(dict(cfg, rope_parameters=dict(scaling, rope_theta=1e4)))


def test_llama3_scaling_both_styles_agree():
    old = dict(model_type="llama", vocab_size=61, hidden_size=44, intermediate_size=97, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, head_dim=10, max_position_embeddings=64,
               rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    new = {k: v for k, v in old.items() if k not in ("rope_theta", "rope_scaling")}
    new["rope_parameters"] = dict(old["rope_scaling"], rope_theta=500000.0)
    a, b = config_from_hf(old), config_from_hf(new)
    assert a == b and a.rope_scaling.factor == 32.0 and a.rope_theta == 500000.0


def test_gemma3_configs(hf_tensors_of):
    model = random_model("gemma3")
    d = to_hf_config(model.config)
    assert config_from_hf(d) == model.config
    # transformers<5 style: theta fields instead of rope_parameters, the pattern instead of layer_types.
    old = {k: v for k, v in d.items() if k not in ("layer_types", "rope_parameters")}
    by_pattern = dict(old, sliding_window_pattern=2, rope_theta=model.config.rope_theta,
                      rope_local_base_freq=model.config.rope_local_theta)
    assert config_from_hf(by_pattern) == model.config  # every 2nd block global: (sliding, full, sliding)
    assert config_from_hf(dict(by_pattern, sliding_window_pattern=3)).layer_types == (
        "sliding_attention", "sliding_attention", "full_attention")
    with pytest.raises(ValueError, match="attn_logit_softcapping=50.0 is not supported"):
        config_from_hf(dict(d, attn_logit_softcapping=50.0))
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


def _counting(tensors: dict, unread: str = "") -> tuple[LazyTensors, dict]:
    """A LazyTensors over `tensors` and the number of reads per name; reading `unread` fails."""
    reads = dict.fromkeys(tensors, 0)

    def load(name):
        if name == unread:
            raise AssertionError(f"{name} was read")
        reads[name] += 1
        return tensors[name]
    return LazyTensors({name: functools.partial(load, name) for name in tensors}), reads


@pytest.mark.parametrize("family,overrides", [("llama", {}), ("qwen2", dict(tie_word_embeddings=False)),
                                              ("gemma3", {})])
def test_bf16_load_is_bf16_and_matches_float32(family, overrides, hf_tensors_of):
    """Loading in bf16 gives bf16 parameters equal to the float32 ones rounded (nearest even, as jnp casts),
    each source tensor read once, and features within bf16 rounding of the float32 model's."""
    f32 = random_model(family, seed=4, **overrides)
    tensors, reads = _counting(hf_tensors_of(f32))
    bf16 = build_model(to_hf_config(f32.config), tensors, jnp.bfloat16)
    assert set(reads.values()) == {1}
    assert bf16.dtype == jnp.bfloat16
    for got, want in zip(jax.tree.leaves(nnx.state(bf16, nnx.Param)), jax.tree.leaves(nnx.state(f32, nnx.Param))):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want.astype(jnp.bfloat16)))
    a, b = f32(IDS, MASK), bf16(IDS, MASK)
    assert b.last.dtype == jnp.float32
    for x, y in ((a.last, b.last), (a.mean, b.mean)):
        x, y = np.asarray(x), np.asarray(y)
        rel = np.linalg.norm(y - x, axis=-1) / np.linalg.norm(x, axis=-1)   # [L+1, B]
        assert rel.max() < 0.05, rel.max()       # bf16 keeps ~3 significant digits
        assert rel.max() > 0                     # and it did compute in bf16


def test_head_false_leaves_the_untied_head_out_unread(hf_tensors_of):
    model = random_model("qwen2", seed=2, tie_word_embeddings=False)
    tensors, _ = _counting(hf_tensors_of(model), unread="lm_head.weight")
    headless = build_model(to_hf_config(model.config), tensors, head=False)
    assert headless.lm_head is None and model.lm_head is not None
    np.testing.assert_array_equal(np.asarray(headless(IDS, MASK).mean), np.asarray(model(IDS, MASK).mean))
    with pytest.raises(ValueError, match="without its untied LM head"):
        headless(IDS, MASK, return_logits=True)
    with pytest.raises(ValueError, match="without its untied LM head"):
        headless.unembed(jnp.zeros((2, model.config.hidden_size)))
    tied = random_model("llama", seed=2)   # tied: the embedding is the head, head=False changes nothing
    again = build_model(to_hf_config(tied.config), hf_tensors_of(tied), head=False)
    np.testing.assert_array_equal(np.asarray(again(IDS, MASK, return_logits=True).logits),
                                  np.asarray(tied(IDS, MASK, return_logits=True).logits))


def test_load_hf_dir_bf16_reads_lazily(tmp_path, tiny_llama):
    model, cfg, tensors = tiny_llama
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    safetensors.numpy.save_file(tensors, str(tmp_path / "model.safetensors"))
    _, lazy = read_hf_dir(tmp_path, lazy=True)
    assert isinstance(lazy, LazyTensors) and sorted(lazy) == sorted(tensors)
    np.testing.assert_array_equal(lazy["model.norm.weight"], tensors["model.norm.weight"])
    loaded = load_hf_dir(tmp_path, jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(loaded.blocks.up[...]), np.asarray(model.blocks.up[...].astype(jnp.bfloat16)))


def test_bf16_encoder_refuses_float32_features():
    from prefill_router.features import distributed, extract
    model = random_model("llama", seed=0, dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="too narrow for float32 features"):
        extract.encoder_runner(model, distributed.local_data_mesh(), jnp.float32, None, False)
    extract.encoder_runner(model, distributed.local_data_mesh(), jnp.bfloat16, None, False)
