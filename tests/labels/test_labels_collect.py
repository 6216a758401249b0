"""Cloze scoring (packed and unpacked) against a direct full-logits computation; labels, prices, the cache."""
import dataclasses
import functools

import jax
import numpy as np
import pytest
from flax import nnx

from prefill_router.data.dataset import RoutingDataset
from prefill_router.labels import cloze, collect
from prefill_router.data.synthetic import MCItem, generate_items
from prefill_router.encoders.loading import random_model


class CharTokenizer:
    """Character-level test tokenizer over a 61-token vocabulary; optionally prepends BOS=1."""
    pad_id, eos_id = 0, 2

    def __init__(self, bos: bool):
        self.bos = bos

    def encode_batch(self, texts, max_length=None, truncate=False):
        ids = [([1] if self.bos else []) + [3 + ord(c) % 58 for c in t] for t in texts]
        return ids, np.zeros(len(ids), bool)


@dataclasses.dataclass
class FakeEncoder:
    name: str
    model: object
    tokenizer: CharTokenizer
    weights_sha256: str = "0" * 64


ITEMS = [MCItem("What is 2 + 3?", ["5", "6", "4"], 0, "add", 1),
         MCItem("Spell 'cat' backwards.", ["tac", "act", "cta", "atc"], 0, "reverse", 1),
         MCItem("What is True or False?", ["True", "False"], 0, "boolean", 1),
         MCItem("Which number is the largest: 31, 13, 33, 30?", ["31", "13", "33", "30"], 2, "compare", 2)]


@functools.partial(jax.jit, static_argnums=0)
def _full_logits(graphdef, state, ids, mask):
    return nnx.merge(graphdef, state)(ids, mask, return_logits=True).logits


def full_logits(model, ids, mask):
    """[1, T, V] logits of every position (the whole vocabulary), one compiled program per model."""
    return _full_logits(*nnx.split(model), ids, mask)


def direct_scores(enc, items):
    """Unbatched reference: full logits of each prompt+option sequence, summed option log-probs."""
    out = np.full((len(items), max(len(it.options) for it in items)), -np.inf)
    for i, it in enumerate(items):
        prompt = enc.tokenizer.encode_batch([cloze.cloze_prompt(it.question)])[0][0]
        for o, opt in enumerate(it.options):
            seq = enc.tokenizer.encode_batch([cloze.cloze_prompt(it.question) + " " + opt])[0][0]
            assert seq[:len(prompt)] == prompt
            ids = np.zeros((1, 96), np.int32)  # one sequence, right-padded to one length: a single compile
            ids[0, :len(seq)] = seq
            mask = (np.arange(96) < len(seq)).astype(np.int32)[None]
            logits = np.asarray(full_logits(enc.model, ids, mask)[0], np.float64)
            logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
                - logits.max(-1, keepdims=True)
            out[i, o] = sum(logp[t - 1, seq[t]] for t in range(len(prompt), len(seq)))
    return out


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3"])
def enc(request):
    return FakeEncoder(f"tiny_{request.param}", random_model(request.param, seed=3),
                       CharTokenizer(bos=request.param == "gemma3"))


@pytest.mark.parametrize("share_prefix", [True, False])
def test_score_items_matches_direct_logprobs(enc, share_prefix):
    """Packed rows (all options after one prefix; gemma3's 4-token sliding window crosses the segments)
    and one row per option both equal the per-sequence full-logits reference within 1e-4."""
    got = cloze.score_items(enc, ITEMS, share_prefix=share_prefix, batch_tokens=256, progress=False)
    want = direct_scores(enc, ITEMS)
    assert got.shape == (4, 4)
    assert np.isneginf(got[0, 3]) and np.isneginf(got[2, 2:]).all()
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-5, atol=1e-4)


def test_packing_runs_the_prefix_once():
    """An item's row holds the shared prompt once, then each option's tokens in its own segment."""
    rows = cloze.tokenize_items(CharTokenizer(bos=True), ITEMS[:1])
    prompt = len(cloze.cloze_prompt(ITEMS[0].question)) + 1  # characters + BOS
    assert len(rows.tokens) == 1 and len(rows.tokens[0]) == prompt + 3 * 2  # " 5", " 6", " 4"
    np.testing.assert_array_equal(rows.segments[0], [0] * prompt + [1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(rows.positions[0][prompt:], [prompt, prompt + 1] * 3)
    # each option's first token is predicted by the last prompt token, its second by its own first
    np.testing.assert_array_equal(rows.at, [prompt - 1, prompt, prompt - 1, prompt + 2, prompt - 1, prompt + 4])
    unpacked = cloze.tokenize_items(CharTokenizer(bos=True), ITEMS[:1], share_prefix=False)
    assert [len(t) for t in unpacked.tokens] == [prompt + 2] * 3
    np.testing.assert_array_equal(unpacked.seq_tokens, rows.seq_tokens)


def test_batching_does_not_change_scores():
    enc = FakeEncoder("tiny", random_model("gemma3", seed=1), CharTokenizer(bos=True))
    a = cloze.score_items(enc, ITEMS, batch_tokens=64, progress=False)
    b = cloze.score_items(enc, ITEMS, batch_tokens=1024, progress=False)
    c = cloze.score_items(enc, ITEMS[::-1], batch_tokens=256, progress=False)[::-1]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-4)


def test_mean_normalisation_divides_by_option_tokens():
    enc = FakeEncoder("tiny", random_model("llama", seed=0), CharTokenizer(bos=False))
    s = cloze.score_items(enc, ITEMS[:2], progress=False)
    m = cloze.score_items(enc, ITEMS[:2], normalize="mean", progress=False)
    lengths = np.array([[2, 2, 2, 0], [4, 4, 4, 4]])  # " 5" is 2 characters, " tac" 4
    np.testing.assert_allclose(m[lengths > 0], s[lengths > 0] / lengths[lengths > 0], rtol=1e-6)
    with pytest.raises(ValueError, match="normalize"):
        cloze.score_items(enc, ITEMS[:2], normalize="max", progress=False)


def test_correctness_is_argmax_equals_answer():
    scores = np.array([[0.0, -1.0, -np.inf], [-2.0, -1.0, -3.0], [-1.0, -1.0, -5.0]])
    items = [MCItem("a", ["x", "y"], 0, "t", 1), MCItem("b", ["x", "y", "z"], 0, "t", 1),
             MCItem("c", ["x", "y", "z"], 1, "t", 1)]
    np.testing.assert_array_equal(cloze.correctness(scores, items), [1.0, 0.0, 0.0])


def test_price_counts_non_embedding_params():
    model = random_model("qwen2", seed=0)  # untied: embed [V, D] and lm_head [D, V] both excluded
    cfg = model.config
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model)))
    expected = total - 2 * cfg.vocab_size * cfg.hidden_size
    assert collect.non_embedding_params(model) == expected
    assert collect.price_per_m_tokens(model) == pytest.approx(collect.PRICE_PER_GFLOP * 2 * expected / 1e9)


def test_collect_labels_builds_dataset_and_reuses_cache(tmp_path, monkeypatch):
    items = generate_items(16, seed=5, mix={"add": 1, "reverse": 1, "boolean": 1})
    targets = [FakeEncoder("tiny_a", random_model("llama", seed=1), CharTokenizer(False)),
               FakeEncoder("tiny_b", random_model("qwen2", seed=2), CharTokenizer(False), "1" * 64)]
    ds = collect.collect_labels(targets, items, cache_dir=tmp_path, progress=False, split_seed=1)
    assert isinstance(ds, RoutingDataset)
    assert ds.targets == ["tiny_a", "tiny_b"] and ds.num_rows == 16 and ds.has_split
    assert set(ds.split) <= {"train", "test"} and (ds.split == "test").sum() > 0
    for j, t in enumerate(targets):
        want = cloze.correctness(cloze.score_items(t, items, share_prefix=False, progress=False), items)
        row_of = {p: i for i, p in enumerate(ds.prompts)}
        order = [row_of[collect.router_prompt(it)] for it in items]
        np.testing.assert_array_equal(ds.labels[order, j], want)
    assert ds.prices["tiny_b"][0] > 0 and ds.costs.shape == (16, 2) and np.all(ds.costs > 0)
    assert ds.tasks == [it.task for it in items]
    np.testing.assert_array_equal(ds.row_meta["difficulty"], [it.difficulty for it in items])

    def boom(*args, **kwargs):
        raise AssertionError("recomputed although cached")
    monkeypatch.setattr(collect, "score_items_raw", boom)
    again = collect.collect_labels(targets, items, cache_dir=tmp_path, progress=False, split_seed=1)
    np.testing.assert_array_equal(again.labels, ds.labels)
    np.testing.assert_array_equal(again.split, ds.split)
    # a cached target given by name is not even loaded
    named = collect.collect_labels(["tiny_a", "tiny_b"], items, cache_dir=tmp_path, progress=False, split_seed=1,
                                   loader=boom)
    np.testing.assert_array_equal(named.labels, ds.labels)
    # other items -> other cache entry -> recompute (boom)
    with pytest.raises(AssertionError, match="recomputed"):
        collect.collect_labels(targets, items[:-1], cache_dir=tmp_path, progress=False)


def test_empty_inputs_raise():
    enc = FakeEncoder("tiny", random_model("llama", seed=0), CharTokenizer(bos=False))
    with pytest.raises(ValueError, match="items is empty"):
        cloze.score_items(enc, [], progress=False)
    with pytest.raises(ValueError, match="targets is empty"):
        collect.collect_labels([], ITEMS)


def test_unreadable_cache_file_is_recomputed(tmp_path):
    items = generate_items(6, seed=2, mix={"add": 1})
    target = FakeEncoder("tiny_a", random_model("llama", seed=1), CharTokenizer(False))
    first = collect.collect_target(target, items, cache_dir=tmp_path, progress=False)
    (path,) = (tmp_path / "labels").glob("*/tiny_a.*.npz")
    path.write_bytes(path.read_bytes()[:100])  # truncated, e.g. by a full disk
    again = collect.collect_target("tiny_a", items, cache_dir=tmp_path, progress=False, loader=lambda name: target)
    assert "cached" not in again.stats
    np.testing.assert_allclose(again.sums, first.sums)
    assert collect.collect_target("tiny_a", items, cache_dir=tmp_path, progress=False).stats["cached"]
