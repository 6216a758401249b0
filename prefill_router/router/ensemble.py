"""Seed ensembles of SharedTrunkNet and the self-contained RouterBundle (what a router checkpoint holds).

Axis letters: N rows, K targets, S ensemble members (kept seeds), d_in trunk input width.

``Ensemble.predict(X) = mean_s sigmoid(trunk_s(X))`` — probabilities are averaged, not logits (method.md §5).
A ``RouterBundle`` adds everything needed to route new prompts without the training data: target names,
prices, cost table, block specs + fitted transforms, encoder specs, configs, versions.
Save/load with ``prefill_router.router.checkpoint.save_router`` / ``load_router``.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import prefill_router
from prefill_router.router import blocks as blocks_lib
from prefill_router.router import model as model_lib


@dataclasses.dataclass
class TrainReport:
    """Per-seed training record (arrays over all S trained seeds, in ``seeds`` order).

    best_val [S]: lowest inner-validation BCE; best_epoch [S] (1-based epoch of it); epochs_run [S];
    stopped_early [S]; val_history / train_history [S, max_epochs] (NaN after a seed stopped);
    kept_seeds: the members of the ensemble; single_class_targets: targets whose observed training labels
    are all 0 or all 1 (their head only learns the base rate).
    """

    seeds: tuple[int, ...]
    best_val: np.ndarray
    best_epoch: np.ndarray
    epochs_run: np.ndarray
    stopped_early: np.ndarray
    val_history: np.ndarray
    train_history: np.ndarray
    kept_seeds: tuple[int, ...]
    single_class_targets: tuple[str, ...]
    n_train: int
    n_val: int

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = np.where(np.isnan(v), None, v).tolist() if isinstance(v, np.ndarray) and v.dtype.kind == "f" \
                else (v.tolist() if isinstance(v, np.ndarray) else (list(v) if isinstance(v, tuple) else v))
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TrainReport":
        def arr(x, dtype):
            return np.array([[np.nan if v is None else v for v in row] for row in x] if x and isinstance(x[0], list)
                            else [np.nan if v is None else v for v in x], dtype=dtype)
        return cls(tuple(d["seeds"]), arr(d["best_val"], np.float64), np.asarray(d["best_epoch"], np.int64),
                   np.asarray(d["epochs_run"], np.int64), np.asarray(d["stopped_early"], bool),
                   arr(d["val_history"], np.float64), arr(d["train_history"], np.float64),
                   tuple(d["kept_seeds"]), tuple(d["single_class_targets"]), int(d["n_train"]), int(d["n_val"]))


@functools.lru_cache(maxsize=32)
def _predict_fn(config: model_lib.TrunkConfig):
    graphdef = model_lib.graphdef_of(config)

    @jax.jit
    def predict(params, x):
        logits = jax.vmap(lambda p: model_lib.apply(graphdef, p, x, deterministic=True))(params)  # [S, N, K]
        return jnp.mean(jax.nn.sigmoid(logits), axis=0)

    return predict


def abstract_params(config: model_lib.TrunkConfig) -> dict:
    """Pure-dict parameter structure of one trunk with ShapeDtypeStruct leaves."""
    return nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: model_lib.SharedTrunkNet(config, rngs=nnx.Rngs(0)))))


@dataclasses.dataclass
class Ensemble:
    """Kept seed members: params is a pure dict whose leaves are stacked [S, ...] (see model.init_params)."""

    config: model_lib.TrunkConfig
    params: dict
    seeds: tuple[int, ...]
    val_losses: np.ndarray
    target_names: tuple[str, ...] | None = None
    report: TrainReport | None = None

    def __post_init__(self):
        n = len(self.seeds)
        for path, leaf in jax.tree_util.tree_flatten_with_path(self.params)[0]:
            if np.shape(leaf)[0] != n:
                raise ValueError(f"ensemble parameter {jax.tree_util.keystr(path)} has leading dim "
                                 f"{np.shape(leaf)[0]}, expected {n} (one per kept seed)")
        if self.target_names is not None and len(self.target_names) != self.config.n_targets:
            raise ValueError(f"{len(self.target_names)} target names for a trunk with {self.config.n_targets} outputs")

    def predict(self, x: np.ndarray, batch_size: int = 16384) -> np.ndarray:
        """P(correct) [N, K] float32 = mean over members of sigmoid(logits)."""
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.config.d_in:
            raise ValueError(f"features have shape {x.shape}; this ensemble expects [N, {self.config.d_in}]")
        blocks_lib.check_finite(x, "trunk input")
        fn = _predict_fn(self.config)
        outs = [np.asarray(fn(self.params, x[i:i + batch_size])) for i in range(0, x.shape[0], batch_size)]
        return np.concatenate(outs, axis=0) if outs else np.zeros((0, self.config.n_targets), np.float32)


@dataclasses.dataclass
class RouterBundle:
    """Everything needed to route from prefill features, without training data.

    targets: K names in trunk-output order; blocks/transforms: the fitted feature blocks, in order;
    prices: target -> ($/M input tokens, $/M output tokens); cost_table: target -> stats such as
    {'output_tokens_median', 'output_tokens_mean', 'output_tokens_p25', 'output_tokens_p75'};
    encoders: encoder name -> identity dict (registry name, revision, weights sha256, template policy);
    train_config: the TrainConfig as a dict; train_split: which prompts trained it
    (``split_record``: seed, number of rows, prompt hashes; ``trained_on`` reads it); extra: free JSON metadata.
    """

    targets: tuple[str, ...]
    blocks: list
    transforms: list
    ensemble: Ensemble
    prices: dict = dataclasses.field(default_factory=dict)
    cost_table: dict = dataclasses.field(default_factory=dict)
    encoders: dict = dataclasses.field(default_factory=dict)
    train_config: dict = dataclasses.field(default_factory=dict)
    train_split: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)
    package_version: str = prefill_router.__version__

    def __post_init__(self):
        self.targets = tuple(self.targets)
        if len(self.targets) != self.ensemble.config.n_targets:
            raise ValueError(f"{len(self.targets)} targets but the trunk has {self.ensemble.config.n_targets} outputs")
        if len(self.blocks) != len(self.transforms):
            raise ValueError(f"{len(self.blocks)} block specs but {len(self.transforms)} fitted transforms")
        width = sum(t.out_dim for t in self.transforms)
        if width != self.ensemble.config.d_in:
            raise ValueError(f"transforms produce {width} features; the trunk expects d_in={self.ensemble.config.d_in}")
        per_target = [b.target for b in self.blocks if isinstance(b, blocks_lib.BlockSpec)]
        # targets added later (router.add_target) read the trunk and have no block: blocks name a prefix
        if per_target and len(per_target) == len(self.blocks) and tuple(per_target) != self.targets[:len(per_target)]:
            raise ValueError(f"per-target blocks are ordered {per_target}, targets are {list(self.targets)}")
        unknown = set(self.prices) - set(self.targets)
        if unknown:
            raise ValueError(f"prices given for unknown targets {sorted(unknown)}")
        if self.encoders:
            used = {s.encoder for b in self.blocks for s in b.sources}
            if used - set(self.encoders):
                raise ValueError(f"blocks read encoders {sorted(used - set(self.encoders))} missing from `encoders`")

    def trained_on(self, prompts: Sequence[str]) -> np.ndarray:
        """[N] bool: True where a prompt was among the training rows recorded in ``train_split``."""
        seen = set(self.train_split.get("prompt_hashes", ()))
        return np.array([h in seen for h in prompt_hashes(prompts)], bool)

    def features(self, features_lookup: blocks_lib.FeaturesLookup) -> np.ndarray:
        """Trunk input X [N, d_in] from raw pooled features (see blocks.lookup_source for the lookup)."""
        return blocks_lib.apply_design(features_lookup, self.blocks, self.transforms)

    def predict_from_features(self, features_lookup: blocks_lib.FeaturesLookup) -> np.ndarray:
        """P(correct) [N, K] for raw pooled features."""
        return self.ensemble.predict(self.features(features_lookup))

    def expected_costs(self, n_input_tokens: Sequence[float], output_stat: str = "output_tokens_median") -> np.ndarray:
        """Per-query $ cost [N, K] = n_in·price_in/1e6 + stat_out_k·price_out/1e6 (method.md §6)."""
        n_in = np.asarray(n_input_tokens, np.float64)[:, None]
        missing = [t for t in self.targets if t not in self.prices or output_stat not in self.cost_table.get(t, {})]
        if missing:
            raise ValueError(f"no price or {output_stat!r} for targets {missing}; fill prices and cost_table")
        p_in = np.array([self.prices[t][0] for t in self.targets]) / 1e6
        p_out = np.array([self.prices[t][1] for t in self.targets]) / 1e6
        out_tok = np.array([self.cost_table[t][output_stat] for t in self.targets], np.float64)
        return n_in * p_in + (out_tok * p_out)[None, :]


def prompt_hashes(prompts: Sequence[str]) -> list[str]:
    """First 16 hex digits (64 bits) of each prompt's UTF-8 sha256: identifies rows without storing their text."""
    return [hashlib.sha256(p.encode("utf-8")).hexdigest()[:16] for p in prompts]


def split_record(seed: int, train_prompts: Sequence[str]) -> dict[str, Any]:
    """``RouterBundle.train_split``: the split seed and the hashes of every training prompt (sorted)."""
    return {"seed": int(seed), "n_train": len(train_prompts), "prompt_hashes": sorted(set(prompt_hashes(train_prompts)))}
