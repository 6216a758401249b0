"""Qwen3 family configs: the llama forward plus per-head RMSNorm on queries and keys (before RoPE);
sliding-window attention is rejected. Transformers dicts both ways, the GGUF metadata's, presets."""
from typing import Any, Mapping

from prefill_router.encoders import config as C
from prefill_router.encoders.qwen2.config import all_full

_HANDLED = C.DECODER_FIELDS | {"use_sliding_window", "layer_types", "attention_bias"}
_IGNORED = {"sliding_window", "max_window_layers"}


def hf_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    what = "qwen3"
    C.check_fields(d, _HANDLED, _IGNORED, what)
    C.require_all_full(d, what)
    bias = bool(d.get("attention_bias", False))
    return dict(C.decoder_fields(d, what, tie_default=False), qk_norm=True, attention_bias=bias, o_proj_bias=bias)


def to_hf(cfg: C.EncoderConfig) -> dict[str, Any]:
    return dict(C.decoder_hf_fields(cfg), attention_bias=cfg.attention_bias, **all_full(cfg.num_layers))


def gguf_config(get, cfg: dict) -> dict:
    head_dim = int(get("attention.key_length", cfg["hidden_size"] // cfg["num_attention_heads"], required=False))
    return dict(cfg, head_dim=head_dim, hidden_act="silu", sliding_window=None,
                **all_full(cfg["num_hidden_layers"]))


PRESETS = {
    # Qwen/Qwen3-0.6B.
    "qwen3_06b": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_layers=28, num_heads=16,
                      num_kv_heads=8, head_dim=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
                      max_position_embeddings=40960, tie_word_embeddings=True, qk_norm=True,
                      bos_token_id=151643, eos_token_id=151645),
}
