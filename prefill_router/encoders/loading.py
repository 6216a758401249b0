"""Build an `Encoder` from transformers-named tensors or an HF model directory; random tiny models.

    build_model(hf_config, tensors, dtype, head)   config dict + {hf_name: array} -> Encoder
    load_hf_dir(path, dtype, head)                 config.json + model.safetensors (or a sharded index)
    random_model(family, seed, **overrides)  the family's tiny_config(**overrides), random init

Loading finds the family record by `model_type` (`families`), converts the config with it, builds
the abstract model with `nnx.eval_shape` (no allocation), maps tensors with the family's declarative
key map (`keymap.fill_params`: every leaf filled, every tensor used or ignored) straight into host
buffers of `dtype`, then moves them to JAX one leaf at a time. `tensors` may be a `LazyTensors`
(what `load_hf_dir` and lazy `gguf.read_gguf` pass), which reads one source tensor when indexed, so a
load holds about the parameters once in `dtype` plus one source tensor: no float32 copy of the whole
model when loading in bfloat16. Only numpy and safetensors are needed at runtime.

Tied embeddings: with `tie_word_embeddings`, `lm_head.weight` is not a parameter; if it is present
next to `model.embed_tokens.weight` it must be equal (then it is ignored), and if it is the only copy
(transformers' GGUF export keeps just the head) it becomes the embedding. ``head=False`` leaves an
untied head out (never read from disk; feature extraction does not use it).
"""
import functools
import json
import os
import pathlib
from typing import Callable, Iterator, Mapping

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


class LazyTensors(Mapping):
    """{name: array} read only when indexed (each access calls that name's loader; nothing is kept)."""

    def __init__(self, loaders: Mapping[str, Callable[[], np.ndarray]]):
        self._loaders = dict(loaders)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._loaders[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


def abstract_model(config: EncoderConfig, dtype=jnp.float32, head: bool = True) -> Encoder:
    """The model with ShapeDtypeStruct leaves (nothing allocated), with its family's forward."""
    modeling = families.get(config.family).modeling
    return nnx.eval_shape(lambda: Encoder(config, modeling, rngs=nnx.Rngs(0), dtype=dtype, head=head))


def count_params(model: nnx.Module) -> int:
    """Number of scalar parameters (works on abstract models)."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _resolve_tied(config: EncoderConfig, loaders: dict[str, Callable]) -> dict[str, Callable]:
    """{name: loader} with a tied head dropped, or made the embedding when it is the only copy."""
    if not config.tie_word_embeddings or _HEAD not in loaders:
        return loaders
    loaders = dict(loaders)
    head = loaders.pop(_HEAD)
    if _EMBED not in loaders:
        logging.info("tied embeddings: using %s as %s", _HEAD, _EMBED)
        loaders[_EMBED] = head
    elif not np.array_equal(np.asarray(loaders[_EMBED]()), np.asarray(head())):
        raise ValueError(f"config says tie_word_embeddings=True but {_HEAD} differs from {_EMBED}; "
                         f"set tie_word_embeddings=False in the config to load a separate head")
    return loaders


def build_model(hf_config: Mapping, tensors: Mapping[str, np.ndarray], dtype=jnp.float32,
                head: bool = True) -> Encoder:
    """transformers config dict + HF-named tensors -> Encoder with parameters (and compute) in `dtype`.

    Each tensor is read once and written into its parameter in `dtype` (see the module docstring);
    head=False drops an untied `lm_head.weight` unread. Raises ValueError naming every unhandled config
    field, unexpected/missing tensor, shape mismatch.
    """
    family = families.for_model_type(hf_config.get("model_type"))
    config = family.config_from_hf(hf_config)
    loaders: dict[str, Callable] = {}
    for name in tensors:
        new = family.rename_key(name)
        if new in loaders:
            raise ValueError(f"tensor names {name!r} and another one both map to {new!r}")
        loaders[new] = functools.partial(tensors.__getitem__, name)
    loaders = _resolve_tied(config, loaders)
    if not head:
        loaders.pop(_HEAD, None)

    graphdef, abstract_state = nnx.split(abstract_model(config, dtype, head))
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(abstract_state))
    targets = {path: (tuple(leaf.shape), path[0] == "blocks") for path, leaf in flat.items()}
    arrays = keymap.fill_params(family.key_map, family.ignored_keys, LazyTensors(loaders), targets,
                                f"{config.family} weights", dtype=np.dtype(dtype))
    # one leaf at a time, waiting for each copy so that its host buffer is freed before the next one
    pure = {path: jax.block_until_ready(jnp.asarray(arrays.pop(path))) for path in list(arrays)}
    nnx.replace_by_pure_dict(abstract_state, traverse_util.unflatten_dict(pure))
    return nnx.merge(graphdef, abstract_state)


def _safetensors_call(path: pathlib.Path, fn):
    """fn(open safetensors file) with the library's own errors turned into one ValueError."""
    import safetensors
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:   # bf16 arrives as ml_dtypes
            return fn(f)
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise ValueError(f"cannot read safetensors file {path} ({type(e).__name__}: {e}); the file is "
                         f"truncated or corrupt: download it again") from e


def _read_tensor(path: pathlib.Path, name: str) -> np.ndarray:
    x = _safetensors_call(path, lambda f: f.get_tensor(name))
    return x.astype(np.float32) if x.dtype.name in ("bfloat16", "float16") else x


def _safetensors_loaders(path: str | os.PathLike) -> dict[str, Callable[[], np.ndarray]]:
    """name -> loader of that tensor of one .safetensors file (the header is checked now)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"safetensors file not found: {path}")
    names = _safetensors_call(path, lambda f: list(f.keys()))
    return {name: functools.partial(_read_tensor, path, name) for name in names}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of one .safetensors file as numpy (bfloat16/float16 upcast to float32)."""
    return dict(LazyTensors(_safetensors_loaders(path)))


def read_hf_dir(path: str | os.PathLike, lazy: bool = False) -> tuple[dict, Mapping[str, np.ndarray]]:
    """(config dict, {name: array}) from an HF model directory (single file or sharded index);
    with `lazy` the arrays are a `LazyTensors`, read when indexed."""
    path = pathlib.Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no config.json in {path}; pass a transformers model directory")
    with open(cfg_path) as f:
        hf_config = json.load(f)
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        tensors = LazyTensors(_safetensors_loaders(single))
        return hf_config, tensors if lazy else dict(tensors)
    if not index.is_file():
        found = sorted(p.name for p in path.iterdir())
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {path} "
                                f"(found {found}); save the model with safe_serialization=True")
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    loaders: dict[str, Callable] = {}
    for shard in sorted(set(weight_map.values())):
        loaders.update(_safetensors_loaders(path / shard))
    missing = sorted(set(weight_map) - set(loaders))
    if missing:
        raise ValueError(f"{index} lists tensors absent from its shards: {missing[:10]}")
    tensors = LazyTensors(loaders)
    return hf_config, tensors if lazy else dict(tensors)


def load_hf_dir(path: str | os.PathLike, dtype=jnp.float32, head: bool = True) -> Encoder:
    """Encoder from a transformers directory: config.json + model.safetensors (or sharded index), read one
    tensor at a time into parameters of `dtype` (head=False: an untied LM head is left out)."""
    hf_config, tensors = read_hf_dir(path, lazy=True)
    return build_model(hf_config, tensors, dtype, head)


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
