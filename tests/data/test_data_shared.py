"""Loaders on the real shared data (skipped when shared/data is absent; fails in CI)."""
import collections
import gzip

import numpy as np
import pytest

from prefill_router.data import (RoutingDataset, assign_splits, check_no_leak, dataset_stats, deduplicate,
                                 estimate_input_tokens, load_dataset, load_llmrouter, load_routellm,
                                 normalise_prompt, per_prompt_costs, question_stem, split_overlap)

# assets.md §3: accuracy at score >= 0.5 over all 6,108 rows
LLMROUTER_ACC = {"llama-3.1-nemotron-51b-instruct": .624, "llama-3.3-nemotron-super-49b-v1": .575,
                 "llama-3.1-8b-instruct": .565, "gemma-2-9b-it": .537, "qwen2.5-7b-instruct": .521,
                 "mistral-7b-instruct-v0.3": .364, "codegemma-7b": .292, "llama3-chatqa-1.5-70b": .196,
                 "llama3-chatqa-1.5-8b": .175}


@pytest.fixture(scope="module")
def llmrouter(shared_data):
    return load_llmrouter(shared_data)


def test_llmrouter_statistics(llmrouter):
    ds = llmrouter
    assert ds.num_rows == 6108 and sorted(ds.targets) == sorted(LLMROUTER_ACC)
    assert ds.rows("train").size == 5608 and ds.rows("test").size == 500
    assert len(set(ds.tasks)) == 14 and len({ds.tasks[i] for i in ds.rows("test")}) == 10
    assert ds.mask.all()
    s = dataset_stats(ds)
    assert s["best_single"]["target"] == "llama-3.1-nemotron-51b-instruct"
    assert s["best_single"]["accuracy"] == pytest.approx(0.624, abs=5e-4)
    assert s["oracle"] == pytest.approx(0.803, abs=5e-4) and s["all_wrong"] == pytest.approx(0.197, abs=5e-4)
    for target, acc in LLMROUTER_ACC.items():
        assert s["per_target"][target]["accuracy"] == pytest.approx(acc, abs=5e-4), target
    assert ds.prices["gemma-2-9b-it"] == (0.1, 0.1) and ds.prices["llama-3.1-nemotron-51b-instruct"] == (0.9, 0.9)
    graded = ~np.isin(ds.scores, [0.0, 1.0])
    assert graded.sum() > 0  # f1 / coverage scores exist and were thresholded
    np.testing.assert_array_equal(ds.labels[graded], (ds.scores[graded] >= 0.5).astype(np.float32))


def test_llmrouter_multiple_choice_rendering(llmrouter):
    ds = llmrouter
    metric = ds.meta["task_metric"]
    for task in ("mmlu", "gpqa", "arc_challenge", "commonsense_qa", "openbook_qa", "agentverse-logicgrid"):
        assert metric[task] == "em_mc"
        prompts = [p for p, t in zip(ds.prompts, ds.tasks) if t == task]
        lines_ok = [any(line[:3] in ("A. ", "1. ") for line in p.split("\n")[1:]) for p in prompts]
        assert all(lines_ok), task
    mmlu = next(p for p, t in zip(ds.prompts, ds.tasks) if t == "mmlu")
    assert mmlu.split("\n")[-4].startswith("A. ") and mmlu.split("\n")[-1].startswith("D. ")
    mbpp = next(p for p, t in zip(ds.prompts, ds.tasks) if t == "mbpp")
    assert "\nYour code should pass these tests:\nassert " in mbpp


def test_llmrouter_no_leak_after_dedup(llmrouter):
    before = split_overlap(llmrouter)["train/test"]
    assert before > 0  # the raw dataset shares prompts between its train and test files
    out = assign_splits(llmrouter, val_fraction=0.1, seed=0)
    keys = {s: {normalise_prompt(out.prompts[i]) for i in out.rows(s)} for s in ("train", "val", "test")}
    assert not (keys["train"] & keys["test"] or keys["train"] & keys["val"] or keys["val"] & keys["test"])
    assert out.rows("test").size == 500  # held-out rows are never dropped in favour of train
    assert out.meta["dedup"]["dropped_cross_split"] == before
    assert len({normalise_prompt(p) for p in out.prompts}) == out.num_rows


def test_llmrouter_no_test_stem_in_train(llmrouter):
    """GPQA recurs with shuffled options, gsm8k test items as agentverse-mgsm train items with an
    instruction appended, MBPP with a changed test list: after assign_splits no test stem is in train."""
    def stems(ds, split):
        return {question_stem(ds.prompts[i])[0] for i in ds.rows(split)}
    assert len(stems(llmrouter, "test") & stems(llmrouter, "train")) > 50
    out = assign_splits(llmrouter, seed=0)
    assert not stems(out, "test") & stems(out, "train")
    assert out.rows("test").size == 500
    dedup = out.meta["dedup"]
    assert dedup["twins_by_task"]["agentverse-mgsm"] >= 9 and dedup["twins_by_task"]["mbpp"] >= 1
    assert sum(dedup["twins_by_task"].values()) == dedup["twins_dropped"]
    check_no_leak(out)


def test_llmrouter_save_load_and_costs(llmrouter, tmp_path):
    back = RoutingDataset.load(llmrouter.save(tmp_path / "llmrouter.npz"))
    assert back.prompts == llmrouter.prompts and back.tasks == llmrouter.tasks
    np.testing.assert_array_equal(back.scores, llmrouter.scores)
    costs = per_prompt_costs(llmrouter)
    assert costs.shape == (6108, 9) and np.all(costs > 0)
    j_cheap, j_dear = llmrouter.target_index("gemma-2-9b-it"), llmrouter.target_index("llama3-chatqa-1.5-70b")
    np.testing.assert_allclose(costs[:, j_dear] / costs[:, j_cheap], 9.0)


def test_routellm_accuracies(shared_data):
    mmlu = load_routellm(shared_data, "mmlu")
    assert mmlu.num_rows == 14042 and len(set(mmlu.tasks)) == 57
    acc = mmlu.labels.mean(0)
    assert acc[0] == pytest.approx(0.681, abs=5e-4) and acc[1] == pytest.approx(0.806, abs=5e-4)
    pairs = collections.Counter(map(tuple, mmlu.labels.astype(int).tolist()))
    assert pairs == {(1, 1): 8818, (0, 1): 2497, (1, 0): 742, (0, 0): 1985}
    assert all(p.rstrip().endswith("Answer:") for p in mmlu.prompts)
    gsm = load_routellm(shared_data, "gsm8k")
    assert gsm.num_rows == 1319
    acc = gsm.labels.mean(0)
    assert acc[0] == pytest.approx(0.638, abs=5e-4) and acc[1] == pytest.approx(0.857, abs=5e-4)
    assert np.isfinite(gsm.output_tokens).all()


def test_load_dataset_split(shared_data):
    ds = load_dataset("routellm_mmlu", shared_data, test_fraction=0.2, val_fraction=0.1, seed=1)
    check_no_leak(ds)
    twins = ds.meta["dedup"]["twins_dropped"]
    assert ds.has_split and ds.num_rows == deduplicate(load_routellm(shared_data)).num_rows - twins
    assert ds.rows("test").size == pytest.approx(0.2 * ds.num_rows, abs=57)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("routerbench", shared_data)


def test_exact_token_counts_with_smollm2_tokenizer(shared_data, llmrouter):
    tokenizers = pytest.importorskip("tokenizers")
    path = shared_data / "tokenizers" / "smollm2-135m-instruct" / "tokenizer.json.gz"
    if not path.exists():
        pytest.skip(f"{path} missing")
    tok = tokenizers.Tokenizer.from_str(gzip.open(path, "rt", encoding="utf-8").read())
    prompts = llmrouter.prompts[::200]
    exact = estimate_input_tokens(prompts, tok)
    assert exact.tolist() == [len(tok.encode(p).ids) for p in prompts]
    ratio = np.median(estimate_input_tokens(prompts) / exact)
    assert 0.5 < ratio < 3.0  # 2 x words is the rough estimate method.md prescribes
