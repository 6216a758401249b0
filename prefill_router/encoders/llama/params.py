"""transformers Llama/Mistral/Qwen2/Qwen3 tensor names -> Encoder parameters.

Two norms per block: input_layernorm before attention, post_attention_layernorm before the MLP.
The optional rules of `keymap.decoder_key_map` (q/k/v/o biases, q/k norms) only apply when the
config enables them.
"""
from prefill_router.encoders.keymap import decoder_key_map

KEY_MAP = decoder_key_map({"input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm"})

# Buffers some checkpoints carry that the forward recomputes.
IGNORED_KEYS = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", r"model\.rotary_emb\.inv_freq")


def rename_key(name: str) -> str:
    return name
