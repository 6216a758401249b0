"""Seed-ensemble training of SharedTrunkNet, all seeds in one compiled program (method.md §5).

Axis letters: N rows, d trunk input width, K targets, S seeds, E epochs, B batch.

Per seed s (everything derived from ``jax.random.PRNGKey(seed_s)`` -> init / split / shuffle / dropout keys):
  * inner split: a random permutation of the N rows; the first ceil(val_fraction·N) are validation rows;
  * each epoch reshuffles the training rows, pads them to a multiple of the batch size with weight-0 rows
    (the last partial batch is kept: its loss is the masked mean over its real, observed entries) and runs
    ``optax.chain(add_decayed_weights(wd), adam(lr))`` (PyTorch Adam with coupled L2) over the batches;
  * after each epoch: validation BCE in eval mode over the whole inner validation split; improvement iff
    val < best - min_delta, then best params := params; stop after ``patience`` epochs without improvement
    or at ``max_epochs``; the best params are returned.
Loss = masked BCE (model.masked_bce): mean over observed (row, target) entries; missing labels add nothing.

The per-seed training is a ``lax.while_loop`` over epochs (``_run_until``); the S seeds run together as
``jit(vmap(_run_until))`` — a seed that stopped keeps its state while the others continue, the loop ends
when every seed stopped or reached the epoch limit. ``train_seeds_sequential`` runs the same jitted
per-seed function once per seed. With ``checkpoint_dir`` the loop runs in chunks of ``checkpoint_every``
epochs and saves the full state after each chunk; a rerun with the same data and config resumes.
The ensemble keeps the ``keep`` seeds with the lowest best validation BCE (ties: earlier seed).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from tqdm import tqdm

from prefill_router import checkpointing
from prefill_router.router import blocks as blocks_lib
from prefill_router.router import model as model_lib
from prefill_router.router.ensemble import Ensemble, TrainReport


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training recipe; defaults are the paper/toolkit's.

    hidden, dropout: trunk widths and per-hidden-layer dropout rates.
    learning_rate, weight_decay: Adam lr and coupled L2 coefficient (added to the gradient before Adam).
    batch_size: rows per step; max_epochs: epoch cap; val_fraction: inner validation share (ceil'd);
    patience, min_delta: early stopping on validation BCE; seeds: one ensemble member candidate per seed;
    keep: members kept (lowest best validation BCE); checkpoint_every: epochs per chunk when checkpointing;
    max_to_keep: training checkpoints kept on disk.
    """

    hidden: tuple[int, ...] = (256, 128)
    dropout: tuple[float, ...] = (0.3, 0.2)
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 512
    max_epochs: int = 150
    val_fraction: float = 0.15
    patience: int = 15
    min_delta: float = 1e-4
    seeds: tuple[int, ...] = tuple(range(42, 52))
    keep: int = 5
    checkpoint_every: int = 10
    max_to_keep: int = 2

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "dropout", tuple(float(r) for r in self.dropout))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be non-empty and distinct, got {self.seeds}")
        if not 1 <= self.keep <= len(self.seeds):
            raise ValueError(f"keep={self.keep} must lie in [1, {len(self.seeds)}] (number of seeds)")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        for name in ("batch_size", "max_epochs", "patience", "checkpoint_every", "max_to_keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def trunk(self, d_in: int, n_targets: int) -> model_lib.TrunkConfig:
        return model_lib.TrunkConfig(d_in, n_targets, self.hidden, self.dropout)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------
def _check_inputs(x, y, m, target_names):
    """Validate and convert to (X f32 [N,d], Y f32 [N,K] with 0 at missing, M f32 [N,K], single-class names)."""
    x, y, m = np.asarray(x), np.asarray(y, np.float64), np.asarray(m)
    if x.ndim != 2:
        raise ValueError(f"X must be [N, d], got shape {x.shape}")
    if y.ndim != 2 or m.shape != y.shape or y.shape[0] != x.shape[0]:
        raise ValueError(f"need X [N, d], Y [N, K], M [N, K] with one N; got {x.shape}, {y.shape}, {m.shape}")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError("M must be boolean (True where a label is observed)")
        m = m.astype(bool)
    blocks_lib.check_finite(x, "trunk input")
    k = y.shape[1]
    names = tuple(target_names) if target_names is not None else tuple(f"target_{i}" for i in range(k))
    if len(names) != k:
        raise ValueError(f"{len(names)} target names for {k} label columns")
    obs = y[m]
    if not np.isin(obs, (0.0, 1.0)).all():
        raise ValueError("observed labels (M=True) must be 0 or 1; NaN/other values found — mark them missing")
    empty = [names[j] for j in range(k) if not m[:, j].any()]
    if empty:
        raise ValueError(f"targets {empty} have no observed training label; drop them or provide labels")
    single = tuple(names[j] for j in range(k) if np.unique(y[m[:, j], j]).size == 1)
    if single:
        logging.warning("targets %s have a single class in the training labels; their heads learn the base rate",
                        list(single))
    y = np.where(m, y, 0.0)
    return x.astype(np.float32), y.astype(np.float32), m.astype(np.float32), names, single


# ---------------------------------------------------------------------------------------------------------
# Per-seed pure functions
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Plan:
    """Static shapes and program-relevant settings of one training problem (shared by all seeds)."""

    n_rows: int
    n_val: int
    n_batches: int
    trunk: model_lib.TrunkConfig
    cfg: TrainConfig

    @property
    def n_train(self) -> int:
        return self.n_rows - self.n_val


def _make_plan(n_rows: int, d_in: int, n_targets: int, cfg: TrainConfig) -> _Plan:
    n_val = math.ceil(cfg.val_fraction * n_rows)
    if n_val < 1 or n_rows - n_val < 1:
        raise ValueError(f"{n_rows} rows cannot be split {1 - cfg.val_fraction:.2f}/{cfg.val_fraction:.2f}")
    # Fields that do not enter the compiled per-seed program are normalised so the program cache is shared.
    program_cfg = dataclasses.replace(cfg, seeds=(0,), keep=1, checkpoint_every=1, max_to_keep=1)
    return _Plan(n_rows, n_val, math.ceil((n_rows - n_val) / cfg.batch_size), cfg.trunk(d_in, n_targets),
                 program_cfg)


def _seed_keys(seed):
    """(init, split, shuffle, dropout) keys of a seed (int scalar, may be traced)."""
    return jax.random.split(jax.random.PRNGKey(seed), 4)


def _optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.adam(cfg.learning_rate))


def _init_state(plan: _Plan, seed) -> dict[str, Any]:
    """Initial per-seed training state (a pytree of arrays)."""
    k_init, k_split, _, _ = _seed_keys(seed)
    _, params = model_lib.init_params(plan.trunk, k_init)
    perm = jax.random.permutation(k_split, plan.n_rows)
    e = plan.cfg.max_epochs
    return {
        "seed": jnp.asarray(seed, jnp.int32),
        "val_idx": perm[:plan.n_val].astype(jnp.int32),
        "train_idx": perm[plan.n_val:].astype(jnp.int32),
        "params": params,
        "opt_state": _optimizer(plan.cfg).init(params),
        "best_params": params,
        "best_val": jnp.asarray(jnp.inf, jnp.float32),
        "best_epoch": jnp.asarray(0, jnp.int32),
        "wait": jnp.asarray(0, jnp.int32),
        "stopped": jnp.asarray(False),
        "epoch": jnp.asarray(0, jnp.int32),
        "val_history": jnp.full((e,), jnp.nan, jnp.float32),
        "train_history": jnp.full((e,), jnp.nan, jnp.float32),
    }


def _run_epoch(plan: _Plan, state, x, y, m):
    """One epoch of one seed: shuffled minibatch steps, validation, early-stopping bookkeeping."""
    cfg, graphdef, tx = plan.cfg, model_lib.graphdef_of(plan.trunk), _optimizer(plan.cfg)
    _, _, k_shuffle, k_drop = _seed_keys(state["seed"])
    epoch = state["epoch"]
    order = jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), state["train_idx"])
    pad = plan.n_batches * cfg.batch_size - plan.n_train
    idx = jnp.concatenate([order, jnp.zeros((pad,), jnp.int32)]).reshape(plan.n_batches, cfg.batch_size)
    row_w = jnp.concatenate([jnp.ones((plan.n_train,)), jnp.zeros((pad,))]).reshape(plan.n_batches, cfg.batch_size)
    epoch_drop_key = jax.random.fold_in(k_drop, epoch)

    def loss_fn(params, xb, yb, mb, key):
        logits = model_lib.apply(graphdef, params, xb, deterministic=False, dropout_key=key)
        return model_lib.masked_bce(logits, yb, mb)

    def step(carry, inputs):
        params, opt_state = carry
        b_idx, b_w, b = inputs
        loss, grads = jax.value_and_grad(loss_fn)(params, x[b_idx], y[b_idx], m[b_idx] * b_w[:, None],
                                                  jax.random.fold_in(epoch_drop_key, b))
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(
        step, (state["params"], state["opt_state"]), (idx, row_w, jnp.arange(plan.n_batches)))
    vi = state["val_idx"]
    val = model_lib.masked_bce(model_lib.apply(graphdef, params, x[vi], deterministic=True), y[vi], m[vi])
    improved = val < state["best_val"] - cfg.min_delta
    wait = jnp.where(improved, 0, state["wait"] + 1)
    return {
        **state,
        "params": params,
        "opt_state": opt_state,
        "best_params": jax.tree.map(lambda new, old: jnp.where(improved, new, old), params, state["best_params"]),
        "best_val": jnp.where(improved, val, state["best_val"]),
        "best_epoch": jnp.where(improved, epoch + 1, state["best_epoch"]),
        "wait": wait,
        "stopped": wait >= cfg.patience,
        "epoch": epoch + 1,
        "val_history": state["val_history"].at[epoch].set(val),
        "train_history": state["train_history"].at[epoch].set(jnp.mean(losses)),
    }


def _run_until(plan: _Plan, state, x, y, m, epoch_limit):
    """Run epochs of one seed until it stops early or reaches ``epoch_limit`` (while_loop)."""
    def cond(s):
        return jnp.logical_and(jnp.logical_not(s["stopped"]), s["epoch"] < epoch_limit)

    return jax.lax.while_loop(cond, lambda s: _run_epoch(plan, s, x, y, m), state)


class _Programs:
    """Jitted init / run functions for one plan: vmapped over seeds, or per seed (sequential).

    Cached per plan (``_programs``) so repeated trainings of one problem shape compile once.
    """

    def __init__(self, plan: _Plan):
        self.init_one = jax.jit(lambda seed: _init_state(plan, seed))
        self.init_all = jax.jit(jax.vmap(lambda seed: _init_state(plan, seed)))
        self.run_one = jax.jit(lambda s, x, y, m, lim: _run_until(plan, s, x, y, m, lim))
        self.run_all = jax.jit(jax.vmap(lambda s, x, y, m, lim: _run_until(plan, s, x, y, m, lim),
                                        in_axes=(0, None, None, None, None)))


@functools.lru_cache(maxsize=8)
def _programs(plan: _Plan) -> _Programs:
    return _Programs(plan)


# ---------------------------------------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------------------------------------
def _fingerprint(x, y, m, cfg: TrainConfig) -> str:
    h = hashlib.sha256()
    for a in (x, y, m):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(cfg.to_json(), sort_keys=True).encode())
    return h.hexdigest()


def _stack(states):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def _unstack(state, n):
    return [jax.tree.map(lambda leaf: leaf[i], state) for i in range(n)]


def _train_states(x, y, m, cfg: TrainConfig, *, vectorized: bool, checkpoint_dir, callback):
    """Train all seeds; returns the stacked final state (leaves [S, ...])."""
    plan = _make_plan(x.shape[0], x.shape[1], y.shape[1], cfg)
    progs = _programs(plan)
    seeds = jnp.asarray(cfg.seeds, jnp.int32)
    x, y, m = jnp.asarray(x), jnp.asarray(y), jnp.asarray(m)
    state = progs.init_all(seeds) if vectorized else _stack([progs.init_one(s) for s in seeds])

    ckpt = None
    if checkpoint_dir is not None:
        ckpt = checkpointing.TrainStateCheckpointer(checkpoint_dir, max_to_keep=cfg.max_to_keep)
        fp = _fingerprint(np.asarray(x), np.asarray(y), np.asarray(m), cfg)
        if ckpt.latest_step() is not None:
            state, meta = ckpt.restore(state)
            if meta.get("fingerprint") != fp:
                raise ValueError(f"checkpoint in {checkpoint_dir} was written for other data or config; "
                                 f"use a fresh checkpoint_dir")
            logging.info("resumed training from epoch %d (%s)", ckpt.latest_step(), checkpoint_dir)
    chunk = cfg.checkpoint_every if ckpt is not None else cfg.max_epochs

    def done(s):
        return bool(np.all(np.asarray(s["stopped"]) | (np.asarray(s["epoch"]) >= cfg.max_epochs)))

    bar = tqdm(total=cfg.max_epochs, initial=int(np.max(state["epoch"])), desc="router epochs",
               disable=chunk >= cfg.max_epochs, leave=False)
    while not done(state):
        start = int(np.max(state["epoch"]))
        limit = jnp.asarray(min(cfg.max_epochs, start + chunk), jnp.int32)
        if vectorized:
            state = progs.run_all(state, x, y, m, limit)
        else:
            state = _stack([progs.run_one(s, x, y, m, limit) for s in _unstack(state, len(cfg.seeds))])
        reached = int(np.max(state["epoch"]))
        bar.update(reached - start)
        if ckpt is not None:
            ckpt.save(reached, state, {"fingerprint": fp})
        if callback is not None:
            callback(reached, state)
    bar.close()
    if ckpt is not None:
        ckpt.close()
    return jax.block_until_ready(state), plan


def _to_ensemble(state, plan: _Plan, cfg: TrainConfig, names, single) -> Ensemble:
    best_val = np.asarray(state["best_val"], np.float64)
    kept = np.argsort(best_val, kind="stable")[:cfg.keep]
    report = TrainReport(
        seeds=cfg.seeds, best_val=best_val, best_epoch=np.asarray(state["best_epoch"], np.int64),
        epochs_run=np.asarray(state["epoch"], np.int64), stopped_early=np.asarray(state["stopped"], bool),
        val_history=np.asarray(state["val_history"], np.float64),
        train_history=np.asarray(state["train_history"], np.float64),
        kept_seeds=tuple(cfg.seeds[i] for i in kept), single_class_targets=single,
        n_train=plan.n_train, n_val=plan.n_val)
    params = jax.tree.map(lambda leaf: np.asarray(leaf)[kept], state["best_params"])
    return Ensemble(plan.trunk, params, report.kept_seeds, best_val[kept], names, report)


def train_ensemble(x_train, y_train, m_train, config: TrainConfig = TrainConfig(), *, target_names=None,
                   checkpoint_dir=None, callback: Callable[[int, dict], None] | None = None,
                   vectorized: bool = True) -> Ensemble:
    """Train ``config.seeds`` trunks on X [N, d], Y [N, K] (NaN allowed where M is False), M [N, K] bool.

    Returns the ensemble of the ``config.keep`` best seeds (``ensemble.report`` holds every seed's record
    and the flagged single-class targets). ``vectorized=True`` trains the seeds together (``jit(vmap)``);
    False trains them one after another with the same per-seed math. ``checkpoint_dir``: save every
    ``config.checkpoint_every`` epochs and resume from the latest checkpoint found there (same data and
    config required). ``callback(epoch, stacked_state)`` runs after each chunk (e.g. logging).
    Raises ValueError on shape mismatches, non-finite features (naming rows), non-binary observed labels or
    a target without any observed label.
    """
    x, y, m, names, single = _check_inputs(x_train, y_train, m_train, target_names)
    state, plan = _train_states(x, y, m, config, vectorized=vectorized, checkpoint_dir=checkpoint_dir,
                                callback=callback)
    ens = _to_ensemble(state, plan, config, names, single)
    logging.info("trained %d seeds (best val BCE %s); kept %s", len(config.seeds),
                 np.round(ens.report.best_val, 4).tolist(), list(ens.seeds))
    return ens


@functools.lru_cache(maxsize=8)
def _stacked_programs(plan: _Plan):
    """(init, run) for C feature sets x S seeds: vmap over feature sets of the vmap over seeds."""
    init = jax.jit(jax.vmap(jax.vmap(lambda seed: _init_state(plan, seed)), in_axes=0))
    per_set = jax.vmap(lambda s, x, y, m, lim: _run_until(plan, s, x, y, m, lim), in_axes=(0, None, None, None, None))
    run = jax.jit(jax.vmap(per_set, in_axes=(0, 0, None, None, None)))
    return init, run


def train_ensembles(xs_train, y_train, m_train, config: TrainConfig = TrainConfig(), *,
                    target_names=None) -> list[Ensemble]:
    """``train_ensemble`` for C feature sets of one shape, xs [C, N, d], sharing Y [N, K] and M [N, K].

    All C x S trunks train in ONE compiled program (vmap over feature sets of the vmap over seeds); the
    result for set c equals ``train_ensemble(xs[c], ...)`` (same seeds, splits and per-seed math). Used by
    layer-combination sweeps, where every combination is reduced to the same width.
    """
    xs = np.asarray(xs_train)
    if xs.ndim != 3:
        raise ValueError(f"xs must be [C, N, d] (C feature sets of one shape), got shape {xs.shape}")
    checked = [_check_inputs(x, y_train, m_train, target_names) for x in xs]
    _, y, m, names, single = checked[0]
    plan = _make_plan(xs.shape[1], xs.shape[2], y.shape[1], config)
    init, run = _stacked_programs(plan)
    seeds = jnp.asarray(config.seeds, jnp.int32)
    state = init(jnp.broadcast_to(seeds, (len(xs),) + seeds.shape))
    x_all = jnp.asarray(np.stack([c[0] for c in checked]))
    state = run(state, x_all, jnp.asarray(y), jnp.asarray(m), jnp.asarray(config.max_epochs, jnp.int32))
    state = jax.block_until_ready(state)
    return [_to_ensemble(jax.tree.map(lambda leaf: leaf[c], state), plan, config, names, single)
            for c in range(len(xs))]


def train_seeds_sequential(x_train, y_train, m_train, config: TrainConfig = TrainConfig(), *,
                           target_names=None, checkpoint_dir=None) -> Ensemble:
    """``train_ensemble`` with the seeds trained one after another (reference for the vmapped path)."""
    return train_ensemble(x_train, y_train, m_train, config, target_names=target_names,
                          checkpoint_dir=checkpoint_dir, vectorized=False)
