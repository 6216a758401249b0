"""Correctness labels from local target LLMs by cloze scoring of multiple-choice items.

Cloze format (one sequence per (item, option) pair, no chat template):

    prompt       = "Question: {question}\\nAnswer:"          (PROMPT_FORMAT)
    continuation = " {option}"
    score(o)     = sum_{t in option tokens} log p(x_t | x_<t)   ('sum'; 'mean' divides by the token count)

The option tokens are what the target's tokenizer gives for prompt + continuation beyond the longest
common prefix with the prompt's own tokens (so a BOS that the tokenizer adds, and merges across the
boundary, are handled). Target k answers item i correctly iff argmax_o score(o) == answer (ties: the
first option). Options an item lacks (fewer than the widest item) score -inf.

Execution: sequences are length-bucketed (features/bucketing.py); per padded [B, T] batch one jitted
program runs the target (`model(ids, mask, return_final_hidden=True)`), gathers only the P positions that
predict option tokens (flattened over the batch, P padded to a power of two >= 16), unembeds those
([P, V]: the Gemma vocabulary is 262k, so all positions are never unembedded), takes the log-softmax
and sums per row. Compiled shapes: one per (B, T, P).

Cost model: a target's price is proportional to its forward FLOPs per token, 2 x non-embedding
parameters (embedding and unembedding matrices excluded):
    price ($/M tokens, input = output) = PRICE_PER_GFLOP x 2 x params_non_embedding / 1e9
with PRICE_PER_GFLOP = 0.1 $/M tokens per GFLOP/token (an arbitrary scale; only ratios matter).
`costs[i, k]` = tokens target k processed to score item i (all its option sequences) x price / 1e6.

Caching: `<cache_dir>/labels/<items key>/<target key>.npz` holds per-option log-prob sums and token
counts for one target (atomic write); a rerun, or a run interrupted between targets, only computes the
missing targets. items key = sha256 of (format version, PROMPT_FORMAT, every item's fields in order);
target key = sha256 of the target's identity (name, weights sha256).

Axes: N items, O options (max over items), B batch, T tokens, P gathered positions, V vocab, K targets.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from tqdm.auto import tqdm

from prefill_router import fileio, paths
from prefill_router.data.dataset import RoutingDataset
from prefill_router.data.synthetic import MCItem
from prefill_router.features import bucketing

PROMPT_FORMAT = "Question: {question}\nAnswer:"
PRICE_PER_GFLOP = 0.1
NORMALIZATIONS = ("sum", "mean")
_FORMAT_VERSION = 1


def cloze_prompt(question: str) -> str:
    """The text every option is appended to (see PROMPT_FORMAT)."""
    return PROMPT_FORMAT.format(question=question)


def router_prompt(item: MCItem, with_options: bool = True) -> str:
    """What the router's encoder sees for an item: the question, optionally followed by its options."""
    if not with_options:
        return item.question
    return f"{item.question}\nOptions: " + " | ".join(item.options)


def _encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of texts, untruncated, with the tokenizer's usual special tokens (e.g. Gemma's BOS)."""
    out = tokenizer.encode_batch(list(texts))
    ids = out[0] if isinstance(out, tuple) else out
    return [list(map(int, t)) for t in ids]


@dataclasses.dataclass(frozen=True)
class ClozeSequences:
    """Flattened (item, option) sequences: ids[s] = prompt tokens + option tokens, option from n_prompt[s]."""
    ids: list[list[int]]
    n_prompt: np.ndarray   # [S] int: tokens before the first scored token
    item: np.ndarray       # [S] int: item index
    option: np.ndarray     # [S] int: option index


def tokenize_items(tokenizer: Any, items: Sequence[MCItem]) -> ClozeSequences:
    """Tokenizes every (item, option) pair; see the module docstring for the option-token rule."""
    if not items:
        raise ValueError("items is empty: pass at least one MCItem")
    prompts = [cloze_prompt(it.question) for it in items]
    prompt_ids = _encode(tokenizer, prompts)
    pairs = [(i, o) for i, it in enumerate(items) for o in range(len(it.options))]
    full = _encode(tokenizer, [prompts[i] + " " + items[i].options[o] for i, o in pairs])
    n_prompt = []
    for (i, o), seq in zip(pairs, full):
        p = prompt_ids[i]
        k = 0
        while k < min(len(p), len(seq)) and p[k] == seq[k]:
            k += 1
        if k == 0 or k >= len(seq):
            raise ValueError(f"item {i} option {o} ({items[i].options[o]!r}) leaves no prompt or no option tokens "
                             f"after tokenization; check the tokenizer")
        n_prompt.append(k)
    return ClozeSequences(ids=full, n_prompt=np.asarray(n_prompt, np.int64),
                          item=np.asarray([i for i, _ in pairs], np.int64),
                          option=np.asarray([o for _, o in pairs], np.int64))


def _pad_positions(n: int) -> int:
    """Smallest power of two >= max(n, 16): few compiled shapes for the gathered positions."""
    return max(16, 1 << max(0, int(n - 1).bit_length()))


@functools.partial(jax.jit, static_argnums=0)
def _score_batch(graphdef, state, ids, mask, flat_pos, targets, rows, valid):
    """ids, mask [B, T]; flat_pos, targets, rows, valid [P] -> per-row sum of option log-probs [B]."""
    m = nnx.merge(graphdef, state)
    h = m(ids, mask, return_final_hidden=True).final_hidden          # [B, T, D]
    h = h.reshape(-1, h.shape[-1])[flat_pos]                         # [P, D]
    logp = jax.nn.log_softmax(m.unembed(h).astype(jnp.float32), -1)  # [P, V]
    tok = jnp.take_along_axis(logp, targets[:, None], axis=-1)[:, 0] * valid
    return jnp.zeros(ids.shape[0], jnp.float32).at[rows].add(tok)


def _make_scorer(model: nnx.Module) -> Callable:
    """(ids, mask, flat_pos, targets, rows, valid) -> [B]; compiled once per model structure and shape."""
    graphdef, state = nnx.split(model)
    return lambda *args: _score_batch(graphdef, state, *args)


def score_sequences(model: nnx.Module, seqs: ClozeSequences, pad_id: int, *, batch_size: int = 32,
                    max_length: int = 512, progress: bool = True, desc: str = "cloze") -> tuple[np.ndarray, dict]:
    """Sum of option-token log-probs for every sequence: -> ([S] float64, stats)."""
    lengths = np.asarray([len(s) for s in seqs.ids])
    if lengths.max() > max_length:
        raise ValueError(f"a cloze sequence has {lengths.max()} tokens > max_length={max_length}; shorten the "
                         "questions/options or raise max_length")
    plan = bucketing.plan_batches(lengths, batch_size=batch_size, max_length=max_length)
    scorer = _make_scorer(model)
    out = np.zeros(len(seqs.ids), np.float64)
    t0 = time.perf_counter()
    for batch in tqdm(plan.batches, desc=desc, disable=not progress, leave=False):
        ids, mask = bucketing.pad_batch(seqs.ids, batch, pad_id, side="right")
        pos, tgt, rows = [], [], []
        for r, s in enumerate(batch.indices):
            n, k = len(seqs.ids[s]), int(seqs.n_prompt[s])
            pos.extend(r * batch.length + t for t in range(k - 1, n - 1))  # position t predicts token t + 1
            tgt.extend(seqs.ids[s][k:n])
            rows.extend([r] * (n - k))
        p = _pad_positions(len(pos))
        valid = np.zeros(p, np.float32)
        valid[:len(pos)] = 1.0
        pad = p - len(pos)
        sums = scorer(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(np.asarray(pos + [0] * pad, np.int32)),
                      jnp.asarray(np.asarray(tgt + [0] * pad, np.int32)),
                      jnp.asarray(np.asarray(rows + [0] * pad, np.int32)), jnp.asarray(valid))
        out[batch.indices] = np.asarray(sums)[:len(batch.indices)]
    wall = time.perf_counter() - t0
    stats = {"sequences": len(seqs.ids), "tokens": int(lengths.sum()), "padded_tokens": plan.padded_tokens,
             "wall_s": wall, "tokens_per_s": float(lengths.sum() / wall) if wall else float("nan"),
             "shapes": len(plan.shapes)}
    return out, stats


def _to_matrix(seqs: ClozeSequences, values: np.ndarray, n_items: int, fill: float) -> np.ndarray:
    width = int(seqs.option.max()) + 1
    mat = np.full((n_items, width), fill, np.float64)
    mat[seqs.item, seqs.option] = values
    return mat


def normalize_scores(sums: np.ndarray, counts: np.ndarray, normalize: str) -> np.ndarray:
    """[N, O] sums -> 'sum' (unchanged) or 'mean' (per option token); missing options stay -inf."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if normalize == "sum":
        return sums
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)


def _pad_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_id", None)
    return 0 if pad is None else int(pad if np.ndim(pad) == 0 else np.ravel(pad)[0])


def score_items_raw(enc: Any, items: Sequence[MCItem], *, batch_size: int = 32, max_length: int = 512,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """Cloze log-prob sums and option token counts, both [N, O] (sum -inf / count 0 where no option)."""
    seqs = tokenize_items(enc.tokenizer, items)
    sums, stats = score_sequences(enc.model, seqs, _pad_id(enc.tokenizer), batch_size=batch_size,
                                  max_length=max_length, progress=progress,
                                  desc=f"cloze {getattr(enc, 'name', '')}".strip())
    counts = np.asarray([len(s) for s in seqs.ids]) - seqs.n_prompt
    stats["item_tokens"] = np.bincount(seqs.item, weights=[len(s) for s in seqs.ids], minlength=len(items))
    return (_to_matrix(seqs, sums, len(items), -np.inf), _to_matrix(seqs, counts, len(items), 0.0), stats)


def score_items(enc: Any, items: Sequence[MCItem], batch_size: int = 32, *, normalize: str = "sum",
                max_length: int = 512, progress: bool = True) -> np.ndarray:
    """Cloze score of every option: [N, O] float64 (-inf where an item has fewer than O options).

    enc: a LoadedEncoder-like object with `.model` (Encoder) and `.tokenizer` (encode_batch, pad_id).
    """
    sums, counts, _ = score_items_raw(enc, items, batch_size=batch_size, max_length=max_length, progress=progress)
    return normalize_scores(sums, counts, normalize)


def correctness(scores: np.ndarray, items: Sequence[MCItem]) -> np.ndarray:
    """[N] float32 in {0, 1}: argmax option (first on ties) == answer."""
    answers = np.asarray([it.answer for it in items])
    return (np.argmax(scores, axis=1) == answers).astype(np.float32)


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
        loader = load_encoder
    return loader(target)


def collect_target(target: Any, items: Sequence[MCItem], *, cache_dir: str | os.PathLike | None = None,
                   batch_size: int = 32, max_length: int = 512, progress: bool = True,
                   loader: Callable[[str], Any] | None = None) -> TargetScores:
    """Scores (or reads from the cache) one target. `target`: a LoadedEncoder, or a registry name.

    A name is looked up in the cache first (file `<name>.<key>.npz` under the items' folder), so a cached
    target is not even loaded.
    """
    folder = paths.cache_dir(cache_dir) / "labels" / items_key(items)[:32]
    if isinstance(target, str):
        hits = sorted(folder.glob(f"{target}.*.npz"))
        if hits:
            return _read_cached(hits[0])
    enc = _load_target(target, loader)
    name = str(getattr(enc, "name", None) or target)
    path = folder / f"{name}.{_target_key(target_identity(enc))}.npz"
    if path.exists():
        return _read_cached(path)
    sums, counts, stats = score_items_raw(enc, items, batch_size=batch_size, max_length=max_length,
                                          progress=progress)
    price = price_per_m_tokens(enc.model)
    item_tokens = stats.pop("item_tokens")
    logging.info("cloze labels %s: %d items, %d sequences, %d tokens in %.1fs (%.0f tokens/s), price %.4f $/M",
                 name, len(items), stats["sequences"], stats["tokens"], stats["wall_s"], stats["tokens_per_s"], price)
    _save_npz(path, sums=sums, counts=counts, item_tokens=item_tokens, price=np.float64(price),
              name=np.array(name), identity=np.array(json.dumps(target_identity(enc), default=str)),
              stats=np.array(json.dumps(stats)))
    return TargetScores(name, sums, counts, item_tokens, price, stats)


def _read_cached(path: pathlib.Path) -> TargetScores:
    with np.load(path, allow_pickle=False) as z:
        logging.info("cloze labels %s: read from cache %s", str(z["name"]), path)
        return TargetScores(str(z["name"]), z["sums"], z["counts"], z["item_tokens"], float(z["price"]),
                            dict(json.loads(str(z["stats"])), cached=True))


def collect_labels(targets: Sequence[Any], items: Sequence[MCItem], *, normalize: str = "sum",
                   cache_dir: str | os.PathLike | None = None, batch_size: int = 32, max_length: int = 512,
                   test_fraction: float = 0.15, val_fraction: float = 0.0, split_seed: int = 0,
                   prompt_with_options: bool = True, name: str = "synthetic_mc", progress: bool = True,
                   loader: Callable[[str], Any] | None = None) -> RoutingDataset:
    """Cloze-scores `items` with every target and builds a RoutingDataset (seeded, task-stratified split).

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
        results.append(collect_target(target, items, cache_dir=cache_dir, batch_size=batch_size,
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
    from prefill_router.data import splits
    ds = RoutingDataset(
            prompts=[router_prompt(it, prompt_with_options) for it in items], tasks=[it.task for it in items],
            targets=names, labels=np.stack(labels, 1), mask=None, split=None,
            prices={r.name: (r.price, r.price) for r in results}, costs=np.stack(costs, 1),
            scores=np.stack(margins, 1), name=name,
            meta={"source": "synthetic multiple-choice, cloze-scored local targets",
                  "prompt_format": PROMPT_FORMAT, "normalize": normalize, "items_key": items_key(items),
                  "difficulty": [it.difficulty for it in items],
                  "price_rule": f"{PRICE_PER_GFLOP} $/M tokens per GFLOP/token; FLOPs/token = 2 x non-embedding "
                                "params; input = output price",
                  "collect_stats": {r.name: r.stats for r in results}})
    ds = splits.assign_splits(ds, test_fraction=test_fraction, val_fraction=val_fraction, seed=split_seed)
    return ds
