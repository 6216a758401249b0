"""Build an `Encoder` from transformers-named tensors or an HF model directory; random tiny models.

    build_model(hf_config, tensors, dtype)   config dict + {hf_name: array} -> Encoder
    load_hf_dir(path, dtype)                 config.json + model.safetensors (or a sharded index)
    random_model(family, seed, **overrides)  the family's tiny_config(**overrides), random init

Loading finds the family record by `model_type` (`families`), converts the config with it, builds
the abstract model with `nnx.eval_shape` (no allocation), maps tensors with the family's declarative
key map (`keymap.fill_params`: every leaf filled, every tensor used or ignored), then materialises
the parameters in `dtype`. Only numpy and safetensors are needed at runtime.

Tied embeddings: with `tie_word_embeddings`, `lm_head.weight` is not a parameter; if it is present
next to `model.embed_tokens.weight` it must be equal (then it is ignored), and if it is the only copy
(transformers' GGUF export keeps just the head) it becomes the embedding.
"""
import json
import os
import pathlib
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from flax import traverse_util

from prefill_router.encoders import families, keymap
from prefill_router.encoders.base import Encoder
from prefill_router.encoders.config import EncoderConfig

_EMBED, _HEAD = "model.embed_tokens.weight", "lm_head.weight"


def abstract_model(config: EncoderConfig, dtype=jnp.float32) -> Encoder:
    """The model with ShapeDtypeStruct leaves (nothing allocated), with its family's forward."""
    modeling = families.get(config.family).modeling
    return nnx.eval_shape(lambda: Encoder(config, modeling, rngs=nnx.Rngs(0), dtype=dtype))


def count_params(model: nnx.Module) -> int:
    """Number of scalar parameters (works on abstract models)."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _resolve_tied(config: EncoderConfig, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not config.tie_word_embeddings or _HEAD not in tensors:
        return tensors
    tensors = dict(tensors)
    head = tensors.pop(_HEAD)
    if _EMBED not in tensors:
        logging.info("tied embeddings: using %s as %s", _HEAD, _EMBED)
        tensors[_EMBED] = head
    elif not np.array_equal(np.asarray(tensors[_EMBED]), np.asarray(head)):
        raise ValueError(f"config says tie_word_embeddings=True but {_HEAD} differs from {_EMBED}; "
                         f"set tie_word_embeddings=False in the config to load a separate head")
    return tensors


def build_model(hf_config: Mapping, tensors: Mapping[str, np.ndarray], dtype=jnp.float32) -> Encoder:
    """transformers config dict + HF-named tensors -> Encoder with parameters (and compute) in `dtype`.

    Raises ValueError naming every unhandled config field, unexpected/missing tensor, shape mismatch.
    """
    family = families.for_model_type(hf_config.get("model_type"))
    config = family.config_from_hf(hf_config)
    renamed: dict[str, np.ndarray] = {}
    for name, x in tensors.items():
        new = family.rename_key(name)
        if new in renamed:
            raise ValueError(f"tensor names {name!r} and another one both map to {new!r}")
        renamed[new] = x
    renamed = _resolve_tied(config, renamed)

    graphdef, abstract_state = nnx.split(abstract_model(config, dtype))
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(abstract_state))
    targets = {path: (tuple(leaf.shape), path[0] == "blocks") for path, leaf in flat.items()}
    arrays = keymap.fill_params(family.key_map, family.ignored_keys, renamed, targets,
                                f"{config.family} weights")
    pure = traverse_util.unflatten_dict({p: jnp.asarray(a, dtype) for p, a in arrays.items()})
    nnx.replace_by_pure_dict(abstract_state, pure)
    return nnx.merge(graphdef, abstract_state)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of one .safetensors file as numpy (bfloat16/float16 upcast to float32)."""
    import safetensors
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"safetensors file not found: {path}")
    out = {}
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:   # bf16 arrives as ml_dtypes
            for name in f.keys():
                x = f.get_tensor(name)
                out[name] = x.astype(np.float32) if x.dtype.name in ("bfloat16", "float16") else x
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
        raise ValueError(f"cannot read safetensors file {path} ({type(e).__name__}: {e}); the file is "
                         f"truncated or corrupt: download it again") from e
    return out


def read_hf_dir(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(config dict, {name: array}) from an HF model directory (single file or sharded index)."""
    path = pathlib.Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no config.json in {path}; pass a transformers model directory")
    with open(cfg_path) as f:
        hf_config = json.load(f)
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        return hf_config, read_safetensors(single)
    if not index.is_file():
        found = sorted(p.name for p in path.iterdir())
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {path} "
                                f"(found {found}); save the model with safe_serialization=True")
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    tensors: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        part = read_safetensors(path / shard)
        tensors.update(part)
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise ValueError(f"{index} lists tensors absent from its shards: {missing[:10]}")
    return hf_config, tensors


def load_hf_dir(path: str | os.PathLike, dtype=jnp.float32) -> Encoder:
    """Encoder from a transformers directory: config.json + model.safetensors (or sharded index)."""
    hf_config, tensors = read_hf_dir(path)
    return build_model(hf_config, tensors, dtype)


def random_model(family: str, seed: int = 0, dtype=jnp.float32, **config_overrides) -> Encoder:
    """A tiny random Encoder (`families.get(family).tiny_config(**config_overrides)`) for tests/runlocal.

    Drawn on the host with numpy (fast, no per-shape compiles): embedding ~ N(0, 1), matrices
    ~ N(0, 1/fan_in), biases ~ N(0, 0.02^2), norm weights = 1 (unit-offset norms: 0) + N(0, 0.1^2).
    """
    fam = families.get(family)
    config = fam.tiny_config(**config_overrides)
    graphdef, abstract_state = nnx.split(abstract_model(config, dtype))
    rng = np.random.default_rng(seed)
    d, nh = config.hidden_size, config.num_heads * config.head_dim
    arrays = {}
    for path, leaf in traverse_util.flatten_dict(nnx.to_pure_dict(abstract_state)).items():
        name, shape = path[-1], tuple(leaf.shape)
        x = rng.standard_normal(shape, dtype=np.float32)
        if "norm" in name:
            x = (0.0 if fam.modeling.unit_offset_norm else 1.0) + 0.1 * x
        elif name.endswith("bias"):
            x = 0.02 * x
        elif name != "embed":
            per_layer = shape[1:] if path[0] == "blocks" else shape
            fan_in = nh if name == "o" else per_layer[0]
            x = x / np.sqrt(fan_in)
        arrays[path] = jnp.asarray(x, dtype)
    nnx.replace_by_pure_dict(abstract_state, traverse_util.unflatten_dict(arrays))
    return nnx.merge(graphdef, abstract_state)
