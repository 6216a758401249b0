"""Read a GGUF checkpoint as an HF-style config dict and HF-named float32 tensors.

    hf_config, tensors, tok_meta = read_gguf(path)              # tensors: {hf_name: float32 array}
    hf_config, tensors, tok_meta = read_gguf(path, lazy=True)   # a LazyTensors: dequantised when indexed

The family comes from ``general.architecture`` (``families.for_gguf_arch``); its record's ``gguf``
(``family.GGUFArch``) supplies what differs per architecture.

* ``hf_config``: the model fields of the config that transformers' GGUF loader builds (same keys
  and values; bookkeeping like ``id2label`` is left out): ``model_type`` (the family's first),
  sizes, ``rope_parameters``, ``rms_norm_eps``, ``tie_word_embeddings`` (true when the file has no
  ``output.weight``), special token ids, then the family's fields (``GGUFArch.hf_config``, e.g.
  Gemma3's sliding-window layout: every 6th layer global, as llama.cpp hard-codes).
* ``tensors``: ``{hf_name: np.ndarray float32}`` in HF layout (Linear weights [out, in],
  embeddings [V, D]), dequantised with ``gguf.quants.dequantize``, then ``GGUFArch.fix_tensor``
  undoes the family's llama.cpp converter conventions (llama: Q/K rows permuted per head;
  gemma3: norms stored as 1 + w) so that the tensors equal an HF checkpoint's.
* ``tok_meta``: every ``tokenizer.*`` field (tokens, merges, scores, token types, special ids,
  ``tokenizer.chat_template``), for :meth:`PromptTokenizer.from_gguf_metadata`.

Shapes: V vocab, D width, H head dim, F MLP width.
"""
import functools
import os
import pathlib
import re

import gguf
import numpy as np
from absl import logging

from prefill_router.encoders import families
from prefill_router.encoders.family import Family
from prefill_router.encoders.loading import LazyTensors

# Per-block GGUF tensor name -> HF module path under model.layers.N (the family adds its norms).
BLOCK_COMMON = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
GLOBAL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def hf_tensor_name(gguf_name: str, arch: str) -> str | None:
    """HF name of a GGUF tensor (``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``)."""
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", gguf_name)
    if m:
        block, kind, suffix = m.groups()
        module = BLOCK_COMMON.get(kind) or families.for_gguf_arch(arch).gguf.block_norms.get(kind)
        return None if module is None else f"model.layers.{block}.{module}.{suffix}"
    m = re.fullmatch(r"(\w+)\.(weight|bias)", gguf_name)
    if m and m.group(1) in GLOBAL:
        return f"{GLOBAL[m.group(1)]}.{m.group(2)}"
    return None


class _Reader(gguf.GGUFReader):
    """gguf's reader over a plain ndarray view of its memory map: the reader slices the map once per metadata
    element (a 262k-entry vocabulary is ~10^6 slices), and np.memmap's Python-level __getitem__ /
    __array_finalize__ made that ~3x slower (Gemma-3: 12 s -> 4 s). Same bytes, same parse."""

    def __setattr__(self, name, value):
        if name == "data" and isinstance(value, np.memmap):
            value = value.view(np.ndarray)  # keeps the map alive through .base
        super().__setattr__(name, value)


def _open(path: pathlib.Path) -> gguf.GGUFReader:
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    try:
        return _Reader(path)
    except Exception as e:  # the reader raises ValueError/IndexError/struct errors on bad files
        raise ValueError(f"{path} is not a readable GGUF file (truncated or corrupt?): "
                         f"{type(e).__name__}: {e}") from e


def _value(field):
    """A field's value: a str/int/float/bool, a list of str, or a numpy array for numeric arrays."""
    if field.types and field.types[0] == gguf.GGUFValueType.ARRAY and \
            field.types[-1] not in (gguf.GGUFValueType.STRING, gguf.GGUFValueType.ARRAY):
        if not field.data:
            return np.zeros(0)
        return np.concatenate([field.parts[i] for i in field.data])
    return field.contents()


def read_metadata(path: str | os.PathLike) -> dict:
    """All GGUF key/value fields of ``path`` (numeric arrays as numpy arrays)."""
    reader = _open(pathlib.Path(path))
    return {k: _value(f) for k, f in reader.fields.items()}


def _hf_config(meta: dict, family: Family, tensor_names: set[str]) -> dict:
    arch = family.gguf.arch

    def get(key, default=None, required=True):
        full = f"{arch}.{key}"
        if full in meta:
            return meta[full]
        if required and default is None:
            raise ValueError(f"GGUF metadata lacks {full!r}, needed for the HF config")
        return default

    scaling = get("rope.scaling.type", "none", required=False)
    if scaling not in ("none", None):
        raise ValueError(f"GGUF rope scaling {scaling!r} ({arch}.rope.scaling.type) is not supported; "
                         "only unscaled RoPE is ported")
    heads = int(get("attention.head_count"))
    vocab = get("vocab_size", None, required=False)
    if vocab is None:
        vocab = len(meta["tokenizer.ggml.tokens"])
    cfg = {
        "model_type": family.model_types[0],
        "vocab_size": int(vocab),
        "hidden_size": int(get("embedding_length")),
        "intermediate_size": int(get("feed_forward_length")),
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "max_position_embeddings": int(get("context_length")),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "attention_bias": "blk.0.attn_q.bias" in tensor_names,
        "rope_parameters": {"rope_theta": float(get("rope.freq_base", 10000.0, required=False)),
                            "rope_type": "default"},
    }
    for key, hf_key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                        ("padding_token_id", "pad_token_id")):
        if f"tokenizer.ggml.{key}" in meta:
            cfg[hf_key] = int(meta[f"tokenizer.ggml.{key}"])
    return family.gguf.hf_config(get, cfg)


def _dequantize(tensor, path: pathlib.Path) -> np.ndarray:
    qtype = tensor.tensor_type
    try:
        values = gguf.quants.dequantize(tensor.data, qtype)
    except NotImplementedError as e:
        raise ValueError(f"{path}: tensor {tensor.name} uses quantisation {qtype.name}, which the "
                         "gguf package cannot dequantise; re-export the model with a common type "
                         "(F32/F16/BF16/Q4_0..Q8_0/Q*_K)") from e
    shape = tuple(int(s) for s in reversed(tensor.shape))  # GGML lists ne0 (fastest) first
    # copy=True for F32, whose "dequantised" values are a view of the memory-mapped file
    return np.array(values, dtype=np.float32, copy=qtype == gguf.GGMLQuantizationType.F32).reshape(shape)


def _hf_tensor(t, family: Family, config: dict, path: pathlib.Path) -> np.ndarray:
    return family.gguf.fix_tensor(t.name, _dequantize(t, path), config)


def read_gguf(path: str | os.PathLike, lazy: bool = False) -> tuple[dict, dict[str, np.ndarray], dict]:
    """(hf_config, {hf_name: float32 array}, tokenizer metadata) of a GGUF file; see module doc.

    lazy: the tensors are a `loading.LazyTensors` that dequantises a tensor each time it is indexed
    (`build_model` reads each once, so a load never holds every float32 tensor at the same time).
    Raises ValueError on a non-GGUF/truncated file, an unknown architecture, a tensor with no HF
    counterpart, or (when the tensor is read) an unsupported quantisation type.
    """
    path = pathlib.Path(path)
    reader = _open(path)
    meta = {k: _value(f) for k, f in reader.fields.items()}
    arch = meta.get("general.architecture")
    try:
        family = families.for_gguf_arch(arch)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    names = {t.name for t in reader.tensors}
    config = _hf_config(meta, family, names)
    unmapped = sorted(n for n in names if hf_tensor_name(n, arch) is None)
    if unmapped:
        raise ValueError(f"{path}: GGUF tensors with no HF counterpart for arch {arch!r}: "
                         f"{unmapped[:10]}{' ...' if len(unmapped) > 10 else ''}")
    loaders = {hf_tensor_name(t.name, arch): functools.partial(_hf_tensor, t, family, config, path)
               for t in reader.tensors}
    tensors = LazyTensors(loaders) if lazy else {name: load() for name, load in loaders.items()}
    tok_meta = {k: v for k, v in meta.items() if k.startswith("tokenizer.")}
    logging.info("read %s: %s, %d tensors, %.1f M params", path.name, config["model_type"],
                 len(loaders), sum(int(t.n_elements) for t in reader.tensors) / 1e6)
    return config, tensors, tok_meta
