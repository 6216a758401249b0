"""Qwen3 family: the llama forward and tensors (`llama/`) with q/k norms; configs (config.py)."""
from prefill_router.encoders import llama
from prefill_router.encoders.family import Family, GGUFArch
from prefill_router.encoders.qwen3 import config

FAMILY = Family(
    name="qwen3", model_types=("qwen3",), hf_fields=config.hf_fields, to_hf=config.to_hf,
    modeling=llama.modeling.MODELING, key_map=llama.params.KEY_MAP, ignored_keys=llama.params.IGNORED_KEYS,
    tiny=dict(qk_norm=True), presets=config.PRESETS,
    gguf=GGUFArch("qwen3", llama.params.GGUF_BLOCK_NORMS, config.gguf_config))
