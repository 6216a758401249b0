"""CrossAttentionRouter: single-head cross-attention from learned model embeddings to query tokens, with a
correctness head and an output-length head per (query, model) (arXiv 2509.09782, "One Head, Many Models").

Axis letters: B batch rows, T query tokens, K targets, W common width, S seeds, N rows.

Known from the paper and implemented as such: one attention head; query embedding × model embeddings;
quality and cost outputs. Everything else is [Assumption] and configurable (``CrossAttentionConfig``):

* Query tokens. The trunk's design matrix X [B, Σ_t d_t] is cut into T blocks by ``token_dims`` (one block
  per fitted feature block: each per-target scaler+PCA block, or a sentence embedding = one token); token t
  is ``x̃_t = LN(Linear_t(x_t) + pos_t)`` [W] (its own projection and a learned block embedding pos_t).
* Model embeddings: one learned vector e_k [W] per target (not derived from descriptions).
* Attention (single head, head dim W): q_k = W_q LN(e_k), k_t = W_k x̃_t, v_t = W_v x̃_t,
  a_{b,k,t} = softmax_t(q_k·k_{b,t}/√W) over unmasked tokens (a row with no unmasked token attends to
  nothing: a = 0), h_{b,k} = e_k + W_o Σ_t a_{b,k,t} v_{b,t}; then a pre-LN ReLU FFN with residual,
  z = LN(h + FFN(LN(h))). With T = 1 the weight is 1 and the interaction is the FFN's non-linearity on e_k + W_o v.
* Heads on z [B, K, W]: ``logit`` = Linear(W→1) (P(correct) = sigmoid) and ``length`` = Linear(W→1), the
  standardised log output length ŝ = (log1p(tokens) − μ_k)/σ_k with μ_k, σ_k the per-target mean and std of
  log1p(observed tokens) on training rows (so the head starts at the per-target centre).
* Loss = masked BCE over observed labels + ``length_weight`` · masked mean squared error of ŝ over observed
  lengths (default weight 0.5 [Assumption]; 0 or no observed lengths: the length head is untrained).
* Dropout ``dropout`` after the attention output and inside the FFN.

Training is the trunk's loop (``train.train_seeds``, method.md §5): per seed an inner 85/15 split, coupled-L2
Adam, shuffled padded batches, early stopping on the validation loss (the training objective), all seeds in
one compiled program, resumable from ``checkpoint_dir``; the ``keep`` best seeds form the ensemble, whose
P(correct) is the mean of sigmoids and whose length estimate is exp(mean ŝ·σ + μ) − 1 (mean in log space).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from prefill_router import checkpointing, fileio
from prefill_router.router import model as model_lib
from prefill_router.router import train as train_lib

_CKPT_JSON = "cross_attention.json"
_CKPT_ARRAYS = "arrays"


@dataclasses.dataclass(frozen=True)
class CrossAttentionConfig:
    """Architecture and loss weight: token_dims (width of each query token's block, in design order),
    n_targets, width W, ffn width, dropout rate, length_weight (weight of the length loss)."""

    token_dims: tuple[int, ...]
    n_targets: int
    width: int = 64
    ffn: int = 128
    dropout: float = 0.1
    length_weight: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "token_dims", tuple(int(d) for d in self.token_dims))
        if not self.token_dims or min(self.token_dims) < 1:
            raise ValueError(f"token_dims must be non-empty positive widths, got {self.token_dims}")
        if self.n_targets < 1 or self.width < 1 or self.ffn < 1:
            raise ValueError(f"n_targets, width, ffn must be >= 1: {self.n_targets}, {self.width}, {self.ffn}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.length_weight < 0:
            raise ValueError(f"length_weight must be >= 0, got {self.length_weight}")

    @property
    def d_in(self) -> int:
        return sum(self.token_dims)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "token_dims": list(self.token_dims)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CrossAttentionConfig":
        return cls(**{**d, "token_dims": tuple(d["token_dims"])})


class CrossAttentionRouter(nnx.Module):
    """x [B, Σ d_t] (+ token_mask [B, T]) -> (logits [B, K], standardised log lengths [B, K])."""

    def __init__(self, config: CrossAttentionConfig, *, rngs: nnx.Rngs):
        self.config = config
        w, t, k = config.width, len(config.token_dims), config.n_targets
        self.token_proj = nnx.List([nnx.Linear(d, w, rngs=rngs) for d in config.token_dims])
        self.token_pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (t, w)))
        self.model_emb = nnx.Param(0.02 * jax.random.normal(rngs.params(), (k, w)))
        self.norm_tokens = nnx.LayerNorm(w, rngs=rngs)
        self.norm_models = nnx.LayerNorm(w, rngs=rngs)
        self.wq, self.wk, self.wv, self.wo = (nnx.Linear(w, w, rngs=rngs) for _ in range(4))
        self.norm_ffn = nnx.LayerNorm(w, rngs=rngs)
        self.ffn_in = nnx.Linear(w, config.ffn, rngs=rngs)
        self.ffn_out = nnx.Linear(config.ffn, w, rngs=rngs)
        self.norm_out = nnx.LayerNorm(w, rngs=rngs)
        self.logit_head = nnx.Linear(w, 1, rngs=rngs)
        self.length_head = nnx.Linear(w, 1, rngs=rngs)
        self.dropout = nnx.Dropout(config.dropout)

    def tokens(self, x: jax.Array) -> jax.Array:
        """Query tokens [B, T, W] from the design matrix x [B, Σ d_t]."""
        if x.shape[-1] != self.config.d_in:
            raise ValueError(f"input width {x.shape[-1]} != sum(token_dims) = {self.config.d_in}")
        bounds = np.cumsum((0,) + self.config.token_dims)
        toks = jnp.stack([proj(x[:, lo:hi]) for proj, lo, hi in zip(self.token_proj, bounds[:-1], bounds[1:])],
                         axis=1)
        return self.norm_tokens(toks + self.token_pos[...])

    def attention(self, x: jax.Array, token_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """(weights a [B, K, T], values v [B, T, W]); masked tokens get weight 0, all-masked rows a = 0."""
        toks = self.tokens(x)
        q = self.wq(self.norm_models(self.model_emb[...]))                          # [K, W]
        scores = jnp.einsum("kw,btw->bkt", q, self.wk(toks)) / math.sqrt(self.config.width)
        if token_mask is None:
            token_mask = jnp.ones(toks.shape[:2], bool)
        valid = token_mask.astype(bool)[:, None, :]                                   # [B, 1, T]
        scores = jnp.where(valid, scores, jnp.finfo(scores.dtype).min)
        a = jnp.where(valid, jax.nn.softmax(scores, axis=-1), 0.0)
        return a, self.wv(toks)

    def __call__(self, x: jax.Array, token_mask: jax.Array | None = None, *, deterministic: bool,
                 dropout_key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """(logits [B, K], ŝ [B, K]); ``dropout_key`` is required when ``deterministic`` is False."""
        if not deterministic and dropout_key is None:
            raise ValueError("training mode (deterministic=False) needs a dropout_key")
        k1, k2 = jax.random.split(dropout_key) if not deterministic else (None, None)
        a, v = self.attention(x, token_mask)
        attended = self.wo(jnp.einsum("bkt,btw->bkw", a, v))
        h = self.model_emb[...][None] + self.dropout(attended, deterministic=deterministic, rngs=k1)
        ffn = self.ffn_out(self.dropout(jax.nn.relu(self.ffn_in(self.norm_ffn(h))), deterministic=deterministic,
                                        rngs=k2))
        z = self.norm_out(h + ffn)
        return self.logit_head(z)[..., 0], self.length_head(z)[..., 0]


def init_params(config: CrossAttentionConfig, key: jax.Array) -> tuple[nnx.GraphDef, dict]:
    """(graphdef, pure-dict params) of a freshly initialised router; vmappable over ``key``."""
    graphdef, state = nnx.split(CrossAttentionRouter(config, rngs=nnx.Rngs(params=key)))
    return graphdef, nnx.to_pure_dict(state)


@functools.lru_cache(maxsize=16)
def graphdef_of(config: CrossAttentionConfig) -> nnx.GraphDef:
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: CrossAttentionRouter(config, rngs=nnx.Rngs(0))))
    return graphdef


def abstract_params(config: CrossAttentionConfig) -> dict:
    """Pure-dict parameter structure with ShapeDtypeStruct leaves."""
    return nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: CrossAttentionRouter(config, rngs=nnx.Rngs(0)))))


def apply(config: CrossAttentionConfig, params: dict, x: jax.Array, token_mask: jax.Array | None = None, *,
          deterministic: bool = True, dropout_key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Pure forward: (logits [B, K], ŝ [B, K])."""
    return nnx.merge(graphdef_of(config), params)(x, token_mask, deterministic=deterministic,
                                                  dropout_key=dropout_key)


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Σ m·(pred − target)² / max(Σ m, 1); entries with m = 0 (target may be NaN there) add nothing."""
    mask = mask.astype(pred.dtype)
    err = jnp.where(mask > 0, pred - jnp.where(mask > 0, target, 0.0), 0.0)
    return jnp.sum(mask * err ** 2) / jnp.maximum(jnp.sum(mask), 1.0)


def joint_loss(config: CrossAttentionConfig, logits, s_hat, y, m, s, ms) -> jax.Array:
    """masked BCE(logits, y; m) + length_weight · masked MSE(ŝ, s; ms)."""
    return model_lib.masked_bce(logits, y, m) + config.length_weight * masked_mse(s_hat, s, ms)


# ---------------------------------------------------------------------------------------------------------
# Length standardisation
# ---------------------------------------------------------------------------------------------------------
def length_stats(tokens: np.ndarray | None, n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-target (μ [K], σ [K]) of log1p(observed tokens); (0, 1) for a target without observed lengths,
    σ floored at 1e-3."""
    mu, sd = np.zeros(n_targets), np.ones(n_targets)
    if tokens is None:
        return mu, sd
    logs = np.log1p(np.asarray(tokens, np.float64))
    for j in range(n_targets):
        col = logs[:, j][np.isfinite(logs[:, j])]
        if col.size:
            mu[j], sd[j] = col.mean(), max(col.std(), 1e-3)
    return mu, sd


def _standardised_lengths(tokens, n_rows, n_targets, mu, sd) -> tuple[np.ndarray, np.ndarray]:
    if tokens is None:
        return np.zeros((n_rows, n_targets), np.float32), np.zeros((n_rows, n_targets), np.float32)
    tokens = np.asarray(tokens, np.float64)
    if tokens.shape != (n_rows, n_targets):
        raise ValueError(f"output tokens must be [N, K] = {(n_rows, n_targets)}, got shape {tokens.shape}")
    if np.any(tokens[np.isfinite(tokens)] < 0):
        raise ValueError("output tokens must be >= 0 (NaN where unknown)")
    ms = np.isfinite(tokens)
    s = np.where(ms, (np.log1p(np.where(ms, tokens, 0.0)) - mu) / sd, 0.0)
    return s.astype(np.float32), ms.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Seed-ensemble training (the trunk's recipe and loop, train.train_seeds)
# ---------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def seed_model(config: CrossAttentionConfig) -> train_lib.SeedModel:
    """The router as a SeedModel: data {'x', 'y', 'm', 's' (standardised log lengths), 'ms' (their mask)};
    loss = ``joint_loss`` with padding rows weighted 0."""
    def init(key):
        return init_params(config, key)[1]

    def loss(params, batch, row_w, dropout_key):
        logits, s_hat = apply(config, params, batch["x"], deterministic=dropout_key is None, dropout_key=dropout_key)
        w = row_w[:, None]
        return joint_loss(config, logits, s_hat, batch["y"], batch["m"] * w, batch["s"], batch["ms"] * w)

    return train_lib.SeedModel(init, loss, f"CrossAttentionRouter{json.dumps(config.to_json(), sort_keys=True)}")


@dataclasses.dataclass
class CrossAttentionEnsemble:
    """Kept seed members (params leaves stacked [S, ...]) and the per-target length standardisation."""

    config: CrossAttentionConfig
    params: dict
    seeds: tuple[int, ...]
    val_losses: np.ndarray
    length_mu: np.ndarray
    length_sd: np.ndarray
    target_names: tuple[str, ...]
    has_lengths: np.ndarray  # [K] bool: the length head saw observed lengths of this target

    def _forward(self, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.config.d_in:
            raise ValueError(f"features have shape {x.shape}; this router expects [N, {self.config.d_in}]")
        fn = _predict_fn(self.config)
        outs = [fn(self.params, x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        if not outs:
            return np.zeros((0, self.config.n_targets), np.float32), np.zeros((0, self.config.n_targets))
        return (np.concatenate([np.asarray(o[0]) for o in outs]),
                np.concatenate([np.asarray(o[1], np.float64) for o in outs]))

    def predict(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """P(correct) [N, K] float32 = mean over members of sigmoid(logits)."""
        return self._forward(x, batch_size)[0]

    def predict_tokens(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Expected output tokens [N, K] = exp(μ_k + σ_k · mean_s ŝ) − 1; NaN for targets never observed."""
        s_hat = self._forward(x, batch_size)[1]
        tokens = np.expm1(self.length_mu + self.length_sd * s_hat)
        return np.where(self.has_lengths[None, :], np.maximum(tokens, 0.0), np.nan)

    def attention(self, x: np.ndarray) -> np.ndarray:
        """Mean attention weights over members [N, K, T] (diagnostic)."""
        graphdef = graphdef_of(self.config)
        a = jax.vmap(lambda p: nnx.merge(graphdef, p).attention(jnp.asarray(x, jnp.float32))[0])(self.params)
        return np.asarray(a.mean(axis=0))


@functools.lru_cache(maxsize=16)
def _predict_fn(config: CrossAttentionConfig):
    @jax.jit
    def predict(params, x):
        logits, s_hat = jax.vmap(lambda p: apply(config, p, x))(params)  # [S, B, K] each
        return jnp.mean(jax.nn.sigmoid(logits), axis=0), jnp.mean(s_hat, axis=0)

    return predict


def train_cross_attention(x_train, y_train, m_train, tokens_train=None, *, token_dims, width: int = 64,
                          ffn: int = 128, dropout: float = 0.1, length_weight: float = 0.5,
                          config: train_lib.TrainConfig = train_lib.TrainConfig(),
                          target_names=None, checkpoint_dir=None) -> CrossAttentionEnsemble:
    """Train ``config.seeds`` routers (``train.train_seeds``); keep the ``config.keep`` lowest validation losses.

    x_train [N, Σ token_dims]; y_train [N, K] (NaN where m_train is False); m_train [N, K] bool;
    tokens_train [N, K] observed output tokens (NaN where unknown) or None (length head untrained).
    ``config`` supplies the optimisation recipe (lr, weight decay, batch, epochs, patience, seeds, keep);
    its ``hidden``/``dropout`` describe the trunk and are not used here. ``checkpoint_dir``: resumable
    training state (``train.train_seeds``).
    """
    x, y, m, names, _ = train_lib._check_inputs(x_train, y_train, m_train, target_names)
    arch = CrossAttentionConfig(tuple(token_dims), y.shape[1], width, ffn, dropout, length_weight)
    if x.shape[1] != arch.d_in:
        raise ValueError(f"X has {x.shape[1]} columns but token_dims sum to {arch.d_in}")
    mu, sd = length_stats(tokens_train, y.shape[1])
    s, ms = _standardised_lengths(tokens_train, x.shape[0], y.shape[1], mu, sd)
    runs = train_lib.train_seeds(seed_model(arch), {"x": x, "y": y, "m": m, "s": s, "ms": ms}, config,
                                 checkpoint_dir=checkpoint_dir)
    kept = runs.kept()
    logging.info("cross-attention router: %d seeds, best val loss %s, epochs %s; kept %s", len(config.seeds),
                 np.round(runs.report.best_val, 4).tolist(), runs.report.epochs_run.tolist(), list(runs.report.kept_seeds))
    params = jax.tree.map(lambda leaf: np.asarray(leaf)[kept], runs.best_params)
    return CrossAttentionEnsemble(arch, params, runs.report.kept_seeds, runs.report.best_val[kept], mu, sd, names,
                                  ms.any(axis=0))


# ---------------------------------------------------------------------------------------------------------
# Checkpoint (orbax, through prefill_router.checkpointing)
# ---------------------------------------------------------------------------------------------------------
def save_cross_attention(directory: str | os.PathLike, ens: CrossAttentionEnsemble) -> pathlib.Path:
    """Write ``<dir>/cross_attention.json`` + ``<dir>/arrays`` (orbax) atomically (temp dir + os.replace)."""
    final = pathlib.Path(directory).expanduser().resolve()
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    meta = {"config": ens.config.to_json(), "seeds": list(ens.seeds), "val_losses": ens.val_losses.tolist(),
            "length_mu": ens.length_mu.tolist(), "length_sd": ens.length_sd.tolist(),
            "target_names": list(ens.target_names), "has_lengths": ens.has_lengths.tolist()}
    checkpointing.save_tree(tmp / _CKPT_ARRAYS, checkpointing.to_pure_dict(ens.params))
    fileio.atomic_write_json(tmp / _CKPT_JSON, meta, sort_keys=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load_cross_attention(directory: str | os.PathLike) -> CrossAttentionEnsemble:
    """Inverse of ``save_cross_attention``."""
    path = pathlib.Path(directory).expanduser().resolve()
    if not (path / _CKPT_JSON).is_file():
        raise FileNotFoundError(f"{path / _CKPT_JSON} not found: {path} is not a cross-attention checkpoint")
    meta = json.loads((path / _CKPT_JSON).read_text())
    config = CrossAttentionConfig.from_json(meta["config"])
    n = len(meta["seeds"])
    like = jax.tree.map(lambda a: jax.ShapeDtypeStruct((n, *a.shape), a.dtype), abstract_params(config))
    pure = checkpointing.restore_tree(path / _CKPT_ARRAYS, checkpointing.to_pure_dict(
        jax.tree.map(lambda a: np.empty(a.shape, a.dtype), like)))
    params = checkpointing.from_pure_dict(like, pure, f"cross-attention checkpoint {path}")
    return CrossAttentionEnsemble(config, params, tuple(meta["seeds"]), np.asarray(meta["val_losses"]),
                                  np.asarray(meta["length_mu"]), np.asarray(meta["length_sd"]),
                                  tuple(meta["target_names"]), np.asarray(meta["has_lengths"], bool))
