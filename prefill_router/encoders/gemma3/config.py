"""Gemma 3 family configs (text): `gemma3_text` dicts, or the `text_config` of multimodal `gemma3`
ones, both ways; the GGUF metadata's; presets.

Sliding-window blocks come from layer_types, or every `sliding_window_pattern`-th block is global;
they have their own RoPE theta (rope_local_theta). `attn_logit_softcapping` must be null:
transformers 5.23's Gemma3 attention does not apply it, so there is no reference.
"""
from typing import Any, Mapping

from prefill_router.encoders import config as C

_HANDLED = C.DECODER_FIELDS | {
    "attention_bias", "query_pre_attn_scalar", "sliding_window", "layer_types", "sliding_window_pattern",
    "_sliding_window_pattern", "rope_local_base_freq", "final_logit_softcapping", "attn_logit_softcapping",
    "use_bidirectional_attention", "cache_implementation"}
_IGNORED: set[str] = set()
# Multimodal wrapper fields outside text_config (vision tower, image tokens).
_MM_HANDLED = {"model_type", "text_config"}
_MM_IGNORED = {"vision_config", "mm_tokens_per_image", "boi_token_index", "eoi_token_index",
               "image_token_index", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id"}
GGUF_SLIDING_PATTERN = 6  # llama.cpp: every 6th Gemma3 layer attends globally
GGUF_LOCAL_ROPE_THETA = 10000.0


def pattern_layer_types(num_layers: int, pattern: int) -> tuple[str, ...]:
    """Gemma's `sliding_window_pattern`: every `pattern`-th block (1-based) is global."""
    return tuple(C.FULL if (i + 1) % pattern == 0 else C.SLIDING for i in range(num_layers))


def hf_fields(d: Mapping[str, Any]) -> dict[str, Any]:
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
                              what, tie_default=True, act_default="gelu_pytorch_tanh")
    if d.get("layer_types") is not None:
        layer_types = tuple(d["layer_types"])
    else:
        pattern = d.get("sliding_window_pattern") or d.get("_sliding_window_pattern") or 6
        layer_types = pattern_layer_types(fields["num_layers"], int(pattern))
    bias = bool(d.get("attention_bias", False))
    qpas = d.get("query_pre_attn_scalar")
    return dict(fields, rope_theta=theta, rope_scaling=scaling, rope_local_theta=local_theta, qk_norm=True,
                attention_bias=bias, o_proj_bias=bias, sliding_window=d.get("sliding_window"),
                layer_types=layer_types, query_pre_attn_scalar=float(qpas) if qpas is not None else None,
                final_logit_softcapping=d.get("final_logit_softcapping"))


def to_hf(cfg: C.EncoderConfig) -> dict[str, Any]:
    qpas = cfg.query_pre_attn_scalar
    return dict(C.decoder_hf_fields(cfg, act_key="hidden_activation"),
                rope_parameters={C.FULL: C.rope_to_hf(cfg.rope_theta, cfg.rope_scaling),
                                 C.SLIDING: C.rope_to_hf(cfg.rope_local_theta, None)},
                attention_bias=cfg.attention_bias,
                query_pre_attn_scalar=int(qpas) if qpas is not None and qpas.is_integer() else qpas,
                sliding_window=cfg.sliding_window, layer_types=list(cfg.layer_types or (C.FULL,) * cfg.num_layers),
                final_logit_softcapping=cfg.final_logit_softcapping, attn_logit_softcapping=None)


def gguf_config(get, cfg: dict) -> dict:
    head_dim = int(get("attention.key_length", cfg["hidden_size"] // cfg["num_attention_heads"], required=False))
    theta = cfg["rope_parameters"]["rope_theta"]
    return dict(
        cfg, head_dim=head_dim, hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=head_dim,  # as llama.cpp (except its 27B special case)
        sliding_window=int(get("attention.sliding_window")),
        layer_types=list(pattern_layer_types(cfg["num_hidden_layers"], GGUF_SLIDING_PATTERN)),
        rope_parameters={C.SLIDING: {"rope_type": "default", "rope_theta": GGUF_LOCAL_ROPE_THETA},
                         C.FULL: {"rope_type": "default", "rope_theta": theta}},
        final_logit_softcapping=None, attn_logit_softcapping=None, use_bidirectional_attention=False)


PRESETS = {
    # google/gemma-3-270m: 268,098,176 parameters; 5 sliding (window 512) : 1 global layers.
    "gemma3_270m": dict(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_layers=18, num_heads=4,
                        num_kv_heads=1, head_dim=256, rms_norm_eps=1e-6, rope_theta=1000000.0,
                        rope_local_theta=10000.0, max_position_embeddings=32768, tie_word_embeddings=True,
                        qk_norm=True, sliding_window=512, layer_types=pattern_layer_types(18, 6),
                        query_pre_attn_scalar=256.0, hidden_act="gelu_pytorch_tanh",
                        pad_token_id=0, bos_token_id=2, eos_token_id=1),
}
