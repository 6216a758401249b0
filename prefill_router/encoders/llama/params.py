"""transformers Llama/Mistral/Qwen2/Qwen3 tensor names -> Encoder parameters.

The optional rules (q/k/v/o biases, q/k norms) only apply when the config enables them; a tensor
whose target the config lacks is reported as an error by `keymap.fill_params`.
"""
from prefill_router.encoders.keymap import Rule, Transform

_L = r"model\.layers\.(\d+)\."

KEY_MAP = (
    Rule(r"model\.embed_tokens\.weight", ("embed",)),
    Rule(r"model\.norm\.weight", ("final_norm",)),
    Rule(r"lm_head\.weight", ("lm_head",), Transform.LINEAR),
    Rule(_L + r"input_layernorm\.weight", ("blocks", "attn_norm")),
    Rule(_L + r"post_attention_layernorm\.weight", ("blocks", "mlp_norm")),
    Rule(_L + r"self_attn\.q_proj\.weight", ("blocks", "q"), Transform.LINEAR),
    Rule(_L + r"self_attn\.k_proj\.weight", ("blocks", "k"), Transform.LINEAR),
    Rule(_L + r"self_attn\.v_proj\.weight", ("blocks", "v"), Transform.LINEAR),
    Rule(_L + r"self_attn\.o_proj\.weight", ("blocks", "o"), Transform.ATTN_O),
    Rule(_L + r"self_attn\.q_proj\.bias", ("blocks", "q_bias"), Transform.RESHAPE),
    Rule(_L + r"self_attn\.k_proj\.bias", ("blocks", "k_bias"), Transform.RESHAPE),
    Rule(_L + r"self_attn\.v_proj\.bias", ("blocks", "v_bias"), Transform.RESHAPE),
    Rule(_L + r"self_attn\.o_proj\.bias", ("blocks", "o_bias")),
    Rule(_L + r"self_attn\.q_norm\.weight", ("blocks", "q_norm")),
    Rule(_L + r"self_attn\.k_norm\.weight", ("blocks", "k_norm")),
    Rule(_L + r"mlp\.gate_proj\.weight", ("blocks", "gate"), Transform.LINEAR),
    Rule(_L + r"mlp\.up_proj\.weight", ("blocks", "up"), Transform.LINEAR),
    Rule(_L + r"mlp\.down_proj\.weight", ("blocks", "down"), Transform.LINEAR),
)

# Buffers some checkpoints carry that the forward recomputes.
IGNORED_KEYS = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", r"model\.rotary_emb\.inv_freq")


def rename_key(name: str) -> str:
    return name
