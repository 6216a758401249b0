"""Prefill feature extraction: template -> tokenize -> length-bucketed, sharded, jitted forward -> store.

Per prompt and stored layer l (index 0 = embedding output, i = residual stream after block i) the encoder
gives two float32 poolings, read from the attention mask (valid for either padding side):

    last[l] = h_l[max{t : mask_t = 1}]        mean[l] = sum_t mask_t h_l[t] / sum_t mask_t

Execution: the missing chunks of the store (see store.py) are processed in windows of about
`window_prompts` prompts; within a window prompts are length-bucketed (bucketing.py) and each padded
[B, T] shape runs one compiled program: params replicated (or FSDP-sharded over the same axis with
`shard_params=True`), batch sharded as NamedSharding(mesh, P('data')). A chunk is written as soon as all its
prompts are done, so a crash loses at most one window. Several hosts split the chunks (distributed.py).

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
from prefill_router.features.store import POOLINGS, FeatureStore, StoreSpec, store_key

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass
class FeatureSet:
    """Pooled features of N prompts, backed by a verified feature store (nothing held in memory)."""
    key: str
    encoder_identity: Any
    num_prompts: int
    layers: np.ndarray          # [L'] layer indices held (0 = embedding output)
    dim: int
    store_dir: pathlib.Path
    stats: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def open(cls, store_dir: str | os.PathLike) -> "FeatureSet":
        store = FeatureStore.open(store_dir)
        s = store.spec
        return cls(key=s.key, encoder_identity=s.info.get("encoder_identity"), num_prompts=s.num_prompts,
                   layers=np.asarray(s.layers), dim=s.dim, store_dir=store.dir)

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
        return FeatureStore.open(self.store_dir).read(pooling, positions)

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


class _Runner:
    """Jitted, sharded forward with one compiled program per [B, T] shape (compile time tracked apart)."""

    def __init__(self, model: nnx.Module, mesh: Mesh, dtype, layer_positions: np.ndarray | None,
                 shard_params: bool):
        graphdef, state = nnx.split(model)
        if getattr(model, "dtype", dtype) != dtype:  # compute dtype: a view sharing the arrays, not a copy
            view = nnx.merge(graphdef, state)
            view.dtype = dtype
            graphdef, _ = nnx.split(view)
        state = jax.tree.map(lambda x: _cast(x, dtype), state)
        param_sh = jax.tree.map(lambda x: _param_sharding(mesh, x, shard_params), state)
        self.state = jax.device_put(state, param_sh)
        self.batch_sharding = NamedSharding(mesh, P("data"))
        out_sh = NamedSharding(mesh, P(None, "data"))
        encode = _encode_fn()

        def forward(state, input_ids, attention_mask):
            last, mean = encode(graphdef, state, input_ids, attention_mask)
            if layer_positions is not None:
                last, mean = last[layer_positions], mean[layer_positions]
            return last.astype(jnp.float32), mean.astype(jnp.float32)

        self._jitted = jax.jit(forward, in_shardings=(param_sh, self.batch_sharding, self.batch_sharding),
                               out_shardings=(out_sh, out_sh))
        self._compiled: dict[tuple[int, int], Any] = {}
        self.compile_s = 0.0

    def __call__(self, ids: np.ndarray, mask: np.ndarray):
        ids = jax.device_put(ids, self.batch_sharding)
        mask = jax.device_put(mask, self.batch_sharding)
        fn = self._compiled.get(ids.shape)
        if fn is None:
            t0 = time.perf_counter()
            fn = self._jitted.lower(self.state, ids, mask).compile()
            self.compile_s += time.perf_counter() - t0
            self._compiled[ids.shape] = fn
        return fn(self.state, ids, mask)


_RUNNER_CACHE: dict = {}


def _get_runner(model: nnx.Module, identity: Any, mesh: Mesh, dtype: str, layer_positions: np.ndarray | None,
                shard_params: bool) -> _Runner:
    """Reuses the last runner (device params + compiled shapes) when called again with the same model object,
    identity and settings, e.g. for several template_kwargs; holds at most one runner."""
    key = (id(model), json.dumps(identity, sort_keys=True, default=str), tuple(d.id for d in mesh.devices.flat),
           mesh.axis_names, dtype, None if layer_positions is None else tuple(layer_positions.tolist()),
           shard_params)
    cached = _RUNNER_CACHE.get(key)
    if cached is not None and cached[0]() is model:
        return cached[1]
    _RUNNER_CACHE.clear()
    runner = _Runner(model, mesh, _DTYPES[dtype], layer_positions, shard_params)
    _RUNNER_CACHE[key] = (weakref.ref(model), runner)
    return runner


def _tokenize(tokenizer: Any, prompts: Sequence[str], template_kwargs: Mapping[str, Any], max_length: int,
              ) -> tuple[list[list[int]], np.ndarray]:
    """Token ids (truncated to max_length) and a per-prompt truncated flag [n] bool."""
    texts = [tokenizer.render(p, dict(template_kwargs)) for p in prompts]
    full, _ = tokenizer.encode_batch(texts, max_length=None)
    truncated = np.asarray([len(t) > max_length for t in full], dtype=bool)
    if truncated.any():  # the tokenizer's own truncation rule (PromptTokenizer keeps start and end)
        ids, _ = tokenizer.encode_batch(texts, max_length=max_length, truncate="warn")
    else:
        ids = full
    for i, t in enumerate(ids):
        if len(t) == 0:
            raise ValueError(f"prompt {i} tokenizes to zero tokens; drop it")
    return [list(t) for t in ids], truncated


def extract_features(enc: Any, prompts: Sequence[str], *, store_dir: str | os.PathLike,
                     batch_tokens: int | None = None, batch_size: int | None = None, max_length: int = 2048,
                     dtype: str = "float32", template_kwargs: Mapping[str, Any] | None = None,
                     truncate: str = "warn", mesh: Mesh | None = None, layers: Sequence[int] | None = None,
                     progress: bool = True, chunk_size: int = 256, window_prompts: int = 4096,
                     shard_params: bool = False, padding_side: str = "right",
                     length_grid: Sequence[int] | None = None) -> FeatureSet:
    """Extracts (or resumes) pooled prefill features of `prompts` into `store_dir/<key>`.

    Args:
        enc: a LoadedEncoder (model, tokenizer, identity incl. weights sha256).
        prompts: N user questions; each is rendered with the encoder's chat template.
        batch_tokens / batch_size: token budget per batch (B x T roughly constant) or a fixed batch size;
            if neither is given, batch_tokens = 8192.
        max_length: prompts longer than this (after templating) are truncated; truncate='warn' logs the count,
            'error' raises before computing anything.
        dtype: compute dtype of the parameters ('float32' | 'bfloat16'); pooled features are float32.
        mesh: a Mesh with a 'data' axis (default: this process's devices). The batch is sharded over it.
        layers: layer indices to store (0 = embedding output); default all L+1.
        chunk_size: prompts per store chunk (store layout); window_prompts: prompts bucketed together.
        shard_params: FSDP-style: shard each parameter's largest divisible dim over 'data'.
        padding_side: 'right' | 'left' (features do not depend on it).
    Returns:
        FeatureSet backed by the verified store; `.stats` summarises this call.
    """
    if truncate not in ("warn", "error"):
        raise ValueError(f"truncate must be 'warn' or 'error', got {truncate!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
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
    key = store_key(encoder_identity=identity, template_kwargs=template_kwargs, poolings=POOLINGS,
                    layers=layer_idx.tolist(), max_length=max_length, dtype=dtype, prompts=prompts)
    spec = StoreSpec(key=key, num_prompts=len(prompts), chunk_size=chunk_size, layers=tuple(layer_idx.tolist()),
                     dim=dim, poolings=POOLINGS,
                     info={"encoder_identity": identity, "template_kwargs": template_kwargs,
                           "max_length": max_length, "dtype": dtype})
    store = FeatureStore(store_dir, spec)
    store.create()

    mine = distributed.chunks_for_process(range(store.num_chunks))
    missing = store.missing_chunks(mine)
    pid, nproc = distributed.process_index(), distributed.process_count()
    logging.info("feature store %s: %d chunks, host %d/%d owns %d, %d to compute", store.dir, store.num_chunks,
                 pid, nproc, len(mine), len(missing))

    run = {"chunks_computed": list(missing), "prompts_computed": 0, "tokens_computed": 0, "padded_tokens": 0,
           "truncated_computed": 0, "compute_s": 0.0, "compile_s": 0.0}
    if missing:
        mesh = mesh or distributed.local_data_mesh()
        if "data" not in mesh.shape:
            raise ValueError(f"mesh must have a 'data' axis, got axes {tuple(mesh.shape)}")
        runner = _get_runner(enc.model, identity, mesh, dtype, None if layers is None else layer_idx,
                             shard_params)
        compile_before = runner.compile_s
        _compute_chunks(store, runner, enc.tokenizer, prompts, missing, run, template_kwargs=template_kwargs,
                        max_length=max_length, truncate=truncate, batch_tokens=batch_tokens, batch_size=batch_size,
                        num_devices=mesh.shape["data"], window_prompts=window_prompts, progress=progress,
                        padding_side=padding_side, length_grid=length_grid)
        run["compile_s"] = runner.compile_s - compile_before

    distributed.barrier(f"prefill_router.extract.{key}.computed")
    ok = 1
    if pid == 0:
        try:
            store.write_manifest()
        except Exception:
            ok = 0
            if nproc == 1:
                raise
            logging.exception("verification of %s failed", store.dir)
    if nproc > 1:
        from jax.experimental import multihost_utils
        ok = int(multihost_utils.broadcast_one_to_all(np.int32(ok)))
        if not ok:
            raise RuntimeError(f"process 0 could not verify feature store {store.dir}; see its log")

    totals = [store.chunk_stats(i) for i in range(store.num_chunks)]
    n_trunc = sum(int(s.get("n_truncated", 0)) for s in totals)
    if truncate == "error" and n_trunc:
        raise ValueError(f"{n_trunc} prompts exceed max_length={max_length} tokens (stored by an earlier run with "
                         f"truncate='warn'); raise max_length or pass truncate='warn'")
    stats = dict(run, num_prompts=len(prompts), num_truncated=n_trunc,
                 total_tokens=sum(int(s.get("real_tokens", 0)) for s in totals))
    stats["padding_efficiency"] = (run["tokens_computed"] / run["padded_tokens"]) if run["padded_tokens"] else 1.0
    stats["tokens_per_s"] = run["tokens_computed"] / run["compute_s"] if run["compute_s"] else float("nan")
    logging.info("extracted %s: prompts=%d (computed %d in %d chunks), tokens=%d (computed %d), truncated=%d, "
                 "padding efficiency=%.3f, wall=%.2fs (+%.2fs compile), %.0f tokens/s",
                 key[:12], len(prompts), run["prompts_computed"], len(missing), stats["total_tokens"],
                 run["tokens_computed"], n_trunc, stats["padding_efficiency"], run["compute_s"],
                 run["compile_s"], stats["tokens_per_s"])
    return FeatureSet(key=key, encoder_identity=identity, num_prompts=len(prompts), layers=layer_idx,
                      dim=dim, store_dir=store.dir, stats=stats)


def _compute_chunks(store: FeatureStore, runner: _Runner, tokenizer: Any, prompts: Sequence[str],
                    missing: Sequence[int], run: dict, *, template_kwargs, max_length, truncate, batch_tokens,
                    batch_size, num_devices, window_prompts, progress, padding_side, length_grid) -> None:
    """Computes and writes the `missing` chunks, window by window; updates the counters in `run`."""
    per_window = max(1, window_prompts // store.spec.chunk_size)
    windows = [list(missing[i:i + per_window]) for i in range(0, len(missing), per_window)]
    tokenized = []  # tokenize everything first so truncate='error' fails before any compute
    for window in windows:
        idx = np.concatenate([np.arange(*store.chunk_range(c)) for c in window])
        ids, truncated = _tokenize(tokenizer, [prompts[i] for i in idx], template_kwargs, max_length)
        if truncate == "error" and truncated.any():
            first = int(idx[np.argmax(truncated)])
            raise ValueError(f"{int(truncated.sum())} prompts exceed max_length={max_length} tokens after "
                             f"templating (first: prompt {first}); raise max_length or pass truncate='warn'")
        tokenized.append((idx, ids, truncated))
    n_trunc = sum(int(t.sum()) for _, _, t in tokenized)
    if n_trunc:
        logging.warning("%d prompts exceed max_length=%d tokens and were truncated", n_trunc, max_length)
    total = sum(sum(len(t) for t in ids) for _, ids, _ in tokenized)
    compile_before = runner.compile_s
    bar = tqdm(total=total, unit="tok", unit_scale=True, disable=not progress, desc="prefill features")
    t_start = time.perf_counter()
    try:
        for window, (idx, ids, truncated) in zip(windows, tokenized):
            plan = bucketing.plan_batches([len(t) for t in ids], batch_tokens=batch_tokens, batch_size=batch_size,
                                          max_length=max_length, length_grid=length_grid, num_devices=num_devices)
            run["padded_tokens"] += plan.padded_tokens
            buffers = {c: {p: np.empty(store.expected_shape(c), np.float32) for p in store.spec.poolings}
                       for c in window}
            remaining = {c: store.chunk_range(c)[1] - store.chunk_range(c)[0] for c in window}
            stats = {c: {"n_truncated": 0, "real_tokens": 0} for c in window}

            def collect(batch, outputs):
                last, mean = (np.asarray(o) for o in outputs)
                for row, j in enumerate(batch.indices):
                    i = int(idx[j])
                    c = store.chunk_of(i)
                    off = i - store.chunk_range(c)[0]
                    buffers[c]["last"][:, off] = last[:, row]
                    buffers[c]["mean"][:, off] = mean[:, row]
                    stats[c]["n_truncated"] += int(truncated[j])
                    stats[c]["real_tokens"] += len(ids[j])
                    remaining[c] -= 1
                    if remaining[c] == 0:
                        store.write_chunk(c, buffers.pop(c), stats[c])
                n_tok = int(sum(len(ids[j]) for j in batch.indices))
                run["prompts_computed"] += len(batch.indices)
                run["tokens_computed"] += n_tok
                bar.update(n_tok)

            pending = None
            for batch in plan.batches:
                arrays = bucketing.pad_batch(ids, batch, tokenizer.pad_id, side=padding_side)
                outputs = runner(*arrays)  # dispatched asynchronously; collect the previous batch meanwhile
                if pending is not None:
                    collect(*pending)
                pending = (batch, outputs)
            if pending is not None:
                collect(*pending)
            assert not buffers, f"chunks {sorted(buffers)} were not completed"
    finally:
        bar.close()
    run["truncated_computed"] = n_trunc
    run["compute_s"] = time.perf_counter() - t_start - (runner.compile_s - compile_before)
