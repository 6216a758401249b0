"""Dedup, seeded stratified splits and validation carving."""
import collections

import numpy as np
import pytest

from prefill_router.data import (RoutingDataset, assign_splits, carve_validation, check_no_leak,
                                 deduplicate, drop_test_twins, normalise_prompt, question_stem, split_overlap,
                                 stem_key, twins_of)


def make(prompts, labels, split=None, tasks=None):
    labels = np.array(labels, dtype=np.float32)
    return RoutingDataset(prompts=prompts, tasks=tasks or ["t"] * len(prompts), targets=["a", "b"],
                          labels=labels, mask=None, split=split, prices={"a": (1, 1), "b": (2, 2)})


def test_normalise_prompt():
    assert normalise_prompt("  What IS\n\tthis?  ") == "what is this?"
    assert normalise_prompt("A\u00a0 b") == "a b"


def test_question_stem_splits_off_the_option_block():
    mc = "Which is  largest?\nA. two\nB. Ten\nC. one"
    assert question_stem(mc) == ("which is largest?", ("one", "ten", "two"))
    assert stem_key(mc) == stem_key("which is largest?\nA. one\nB. two\nC. ten")  # shuffled options
    # numbered clues stay in the stem when lettered options follow; numbered options when no letters
    grid = "Q: houses\n1. clue one\n2. clue two\n\nWhere?\nA. 1\nB. 2"
    assert question_stem(grid) == ("q: houses 1. clue one 2. clue two where?", ("1", "2"))
    assert question_stem("Pick\n1. x\n2. y\nAnswer:") == ("pick answer:", ("x", "y"))
    code = "Write f.\nYour code should pass these tests:\nassert f(1) == 2\nassert f(2) == 3"
    assert question_stem(code) == ("write f. your code should pass these tests:", ("assert f(1) == 2",
                                                                                    "assert f(2) == 3"))
    assert question_stem("What is 2+2?\nA. 4") == ("what is 2+2? a. 4", ())  # one option is no block


def test_twins_shuffled_options_appended_instruction_changed_tests():
    test = ["Q?\nA. x\nB. y", "Compute three plus four.", "Write f.\nassert f(1) == 2\nassert f(2) == 3", "task item 1"]
    train = ["Q?\nA. y\nB. x",                       # shuffled options: twin
             "Q?\nA. u\nB. v",                       # same stem, other options: not a twin
             "Compute three plus four.\nThink step by step.",     # instruction appended: twin
             "Write f.\nassert f(1) == 2\nassert f(5) == 6",  # one shared test: twin
             "task item 10",                           # prefix inside a word: not a twin
             "Compute three plus four. Then explain it in a long and detailed essay please."]  # > 2x longer: not
    prompts = test + train
    rows = np.arange(len(test), len(prompts))
    assert twins_of(prompts, rows, np.arange(len(test))).tolist() == [4, 6, 7]
    ds = make(prompts, [[1, 0]] * len(prompts), split=["test"] * 4 + ["train"] * 6,
              tasks=["a", "b", "c", "d", "a", "a", "b", "c", "d", "b"])
    with pytest.raises(ValueError, match="prompt stems shared between splits: {'train/test': 1}"):
        check_no_leak(ds)  # the shuffled copy has the same stem key
    with pytest.raises(ValueError, match="2 train/val prompts are near-duplicates of test prompts"):
        check_no_leak(ds.subset(np.arange(ds.num_rows) != 4))
    out = drop_test_twins(ds)
    assert out.num_rows == 7 and out.meta["dedup"]["twins_by_task"] == {"a": 1, "b": 1, "c": 1}
    assert out.meta["dedup"]["twins_dropped"] == 3
    check_no_leak(out)


def test_deduplicate_prefers_held_out_split_and_counts():
    ds = make(["Same q", "other", "same  Q ", "SAME Q", "x"],
              [[1, 0], [0, 0], [1, 1], [0, 0], [1, 1]],
              split=["train", "train", "test", "test", "train"])
    out = deduplicate(ds)
    # group {0, 2, 3}: the first test row (2) survives; row 0 dropped from train
    assert out.prompts == ["other", "same  Q ", "x"]
    assert out.split.tolist() == ["train", "test", "train"]
    assert out.meta["dedup"] == {"dropped": 2, "dropped_cross_split": 1, "conflicting_groups": 1,
                                 "on_conflict": "keep_first"}
    again = deduplicate(out)
    assert again.num_rows == 3 and again.meta["dedup"]["dropped"] == 2
    with pytest.raises(ValueError, match="1 normalised prompts have rows with conflicting labels"):
        deduplicate(ds, on_conflict="error")


def test_deduplicate_identical_duplicates_are_not_conflicts():
    ds = make(["q", "Q", "r"], [[1, np.nan], [1, 0], [0, 0]])
    out = deduplicate(ds, on_conflict="error")
    assert out.prompts == ["q", "r"] and out.meta["dedup"]["conflicting_groups"] == 0


def synthetic(n_per_task=(40, 20, 7), seed=0):
    rng = np.random.default_rng(seed)
    prompts, tasks = [], []
    for t, n in enumerate(n_per_task):
        prompts += [f"task{t} item {i}" for i in range(n)]
        tasks += [f"task{t}"] * n
    prompts += ["Task0 ITEM 3", "task1  item 5"]  # near-duplicates that must not leak
    tasks += ["task0", "task1"]
    labels = rng.integers(0, 2, size=(len(prompts), 2)).astype(np.float32)
    return make(prompts, labels, tasks=tasks)


def test_assign_splits_seeded_stratified_leak_free():
    ds = synthetic()
    out = assign_splits(ds, test_fraction=0.25, val_fraction=0.1, seed=3)
    assert out.num_rows == ds.num_rows - 2 and out.has_split
    counts = collections.Counter(zip(out.tasks, out.split.tolist()))
    for task, n in (("task0", 40), ("task1", 20), ("task2", 7)):
        assert counts[(task, "test")] == round(0.25 * n)
        assert counts[(task, "val")] == round(0.1 * n)
        assert counts[(task, "train")] == n - round(0.25 * n) - round(0.1 * n)
    assert split_overlap(out) == {"train/val": 0, "train/test": 0, "val/test": 0}
    check_no_leak(out)
    same = assign_splits(ds, test_fraction=0.25, val_fraction=0.1, seed=3)
    assert same.split.tolist() == out.split.tolist()
    other = assign_splits(ds, test_fraction=0.25, val_fraction=0.1, seed=4)
    assert other.split.tolist() != out.split.tolist()
    plain = assign_splits(ds, test_fraction=0.25, stratify_by=None, seed=3)
    assert plain.rows("test").size == round(0.25 * plain.num_rows)


def test_assign_splits_honours_existing_split_and_drops_train_copies():
    ds = make(["a", "b", "c", "d", "B "], [[1, 0]] * 5, split=["train", "train", "train", "test", "test"])
    with pytest.raises(ValueError):
        check_no_leak(ds)
    out = assign_splits(ds, test_fraction=0.5)
    assert out.prompts == ["a", "c", "d", "B "] and out.split.tolist() == ["train", "train", "test", "test"]
    assert out.meta["split_source"] == "dataset" and out.meta["dedup"]["dropped_cross_split"] == 1
    forced = assign_splits(ds, test_fraction=0.5, overwrite=True, stratify_by=None)
    assert forced.rows("test").size == 2


def test_assign_splits_errors():
    ds = make(["a", "b"], [[1, 0], [0, 1]], split=["train", ""])
    with pytest.raises(ValueError, match="1 of 2 rows have no split"):
        assign_splits(ds)
    with pytest.raises(ValueError, match="leaves no train rows"):
        assign_splits(make(["a", "b"], [[1, 0], [0, 1]]), test_fraction=0.6, val_fraction=0.4)
    with pytest.raises(ValueError, match="test_fraction=1.5"):
        assign_splits(make(["a", "b"], [[1, 0], [0, 1]]), test_fraction=1.5)
    with pytest.raises(ValueError, match="stratify_by='model'"):
        assign_splits(make(["a", "b"], [[1, 0], [0, 1]]), stratify_by="model")


def test_carve_validation_only_from_train():
    ds = assign_splits(synthetic(), test_fraction=0.2, seed=0)
    test_before = ds.rows("test").tolist()
    out = carve_validation(ds, 0.25, seed=1)
    assert out.rows("test").tolist() == test_before
    assert set(out.rows("val")) <= set(ds.rows("train"))
    per_task = collections.Counter(ds.tasks[i] for i in ds.rows("train"))
    val_task = collections.Counter(out.tasks[i] for i in out.rows("val"))
    assert all(val_task[t] == round(0.25 * n) for t, n in per_task.items())
    with pytest.raises(ValueError, match="needs train rows"):
        carve_validation(make(["a"], [[1, 0]]), 0.5)


def test_honoured_split_with_val_fraction_carves_from_train():
    prompts = [f"p{i}" for i in range(20)]
    ds = make(prompts, [[1, 0]] * 20, split=["train"] * 15 + ["test"] * 5)
    out = assign_splits(ds, val_fraction=0.25, stratify_by=None)
    assert out.rows("test").tolist() == list(range(15, 20))
    assert out.rows("val").size == 5 and out.rows("train").size == 10
