"""Prefill feature extraction: template -> tokenize -> length-bucketed, sharded, jitted forward -> store.

Per prompt and stored layer l (index 0 = embedding output, i = residual stream after block i) the encoder
gives two float32 poolings, read from the attention mask (valid for either padding side):

    last[l] = h_l[max{t : mask_t = 1}]        mean[l] = sum_t mask_t h_l[t] / sum_t mask_t

Execution: each prompt is rendered and hashed and looked up in the store (store.py); only prompts without
a usable stored row are computed. They are length-bucketed together (bucketing.py) and each padded [B, T]
shape runs one compiled program: params replicated (or FSDP-sharded over the same axis with
`shard_params=True`), batch sharded as NamedSharding(mesh, P('data')). Finished rows are written as a shard
every `chunk_size` prompts, so a crash (even kill -9) loses at most one shard's worth of work. Several hosts
split the missing prompts by hash (distributed.py).

Axes: B batch, T tokens, L+1 layers (embeddings first), L' stored layers, N prompts, D model width.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
import weakref
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from prefill_router.features import bucketing, distributed
from prefill_router.features.store import POOLINGS, FeatureStore, PoolSpec, pool_key, prompt_hash, request_key

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass
class FeatureSet:
    """Pooled features of N prompts: prompt i is row `row_of[i]` of shard `shards[shard_of[i]]` of the pool at
    `store_dir` (store.py); nothing is held in memory."""
    key: str
    encoder_identity: Any
    num_prompts: int
    layers: np.ndarray          # [L'] layer indices held (0 = embedding output)
    dim: int
    store_dir: pathlib.Path     # the pool directory
    shards: tuple[str, ...]
    shard_of: np.ndarray        # [N] int index into `shards`
    row_of: np.ndarray          # [N] int row in that shard
    stats: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def open(cls, store_dir: str | os.PathLike, key: str) -> "FeatureSet":
        """Reopens the prompt list `key` (a FeatureSet.key) of the pool directory `store_dir`; verifies its shards."""
        store = FeatureStore.open(store_dir)
        shards, shard_of, row_of, stats = store.read_set(key)
        s = store.spec
        return cls(key=key, encoder_identity=s.info.get("encoder_identity"), num_prompts=len(shard_of),
                   layers=np.asarray(s.layers), dim=s.dim, store_dir=store.dir, shards=shards, shard_of=shard_of,
                   row_of=row_of, stats=stats)

    def get(self, pooling: str, layers: Sequence[int] | None = None) -> np.ndarray:
        """[L', N, D] float32 of pooling 'last' or 'mean' for the given layer indices (default: all held).
        Reads only those layers' slices from disk."""
        positions = None
        if layers is not None:
            where = {int(l): p for p, l in enumerate(self.layers)}
            missing = [int(l) for l in layers if int(l) not in where]
            if missing:
                raise ValueError(f"layers {missing} are not in this feature set (held: {self.layers.tolist()}); "
                                 f"re-extract with layers=None or including them")
            positions = [where[int(l)] for l in layers]
        return FeatureStore.open(self.store_dir).gather(self.shard_of, self.row_of, self.shards, pooling, positions)

    @property
    def last(self) -> np.ndarray:
        return self.get("last")

    @property
    def mean(self) -> np.ndarray:
        return self.get("mean")


def validate_prompts(prompts: Sequence[str]) -> None:
    """Raises ValueError/TypeError naming the first bad prompt (empty list, non-str, empty, not UTF-8)."""
    if isinstance(prompts, (str, bytes)):
        raise TypeError("prompts must be a list of strings, not a single string")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: pass at least one prompt")
    for i, p in enumerate(prompts):
        if isinstance(p, (bytes, bytearray)):
            raise TypeError(f"prompt {i} is {type(p).__name__}, not str: decode it first, e.g. p.decode('utf-8')")
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is {type(p).__name__}, not str")
        if not p.strip():
            raise ValueError(f"prompt {i} is empty or whitespace only: drop it or fill it in")
        try:
            p.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"prompt {i} is not valid UTF-8 text ({e.reason} at position {e.start}, e.g. a lone "
                             f"surrogate): clean it, e.g. p.encode('utf-8', 'replace').decode()") from e


def _encode_fn() -> Callable:
    """The encoders' functional forward: encode(graphdef, state, input_ids, attention_mask) -> (last, mean)."""
    from prefill_router.encoders import encode
    return encode


def _param_sharding(mesh: Mesh, x: Any, shard: bool) -> NamedSharding:
    """P() (replicated), or with `shard` the largest dimension divisible by the mesh size on 'data' (FSDP)."""
    n = mesh.shape["data"]
    shape = getattr(x, "shape", ())
    if shard and n > 1 and shape:
        dims = [d for d in np.argsort(shape, kind="stable")[::-1] if shape[d] % n == 0 and shape[d] >= n]
        if dims:
            spec = [None] * len(shape)
            spec[dims[0]] = "data"
            return NamedSharding(mesh, P(*spec))
    return NamedSharding(mesh, P())


def _cast(x: Any, dtype) -> Any:
    return x.astype(dtype) if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) else x


def _encoder_identity(enc: Any) -> Any:
    identity = getattr(enc, "identity", None)
    if identity is None:
        identity = {"name": getattr(enc, "name", None), "weights_sha256": getattr(enc, "weights_sha256", None)}
    if dataclasses.is_dataclass(identity) and not isinstance(identity, type):
        identity = dataclasses.asdict(identity)
    return identity


class BatchRunner:
    """Jitted data-parallel ``forward(state, *batch) -> outputs``: `state` is placed on the mesh once (replicated,
    or FSDP-sharded with `shard_params`), every batch array is sharded on its first axis over 'data', every
    output of rank > `out_batch_axis` on that axis (others replicated). One compiled program per distinct
    batch shapes and dtypes; `compile_s` sums the seconds spent compiling (apart from running)."""

    def __init__(self, forward: Callable, state: Any, *, mesh: Mesh | None = None, shard_params: bool = False,
                 out_batch_axis: int = 0):
        self.mesh = mesh or distributed.local_data_mesh()
        if "data" not in self.mesh.shape:
            raise ValueError(f"mesh must have a 'data' axis, got axes {tuple(self.mesh.shape)}")
        self.state = jax.device_put(state, jax.tree.map(lambda x: _param_sharding(self.mesh, x, shard_params), state))
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        self._forward, self._axis = forward, out_batch_axis
        self._compiled: dict[tuple, Any] = {}
        self.compile_s = 0.0

    def _out_sharding(self, ndim: int) -> NamedSharding:
        return NamedSharding(self.mesh, P(*[None] * self._axis, "data") if ndim > self._axis else P())

    def __call__(self, *batch: np.ndarray):
        """Dispatches one batch (asynchronously) and returns the outputs as device arrays."""
        batch = tuple(jax.device_put(x, self.batch_sharding) for x in batch)
        shapes = tuple((x.shape, x.dtype) for x in batch)
        fn = self._compiled.get(shapes)
        if fn is None:
            t0 = time.perf_counter()
            out = jax.eval_shape(self._forward, self.state, *batch)
            jitted = jax.jit(self._forward, out_shardings=jax.tree.map(lambda o: self._out_sharding(o.ndim), out))
            fn = self._compiled[shapes] = jitted.lower(self.state, *batch).compile()
            self.compile_s += time.perf_counter() - t0
        return fn(self.state, *batch)


def encoder_runner(model: nnx.Module, mesh: Mesh, dtype, layer_positions: np.ndarray | None,
                    shard_params: bool) -> BatchRunner:
    """BatchRunner of (input_ids, attention_mask) [B, T] -> pooled (last, mean) [L', B, D] float32, with the
    parameters cast to the compute `dtype`, which may not be wider than theirs (a bfloat16-loaded encoder
    cannot give float32 features)."""
    param_dtype = getattr(model, "dtype", dtype)
    if jnp.finfo(param_dtype).bits < jnp.finfo(dtype).bits:
        raise ValueError(f"the encoder's parameters are {jnp.dtype(param_dtype).name}, too narrow for "
                         f"{jnp.dtype(dtype).name} features; load it with load_encoder(name, "
                         f"dtype={jnp.dtype(dtype).name!r})")
    graphdef, state = nnx.split(model)
    if getattr(model, "dtype", dtype) != dtype:  # compute dtype: a view sharing the arrays, not a copy
        view = nnx.merge(graphdef, state)
        view.dtype = dtype
        graphdef, _ = nnx.split(view)
    state = jax.tree.map(lambda x: _cast(x, dtype), state)
    encode = _encode_fn()

    def forward(state, input_ids, attention_mask):
        last, mean = encode(graphdef, state, input_ids, attention_mask)
        if layer_positions is not None:
            last, mean = last[layer_positions], mean[layer_positions]
        return last.astype(jnp.float32), mean.astype(jnp.float32)

    return BatchRunner(forward, state, mesh=mesh, shard_params=shard_params, out_batch_axis=1)


_RUNNER_CACHE: dict = {}


def _get_runner(model: nnx.Module, identity: Any, mesh: Mesh, dtype: str, layer_positions: np.ndarray | None,
                shard_params: bool) -> BatchRunner:
    """Reuses the last runner (device params + compiled shapes) when called again with the same model object,
    identity and settings, e.g. for several template_kwargs; holds at most one runner."""
    key = (id(model), json.dumps(identity, sort_keys=True, default=str), tuple(d.id for d in mesh.devices.flat),
           mesh.axis_names, dtype, None if layer_positions is None else tuple(layer_positions.tolist()),
           shard_params)
    cached = _RUNNER_CACHE.get(key)
    if cached is not None and cached[0]() is model:
        return cached[1]
    _RUNNER_CACHE.clear()
    runner = encoder_runner(model, mesh, _DTYPES[dtype], layer_positions, shard_params)
    _RUNNER_CACHE[key] = (weakref.ref(model), runner)
    return runner


def _tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of rendered `texts` (truncated to max_length) and their untruncated counts [n] int."""
    full, _ = tokenizer.encode_batch(list(texts), max_length=None)
    full_len = np.asarray([len(t) for t in full], dtype=np.int64)
    if (full_len > max_length).any():  # the tokenizer's own truncation rule (PromptTokenizer keeps start and end)
        ids, _ = tokenizer.encode_batch(list(texts), max_length=max_length, truncate="warn")
    else:
        ids = full
    for i, t in enumerate(ids):
        if len(t) == 0:
            raise ValueError(f"prompt {i} tokenizes to zero tokens; drop it")
    return [list(t) for t in ids], full_len


def extract_features(enc: Any, prompts: Sequence[str], *, store_dir: str | os.PathLike,
                     batch_tokens: int | None = None, batch_size: int | None = None, max_length: int = 2048,
                     dtype: str = "float32", template_kwargs: Mapping[str, Any] | None = None,
                     truncate: str = "warn", mesh: Mesh | None = None, layers: Sequence[int] | None = None,
                     progress: bool = True, chunk_size: int = 256, shard_params: bool = False,
                     padding_side: str = "right", length_grid: Sequence[int] | None = None) -> FeatureSet:
    """Pooled prefill features of `prompts`, computing only those the store at `store_dir` lacks.

    Args:
        enc: a LoadedEncoder (model, tokenizer, identity incl. weights sha256).
        prompts: N user questions; each is rendered with the encoder's chat template. Rows are looked up per
            prompt (store.py): any prompt stored by an earlier call with the same encoder, template kwargs,
            dtype and layers is reused (also at another max_length when it was not truncated).
        batch_tokens / batch_size: token budget per batch (B x T roughly constant) or a fixed batch size;
            if neither is given, batch_tokens = 8192.
        max_length: prompts longer than this (after templating) are truncated; truncate='warn' logs the count,
            'error' raises before computing anything.
        dtype: compute dtype of the parameters ('float32' | 'bfloat16'); pooled features are float32.
        mesh: a Mesh with a 'data' axis (default: this process's devices). The batch is sharded over it.
        layers: layer indices to store (0 = embedding output); default all L+1.
        chunk_size: rows per shard file, written as soon as that many prompts are done (a crash loses at
            most one shard's worth of work).
        shard_params: FSDP-style: shard each parameter's largest divisible dim over 'data'.
        padding_side: 'right' | 'left' (features do not depend on it).
    Returns:
        FeatureSet over the verified store; `.stats` summarises this call.
    """
    if truncate not in ("warn", "error"):
        raise ValueError(f"truncate must be 'warn' or 'error', got {truncate!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if batch_tokens is None and batch_size is None:
        batch_tokens = 8192
    validate_prompts(prompts)
    template_kwargs = dict(template_kwargs or {})
    cfg = enc.model.config
    num_layers, dim = int(cfg.num_layers), int(cfg.hidden_size)
    all_layers = np.arange(num_layers + 1)
    if layers is None:
        layer_idx = all_layers
    else:
        layer_idx = np.asarray([int(l) for l in layers], dtype=np.int64)
        if layer_idx.size == 0 or layer_idx.min() < -(num_layers + 1) or layer_idx.max() > num_layers:
            raise ValueError(f"layers must be indices in [0, {num_layers}] (0 = embeddings), got {list(layers)}")
        layer_idx = all_layers[layer_idx]
    max_pos = getattr(cfg, "max_position_embeddings", None)
    if max_pos and max_length > max_pos:
        raise ValueError(f"max_length={max_length} exceeds the encoder's max_position_embeddings={max_pos}")

    identity = _encoder_identity(enc)
    pkey = pool_key(encoder_identity=identity, template_kwargs=template_kwargs, layers=layer_idx.tolist(),
                    dtype=dtype)
    store = FeatureStore(store_dir, PoolSpec(key=pkey, layers=tuple(layer_idx.tolist()), dim=dim, poolings=POOLINGS,
                                             info={"encoder_identity": identity, "template_kwargs": template_kwargs,
                                                   "dtype": dtype}))
    store.create()
    texts = [enc.tokenizer.render(p, dict(template_kwargs)) for p in prompts]
    hashes = [prompt_hash(t) for t in texts]
    key = request_key(pkey, max_length, hashes)
    rows = store.resolve(hashes, max_length)
    _check_cached_truncation(rows, truncate, max_length)
    pid, nproc = distributed.process_index(), distributed.process_count()
    first = {}
    for i, (h, r) in enumerate(zip(hashes, rows)):  # each missing prompt once, on the host that owns it
        if r is None and h not in first and distributed.owner_of(h, nproc) == pid:
            first[h] = i
    todo = list(first.values())
    logging.info("feature store %s: %d prompts (%d distinct), %d stored, host %d/%d computes %d", store.dir,
                 len(prompts), len(set(hashes)), sum(r is not None for r in rows), pid, nproc, len(todo))

    run = {"prompts_computed": 0, "shards_written": [], "tokens_computed": 0, "padded_tokens": 0,
           "truncated_computed": 0, "compute_s": 0.0, "compile_s": 0.0}
    if todo:
        mesh = mesh or distributed.local_data_mesh()
        if "data" not in mesh.shape:
            raise ValueError(f"mesh must have a 'data' axis, got axes {tuple(mesh.shape)}")
        runner = _get_runner(enc.model, identity, mesh, dtype, None if layers is None else layer_idx,
                             shard_params)
        compile_before = runner.compile_s
        _compute(store, runner, enc.tokenizer, [texts[i] for i in todo], [hashes[i] for i in todo], run,
                 max_length=max_length, truncate=truncate, batch_tokens=batch_tokens, batch_size=batch_size,
                 num_devices=mesh.shape["data"], chunk_size=chunk_size, progress=progress,
                 padding_side=padding_side, length_grid=length_grid)
        run["compile_s"] = runner.compile_s - compile_before

    distributed.barrier(f"prefill_router.extract.{key}.computed")
    if todo or nproc > 1:
        rows = store.resolve(hashes, max_length)
    lost = [i for i, r in enumerate(rows) if r is None]
    if lost:
        raise RuntimeError(f"feature store {store.dir}: {len(lost)} prompts (first: {lost[0]}) have no valid "
                           f"stored row after extraction (deleted or corrupted meanwhile?); rerun the extraction")
    _check_cached_truncation(rows, truncate, max_length)
    shards = tuple(sorted({r.shard for r in rows}))
    where = {s: j for j, s in enumerate(shards)}
    shard_of = np.asarray([where[r.shard] for r in rows], dtype=np.int64)
    row_of = np.asarray([r.row for r in rows], dtype=np.int64)
    n_tok = np.asarray([min(r.full_len, max_length) for r in rows], dtype=np.int64)
    stats = dict(run, num_prompts=len(prompts), num_truncated=sum(r.cap is not None for r in rows),
                 total_tokens=int(n_tok.sum()), prompts_reused=len(prompts) - len(todo))
    stats["padding_efficiency"] = (run["tokens_computed"] / run["padded_tokens"]) if run["padded_tokens"] else 1.0
    stats["tokens_per_s"] = run["tokens_computed"] / run["compute_s"] if run["compute_s"] else float("nan")
    if pid == 0:
        store.write_set(key, shards, shard_of, row_of, {"max_length": max_length, "num_prompts": len(prompts),
                                                           "num_truncated": stats["num_truncated"],
                                                           "total_tokens": stats["total_tokens"]})
    logging.info("extracted %s: prompts=%d (computed %d in %d shards), tokens=%d (computed %d), truncated=%d, "
                 "padding efficiency=%.3f, wall=%.2fs (+%.2fs compile), %.0f tokens/s",
                 key[:12], len(prompts), run["prompts_computed"], len(run["shards_written"]), stats["total_tokens"],
                 run["tokens_computed"], stats["num_truncated"], stats["padding_efficiency"], run["compute_s"],
                 run["compile_s"], stats["tokens_per_s"])
    return FeatureSet(key=key, encoder_identity=identity, num_prompts=len(prompts), layers=layer_idx,
                      dim=dim, store_dir=store.dir, shards=shards, shard_of=shard_of, row_of=row_of, stats=stats)


def _check_cached_truncation(rows: Sequence[Any], truncate: str, max_length: int) -> None:
    n = sum(r is not None and r.cap is not None for r in rows)
    if truncate == "error" and n:
        raise ValueError(f"{n} prompts exceed max_length={max_length} tokens (stored by an earlier run with "
                         f"truncate='warn'); raise max_length or pass truncate='warn'")


def _compute(store: FeatureStore, runner: BatchRunner, tokenizer: Any, texts: Sequence[str], hashes: Sequence[str],
             run: dict, *, max_length, truncate, batch_tokens, batch_size, num_devices, chunk_size, progress,
             padding_side, length_grid) -> None:
    """Computes the rendered `texts` (length-bucketed) and writes them as shards of `chunk_size` rows in
    completion order; updates the counters in `run`."""
    ids, full_len = _tokenize(tokenizer, texts, max_length)  # all first: truncate='error' fails before compute
    truncated = full_len > max_length
    if truncate == "error" and truncated.any():
        raise ValueError(f"{int(truncated.sum())} prompts exceed max_length={max_length} tokens after "
                         f"templating (first: {texts[int(np.argmax(truncated))][:60]!r}); raise max_length or "
                         f"pass truncate='warn'")
    if truncated.any():
        logging.warning("%d prompts exceed max_length=%d tokens and were truncated", int(truncated.sum()), max_length)
    lengths = [len(t) for t in ids]
    plan = bucketing.plan_batches(lengths, batch_tokens=batch_tokens, batch_size=batch_size, max_length=max_length,
                                  length_grid=length_grid, num_devices=num_devices)
    run["padded_tokens"] += plan.padded_tokens
    run["truncated_computed"] = int(truncated.sum())
    pending_rows: list[int] = []
    pending: dict[str, list[np.ndarray]] = {p: [] for p in store.spec.poolings}

    def flush(count: int) -> None:
        take = pending_rows[:count]
        arrays = {p: np.stack(pending[p][:count], axis=1) for p in store.spec.poolings}
        shard = store.write_shard(arrays, [hashes[j] for j in take], full_len[take],
                                  [max_length if truncated[j] else None for j in take],
                                  {"real_tokens": int(sum(lengths[j] for j in take))})
        run["shards_written"].append(shard)
        del pending_rows[:count]
        for p in store.spec.poolings:
            del pending[p][:count]

    compile_before = runner.compile_s
    bar = tqdm(total=sum(lengths), unit="tok", unit_scale=True, disable=not progress, desc="prefill features")
    t_start = time.perf_counter()

    def collect(batch, outputs):
        out = dict(zip(("last", "mean"), (np.asarray(o) for o in outputs)))
        for row, j in enumerate(batch.indices):
            pending_rows.append(int(j))
            for p in store.spec.poolings:
                pending[p].append(out[p][:, row])
        while len(pending_rows) >= chunk_size:
            flush(chunk_size)
        n_tok = int(sum(lengths[j] for j in batch.indices))
        run["prompts_computed"] += len(batch.indices)
        run["tokens_computed"] += n_tok
        bar.update(n_tok)

    try:
        prev = None
        for batch in plan.batches:
            arrays = bucketing.pad_batch(ids, batch, tokenizer.pad_id, side=padding_side)
            outputs = runner(*arrays)  # dispatched asynchronously; collect the previous batch meanwhile
            if prev is not None:
                collect(*prev)
            prev = (batch, outputs)
        if prev is not None:
            collect(*prev)
        if pending_rows:
            flush(len(pending_rows))
    finally:
        bar.close()
    run["compute_s"] = time.perf_counter() - t_start - (runner.compile_s - compile_before)
