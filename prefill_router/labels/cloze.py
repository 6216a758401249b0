"""Cloze scoring of multiple-choice items by a target LLM, all options of an item in one packed row.

Cloze format (no chat template):

    prompt       = "Question: {question}\\nAnswer:"          (PROMPT_FORMAT)
    continuation = " {option}"
    score(o)     = sum_{t in option tokens} log p(x_t | x_<t)   ('sum'; 'mean' divides by the token count)

The option tokens are what the target's tokenizer gives for prompt + continuation beyond the longest
common prefix k_o with the prompt's own tokens (so a BOS that the tokenizer adds, and merges across the
boundary, are handled). Target k answers item i correctly iff argmax_o score(o) == answer (ties: the
first option). Options an item lacks (fewer than the widest item) score -inf.

Packing (`share_prefix=True`): the O sequences of an item agree on their first k = min_o k_o tokens, so
one row holds that prefix once followed by every option's remaining tokens, each in its own segment:

    tokens    p_0 .. p_{k-1} | c^1_0 .. c^1_{m_1-1} | c^2_0 ..  ...       (c^o = seq_o[k:])
    positions 0   .. k-1     | k     .. k+m_1-1     | k     ..  ...       (as in the unpacked sequence)
    segment   0   .. 0       | 1     .. 1           | 2     ..  ...
    query t sees key s  iff  s <= t and segment_s in {0, segment_t}  (and pos_t - pos_s < window on
                             sliding-window layers)

so every option token has exactly the context it has in its own sequence, and the scores equal the
per-sequence ones up to float rounding (test: within 1e-4). The prefix is run once instead of O times,
and the positions predicting each option's first token coincide, so they are unembedded once.
`share_prefix=False` puts every (item, option) sequence in a row of its own (the unpacked layout; the
benchmark's peer).

Execution: rows are length-bucketed (features/bucketing.py); per padded [B, T] batch one jitted program
(features.extract.BatchRunner, shared with feature extraction: params placed once, batch sharded over the
devices, compile time counted) runs the target in the encoder's packed mode (`model(ids, mask, positions=,
segment_ids=)`), gathers the P distinct predicting positions (flattened over the batch), unembeds only
those ([P, V]: the Gemma vocabulary is 262k), and reads the Q scored tokens' log-probs (logit - logsumexp
over V). P and Q are padded, per [B, T], to the multiple of 32 that covers all its batches, so there is one
compiled program per [B, T] shape. Batches are dispatched before the previous one is read back.

Axes: N items, O options (max over items), R rows, B batch, T tokens, P predicting positions, Q scored
tokens, V vocab, D width.
"""
from __future__ import annotations

import dataclasses
import time
import weakref
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from prefill_router.data.synthetic import MCItem
from prefill_router.features import bucketing
from prefill_router.features.extract import BatchRunner

PROMPT_FORMAT = "Question: {question}\nAnswer:"
NORMALIZATIONS = ("sum", "mean")


def cloze_prompt(question: str) -> str:
    """The text every option is appended to (see PROMPT_FORMAT)."""
    return PROMPT_FORMAT.format(question=question)


def _encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of texts, untruncated, with the tokenizer's usual special tokens (e.g. Gemma's BOS)."""
    out = tokenizer.encode_batch(list(texts))
    ids = out[0] if isinstance(out, tuple) else out
    return [list(map(int, t)) for t in ids]


@dataclasses.dataclass(frozen=True)
class ClozeRows:
    """Packed rows and the scored tokens. Row r: tokens/positions/segments [n_r]; scored token q is
    `token[q]`, predicted by index `at[q]` of row `row[q]`, and belongs to (item[q], option[q])."""
    tokens: list[np.ndarray]
    positions: list[np.ndarray]
    segments: list[np.ndarray]
    row: np.ndarray       # [Q] int
    at: np.ndarray        # [Q] int
    token: np.ndarray     # [Q] int
    item: np.ndarray      # [Q] int
    option: np.ndarray    # [Q] int
    counts: np.ndarray    # [N, O] float64: option token counts (0: no option)
    seq_tokens: np.ndarray  # [N] int: tokens of the item's unpacked sequences (prompt + option, all options)


def tokenize_items(tokenizer: Any, items: Sequence[MCItem], share_prefix: bool = True) -> ClozeRows:
    """Tokenizes every (item, option) pair and packs them into rows (see the module docstring)."""
    if not items:
        raise ValueError("items is empty: pass at least one MCItem")
    prompts = [cloze_prompt(it.question) for it in items]
    prompt_ids = _encode(tokenizer, prompts)
    pairs = [(i, o) for i, it in enumerate(items) for o in range(len(it.options))]
    full = _encode(tokenizer, [prompts[i] + " " + items[i].options[o] for i, o in pairs])
    width = max(len(it.options) for it in items)
    counts = np.zeros((len(items), width))
    seq_tokens = np.zeros(len(items), np.int64)
    groups: list[list[tuple[int, int, list[int], int]]] = [[] for _ in items]  # (item, option, ids, k_o)
    for (i, o), seq in zip(pairs, full):
        p = prompt_ids[i]
        k = 0
        while k < min(len(p), len(seq)) and p[k] == seq[k]:
            k += 1
        if k == 0 or k >= len(seq):
            raise ValueError(f"item {i} option {o} ({items[i].options[o]!r}) leaves no prompt or no option tokens "
                             f"after tokenization; check the tokenizer")
        groups[i].append((i, o, seq, k))
        counts[i, o] = len(seq) - k
        seq_tokens[i] += len(seq)
    if not share_prefix:
        groups = [[g] for group in groups for g in group]
    tokens, positions, segments, scored = [], [], [], []
    for group in groups:
        k = min(g[3] for g in group) if share_prefix else len(group[0][2])
        row_tok, row_pos, row_seg = [group[0][2][:k]], [np.arange(k)], [np.zeros(k, np.int64)]
        offset = k
        for s, (i, o, seq, k_o) in enumerate(group):
            rest = seq[k:]
            row_tok.append(rest)
            row_pos.append(np.arange(k, len(seq)))
            row_seg.append(np.full(len(rest), s + 1, np.int64))
            for t in range(k_o, len(seq)):  # token t is predicted by the state at sequence index t - 1
                at = t - 1 if t - 1 < k else offset + (t - 1 - k)
                scored.append((len(tokens), at, seq[t], i, o))
            offset += len(rest)
        tokens.append(np.concatenate([np.asarray(x, np.int64) for x in row_tok]))
        positions.append(np.concatenate(row_pos))
        segments.append(np.concatenate(row_seg))
    row, at, token, item, option = (np.asarray(c, np.int64) for c in zip(*scored))
    return ClozeRows(tokens, positions, segments, row, at, token, item, option, counts, seq_tokens)


def _pad_up(n: int, multiple: int = 32) -> int:
    """Smallest multiple of `multiple` >= max(n, 1): the gathered positions' and tokens' padded size (the
    [P, V] unembedding costs in proportion to it; a power of two wasted up to half of it on Gemma's 262k vocab)."""
    return multiple * max(1, -(-int(n) // multiple))


def _scorer(graphdef: nnx.GraphDef) -> Callable:
    """forward(state, ids, mask, positions, segments [B, T], pred [P], pair_pred, pair_tok [Q]) -> [Q] log-probs:
    the target on the packed batch, unembedding only the P flat predicting positions."""
    def forward(state, ids, mask, positions, segments, pred, pair_pred, pair_tok):
        m = nnx.merge(graphdef, state)
        h = m(ids, mask, positions=positions, segment_ids=segments, return_final_hidden=True).final_hidden
        h = h.reshape(-1, h.shape[-1])[pred]                              # [P, D]
        logits = m.unembed(h).astype(jnp.float32)                         # [P, V]
        return logits[pair_pred, pair_tok] - jax.nn.logsumexp(logits, -1)[pair_pred]  # no [P, V] log-softmax
    return forward


_RUNNERS: dict = {}


def _runner(model: nnx.Module) -> BatchRunner:
    """features.extract's BatchRunner of the scorer, reused (device params + compiled shapes) while called with
    the same model object; holds one runner."""
    cached = _RUNNERS.get(id(model))
    if cached is not None and cached[0]() is model:
        return cached[1]
    graphdef, state = nnx.split(model)
    _RUNNERS.clear()
    _RUNNERS[id(model)] = weakref.ref(model), BatchRunner(_scorer(graphdef), state)
    return _RUNNERS[id(model)][1]


def score_rows(model: nnx.Module, rows: ClozeRows, pad_id: int, *, batch_tokens: int = 2048,
               max_length: int = 512, progress: bool = True, desc: str = "cloze") -> tuple[np.ndarray, dict]:
    """Log-prob of every scored token: -> ([Q] float64, stats)."""
    lengths = np.asarray([len(t) for t in rows.tokens])
    if lengths.max() > max_length:
        raise ValueError(f"a cloze row has {lengths.max()} tokens > max_length={max_length}; shorten the "
                         "questions/options or raise max_length")
    runner = _runner(model)
    devices = runner.mesh.shape["data"]
    plan = bucketing.plan_batches(lengths, batch_tokens=batch_tokens, max_length=max_length, num_devices=devices)
    by_row = np.argsort(rows.row, kind="stable")
    starts = np.searchsorted(rows.row[by_row], np.arange(len(rows.tokens) + 1))
    t0 = time.perf_counter()
    host = [_host_batch(rows, batch, by_row, starts, pad_id) for batch in plan.batches]
    sizes: dict[tuple[int, int], tuple[int, int]] = {}  # per [B, T]: padded (P, Q), the max over its batches
    for batch, (_, pred, pair_pred, _, _) in zip(plan.batches, host):
        p, q = sizes.get(batch.shape, (0, 0))
        sizes[batch.shape] = max(p, _pad_up(len(pred))), max(q, _pad_up(len(pair_pred)))
    out = np.zeros(len(rows.row), np.float64)
    pending = None
    for batch, (arrays, pred, pair_pred, pair_tok, pair_idx) in tqdm(
            list(zip(plan.batches, host)), desc=desc, disable=not progress, leave=False):
        p, q = sizes[batch.shape]
        logp = runner(*arrays, np.pad(pred, (0, p - len(pred))), np.pad(pair_pred, (0, q - len(pair_pred))),
                      np.pad(pair_tok, (0, q - len(pair_tok))))
        if pending is not None:  # read the previous batch back while this one runs
            out[pending[0]] = np.asarray(pending[1])[:len(pending[0])]
        pending = pair_idx, logp
    out[pending[0]] = np.asarray(pending[1])[:len(pending[0])]
    wall = time.perf_counter() - t0
    stats = {"rows": len(rows.tokens), "tokens": int(lengths.sum()), "padded_tokens": plan.padded_tokens,
             "wall_s": wall, "tokens_per_s": float(lengths.sum() / wall) if wall else float("nan"),
             "shapes": len(sizes), "compile_s_total": runner.compile_s}
    return out, stats


def _host_batch(rows: ClozeRows, batch: bucketing.Batch, by_row: np.ndarray, starts: np.ndarray, pad_id: int):
    """One batch's host arrays: ((ids, mask, positions, segments) [B, T] int32, pred [P'] flat predicting
    positions, pair_pred [Q'] index into pred, pair_tok [Q'] scored tokens, pair_idx [Q'] index into the rows'
    scored tokens), before padding P' and Q'."""
    ids = np.full(batch.shape, pad_id, np.int32)
    mask, pos, seg = (np.zeros(batch.shape, np.int32) for _ in range(3))
    mask[len(batch.indices):, 0] = 1  # dummy rows: one visible token, so no query sees nothing
    for b, r in enumerate(batch.indices):
        n = len(rows.tokens[r])
        ids[b, :n], pos[b, :n], seg[b, :n], mask[b, :n] = rows.tokens[r], rows.positions[r], rows.segments[r], 1
    pair_idx = np.concatenate([by_row[starts[r]:starts[r + 1]] for r in batch.indices])
    local = np.repeat(np.arange(len(batch.indices)), [starts[r + 1] - starts[r] for r in batch.indices])
    flat = local * batch.length + rows.at[pair_idx]
    pred, pair_pred = np.unique(flat, return_inverse=True)  # options' shared first-token positions once
    return ((ids, mask, pos, seg), pred.astype(np.int32), pair_pred.astype(np.int32),
            rows.token[pair_idx].astype(np.int32), pair_idx)


def pad_id_of(tokenizer: Any) -> int:
    """The tokenizer's pad id, else its EOS id, else 0."""
    pad = getattr(tokenizer, "pad_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_id", None)
    return 0 if pad is None else int(pad if np.ndim(pad) == 0 else np.ravel(pad)[0])


def score_items_raw(enc: Any, items: Sequence[MCItem], *, share_prefix: bool = True, batch_tokens: int = 2048,
                    max_length: int = 512, progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """Cloze log-prob sums and option token counts, both [N, O] (sum -inf / count 0 where no option).

    stats['item_tokens'] [N]: tokens of the item's unpacked option sequences (what pricing counts)."""
    rows = tokenize_items(enc.tokenizer, items, share_prefix=share_prefix)
    logp, stats = score_rows(enc.model, rows, pad_id_of(enc.tokenizer), batch_tokens=batch_tokens,
                             max_length=max_length, progress=progress,
                             desc=f"cloze {getattr(enc, 'name', '')}".strip())
    sums = np.zeros(rows.counts.shape)
    np.add.at(sums, (rows.item, rows.option), logp)
    sums[rows.counts == 0] = -np.inf
    stats["items_per_s"] = len(items) / stats["wall_s"] if stats["wall_s"] else float("nan")
    stats["item_tokens"] = rows.seq_tokens
    return sums, rows.counts, stats


def normalize_scores(sums: np.ndarray, counts: np.ndarray, normalize: str) -> np.ndarray:
    """[N, O] sums -> 'sum' (unchanged) or 'mean' (per option token); missing options stay -inf."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if normalize == "sum":
        return sums
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)


def score_items(enc: Any, items: Sequence[MCItem], *, normalize: str = "sum", share_prefix: bool = True,
                batch_tokens: int = 2048, max_length: int = 512, progress: bool = True) -> np.ndarray:
    """Cloze score of every option: [N, O] float64 (-inf where an item has fewer than O options).

    enc: a LoadedEncoder-like object with `.model` (Encoder) and `.tokenizer` (encode_batch, pad_id).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    sums, counts, _ = score_items_raw(enc, items, share_prefix=share_prefix, batch_tokens=batch_tokens,
                                      max_length=max_length, progress=progress)
    return normalize_scores(sums, counts, normalize)


def correctness(scores: np.ndarray, items: Sequence[MCItem]) -> np.ndarray:
    """[N] float32 in {0, 1}: argmax option (first on ties) == answer."""
    answers = np.asarray([it.answer for it in items])
    return (np.argmax(scores, axis=1) == answers).astype(np.float32)
