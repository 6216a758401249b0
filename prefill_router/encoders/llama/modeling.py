"""Llama family (Llama 2/3.x, SmolLM2, Mistral without sliding window): config conversion.

The forward is `base.Encoder` with silu MLP, plain RMSNorm, optional llama3 RoPE scaling.
"""
from typing import Any, Mapping

from prefill_router.encoders import config as C

MODEL_TYPES = ("llama", "mistral")
_HANDLED = C.DECODER_FIELDS | {"attention_bias", "mlp_bias", "rope_interleaved", "sliding_window"}
# Inert for inference: tensor-parallel split count (same math), SmolLM2 marker fields.
_IGNORED = {"pretraining_tp", "is_llama_config"}


def config_from_hf(d: Mapping[str, Any]) -> C.EncoderConfig:
    what = f"{d.get('model_type')} (llama family)"
    C.check_fields(d, _HANDLED, _IGNORED, what)
    C.require_value(d, "mlp_bias", (False, None), what)
    C.require_value(d, "rope_interleaved", (False, None), what)
    C.require_value(d, "sliding_window", (None,), what)
    bias = bool(d.get("attention_bias", False))
    return C.EncoderConfig(**C.decoder_fields(d, "llama", what, tie_default=False),
                           attention_bias=bias, o_proj_bias=bias)
