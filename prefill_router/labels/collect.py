"""Correctness labels and prices from local target LLMs: the label-collection stage (runs the targets).

Target k answers item i correctly iff its top cloze-scored option (cloze.py) is the answer. The
dataset's scores are the margin of the answer's score over the best other option.

Cost model: a target's price is proportional to its forward FLOPs per token, 2 x non-embedding
parameters (embedding and unembedding matrices excluded):
    price ($/M tokens, input = output) = PRICE_PER_GFLOP x 2 x params_non_embedding / 1e9
with PRICE_PER_GFLOP = 0.1 $/M tokens per GFLOP/token (an arbitrary scale; only ratios matter).
`costs[i, k]` = tokens of item i's option sequences (prompt + option, every option, unpacked: what a
target without prefix sharing reads) x price / 1e6.

Caching: `<cache_dir>/labels/<items key>/<name>.<target key>.npz` holds per-option log-prob sums and
token counts for one target (atomic write); a rerun, or a run interrupted between targets, only computes
the missing targets; an unreadable file is logged and recomputed. items key = sha256 of (format version,
PROMPT_FORMAT, every item's fields in order); target key = sha256 of the target's identity (name,
weights sha256).

Axes: N items, O options (max over items), K targets.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import zipfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from absl import logging
from flax import nnx

from prefill_router import fileio, paths
from prefill_router.data import splits
from prefill_router.data.dataset import RoutingDataset
from prefill_router.data.synthetic import MCItem
from prefill_router.labels.cloze import NORMALIZATIONS, PROMPT_FORMAT, correctness, normalize_scores, score_items_raw

PRICE_PER_GFLOP = 0.1
_FORMAT_VERSION = 1


def router_prompt(item: MCItem, with_options: bool = True) -> str:
    """What the router's encoder sees for an item: the question, optionally followed by its options."""
    if not with_options:
        return item.question
    return f"{item.question}\nOptions: " + " | ".join(item.options)


# --------------------------------------------------------------------------------------------- costs

def non_embedding_params(model: nnx.Module) -> int:
    """Parameters excluding the token embedding and the (untied) output head."""
    state = nnx.state(model, nnx.Param)
    total = 0
    for path, leaf in nnx.to_flat_state(state):
        if path[0] in ("embed", "lm_head"):
            continue
        total += int(np.prod(leaf.get_value().shape if hasattr(leaf, "get_value") else leaf.value.shape))
    return total


def price_per_m_tokens(model: nnx.Module, price_per_gflop: float = PRICE_PER_GFLOP) -> float:
    """$/M tokens = price_per_gflop x (2 x non-embedding params) / 1e9."""
    return price_per_gflop * 2.0 * non_embedding_params(model) / 1e9


# --------------------------------------------------------------------------------------------- cache

def items_key(items: Sequence[MCItem]) -> str:
    """Order-sensitive sha256 of the items and the scoring format."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": _FORMAT_VERSION, "prompt_format": PROMPT_FORMAT}).encode())
    for it in items:
        h.update(json.dumps([it.question, it.options, it.answer, it.task, it.difficulty]).encode())
        h.update(b"\n")
    return h.hexdigest()


def target_identity(enc: Any) -> dict:
    """JSON-able identity of a loaded target: name and weights sha256 (or the encoder's own identity)."""
    identity = getattr(enc, "identity", None)
    if identity is not None:
        if dataclasses.is_dataclass(identity) and not isinstance(identity, type):
            identity = dataclasses.asdict(identity)
        return json.loads(json.dumps(identity, default=str))
    return {"name": getattr(enc, "name", None), "weights_sha256": getattr(enc, "weights_sha256", None)}


def _target_key(identity: Mapping) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _save_npz(path: pathlib.Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_writer(path) as f:
        np.savez(f, **arrays)


@dataclasses.dataclass
class TargetScores:
    """One target's raw cloze results for an item list."""
    name: str
    sums: np.ndarray         # [N, O] float64 log-prob sums (-inf: no option)
    counts: np.ndarray       # [N, O] option token counts
    item_tokens: np.ndarray  # [N] tokens processed to score the item (all options)
    price: float             # $/M tokens
    stats: dict


def _load_target(target: Any, loader: Callable[[str], Any] | None) -> Any:
    if not isinstance(target, str):
        return target
    if loader is None:
        from prefill_router.encoders.registry import load_encoder
        # A target is loaded once per item set (its labels are cached): dequantising the GGUF straight into the
        # model is faster than writing the float32 safetensors cache first (Qwen2.5 14 s vs 16 + 8 s).
        loader = functools.partial(load_encoder, cache_dequantized=False)
    return loader(target)


def collect_target(target: Any, items: Sequence[MCItem], *, cache_dir: str | os.PathLike | None = None,
                   batch_tokens: int = 2048, max_length: int = 512, progress: bool = True,
                   loader: Callable[[str], Any] | None = None) -> TargetScores:
    """Scores (or reads from the cache) one target. `target`: a LoadedEncoder, or a registry name.

    A name is looked up in the cache first (file `<name>.<key>.npz` under the items' folder), so a cached
    target is not even loaded. An unreadable cache file is logged and recomputed (then overwritten).
    """
    folder = paths.cache_dir(cache_dir) / "labels" / items_key(items)[:32]
    if isinstance(target, str):
        for hit in sorted(folder.glob(f"{target}.*.npz")):
            cached = _read_cached(hit)
            if cached is not None:
                return cached
    enc = _load_target(target, loader)
    name = str(getattr(enc, "name", None) or target)
    path = folder / f"{name}.{_target_key(target_identity(enc))}.npz"
    cached = _read_cached(path) if path.exists() else None
    if cached is not None:
        return cached
    sums, counts, stats = score_items_raw(enc, items, batch_tokens=batch_tokens, max_length=max_length,
                                          progress=progress)
    price = price_per_m_tokens(enc.model)
    item_tokens = stats.pop("item_tokens")
    logging.info("cloze labels %s: %d items in %d packed rows, %d tokens in %.1fs (%.1f items/s, %.0f tokens/s), "
                 "price %.4f $/M", name, len(items), stats["rows"], stats["tokens"], stats["wall_s"],
                 stats["items_per_s"], stats["tokens_per_s"], price)
    _save_npz(path, sums=sums, counts=counts, item_tokens=item_tokens, price=np.float64(price),
              name=np.array(name), identity=np.array(json.dumps(target_identity(enc), default=str)),
              stats=np.array(json.dumps(stats)))
    return TargetScores(name, sums, counts, item_tokens, price, stats)


def _read_cached(path: pathlib.Path) -> TargetScores | None:
    """The cached scores, or None (logged) when the file is truncated, corrupt or lacks a field."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = TargetScores(str(z["name"]), z["sums"], z["counts"], z["item_tokens"], float(z["price"]),
                               dict(json.loads(str(z["stats"])), cached=True))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        logging.warning("cloze labels cache %s is unreadable (%s: %s); recomputing it", path, type(err).__name__, err)
        return None
    logging.info("cloze labels %s: read from cache %s", out.name, path)
    return out


def collect_labels(targets: Sequence[Any], items: Sequence[MCItem], *, normalize: str = "sum",
                   cache_dir: str | os.PathLike | None = None, batch_tokens: int = 2048, max_length: int = 512,
                   test_fraction: float = 0.15, val_fraction: float = 0.0, split_seed: int = 0,
                   prompt_with_options: bool = True, name: str = "synthetic_mc", progress: bool = True,
                   loader: Callable[[str], Any] | None = None) -> RoutingDataset:
    """Cloze-scores `items` with every target and builds a RoutingDataset (seeded, task-stratified split);
    tasks are the item families, row_meta['difficulty'] [N] their levels.

    targets: LoadedEncoders or registry names (loaded one at a time; cached targets are not loaded).
    Labels: 1 iff the target's top-scoring option is the answer. scores: the margin of the answer's score
    over the best other option (normalised as `normalize`). prices: see the module docstring.
    """
    if not targets:
        raise ValueError("targets is empty: pass at least one target encoder or registry name")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    results = []
    for target in targets:
        results.append(collect_target(target, items, cache_dir=cache_dir, batch_tokens=batch_tokens,
                                      max_length=max_length, progress=progress, loader=loader))
    names = [r.name for r in results]
    answers = np.asarray([it.answer for it in items])
    labels, margins, costs = [], [], []
    for r in results:
        s = normalize_scores(r.sums, r.counts, normalize)
        labels.append(correctness(s, items))
        right = s[np.arange(len(items)), answers]
        others = s.copy()
        others[np.arange(len(items)), answers] = -np.inf
        margins.append(right - others.max(axis=1))
        costs.append(r.item_tokens * r.price / 1e6)
    ds = RoutingDataset(
            prompts=[router_prompt(it, prompt_with_options) for it in items], tasks=[it.task for it in items],
            targets=names, labels=np.stack(labels, 1), mask=None, split=None,
            prices={r.name: (r.price, r.price) for r in results}, costs=np.stack(costs, 1),
            scores=np.stack(margins, 1), name=name,
            meta={"source": "synthetic multiple-choice, cloze-scored local targets",
                  "prompt_format": PROMPT_FORMAT, "normalize": normalize, "items_key": items_key(items),
                  "price_rule": f"{PRICE_PER_GFLOP} $/M tokens per GFLOP/token; FLOPs/token = 2 x non-embedding "
                                "params; input = output price",
                  "collect_stats": {r.name: r.stats for r in results}},
            row_meta={"difficulty": np.asarray([it.difficulty for it in items], np.int64)})
    ds = splits.assign_splits(ds, test_fraction=test_fraction, val_fraction=val_fraction, seed=split_seed)
    return ds
