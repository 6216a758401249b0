"""transformers Gemma3 tensor names -> Encoder parameters.

Gemma3 blocks have four norms: input_layernorm (pre-attention), post_attention_layernorm (on the
attention output), pre_feedforward_layernorm, post_feedforward_layernorm. Multimodal `gemma3`
checkpoints nest the text model (`model.language_model.*` in transformers 5, `language_model.model.*`
before); `rename_key` maps both onto text names, and the vision tower and projector are ignored.
"""
import re

from prefill_router.encoders.keymap import Rule, Transform

_L = r"model\.layers\.(\d+)\."

KEY_MAP = (
    Rule(r"model\.embed_tokens\.weight", ("embed",)),
    Rule(r"model\.norm\.weight", ("final_norm",)),
    Rule(r"lm_head\.weight", ("lm_head",), Transform.LINEAR),
    Rule(_L + r"input_layernorm\.weight", ("blocks", "attn_norm")),
    Rule(_L + r"post_attention_layernorm\.weight", ("blocks", "attn_post_norm")),
    Rule(_L + r"pre_feedforward_layernorm\.weight", ("blocks", "mlp_norm")),
    Rule(_L + r"post_feedforward_layernorm\.weight", ("blocks", "mlp_post_norm")),
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

IGNORED_KEYS = (r"model\.rotary_emb\..*inv_freq", r"(model\.)?vision_tower\..*",
                r"(model\.)?multi_modal_projector\..*")

_PREFIXES = ((re.compile(r"^model\.language_model\."), "model."),
             (re.compile(r"^language_model\.model\."), "model."),
             (re.compile(r"^language_model\.lm_head\."), "lm_head."))


def rename_key(name: str) -> str:
    for pattern, repl in _PREFIXES:
        name = pattern.sub(repl, name)
    return name
