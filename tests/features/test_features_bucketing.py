"""Length bucketing: coverage, shapes, token budget, padding efficiency, determinism, errors."""
import numpy as np
import pytest

from prefill_router.features import bucketing


def _lengths(n=500, seed=0, max_length=512):
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(4.0, 0.9, size=n).astype(int), 1, max_length)


def test_default_grid():
    assert bucketing.default_length_grid(128) == [16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128]
    assert bucketing.default_length_grid(128, steps_per_octave=2) == [16, 24, 32, 48, 64, 96, 128]
    assert bucketing.default_length_grid(100)[-1] == 100
    assert bucketing.default_length_grid(8) == [8]


@pytest.mark.parametrize("num_devices", [1, 2, 3])
def test_plan_covers_every_prompt_once_within_budget(num_devices):
    lengths = _lengths()
    plan = bucketing.plan_batches(lengths, batch_tokens=2048, max_length=512, num_devices=num_devices)
    idx = np.concatenate([b.indices for b in plan.batches])
    np.testing.assert_array_equal(np.sort(idx), np.arange(len(lengths)))
    for b in plan.batches:
        assert b.batch_size % num_devices == 0 and len(b.indices) <= b.batch_size
        assert lengths[b.indices].max() <= b.length
        assert b.batch_size * b.length <= max(2048, num_devices * b.length)
    padded = sum(b.batch_size * b.length for b in plan.batches)
    assert plan.padded_tokens == padded and plan.real_tokens == lengths.sum()
    assert plan.padding_efficiency == pytest.approx(lengths.sum() / padded)
    assert len(plan.shapes) <= 3 * len(bucketing.default_length_grid(512))


def test_bucketing_beats_naive_padding():
    lengths = _lengths(seed=1)
    plan = bucketing.plan_batches(lengths, batch_size=4, max_length=512)
    naive = sum(4 * lengths[i:i + 4].max() for i in range(0, len(lengths), 4))
    assert plan.padding_efficiency > 0.75 > lengths.sum() / naive


def test_hand_computed_plan():
    lengths = [3, 20, 5, 17, 16, 9]
    plan = bucketing.plan_batches(lengths, batch_size=2, max_length=32, length_grid=[8, 16, 32])
    got = [(b.indices.tolist(), b.batch_size, b.length) for b in plan.batches]
    assert got == [([0, 2], 2, 8), ([5, 4], 2, 16), ([3, 1], 2, 32)]
    assert plan.padding_efficiency == pytest.approx(70 / (16 + 32 + 64))


def test_partial_batch_rounds_to_power_of_two_and_devices():
    plan = bucketing.plan_batches([10] * 11, batch_size=8, max_length=16, num_devices=2)
    assert [b.batch_size for b in plan.batches] == [8, 4]
    assert [len(b.indices) for b in plan.batches] == [8, 3]


def test_deterministic_and_stable_ties():
    lengths = _lengths(seed=2)
    a = bucketing.plan_batches(lengths, batch_tokens=1024, max_length=512, num_devices=2)
    b = bucketing.plan_batches(lengths.tolist(), batch_tokens=1024, max_length=512, num_devices=2)
    assert [x.indices.tolist() for x in a.batches] == [x.indices.tolist() for x in b.batches]
    ties = bucketing.plan_batches([5, 5, 5, 5], batch_size=4, max_length=8)
    assert ties.batches[0].indices.tolist() == [0, 1, 2, 3]


def test_errors():
    with pytest.raises(ValueError, match="exactly one"):
        bucketing.plan_batches([1], max_length=8)
    with pytest.raises(ValueError, match="exactly one"):
        bucketing.plan_batches([1], batch_size=2, batch_tokens=8, max_length=8)
    with pytest.raises(ValueError, match="truncate"):
        bucketing.plan_batches([9], batch_size=2, max_length=8)
    assert bucketing.plan_batches([], batch_size=2, max_length=8).batches == []


@pytest.mark.parametrize("side", ["left", "right"])
def test_pad_batch(side):
    seqs = [[1, 2, 3], [4]]
    batch = bucketing.Batch(indices=np.array([1, 0]), batch_size=4, length=4)
    ids, mask = bucketing.pad_batch(seqs, batch, pad_id=0, side=side)
    if side == "right":
        np.testing.assert_array_equal(ids[:2], [[4, 0, 0, 0], [1, 2, 3, 0]])
        np.testing.assert_array_equal(mask, [[1, 0, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
    else:
        np.testing.assert_array_equal(ids[:2], [[0, 0, 0, 4], [0, 1, 2, 3]])
        np.testing.assert_array_equal(mask, [[0, 0, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1]])
    assert ids.dtype == np.int32 and mask.dtype == np.int32


@pytest.mark.parametrize("num_devices", [1, 2])
def test_batches_run_across_grid_steps_so_only_the_last_is_partial(num_devices):
    """A batch has dummy rows only at the end of the plan, or when the next prompt would need a longer
    padded length than the batch's budget allows."""
    lengths = _lengths(seed=3)
    grid = np.asarray(bucketing.default_length_grid(512))
    plan = bucketing.plan_batches(lengths, batch_tokens=2048, max_length=512, num_devices=num_devices)
    order = np.concatenate([b.indices for b in plan.batches])
    np.testing.assert_array_equal(order, np.argsort(lengths, kind="stable"))
    for batch, following in zip(plan.batches[:-1], plan.batches[1:]):
        assert batch.length == grid[np.searchsorted(grid, lengths[batch.indices].max())]
        if len(batch.indices) < batch.batch_size:
            next_len = grid[np.searchsorted(grid, lengths[following.indices[0]])]
            assert next_len > batch.length and (2048 // next_len) // num_devices * num_devices <= len(batch.indices)
    assert plan.padding_efficiency > 0.8
