"""Qwen2 / Qwen2.5 family: llama forward plus biases on the q/k/v projections (none on o_proj).

Uses the llama key map (`llama.params`); sliding-window attention (use_sliding_window) is rejected.
"""
from typing import Any, Mapping

from prefill_router.encoders import config as C

MODEL_TYPES = ("qwen2",)
_HANDLED = C.DECODER_FIELDS | {"use_sliding_window", "layer_types", "attention_bias"}
# Only used when use_sliding_window is true, which require_all_full rejects; mrope is for Qwen2-VL.
_IGNORED = {"sliding_window", "max_window_layers", "use_mrope"}


def config_from_hf(d: Mapping[str, Any]) -> C.EncoderConfig:
    what = "qwen2"
    C.check_fields(d, _HANDLED, _IGNORED, what)
    C.require_all_full(d, what)
    C.require_value(d, "attention_bias", (True,), what)
    C.require_value(d, "use_mrope", (False, None), what)
    return C.EncoderConfig(**C.decoder_fields(d, "qwen2", what, tie_default=False), attention_bias=True)
