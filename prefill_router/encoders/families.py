"""The family registry: name -> `family.Family` record, and the look-ups the generic code uses.

    fam = get('llama'); fam = for_model_type('mistral'); fam = for_gguf_arch('gemma3')
    cfg = config_from_hf(hf_dict); hf_dict = to_hf_config(cfg); cfg = preset_config('smollm2_135m')

Adding a family: its folder (building `FAMILY`) and one entry in the tuple below (README.md).
"""
from typing import Any, Mapping

from prefill_router.encoders import gemma3, llama, qwen2, qwen3
from prefill_router.encoders.config import EncoderConfig
from prefill_router.encoders.family import Family, PreSplit

FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add `family`; raises ValueError if its name, a model_type, its GGUF arch, a pre-split or a preset
    name is taken by a registered family."""
    def taken(what, mine, theirs):
        clash = sorted(set(mine) & {x for f in FAMILIES.values() for x in theirs(f)})
        if clash:
            raise ValueError(f"cannot register family {family.name!r}: {what} {clash} already registered")

    taken("name", [family.name], lambda f: [f.name])
    taken("model_types", family.model_types, lambda f: f.model_types)
    taken("GGUF architecture", [family.gguf.arch] if family.gguf else [], lambda f: [f.gguf.arch] if f.gguf else [])
    taken("pre-splits", family.pre_splits, lambda f: f.pre_splits)
    taken("presets", family.presets, lambda f: f.presets)
    FAMILIES[family.name] = family
    return family


for _family in (llama.FAMILY, qwen2.FAMILY, qwen3.FAMILY, gemma3.FAMILY):
    register(_family)


def get(name: str) -> Family:
    """The family named `name`; raises ValueError listing the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"unknown encoder family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def for_model_type(model_type: str | None) -> Family:
    """The family converting transformers configs with this `model_type`."""
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise ValueError(f"unsupported model_type {model_type!r}; supported: {known}")


def for_gguf_arch(arch: str | None) -> Family:
    """The family stored by llama.cpp as GGUF `general.architecture` = arch."""
    for family in FAMILIES.values():
        if family.gguf is not None and family.gguf.arch == arch:
            return family
    known = sorted(f.gguf.arch for f in FAMILIES.values() if f.gguf is not None)
    raise ValueError(f"GGUF architecture {arch!r} is not supported; supported: {known}")


def pre_split(pre: str) -> PreSplit | None:
    """The split of GGUF pre-tokenizer `pre` (None when no family knows it)."""
    return next((f.pre_splits[pre] for f in FAMILIES.values() if pre in f.pre_splits), None)


def config_from_hf(d: Mapping[str, Any]) -> EncoderConfig:
    """transformers config dict -> EncoderConfig, by `model_type`; raises naming unhandled fields."""
    return for_model_type(d.get("model_type")).config_from_hf(d)


def to_hf_config(cfg: EncoderConfig) -> dict[str, Any]:
    """EncoderConfig -> transformers config dict that `config_from_hf` reads back to `cfg`."""
    return get(cfg.family).to_hf_config(cfg)


def preset_config(name: str) -> EncoderConfig:
    """A released checkpoint's config by preset name (e.g. 'smollm2_135m')."""
    for family in FAMILIES.values():
        if name in family.presets:
            return family.preset(name)
    raise ValueError(f"unknown preset {name!r}; known: {sorted(p for f in FAMILIES.values() for p in f.presets)}")
