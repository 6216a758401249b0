"""Qwen2 / Qwen2.5 family configs: the llama forward plus biases on the q/k/v projections (none on
o_proj); sliding-window attention (use_sliding_window) is rejected. Transformers dicts both ways,
the GGUF metadata's, presets."""
from typing import Any, Mapping

from prefill_router.encoders import config as C

_HANDLED = C.DECODER_FIELDS | {"use_sliding_window", "layer_types", "attention_bias"}
# Only used when use_sliding_window is true, which require_all_full rejects; mrope is for Qwen2-VL.
_IGNORED = {"sliding_window", "max_window_layers", "use_mrope"}


def hf_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    what = "qwen2"
    C.check_fields(d, _HANDLED, _IGNORED, what)
    C.require_all_full(d, what)
    C.require_value(d, "attention_bias", (True,), what)
    C.require_value(d, "use_mrope", (False, None), what)
    return dict(C.decoder_fields(d, what, tie_default=False), attention_bias=True)


def all_full(num_layers: int) -> dict[str, Any]:
    """Qwen fields that switch sliding-window attention off."""
    return dict(use_sliding_window=False, layer_types=[C.FULL] * num_layers)


def to_hf(cfg: C.EncoderConfig) -> dict[str, Any]:
    return dict(C.decoder_hf_fields(cfg), **all_full(cfg.num_layers))  # HF Qwen2 always has q/k/v biases


def gguf_config(get, cfg: dict) -> dict:
    cfg = dict(cfg)
    if not cfg.pop("attention_bias"):  # HF Qwen2 always has q/k/v biases and no such field
        raise ValueError("a qwen2 GGUF must have q/k/v biases (blk.0.attn_q.bias is missing)")
    return dict(cfg, hidden_act="silu", sliding_window=None, **all_full(cfg["num_hidden_layers"]))


PRESETS = {
    # Qwen2.5(-Coder)-0.5B shape, untied head as in the Coder-Instruct GGUF: 630,167,424 parameters.
    "qwen25_05b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_layers=24, num_heads=14,
                       num_kv_heads=2, head_dim=64, rms_norm_eps=1e-6, rope_theta=1000000.0,
                       max_position_embeddings=32768, tie_word_embeddings=False, attention_bias=True,
                       pad_token_id=151643, bos_token_id=151643, eos_token_id=151645),
}
