"""Gemma3 tensors: transformers names -> Encoder parameters, and the llama.cpp GGUF conventions.

Gemma3 blocks have four norms: input_layernorm (pre-attention), post_attention_layernorm (on the
attention output), pre_feedforward_layernorm, post_feedforward_layernorm. Multimodal `gemma3`
checkpoints nest the text model (`model.language_model.*` in transformers 5, `language_model.model.*`
before); `rename_key` maps both onto text names, and the vision tower and projector are ignored.
llama.cpp stores RMSNorm weights as (1 + w) while HF computes x * (1 + w): `fix_gguf_tensor`
subtracts 1.
"""
import re

import numpy as np

from prefill_router.encoders.keymap import decoder_key_map

# Unlike llama, post_attention_layernorm normalises the attention output, not the MLP input.
KEY_MAP = decoder_key_map({"input_layernorm": "attn_norm", "post_attention_layernorm": "attn_post_norm",
                           "pre_feedforward_layernorm": "mlp_norm",
                           "post_feedforward_layernorm": "mlp_post_norm"})

IGNORED_KEYS = (r"model\.rotary_emb\..*inv_freq", r"(model\.)?vision_tower\..*",
                r"(model\.)?multi_modal_projector\..*")

_PREFIXES = ((re.compile(r"^model\.language_model\."), "model."),
             (re.compile(r"^language_model\.model\."), "model."),
             (re.compile(r"^language_model\.lm_head\."), "lm_head."))

# GGUF per-block norm -> HF module (the pre-attention norm `attn_norm` is shared by all architectures).
GGUF_BLOCK_NORMS = {"post_attention_norm": "post_attention_layernorm", "ffn_norm": "pre_feedforward_layernorm",
                    "post_ffw_norm": "post_feedforward_layernorm"}


def rename_key(name: str) -> str:
    for pattern, repl in _PREFIXES:
        name = pattern.sub(repl, name)
    return name


def fix_gguf_tensor(name: str, w: np.ndarray, hf_config) -> np.ndarray:
    return w - np.float32(1.0) if name.endswith("norm.weight") else w
