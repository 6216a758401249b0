"""Gemma3 family: forward (modeling.py), tensors (params.py), configs (config.py), one record.
Its GGUF vocabularies are SentencePiece (no pre-split)."""
from prefill_router.encoders import config as C
from prefill_router.encoders.family import Family, GGUFArch
from prefill_router.encoders.gemma3 import config, modeling, params

FAMILY = Family(
    name="gemma3", model_types=("gemma3_text", "gemma3"), hf_fields=config.hf_fields, to_hf=config.to_hf,
    modeling=modeling.MODELING, key_map=params.KEY_MAP, ignored_keys=params.IGNORED_KEYS,
    rename_key=params.rename_key,
    tiny=dict(qk_norm=True, rope_local_theta=1000.0, sliding_window=4, layer_types=(C.SLIDING, C.FULL, C.SLIDING),
              query_pre_attn_scalar=12.0, hidden_act="gelu_pytorch_tanh", final_logit_softcapping=30.0),
    presets=config.PRESETS,
    gguf=GGUFArch("gemma3", params.GGUF_BLOCK_NORMS, config.gguf_config, params.fix_gguf_tensor))
