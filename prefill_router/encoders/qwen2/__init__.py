"""Qwen2 family: the llama forward and tensors (`llama/`) with q/k/v biases; configs (config.py)."""
from prefill_router.encoders import llama
from prefill_router.encoders.family import Family, GGUFArch, PreSplit
from prefill_router.encoders.qwen2 import config

# Qwen2's split of text: as Llama 3's, but every digit alone.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

FAMILY = Family(
    name="qwen2", model_types=("qwen2",), hf_fields=config.hf_fields, to_hf=config.to_hf,
    modeling=llama.modeling.MODELING, key_map=llama.params.KEY_MAP, ignored_keys=llama.params.IGNORED_KEYS,
    tiny=dict(attention_bias=True, tie_word_embeddings=False), presets=config.PRESETS,
    gguf=GGUFArch("qwen2", llama.params.GGUF_BLOCK_NORMS, config.gguf_config),
    pre_splits={"qwen2": PreSplit(QWEN2_SPLIT), "deepseek-r1-qwen": PreSplit(QWEN2_SPLIT)})
