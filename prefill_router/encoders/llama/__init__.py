"""Llama family: forward (modeling.py), tensors (params.py), configs (config.py), one record."""
from prefill_router.encoders.family import Family, GGUFArch, PreSplit
from prefill_router.encoders.llama import config, modeling, params

# Llama 3's split of text into words, numbers (up to 3 digits), punctuation runs and spaces.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

FAMILY = Family(
    name="llama", model_types=("llama", "mistral"), hf_fields=config.hf_fields, to_hf=config.to_hf,
    modeling=modeling.MODELING, key_map=params.KEY_MAP, ignored_keys=params.IGNORED_KEYS,
    presets=config.PRESETS,
    gguf=GGUFArch("llama", params.GGUF_BLOCK_NORMS, config.gguf_config, params.fix_gguf_tensor),
    pre_splits={"smollm": PreSplit(individual_digits=True), "llama3": PreSplit(LLAMA3_SPLIT),
                "llama-bpe": PreSplit(LLAMA3_SPLIT), "smaug-bpe": PreSplit(LLAMA3_SPLIT)})
