"""Encoder LLM ports (Flax NNX): one record per family (llama, qwen2, qwen3, gemma3); see README.md.

    model = build_model(hf_config, tensors, dtype=jnp.float32)
    model = load_hf_dir(path)
    model = random_model('llama', seed=0, num_layers=2)
    out = model(input_ids[B, T], attention_mask[B, T])   # EncoderOutput(last, mean [L+1, B, D], ...)
    last, mean = encode(*nnx.split(model), input_ids, attention_mask)   # jit-friendly functional form
    cfg = config_from_hf(hf_config); hf_config = to_hf_config(cfg); cfg = preset_config('smollm2_135m')
"""
from prefill_router.encoders.base import Encoder, EncoderOutput, Modeling, encode
from prefill_router.encoders.config import EncoderConfig, Llama3RopeScaling
from prefill_router.encoders.families import FAMILIES, config_from_hf, preset_config, to_hf_config
from prefill_router.encoders.family import Family
from prefill_router.encoders.loading import (abstract_model, build_model, count_params, load_hf_dir,
                                             read_hf_dir, read_safetensors, random_model)

__all__ = ["Encoder", "EncoderOutput", "Modeling", "encode", "EncoderConfig", "Llama3RopeScaling", "FAMILIES",
           "config_from_hf", "preset_config", "to_hf_config", "Family", "abstract_model", "build_model",
           "count_params", "load_hf_dir", "read_hf_dir", "read_safetensors", "random_model"]
