"""transformers Gemma3 tensor names -> Encoder parameters.

Gemma3 blocks have four norms: input_layernorm (pre-attention), post_attention_layernorm (on the
attention output), pre_feedforward_layernorm, post_feedforward_layernorm. Multimodal `gemma3`
checkpoints nest the text model (`model.language_model.*` in transformers 5, `language_model.model.*`
before); `rename_key` maps both onto text names, and the vision tower and projector are ignored.
"""
import re

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


def rename_key(name: str) -> str:
    for pattern, repl in _PREFIXES:
        name = pattern.sub(repl, name)
    return name
