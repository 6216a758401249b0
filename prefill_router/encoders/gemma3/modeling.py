"""Gemma 3 family (text): `gemma3_text` configs, or the `text_config` of multimodal `gemma3` ones.

Forward = `base.Encoder` with: embedding * sqrt(D); RMSNorm x * (1 + w); sandwich norms around
attention and MLP; q/k RMSNorm; GELU-tanh MLP; attention scale query_pre_attn_scalar**-0.5;
sliding-window blocks (layer_types, or every `sliding_window_pattern`-th block global) with their
own RoPE theta (rope_local_theta); optional final logit soft-capping. `attn_logit_softcapping`
must be null: transformers 5.23's Gemma3 attention does not apply it, so there is no reference.
"""
from typing import Any, Mapping

from prefill_router.encoders import config as C

MODEL_TYPES = ("gemma3_text", "gemma3")
_HANDLED = C.DECODER_FIELDS | {
    "attention_bias", "query_pre_attn_scalar", "sliding_window", "layer_types", "sliding_window_pattern",
    "_sliding_window_pattern", "rope_local_base_freq", "final_logit_softcapping", "attn_logit_softcapping",
    "use_bidirectional_attention", "cache_implementation"}
_IGNORED: set[str] = set()
# Multimodal wrapper fields outside text_config (vision tower, image tokens).
_MM_HANDLED = {"model_type", "text_config"}
_MM_IGNORED = {"vision_config", "mm_tokens_per_image", "boi_token_index", "eoi_token_index",
               "image_token_index", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id"}


def config_from_hf(d: Mapping[str, Any]) -> C.EncoderConfig:
    if d.get("model_type") == "gemma3":
        C.check_fields(d, _MM_HANDLED, _MM_IGNORED, "gemma3 (multimodal wrapper)")
        d = dict(C.require(d, "text_config", "gemma3"), model_type="gemma3_text")
    what = "gemma3_text"
    C.check_fields(d, _HANDLED, _IGNORED, what)
    C.require_value(d, "use_bidirectional_attention", (False, None), what)
    C.require_value(d, "cache_implementation", ("hybrid", None), what)
    C.require_value(d, "attn_logit_softcapping", (None,), what)
    d = dict(d)
    params = d.pop("rope_parameters", None)
    if params is not None and C.FULL in params:      # transformers 5: one RoPE dict per layer type
        theta, scaling = C.rope_from_hf({"rope_parameters": params[C.FULL]}, what)
        local_theta, local_scaling = C.rope_from_hf({"rope_parameters": params.get(C.SLIDING) or {}}, what)
        if local_scaling is not None:
            raise ValueError(f"{what}: scaled RoPE on sliding layers is not supported")
    else:
        if params is not None:
            d["rope_parameters"] = params
        theta, scaling = C.rope_from_hf(d, what)
        local_theta = float(d.get("rope_local_base_freq", 10000.0))
    fields = C.decoder_fields({k: v for k, v in d.items() if k not in ("rope_parameters", "rope_scaling")},
                              "gemma3", what, tie_default=True, act_default="gelu_pytorch_tanh")
    n_layers = fields["num_layers"]
    if d.get("layer_types") is not None:
        layer_types = tuple(d["layer_types"])
    else:
        pattern = d.get("sliding_window_pattern") or d.get("_sliding_window_pattern") or 6
        layer_types = C.pattern_layer_types(n_layers, int(pattern))
    bias = bool(d.get("attention_bias", False))
    qpas = d.get("query_pre_attn_scalar")
    fields.update(rope_theta=theta, rope_scaling=scaling)
    return C.EncoderConfig(
        **fields, rope_local_theta=local_theta, qk_norm=True, attention_bias=bias, o_proj_bias=bias,
        sliding_window=d.get("sliding_window"), layer_types=layer_types,
        query_pre_attn_scalar=float(qpas) if qpas is not None else None,
        final_logit_softcapping=d.get("final_logit_softcapping"))
