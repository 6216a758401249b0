"""Qwen3 family: llama forward plus per-head RMSNorm on queries and keys (before RoPE).

Uses the llama key map (`llama.params`); sliding-window attention is rejected.
"""
from typing import Any, Mapping

from prefill_router.encoders import config as C

MODEL_TYPES = ("qwen3",)
_HANDLED = C.DECODER_FIELDS | {"use_sliding_window", "layer_types", "attention_bias"}
_IGNORED = {"sliding_window", "max_window_layers"}


def config_from_hf(d: Mapping[str, Any]) -> C.EncoderConfig:
    what = "qwen3"
    C.check_fields(d, _HANDLED, _IGNORED, what)
    C.require_all_full(d, what)
    bias = bool(d.get("attention_bias", False))
    return C.EncoderConfig(**C.decoder_fields(d, "qwen3", what, tie_default=False), qk_norm=True,
                           attention_bias=bias, o_proj_bias=bias)
