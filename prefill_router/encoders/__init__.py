"""Encoder LLM ports (Flax NNX): llama, qwen2, qwen3, gemma3 families; see README.md.

    model = build_model(hf_config, tensors, dtype=jnp.float32)
    model = load_hf_dir(path)
    model = random_model('llama', seed=0, num_layers=2)
    out = model(input_ids[B, T], attention_mask[B, T])   # EncoderOutput(last, mean [L+1, B, D], ...)
    last, mean = encode(*nnx.split(model), input_ids, attention_mask)   # jit-friendly functional form
"""
from prefill_router.encoders.base import Encoder, EncoderOutput, encode
from prefill_router.encoders.config import EncoderConfig, Llama3RopeScaling
from prefill_router.encoders.families import FAMILIES, family_for_model_type, family_registry
from prefill_router.encoders.loading import (abstract_model, build_model, count_params, load_hf_dir,
                                             read_hf_dir, read_safetensors, random_model)

__all__ = ["Encoder", "EncoderOutput", "encode", "EncoderConfig", "Llama3RopeScaling", "FAMILIES",
           "family_for_model_type", "family_registry", "abstract_model", "build_model", "count_params",
           "load_hf_dir", "read_hf_dir", "read_safetensors", "random_model"]
