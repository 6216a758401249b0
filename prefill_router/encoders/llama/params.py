"""Llama tensors: transformers names -> Encoder parameters (also used by Qwen2/Qwen3), and the
llama.cpp GGUF conventions.

Two norms per block: input_layernorm before attention, post_attention_layernorm before the MLP.
The optional rules of `keymap.decoder_key_map` (q/k/v/o biases, q/k norms) only apply when the
config enables them. llama.cpp's converter permutes the Q/K rows of the llama architecture per head
for interleaved-pair RoPE; `fix_gguf_tensor` permutes them back to HF's rotate-half layout.
"""
import re

import numpy as np

from prefill_router.encoders.keymap import decoder_key_map

KEY_MAP = decoder_key_map({"input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm"})

# Buffers some checkpoints carry that the forward recomputes.
IGNORED_KEYS = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", r"model\.rotary_emb\.inv_freq")

# GGUF per-block norm -> HF module (the pre-attention norm `attn_norm` is shared by all architectures).
GGUF_BLOCK_NORMS = {"ffn_norm": "post_attention_layernorm"}


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation: [n_heads*H, ...] rows (h, j, p) -> (h, p, j)."""
    half = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def fix_gguf_tensor(name: str, w: np.ndarray, hf_config) -> np.ndarray:
    if re.search(r"\.attn_[qk]\.", name):
        n = hf_config["num_attention_heads"] if ".attn_q." in name else hf_config["num_key_value_heads"]
        return unpermute_qk(w, n)
    return w
