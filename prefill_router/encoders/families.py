"""Family registry: name -> family module (config_from_hf, KEY_MAP, IGNORED_KEYS, rename_key)."""
import types

from prefill_router.encoders import gemma3, llama, qwen2, qwen3

FAMILIES: dict[str, types.ModuleType] = {"llama": llama, "qwen2": qwen2, "qwen3": qwen3, "gemma3": gemma3}


def family_registry(name: str) -> types.ModuleType:
    """The family module named `name`; raises ValueError listing the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"unknown encoder family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def family_for_model_type(model_type: str | None) -> types.ModuleType:
    """The family module converting transformers configs with this `model_type`."""
    for module in FAMILIES.values():
        if model_type in module.MODEL_TYPES:
            return module
    known = sorted(t for m in FAMILIES.values() for t in m.MODEL_TYPES)
    raise ValueError(f"unsupported model_type {model_type!r}; supported: {known}")
