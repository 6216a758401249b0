"""Qwen3 family: config conversion; tensors use the llama key map."""
from prefill_router.encoders.llama.params import IGNORED_KEYS, KEY_MAP, rename_key
from prefill_router.encoders.qwen3.modeling import MODEL_TYPES, config_from_hf

__all__ = ["MODEL_TYPES", "config_from_hf", "KEY_MAP", "IGNORED_KEYS", "rename_key"]
