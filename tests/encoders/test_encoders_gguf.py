"""GGUF reading: synthetic files written with gguf.GGUFWriter (mapping, permutation, norms, errors),
configs checked against transformers' GGUF config parser, and the real SmolLM2 file at tensor level."""
import gguf
import numpy as np
import pytest

from prefill_router import assets
from prefill_router.encoders import gguf as gguf_io
from prefill_router.encoders.llama.params import unpermute_qk
from prefill_router.encoders.registry import ENCODERS

V, D, F, NH, NKV, H, L = 32, 32, 24, 4, 2, 8, 2  # D multiple of 32: Q8_0 rows


def _permute_like_llama_cpp(w, n_heads):
    """llama.cpp's converter permutation (the inverse of what read_gguf undoes)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hf_tensors(arch, rng):
    t = {"model.embed_tokens.weight": rng.normal(size=(V, D)), "model.norm.weight": rng.normal(size=D)}
    for i in range(L):
        p = f"model.layers.{i}."
        t.update({p + "self_attn.q_proj.weight": rng.normal(size=(NH * H, D)),
                  p + "self_attn.k_proj.weight": rng.normal(size=(NKV * H, D)),
                  p + "self_attn.v_proj.weight": rng.normal(size=(NKV * H, D)),
                  p + "self_attn.o_proj.weight": rng.normal(size=(D, NH * H)),
                  p + "mlp.gate_proj.weight": rng.normal(size=(F, D)),
                  p + "mlp.up_proj.weight": rng.normal(size=(F, D)),
                  p + "mlp.down_proj.weight": rng.normal(size=(D, F)),
                  p + "input_layernorm.weight": rng.normal(size=D)})
        if arch == "gemma3":
            t.update({p + "post_attention_layernorm.weight": rng.normal(size=D),
                      p + "pre_feedforward_layernorm.weight": rng.normal(size=D),
                      p + "post_feedforward_layernorm.weight": rng.normal(size=D)})
        else:
            t[p + "post_attention_layernorm.weight"] = rng.normal(size=D)
        if arch in ("gemma3", "qwen3"):
            t[p + "self_attn.q_norm.weight"] = rng.normal(size=H)
            t[p + "self_attn.k_norm.weight"] = rng.normal(size=H)
        if arch == "qwen2":
            t[p + "self_attn.q_proj.bias"] = rng.normal(size=NH * H)
            t[p + "self_attn.k_proj.bias"] = rng.normal(size=NKV * H)
            t[p + "self_attn.v_proj.bias"] = rng.normal(size=NKV * H)
    if arch == "qwen2":
        t["lm_head.weight"] = rng.normal(size=(V, D))
    return {k: v.astype(np.float32) for k, v in t.items()}


_TO_GGUF = {v: k for k, v in {**gguf_io.BLOCK_COMMON, "ffn_norm": "post_attention_layernorm"}.items()}
_TO_GGUF_GEMMA = {**_TO_GGUF, "post_attention_layernorm": "post_attention_norm",
                  "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm"}


def _gguf_name(hf, arch):
    glob = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    module, suffix = hf.rsplit(".", 1)
    if module in glob:
        return f"{glob[module]}.{suffix}"
    _, _, i, rest = module.split(".", 3)
    return f"blk.{i}.{(_TO_GGUF_GEMMA if arch == 'gemma3' else _TO_GGUF)[rest]}.{suffix}"


def write_gguf(path, arch, tensors, *, extra_tensors=(), quantize=(), meta=None):
    """Write HF tensors in llama.cpp's conventions (llama Q/K permuted, gemma norms as 1 + w)."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(L)
    w.add_context_length(64)
    w.add_embedding_length(D)
    w.add_feed_forward_length(F)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_rope_freq_base(5000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(V)
    if arch in ("gemma3", "qwen3"):
        w.add_key_length(H)
        w.add_value_length(H)
    if arch == "gemma3":
        w.add_sliding_window(8)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for k, v in (meta or {}).items():
        w.add_string(k, v)
    for name, x in tensors.items():
        g = _gguf_name(name, arch)
        if arch == "llama" and ".attn_q." in g:
            x = _permute_like_llama_cpp(x, NH)
        if arch == "llama" and ".attn_k." in g:
            x = _permute_like_llama_cpp(x, NKV)
        if arch == "gemma3" and g.endswith("norm.weight"):
            x = x + 1
        if g in quantize:
            w.add_tensor(g, gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(g, x)
    for g, x, qtype in extra_tensors:
        w.add_tensor(g, x, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3", "gemma3"])
def test_synthetic_roundtrip_and_config_matches_transformers(arch, tmp_path):
    from transformers import AutoConfig
    hf = _hf_tensors(arch, np.random.default_rng(0))
    path = write_gguf(tmp_path / f"{arch}.gguf", arch, hf)
    config, tensors, tok_meta = gguf_io.read_gguf(path)
    assert sorted(tensors) == sorted(hf)
    for name in hf:  # F32 storage: exact after un-permuting / subtracting 1
        np.testing.assert_allclose(tensors[name], hf[name], atol=1e-6, err_msg=name)
        assert tensors[name].dtype == np.float32
    ref = AutoConfig.from_pretrained(str(tmp_path), gguf_file=path.name).to_dict()
    for key, value in config.items():
        if arch == "qwen3" and key == "head_dim":
            # transformers ignores qwen3.attention.key_length and keeps its default 128
            assert value == H and ref[key] == 128
            continue
        if arch == "gemma3" and key == "query_pre_attn_scalar":
            # GGUF has no such field: llama.cpp scales by key_length (as we do), transformers keeps
            # its class default 256; both agree on the real Gemma-3-270M (head_dim 256).
            assert value == H and ref[key] == 256
            continue
        assert ref.get(key, "<absent>") == value, key
    assert config["tie_word_embeddings"] == (arch != "qwen2")
    assert tok_meta["tokenizer.ggml.bos_token_id"] == 1


def test_unpermute_inverts_llama_cpp_permutation():
    w = np.arange(3 * 8 * 2).reshape(3 * 8, 2)
    p = _permute_like_llama_cpp(w, 3)
    assert not np.array_equal(p, w)
    np.testing.assert_array_equal(unpermute_qk(p, 3), w)
    # the row of head h, rotate-half index j (first half) comes from interleaved position 2j
    np.testing.assert_array_equal(p.reshape(3, 4, 2, 2)[:, :, 0], w.reshape(3, 2, 4, 2)[:, 0])


def test_quantized_tensor_is_dequantized(tmp_path):
    hf = _hf_tensors("llama", np.random.default_rng(1))
    path = write_gguf(tmp_path / "q.gguf", "llama", hf, quantize={"blk.0.ffn_up.weight", "blk.1.attn_q.weight"})
    _, tensors, _ = gguf_io.read_gguf(path)
    up = hf["model.layers.0.mlp.up_proj.weight"]
    expected = gguf.quants.dequantize(gguf.quants.quantize(up, gguf.GGMLQuantizationType.Q8_0),
                                      gguf.GGMLQuantizationType.Q8_0)
    np.testing.assert_array_equal(tensors["model.layers.0.mlp.up_proj.weight"], expected)
    assert np.abs(expected - up).max() < 0.05 * np.abs(up).max()
    q = hf["model.layers.1.self_attn.q_proj.weight"]  # quantised and un-permuted
    assert np.abs(tensors["model.layers.1.self_attn.q_proj.weight"] - q).max() < 0.05 * np.abs(q).max()


def test_errors_name_the_problem(tmp_path):
    hf = _hf_tensors("llama", np.random.default_rng(2))
    good = write_gguf(tmp_path / "good.gguf", "llama", hf)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ValueError, match=r"bad.gguf is not a GGUF file"):
        gguf_io.read_gguf(bad)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(ValueError, match=r"cut.gguf is not a readable GGUF file"):
        gguf_io.read_gguf(cut)
    with pytest.raises(FileNotFoundError):
        gguf_io.read_gguf(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="architecture 'mamba' is not supported"):
        gguf_io.read_gguf(write_gguf(tmp_path / "m.gguf", "mamba", {}))
    extra = [("blk.0.weird.weight", np.ones((2, 2), np.float32), None)]
    with pytest.raises(ValueError, match=r"no HF counterpart.*blk\.0\.weird\.weight"):
        gguf_io.read_gguf(write_gguf(tmp_path / "u.gguf", "llama", hf, extra_tensors=extra))
    q81 = np.zeros((F, 40), np.uint8)  # one Q8_1 block (32 values) per row; gguf cannot dequantise Q8_1
    hf2 = dict(hf)
    del hf2["model.layers.0.mlp.up_proj.weight"]
    path = write_gguf(tmp_path / "q81.gguf", "llama", hf2,
                      extra_tensors=[("blk.0.ffn_up.weight", q81, gguf.GGMLQuantizationType.Q8_1)])
    with pytest.raises(ValueError, match="blk.0.ffn_up.weight uses quantisation Q8_1"):
        gguf_io.read_gguf(path)
    path = write_gguf(tmp_path / "rs.gguf", "llama", hf, meta={"llama.rope.scaling.type": "yarn"})
    with pytest.raises(ValueError, match="rope scaling 'yarn'"):
        gguf_io.read_gguf(path)


@pytest.mark.real_weights
@pytest.mark.slow
def test_smollm2_tensors_equal_transformers_loader(require_asset):
    import torch
    from transformers import AutoModelForCausalLM
    try:
        path = assets.resolve(ENCODERS["smollm2_135m"].weights)
    except (RuntimeError, OSError) as e:
        require_asset(f"could not fetch SmolLM2: {e}")
    config, tensors, _ = gguf_io.read_gguf(path)
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    assert set(tensors) == set(state) - {"lm_head.weight"}  # tied: transformers' head is the embedding
    for name, x in tensors.items():
        np.testing.assert_array_equal(x, state[name], err_msg=name)
    ref_cfg = ref.config.to_dict()
    assert {k: ref_cfg.get(k) for k in config} == config
