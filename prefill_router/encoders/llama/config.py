"""Llama family configs (Llama 2/3.x, SmolLM2, Mistral without sliding window): transformers dicts
both ways, the GGUF metadata's, presets."""
from typing import Any, Mapping

from prefill_router.encoders import config as C

_HANDLED = C.DECODER_FIELDS | {"attention_bias", "mlp_bias", "rope_interleaved", "sliding_window"}
# Inert for inference: tensor-parallel split count (same math), SmolLM2 marker fields.
_IGNORED = {"pretraining_tp", "is_llama_config"}


def hf_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    what = f"{d.get('model_type')} (llama family)"
    C.check_fields(d, _HANDLED, _IGNORED, what)
    C.require_value(d, "mlp_bias", (False, None), what)
    C.require_value(d, "rope_interleaved", (False, None), what)
    C.require_value(d, "sliding_window", (None,), what)
    bias = bool(d.get("attention_bias", False))
    return dict(C.decoder_fields(d, what, tie_default=False), attention_bias=bias, o_proj_bias=bias)


def to_hf(cfg: C.EncoderConfig) -> dict[str, Any]:
    return dict(C.decoder_hf_fields(cfg), attention_bias=cfg.attention_bias, mlp_bias=False)


def gguf_config(get, cfg: dict) -> dict:
    head_dim = int(get("rope.dimension_count", cfg["hidden_size"] // cfg["num_attention_heads"], required=False))
    return dict(cfg, head_dim=head_dim, hidden_act="silu", mlp_bias=False)


PRESETS = {
    # HuggingFaceTB/SmolLM2-135M(-Instruct): 134,515,008 parameters.
    "smollm2_135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9,
                         num_kv_heads=3, head_dim=64, rms_norm_eps=1e-5, rope_theta=100000.0,
                         max_position_embeddings=8192, tie_word_embeddings=True, pad_token_id=2, bos_token_id=1,
                         eos_token_id=2),
    # meta-llama/Llama-3.2-1B: llama3 RoPE scaling, tied embeddings.
    "llama32_1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_layers=16, num_heads=32,
                       num_kv_heads=8, head_dim=64, rms_norm_eps=1e-5, rope_theta=500000.0,
                       rope_scaling=C.Llama3RopeScaling(32.0, 1.0, 4.0, 8192), max_position_embeddings=131072,
                       tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001),
}
