"""Seed-ensemble training of SharedTrunkNet (or any ``SeedModel``), all seeds in one compiled program (method.md §5).

Axis letters: N rows, d trunk input width, K targets, S seeds, C feature sets, E epochs, B batch.

Per seed s (everything derived from ``jax.random.PRNGKey(seed_s)`` -> init / split / shuffle / dropout keys):
  * inner split: a random permutation of the N rows; the first ceil(val_fraction·N) are validation rows;
  * each epoch reshuffles the training rows on device, pads them to a multiple of the batch size with
    weight-0 rows (the last partial batch is kept: its loss is the masked mean over its real, observed
    entries) and runs ``optax.chain(add_decayed_weights(wd), adam(lr))`` (PyTorch Adam with coupled L2) over
    the batches in one ``lax.scan``;
  * after each epoch: validation loss in eval mode over the whole inner validation split; improvement iff
    val < best - min_delta, then best params := params; stop after ``patience`` epochs without improvement
    or at ``max_epochs``; the best params are returned.
Trunk loss = masked BCE (``trunk_loss`` of ``trunk_logits``, model.masked_bce): mean over observed (row, target)
entries; missing labels add nothing. A variant builds its SeedModel on these two and adds its own terms.

Program layout: one seed's training is a ``lax.while_loop`` over epochs (``_run_until``: early stopping
without host round trips). The C·S (feature set, seed) items are independent; ``workers`` says how they run:
  * ``workers=n >= 1``: one call of the per-item program per item, n host threads calling at once (each
    thread blocks on its item, so n items run concurrently: the CPU client runs calls from one thread in
    order). On a 2-core CPU two concurrent items train 1.15-1.35x faster than one after another (LLMRouter's /
    the default's design, benchmarks/train_speed.py: the step's matmuls scale imperfectly over two threads
    and its elementwise work runs on one);
  * ``workers=0``: every item INSIDE one jitted program, one after another (``lax.map``); ``seed_batch=g``
    vmaps groups of g items instead (g = S: the classic all-seeds vmap; on CPU a vmapped matmul is 2-3x
    slower than the single one, and a vmapped while_loop keeps every seed running until the slowest stops);
  * default (None): the usable CPU cores on a CPU backend with >= 2 of them, else 0 (``default_workers``).
workers = 0, 1 or n give bit-equal numbers (tests/router/test_router_train.py); vmapped groups are equal up to
float reordering. Seeds, data values and feature sets of one shape never recompile: the program is cached per
problem shape (``_Plan``) and takes seeds and data as arguments. With ``checkpoint_dir`` the loop runs in
chunks of ``checkpoint_every`` epochs and saves the full state after each chunk; a rerun with the same data
and config resumes. The ensemble keeps the ``keep`` seeds with the lowest best validation loss (ties: earlier seed).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import math
import os
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
# The model interface and the trunk
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SeedModel:
    """A network the seed loop trains, as pure functions of a params pytree.

    init(key) -> params.
    loss(params, batch, row_w, dropout_key) -> scalar: ``batch`` is the data dict gathered at the batch's rows
      ({name: [B, ...]}), ``row_w`` [B] float32 row weights (0 on padding rows, which must add nothing);
      ``dropout_key`` None means eval mode (validation: the whole inner split, row_w = 1).
    name: identifies the model in checkpoint fingerprints.
    Build a SeedModel once and reuse it: it is part of the compiled-program cache key (compared by identity
    of init/loss).
    """

    init: Callable[[jax.Array], Any]
    loss: Callable[[Any, dict, jax.Array, jax.Array | None], jax.Array]
    name: str


def trunk_logits(graphdef, params, batch: dict, dropout_key: jax.Array | None) -> jax.Array:
    """SharedTrunkNet's logits [B, K] of batch['x'] [B, d_in]; train mode (dropout) with a key, eval mode with None."""
    return model_lib.apply(graphdef, params, batch["x"], deterministic=dropout_key is None, dropout_key=dropout_key)


def trunk_loss(logits: jax.Array, batch: dict, row_w: jax.Array) -> jax.Array:
    """The trunk's training loss: masked BCE (model.masked_bce) of logits [B, K] against batch['y'] [B, K] over the
    observed entries batch['m'] [B, K], rows weighted by row_w [B] (0 on padding rows)."""
    return model_lib.masked_bce(logits, batch["y"], batch["m"] * row_w[:, None])


@functools.lru_cache(maxsize=32)
def trunk_model(trunk: model_lib.TrunkConfig) -> SeedModel:
    """SharedTrunkNet as a SeedModel: data {'x' [N, d_in], 'y' [N, K], 'm' [N, K]}, loss = ``trunk_loss`` of
    ``trunk_logits``."""
    graphdef = model_lib.graphdef_of(trunk)

    def init(key):
        return model_lib.init_params(trunk, key)[1]

    def loss(params, batch, row_w, dropout_key):
        return trunk_loss(trunk_logits(graphdef, params, batch, dropout_key), batch, row_w)

    return SeedModel(init, loss, f"SharedTrunkNet{json.dumps(trunk.to_json(), sort_keys=True)}")


# ---------------------------------------------------------------------------------------------------------
# Per-seed pure functions
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Plan:
    """Static shapes and program-relevant settings of one training problem (shared by all seeds)."""

    n_rows: int
    n_val: int
    n_batches: int
    model: SeedModel
    cfg: TrainConfig

    @property
    def n_train(self) -> int:
        return self.n_rows - self.n_val


def _make_plan(n_rows: int, model: SeedModel, cfg: TrainConfig) -> _Plan:
    n_val = math.ceil(cfg.val_fraction * n_rows)
    if n_val < 1 or n_rows - n_val < 1:
        raise ValueError(f"{n_rows} rows cannot be split {1 - cfg.val_fraction:.2f}/{cfg.val_fraction:.2f}")
    # Fields that do not enter the compiled per-seed program are normalised so the program cache is shared.
    program_cfg = dataclasses.replace(cfg, seeds=(0,), keep=1, checkpoint_every=1, max_to_keep=1)
    return _Plan(n_rows, n_val, math.ceil((n_rows - n_val) / cfg.batch_size), model, program_cfg)


def _seed_keys(seed):
    """(init, split, shuffle, dropout) keys of a seed (int scalar, may be traced)."""
    return jax.random.split(jax.random.PRNGKey(seed), 4)


def _optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.adam(cfg.learning_rate))


def _init_state(plan: _Plan, seed, set_index) -> dict[str, Any]:
    """Initial state of one (feature set, seed) item (a pytree of arrays)."""
    k_init, k_split, _, _ = _seed_keys(seed)
    params = plan.model.init(k_init)
    perm = jax.random.permutation(k_split, plan.n_rows)
    e = plan.cfg.max_epochs
    return {
        "seed": jnp.asarray(seed, jnp.int32),
        "set": jnp.asarray(set_index, jnp.int32),
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


def _gather(data: dict, rows: jax.Array) -> dict:
    return {k: v[rows] for k, v in data.items()}


def _run_epoch(plan: _Plan, state, data):
    """One epoch of one seed: shuffled minibatch steps (one scan), validation, early-stopping bookkeeping."""
    cfg, loss_fn, tx = plan.cfg, plan.model.loss, _optimizer(plan.cfg)
    _, _, k_shuffle, k_drop = _seed_keys(state["seed"])
    epoch = state["epoch"]
    order = jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), state["train_idx"])
    pad = plan.n_batches * cfg.batch_size - plan.n_train
    idx = jnp.concatenate([order, jnp.zeros((pad,), jnp.int32)]).reshape(plan.n_batches, cfg.batch_size)
    row_w = jnp.concatenate([jnp.ones((plan.n_train,)), jnp.zeros((pad,))]).reshape(plan.n_batches, cfg.batch_size)
    epoch_drop_key = jax.random.fold_in(k_drop, epoch)

    def step(carry, inputs):
        params, opt_state = carry
        b_idx, b_w, b = inputs
        loss, grads = jax.value_and_grad(loss_fn)(params, _gather(data, b_idx), b_w,
                                                  jax.random.fold_in(epoch_drop_key, b))
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(
        step, (state["params"], state["opt_state"]), (idx, row_w, jnp.arange(plan.n_batches)))
    val = loss_fn(params, _gather(data, state["val_idx"]), jnp.ones((plan.n_val,)), None)
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


def _run_until(plan: _Plan, state, data, epoch_limit):
    """Run epochs of one seed until it stops early or reaches ``epoch_limit`` (while_loop)."""
    def cond(s):
        return jnp.logical_and(jnp.logical_not(s["stopped"]), s["epoch"] < epoch_limit)

    return jax.lax.while_loop(cond, lambda s: _run_epoch(plan, s, data), state)


def _run_items(plan: _Plan, seed_batch: int, states, sets: dict, shared: dict, epoch_limit):
    """Every item (leaves [I, ...]) in sequence (lax.map; vmapped groups of ``seed_batch`` when > 1)."""
    def one(state):
        data = {**{k: v[state["set"]] for k, v in sets.items()}, **shared}
        return _run_until(plan, state, data, epoch_limit)

    return jax.lax.map(one, states, batch_size=seed_batch if seed_batch > 1 else None)


class _Programs:
    """Jitted init (vmapped over items: cheap) and run for one plan; cached per (plan, seed_batch) by
    ``_programs``, so repeated trainings of one problem shape compile once."""

    def __init__(self, plan: _Plan, seed_batch: int):
        self.init = jax.jit(jax.vmap(lambda seed, c: _init_state(plan, seed, c)))
        self.run = jax.jit(lambda states, sets, shared, lim: _run_items(plan, seed_batch, states, sets, shared, lim))


@functools.lru_cache(maxsize=16)
def _programs(plan: _Plan, seed_batch: int) -> _Programs:
    return _Programs(plan, seed_batch)


# ---------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SeedRuns:
    """One feature set's trained seeds: ``best_params`` (pytree, leaves [S, ...] in ``config.seeds`` order,
    host arrays) and ``report`` (every seed's record; kept_seeds = the ``config.keep`` lowest best_val)."""

    best_params: Any
    report: TrainReport

    def kept(self) -> np.ndarray:
        """Indices of the kept seeds in ``report.seeds``, best first."""
        return np.asarray([self.report.seeds.index(s) for s in self.report.kept_seeds], np.int64)


def _fingerprint(arrays: dict, cfg: TrainConfig, model: SeedModel) -> str:
    h = hashlib.sha256(model.name.encode())
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(f"{name}{a.shape}{a.dtype}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(cfg.to_json(), sort_keys=True).encode())
    return h.hexdigest()


def _rows_of(data: dict, sets: dict) -> tuple[int, int | None]:
    """(N, C) of the data dicts, checking that every array has the same N (and sets the same C)."""
    if not data and not sets:
        raise ValueError("no training data: pass at least one array")
    ns = {k: np.shape(v)[0] for k, v in data.items()} | {k: np.shape(v)[1] for k, v in sets.items()}
    cs = {k: np.shape(v)[0] for k, v in sets.items()}
    if len(set(ns.values())) != 1:
        raise ValueError(f"all training arrays need the same number of rows N, got {ns}")
    if len(set(cs.values())) > 1:
        raise ValueError(f"all per-set arrays need the same number of feature sets C, got {cs}")
    return next(iter(ns.values())), (next(iter(cs.values())) if cs else None)


def default_workers() -> int:
    """Concurrent items when ``workers`` is None: the usable cores on a CPU backend with at least two, else 0
    (all items in one program: an accelerator runs one program at a time anyway)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores if jax.default_backend() == "cpu" and cores >= 2 else 0


def _run_per_item(progs: _Programs, state, per_set: dict, shared: dict, limit, workers: int):
    """``progs.run`` once per item (leaves [I, ...]), ``workers`` items at a time from host threads; host state."""
    host = jax.tree.map(np.asarray, state)
    n_items = len(host["seed"])

    def item(i):  # blocks its thread until the item is done, so the next one starts only then
        return jax.tree.map(np.asarray, progs.run(jax.tree.map(lambda a: a[i:i + 1], host), per_set, shared, limit))

    if workers == 1 or n_items == 1:
        parts = [item(i) for i in range(n_items)]
    else:
        pool = concurrent.futures.ThreadPoolExecutor(min(workers, n_items), thread_name_prefix="train_seeds")
        try:
            parts = list(pool.map(item, range(n_items)))
        finally:  # on Ctrl-C or an error, queued items are dropped (running ones finish)
            pool.shutdown(wait=True, cancel_futures=True)
    return jax.tree.map(lambda *leaves: np.concatenate(leaves), *parts)


def train_seeds(model: SeedModel, data: dict, config: TrainConfig = TrainConfig(), *, sets: dict | None = None,
                checkpoint_dir=None, callback: Callable[[int, dict], None] | None = None, workers: int | None = None,
                seed_batch: int = 1) -> SeedRuns | list[SeedRuns]:
    """Train ``model`` once per seed of ``config`` (and per feature set) with the trunk's recipe.

    data: {name: [N, ...]} arrays shared by all feature sets; sets: {name: [C, N, ...]} arrays, one slice
    per feature set (the loss sees ``{**sets[c], **data}`` gathered at its rows). ``checkpoint_dir``: save every
    ``config.checkpoint_every`` epochs and resume from the latest checkpoint found there (same data, config
    and model required). ``callback(epoch, state)`` runs after each chunk (state leaves [C·S, ...]).
    ``workers``: items trained concurrently by host threads, one program call per item (1 = one after
    another; 0 = all items in one program call; None = ``default_workers()``); ``seed_batch`` (with
    workers=0): items vmapped together inside the program. Results are equal in every layout (vmapped:
    up to float reordering). Returns SeedRuns, or one SeedRuns per feature set when ``sets`` is given.
    """
    sets = dict(sets or {})
    n_rows, n_sets = _rows_of(data, sets)
    if seed_batch < 1:
        raise ValueError(f"seed_batch must be >= 1, got {seed_batch}")
    if workers is None:
        workers = 0 if seed_batch > 1 else default_workers()
    if workers < 0 or (workers > 0 and seed_batch > 1):
        raise ValueError(f"workers must be >= 0 and seed_batch > 1 needs workers=0; got workers={workers}, "
                         f"seed_batch={seed_batch}")
    plan = _make_plan(n_rows, model, config)
    progs = _programs(plan, seed_batch)
    n_seeds, c = len(config.seeds), n_sets or 1
    state = progs.init(jnp.tile(jnp.asarray(config.seeds, jnp.int32), c), jnp.repeat(jnp.arange(c, dtype=jnp.int32), n_seeds))
    shared = {k: jnp.asarray(v) for k, v in data.items()}
    per_set = {k: jnp.asarray(v) for k, v in sets.items()}

    ckpt = None
    if checkpoint_dir is not None:
        ckpt = checkpointing.TrainStateCheckpointer(checkpoint_dir, max_to_keep=config.max_to_keep)
        fp = _fingerprint({**data, **{f"set:{k}": v for k, v in sets.items()}}, config, model)
        if ckpt.latest_step() is not None:
            state, meta = ckpt.restore(state)
            if meta.get("fingerprint") != fp:
                raise ValueError(f"checkpoint in {checkpoint_dir} was written for other data or config; delete "
                                 f"{checkpoint_dir} (or rerun experiments.main with --overwrite) to train afresh")
            logging.info("resumed training from epoch %d (%s)", ckpt.latest_step(), checkpoint_dir)
    chunk = config.checkpoint_every if ckpt is not None else config.max_epochs

    def done(s):
        return bool(np.all(np.asarray(s["stopped"]) | (np.asarray(s["epoch"]) >= config.max_epochs)))

    bar = tqdm(total=config.max_epochs, initial=int(np.max(state["epoch"])), desc="router epochs",
               disable=chunk >= config.max_epochs, leave=False)
    while not done(state):
        start = int(np.max(state["epoch"]))
        limit = jnp.asarray(min(config.max_epochs, start + chunk), jnp.int32)
        if workers:
            state = _run_per_item(progs, state, per_set, shared, limit, workers)
        else:
            state = progs.run(state, per_set, shared, limit)
        reached = int(np.max(state["epoch"]))
        bar.update(reached - start)
        if ckpt is not None:
            ckpt.save(reached, state, {"fingerprint": fp})
        if callback is not None:
            callback(reached, state)
    bar.close()
    if ckpt is not None:
        ckpt.close()
    host = jax.tree.map(np.asarray, state)
    runs = [_set_runs(host, slice(i * n_seeds, (i + 1) * n_seeds), config, plan) for i in range(c)]
    return runs if n_sets is not None else runs[0]


def _set_runs(state, items: slice, cfg: TrainConfig, plan: _Plan) -> SeedRuns:
    """SeedRuns of the items of one feature set (host state leaves [C·S, ...])."""
    best_val = state["best_val"][items].astype(np.float64)
    kept = np.argsort(best_val, kind="stable")[:cfg.keep]
    report = TrainReport(
        seeds=cfg.seeds, best_val=best_val, best_epoch=state["best_epoch"][items].astype(np.int64),
        epochs_run=state["epoch"][items].astype(np.int64), stopped_early=state["stopped"][items].astype(bool),
        val_history=state["val_history"][items].astype(np.float64),
        train_history=state["train_history"][items].astype(np.float64),
        kept_seeds=tuple(cfg.seeds[i] for i in kept), single_class_targets=(), n_train=plan.n_train,
        n_val=plan.n_val)
    return SeedRuns(jax.tree.map(lambda leaf: leaf[items], state["best_params"]), report)


# ---------------------------------------------------------------------------------------------------------
# SharedTrunkNet ensembles
# ---------------------------------------------------------------------------------------------------------
def _to_ensemble(runs: SeedRuns, trunk: model_lib.TrunkConfig, names, single) -> Ensemble:
    kept = runs.kept()
    report = dataclasses.replace(runs.report, single_class_targets=single)
    params = jax.tree.map(lambda leaf: leaf[kept], runs.best_params)
    return Ensemble(trunk, params, report.kept_seeds, report.best_val[kept], names, report)


def train_ensemble(x_train, y_train, m_train, config: TrainConfig = TrainConfig(), *, target_names=None,
                   checkpoint_dir=None, callback: Callable[[int, dict], None] | None = None,
                   workers: int | None = None, seed_batch: int = 1) -> Ensemble:
    """Train ``config.seeds`` trunks on X [N, d], Y [N, K] (NaN allowed where M is False), M [N, K] bool.

    Returns the ensemble of the ``config.keep`` best seeds (``ensemble.report`` holds every seed's record
    and the flagged single-class targets). ``workers`` / ``seed_batch``: how the seeds run (``train_seeds``;
    default: concurrently on a multi-core CPU, same numbers in every layout). ``checkpoint_dir``: save every
    ``config.checkpoint_every`` epochs and resume from the latest checkpoint found there (same data and
    config required). ``callback(epoch, stacked_state)`` runs after each chunk (e.g. logging).
    Raises ValueError on shape mismatches, non-finite features (naming rows), non-binary observed labels or
    a target without any observed label.
    """
    x, y, m, names, single = _check_inputs(x_train, y_train, m_train, target_names)
    trunk = config.trunk(x.shape[1], y.shape[1])
    runs = train_seeds(trunk_model(trunk), {"x": x, "y": y, "m": m}, config, checkpoint_dir=checkpoint_dir,
                       callback=callback, workers=workers, seed_batch=seed_batch)
    ens = _to_ensemble(runs, trunk, names, single)
    logging.info("trained %d seeds (best val BCE %s); kept %s", len(config.seeds),
                 np.round(ens.report.best_val, 4).tolist(), list(ens.seeds))
    return ens


def train_ensembles(xs_train, y_train, m_train, config: TrainConfig = TrainConfig(), *,
                    target_names=None) -> list[Ensemble]:
    """``train_ensemble`` for C feature sets of one shape, xs [C, N, d], sharing Y [N, K] and M [N, K].

    All C x S trunks train with one compiled per-item program (``train_seeds`` with ``sets``); the result for set c equals
    ``train_ensemble(xs[c], ...)`` (same seeds, splits and per-seed math). Used by layer-combination sweeps,
    where every combination is reduced to the same width.
    """
    xs = np.asarray(xs_train)
    if xs.ndim != 3:
        raise ValueError(f"xs must be [C, N, d] (C feature sets of one shape), got shape {xs.shape}")
    checked = [_check_inputs(x, y_train, m_train, target_names) for x in xs]
    _, y, m, names, single = checked[0]
    trunk = config.trunk(xs.shape[2], y.shape[1])
    runs = train_seeds(trunk_model(trunk), {"y": y, "m": m}, config, sets={"x": np.stack([c[0] for c in checked])})
    return [_to_ensemble(r, trunk, names, single) for r in runs]


def train_seeds_sequential(x_train, y_train, m_train, config: TrainConfig = TrainConfig(), *,
                           target_names=None, checkpoint_dir=None) -> Ensemble:
    """``train_ensemble`` with one host call per seed, one after another (``workers=1``: the reference for the
    concurrent and in-program layouts)."""
    return train_ensemble(x_train, y_train, m_train, config, target_names=target_names,
                          checkpoint_dir=checkpoint_dir, workers=1)
