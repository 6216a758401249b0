"""Gemma3 family: config conversion (modeling.py) and HF key map (params.py)."""
from prefill_router.encoders.gemma3.modeling import MODEL_TYPES, config_from_hf
from prefill_router.encoders.gemma3.params import IGNORED_KEYS, KEY_MAP, rename_key

__all__ = ["MODEL_TYPES", "config_from_hf", "KEY_MAP", "IGNORED_KEYS", "rename_key"]
