"""Features stage: pooled per-layer prefill features per encoder and readout template (cached, resumable)."""
import dataclasses

import numpy as np

from prefill_router import paths
from prefill_router.encoders import registry
from prefill_router.features.extract import FeatureSet, extract_features

TEMPLATES = ("chat", "no_gen_prompt", "raw")


def extract(config, enc, prompts, template_kwargs: dict) -> FeatureSet:
    """Features of ``prompts`` under encoder ``enc`` with the config's extraction settings (feature store)."""
    x = config.extract
    return extract_features(enc, prompts, store_dir=paths.cache_dir(config.cache_dir or None) / "features",
                            batch_tokens=x.batch_tokens, max_length=x.max_length, dtype=x.dtype,
                            template_kwargs=template_kwargs, truncate=x.truncate)


def extract_all(config, prompts) -> dict:
    """encoder name -> (FeatureSet, number of blocks L), with the default (chat) rendering."""
    out = {}
    for name in config.encoders:
        enc = registry.load_encoder(name, cache_dir=config.cache_dir or None, dtype=config.extract.dtype, head=False)
        out[name] = (extract(config, enc, prompts, config.extract.template_kwargs.to_dict()),
                     enc.model.config.num_layers)
        del enc
    return out


def readout_encoder(enc, template: str, base_kwargs: dict):
    """(encoder, template_kwargs) rendering prompts as readout control ``template`` asks.

    'chat': the chat template with the generation prompt (the default); 'no_gen_prompt': the same template
    with add_generation_prompt=False; 'raw': the bare prompt, no template (a distinct feature-cache identity).
    """
    if template == "chat":
        return enc, dict(base_kwargs)
    if template == "no_gen_prompt":
        return enc, {**base_kwargs, "add_generation_prompt": False}
    if template == "raw":
        raw = dataclasses.replace(enc, tokenizer=enc.tokenizer.without_template(),
                                  identity=f"{enc.identity}|readout=raw")
        return raw, {}
    raise ValueError(f"unknown transfer template control {template!r}; choose from {', '.join(TEMPLATES)}")


class FeatureLookup:
    """Callable FeatureSource -> [N, D], reading single layers from the feature stores on demand."""

    def __init__(self, feats: dict):
        self.feats, self.cache = feats, {}

    def __call__(self, source) -> np.ndarray:
        key = (source.encoder, source.layer, source.pooling)
        if key not in self.cache:
            if source.encoder not in self.feats:
                raise KeyError(f"no features extracted for encoder {source.encoder!r}")
            self.cache[key] = self.feats[source.encoder][0].get(source.pooling, [source.layer])[0]
        return self.cache[key]
