"""The record that describes one encoder family; each family folder builds one (`<family>.FAMILY`) and
`families.FAMILIES` registers it.

    Family(name, model_types, hf_fields, to_hf, modeling, key_map, ...)
    fam.config_from_hf(d) -> EncoderConfig      fam.to_hf_config(cfg) -> dict (read back by config_from_hf)
    fam.tiny_config(**overrides), fam.preset(name) -> EncoderConfig

The family name is written once, in the record; configs built through it carry it (`config.family`).
"""
import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from prefill_router.encoders import config as C
from prefill_router.encoders.base import Modeling
from prefill_router.encoders.keymap import Rule


@dataclasses.dataclass(frozen=True)
class PreSplit:
    """How a GGUF `tokenizer.ggml.pre` splits text before byte-level BPE.

    regex: a `Split(regex, isolated)` pre-tokenizer, then ByteLevel without GPT-2's regex; else
    individual_digits: every digit alone, then ByteLevel with GPT-2's regex (SmolLM2)."""
    regex: str | None = None
    individual_digits: bool = False

    def __post_init__(self):
        if (self.regex is None) != self.individual_digits:
            raise ValueError("a PreSplit takes either a regex or individual_digits=True")


@dataclasses.dataclass(frozen=True, eq=False)
class GGUFArch:
    """How llama.cpp stores a family (`general.architecture` = arch).

    block_norms: per-block GGUF norm tensor name -> HF module under `model.layers.<i>` (the rest of the
        tensor names are shared, `gguf.hf_tensor_name`).
    hf_config(get, cfg) -> the HF config dict: `cfg` holds the fields every architecture shares (sizes,
        token ids, `rope_theta`, `attention_bias`); `get(key, default=None, required=True)` reads
        metadata `<arch>.<key>`.
    fix_tensor(gguf_name, w, hf_config) -> w in HF layout (undoes llama.cpp's converter conventions).
    """
    arch: str
    block_norms: Mapping[str, str]
    hf_config: Callable[[Callable[..., Any], dict], dict]
    fix_tensor: Callable[[str, np.ndarray, Mapping], np.ndarray] = lambda name, w, hf_config: w


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """One encoder family.

    name: the family's name (`EncoderConfig.family`, `random_model(name)`).
    model_types: transformers `model_type`s it converts; the first is the one `to_hf` writes.
    hf_fields(d) -> EncoderConfig kwargs (all but `family`) from a transformers config dict; raises on
        any field it neither handles nor lists as ignorable (`config.check_fields`).
    to_hf(cfg) -> transformers config dict that `hf_fields` reads back to `cfg`.
    modeling: the family's forward (`base.Modeling`).
    key_map, ignored_keys, rename_key: transformers tensor names -> parameters (`keymap.fill_params`);
        rename_key maps wrapper names (multimodal checkpoints) onto the text model's first.
    tiny: overrides of `config.TINY` for the family's tiny test model.
    presets: name -> EncoderConfig kwargs (all but `family`) of released checkpoints.
    gguf: how llama.cpp stores it (None: no GGUF support).
    pre_splits: GGUF `tokenizer.ggml.pre` names this family's vocabularies use -> their split.
    """
    name: str
    model_types: tuple[str, ...]
    hf_fields: Callable[[Mapping[str, Any]], dict[str, Any]]
    to_hf: Callable[[C.EncoderConfig], dict[str, Any]]
    modeling: Modeling
    key_map: tuple[Rule, ...]
    ignored_keys: tuple[str, ...] = ()
    rename_key: Callable[[str], str] = lambda name: name
    tiny: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    gguf: GGUFArch | None = None
    pre_splits: Mapping[str, PreSplit] = dataclasses.field(default_factory=dict)

    def config_from_hf(self, d: Mapping[str, Any]) -> C.EncoderConfig:
        """transformers config dict -> EncoderConfig of this family (raises naming unhandled fields)."""
        return C.EncoderConfig(family=self.name, **self.hf_fields(dict(d)))

    def to_hf_config(self, cfg: C.EncoderConfig) -> dict[str, Any]:
        """EncoderConfig -> transformers config dict (`model_type` = model_types[0]); raises ValueError
        naming the fields when `config_from_hf` would not read it back to `cfg`."""
        if cfg.family != self.name:
            raise ValueError(f"a {cfg.family} config cannot be written as a {self.name} HF config")
        d = {"model_type": self.model_types[0], **self.to_hf(cfg)}
        back = self.config_from_hf(d)
        lost = [f.name for f in dataclasses.fields(cfg) if getattr(back, f.name) != getattr(cfg, f.name)]
        if lost:
            raise ValueError(f"{self.model_types[0]} configs cannot express {lost} of this {self.name} config")
        return d

    def tiny_config(self, **overrides) -> C.EncoderConfig:
        """`config.TINY` with the family's `tiny` overrides, then `overrides` (any field)."""
        return C.EncoderConfig(**{**C.TINY, **self.tiny, **overrides, "family": self.name})

    def preset(self, name: str) -> C.EncoderConfig:
        if name not in self.presets:
            raise ValueError(f"family {self.name} has no preset {name!r}; presets: {sorted(self.presets)}")
        return C.EncoderConfig(family=self.name, **self.presets[name])
