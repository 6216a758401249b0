"""RoutingDataset validation and the file loaders, on small files written here."""
import csv
import gzip
import json
import math

import numpy as np
import pytest

from prefill_router.data import (RoutingDataset, load_llmrouter, load_long_format, load_routellm,
                                 load_routerbench, render_llmrouter_prompt, render_multiple_choice)

PRICES = {"a": (1.0, 2.0), "b": (0.5, 0.5)}


def make(labels, split=("train", "test"), **kw):
    labels = np.array(labels, dtype=np.float32)
    n = labels.shape[0]
    args = dict(prompts=[f"q{i}" for i in range(n)], tasks=["t"] * n, targets=["a", "b"], labels=labels,
                mask=None, split=list(split), prices=PRICES)
    args.update(kw)
    return RoutingDataset(**args)


# ------------------------------------------------------------------------------ RoutingDataset
def test_dataset_derives_mask_and_roundtrips(tmp_path):
    ds = make([[1, np.nan], [0, 1]], output_tokens=[[3, np.nan], [4, 5]], scores=[[0.7, np.nan], [0.2, 1]],
              meta={"k": 1})
    assert ds.mask.tolist() == [[True, False], [True, True]]
    path = ds.save(tmp_path / "sub" / "ds.npz")
    assert not list(tmp_path.glob("sub/*.tmp"))
    back = RoutingDataset.load(path)
    np.testing.assert_array_equal(back.labels, ds.labels)
    np.testing.assert_array_equal(back.output_tokens, ds.output_tokens)
    np.testing.assert_array_equal(back.scores, ds.scores)
    assert back.costs is None and back.split.tolist() == ["train", "test"] and back.meta == {"k": 1}
    assert back.prompts == ds.prompts and back.prices == ds.prices and back.targets == ["a", "b"]


def test_dataset_row_meta_follows_rows(tmp_path):
    ds = make([[1, 0], [0, 1], [1, 1]], split=["train", "test", "train"],
              row_meta={"difficulty": [1, 2, 3], "family": ["add", "", "mul"]})
    sub = ds.subset([2, 1])
    assert sub.row_meta["difficulty"].tolist() == [3, 2] and sub.row_meta["family"].tolist() == ["mul", ""]
    back = RoutingDataset.load(ds.save(tmp_path / "rm.npz"))
    assert back.row_meta["difficulty"].tolist() == [1, 2, 3]
    assert back.row_meta["family"].tolist() == ["add", "", "mul"]
    with pytest.raises(ValueError, match="row_meta\\['x'\\] must be a \\[N=3\\] array"):
        make([[1, 0], [0, 1], [1, 1]], split=["train"] * 3, row_meta={"x": [1, 2]})


def test_dataset_views():
    ds = make([[1, 0], [0, 1], [1, 1]], split=["train", "test", "train"])
    assert ds.rows("train").tolist() == [0, 2] and ds.rows("val").tolist() == []
    sub = ds.subset([2, 0])
    assert sub.prompts == ["q2", "q0"] and sub.labels.tolist() == [[1, 1], [1, 0]]
    assert ds.subset(np.array([False, True, False])).prompts == ["q1"]
    sel = ds.select_targets(["b"])
    assert sel.targets == ["b"] and sel.labels[:, 0].tolist() == [0, 1, 1] and sel.prices == {"b": (0.5, 0.5)}
    with pytest.raises(ValueError, match="unknown target 'z'"):
        ds.select_targets(["z"])
    with pytest.raises(ValueError, match="unknown split"):
        ds.rows("dev")
    assert "acc=0.667" in ds.summary()


@pytest.mark.parametrize("kw, match", [
    (dict(labels=[[1, 2], [0, 1]]), "0 or 1"),
    (dict(labels=[[1, np.nan], [0, 1]], mask=[[True, True], [True, True]]), "NaN where mask"),
    (dict(labels=[[1, 0], [0, 1]], mask=[[True, False], [True, True]]), "missing labels must be NaN"),
    (dict(split=["train", "dev"]), "unknown split names \\['dev'\\]"),
    (dict(targets=[]), "at least one target"),
    (dict(targets=["a", "a"]), "duplicate target"),
    (dict(tasks=["t"]), "1 tasks for 2 prompts"),
    (dict(prices={"a": (1, 1)}), "no price for targets \\['b'\\]"),
    (dict(labels=[[1, np.nan], [0, np.nan]]), "targets \\['b'\\] have no observed label"),
    (dict(costs=[[1, -1], [0, 0]]), "negative"),
    (dict(labels=[[1, 0, 1]]), "shape"),
])
def test_dataset_validation_errors(kw, match):
    base = dict(labels=[[1, 0], [0, 1]])
    base.update(kw)
    labels = base.pop("labels")
    with pytest.raises(ValueError, match=match):
        make(labels, **base)


def test_dataset_allows_unlabelled_target_when_asked():
    ds = make([[1, np.nan], [0, np.nan]], allow_unlabelled_targets=True)
    assert ds.mask[:, 1].sum() == 0


# ------------------------------------------------------------------------------ rendering
def test_render_multiple_choice_formats():
    assert render_multiple_choice("Q?", ["x", "y"]) == "Q?\nA. x\nB. y"
    assert render_multiple_choice("Q?", {"text": ["x", "y"], "label": ["1", "2"]}) == "Q?\n1. x\n2. y"
    assert render_multiple_choice("Q?", {"labels": ["A", "B"], "text": ["x", "y"]}) == "Q?\nA. x\nB. y"
    assert render_llmrouter_prompt(" Q? ", "em_mc", "['x', 'y']") == "Q?\nA. x\nB. y"
    assert render_llmrouter_prompt("Write f.", "code_eval", "['assert f(1)==1']") == \
        "Write f.\nYour code should pass these tests:\nassert f(1)==1"
    assert render_llmrouter_prompt("2+2?", "GSM8K", None) == "2+2?"


# ------------------------------------------------------------------------------ LLMRouter layout
def _gz_json(path, obj):
    with gzip.open(path, "wt") as f:
        json.dump(obj, f)


def _gz_jsonl(path, rows):
    with gzip.open(path, "wt") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def write_llmrouter(root, extra_query=True, price_models=("m1", "m2")):
    d = root / "routing" / "llmrouter_dcrouter"
    d.mkdir(parents=True)
    _gz_json(d / "train.json.gz", [
        {"question": "Pick one ", "scores": {"m1": 1.0, "m2": 0.4}, "cluster_id": 0},
        {"question": "What is 2+2?", "scores": {"m1": 0.5, "m2": 0.0}, "cluster_id": 1}])
    _gz_json(d / "test.json.gz", [{"question": "Name it", "scores": {"m1": 0.0, "m2": 0.9}}])
    train_q = [{"task_name": "arc", "query": "Pick one", "metric": "em_mc", "ground_truth": "B",
                "choices": "{'text': ['x', 'y'], 'label': ['A', 'B']}", "task_id": None},
               {"task_name": "gsm8k", "query": "What is 2+2?", "metric": "GSM8K", "ground_truth": "4",
                "choices": None, "task_id": None}]
    if extra_query:
        train_q.append({"task_name": "mmlu", "query": "Pick one", "metric": "em_mc", "ground_truth": "B",
                        "choices": "['x', 'y']", "task_id": None})
    _gz_jsonl(d / "default_query_train.jsonl.gz", train_q)
    _gz_jsonl(d / "default_query_test.jsonl.gz", [
        {"task_name": "nq", "query": "Name it", "metric": "f1_score", "ground_truth": "z", "choices": None,
         "task_id": None}])
    (d / "default_llm.json").write_text(json.dumps(
        {m: {"input_price": 0.1 * (i + 1), "output_price": 0.2 * (i + 1)} for i, m in enumerate(price_models)}))
    return root


def test_load_llmrouter_small(tmp_path):
    ds = load_llmrouter(write_llmrouter(tmp_path))
    assert ds.prompts == ["Pick one\nA. x\nB. y", "What is 2+2?", "Name it"]
    assert ds.tasks == ["arc", "gsm8k", "nq"] and ds.split.tolist() == ["train", "train", "test"]
    assert ds.targets == ["m1", "m2"]
    np.testing.assert_array_equal(ds.labels, [[1, 0], [1, 0], [0, 1]])
    np.testing.assert_allclose(ds.scores, [[1, 0.4], [0.5, 0], [0, 0.9]])
    assert ds.prices == {"m1": (0.1, 0.2), "m2": (0.2, 0.4)}
    assert ds.meta["ambiguous_joins"] == 1 and ds.meta["task_metric"]["arc"] == "em_mc"
    strict = load_llmrouter(tmp_path, threshold=0.95)
    np.testing.assert_array_equal(strict.labels, [[1, 0], [0, 0], [0, 0]])


def test_load_llmrouter_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="PREFILL_ROUTER_DATA"):
        load_llmrouter(tmp_path / "nowhere")
    write_llmrouter(tmp_path / "p", price_models=("m1",))
    with pytest.raises(ValueError, match="no prices for \\['m2'\\]"):
        load_llmrouter(tmp_path / "p")


# ------------------------------------------------------------------------------ RouteLLM layout
def _gz_csv(path, header, rows):
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


MIX, GPT = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def test_load_routellm_small(tmp_path):
    d = tmp_path / "routing" / "routellm"
    (d / "mmlu_responses").mkdir(parents=True)
    _gz_csv(d / "mmlu_responses" / "mmlu_anatomy.csv.gz", ["prompt", MIX, GPT],
            [["Q1\nA. a\nB. b\nAnswer:", "True", "False"], ["Q2, with comma", "False", "True"]])
    _gz_csv(d / "mmlu_responses" / "mmlu_virology.csv.gz", ["prompt", MIX, GPT], [["Q3", "True", "True"]])
    _gz_csv(d / "gsm8k_responses.csv.gz", ["prompt", MIX, GPT, MIX + "_response", GPT + "_response"],
            [["How many?", "False", "True", "one two three", "a b\nc d #### 4"]])
    ds = load_routellm(tmp_path, "mmlu")
    assert ds.prompts[0] == "Q1\nA. a\nB. b\nAnswer:" and ds.prompts[1] == "Q2, with comma"
    assert ds.tasks == ["anatomy", "anatomy", "virology"] and ds.targets == [MIX, GPT]
    np.testing.assert_array_equal(ds.labels, [[1, 0], [0, 1], [1, 1]])
    assert ds.split.tolist() == ["", "", ""] and not ds.has_split
    assert ds.output_tokens is None and "ASSUMPTION" in ds.meta["prices"]
    gsm = load_routellm(tmp_path, "gsm8k")
    np.testing.assert_array_equal(gsm.output_tokens, [[6, 12]])  # 2 x words: 3 and 6 ("####" counts)
    with pytest.raises(ValueError, match="subset='bbh'"):
        load_routellm(tmp_path, "bbh")


# ------------------------------------------------------------------------------ RouterBench
RB_HEADER = ["sample_id", "prompt", "eval_name", "m1", "m2", "m1|model_response", "m2|model_response",
             "m1|total_cost", "m2|total_cost", "oracle_model_to_route_to"]
RB_ROWS = [["s0", "['Hello there', 'again']", "mmlu", "1.0", "0.0", "w w", "w w w w", "0.001", "0.002", "m1"],
           ["s1", "Plain prompt", "gsm8k", "0.3", "", "x", "", "0.003", "", "m1"]]


def test_load_routerbench_csv(tmp_path):
    path = tmp_path / "rb.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([RB_HEADER] + RB_ROWS)
    ds = load_routerbench(path)
    assert ds.targets == ["m1", "m2"] and ds.tasks == ["mmlu", "gsm8k"]
    assert ds.prompts == ["Hello there\nagain", "Plain prompt"]
    np.testing.assert_array_equal(ds.labels, [[1, 0], [0, np.nan]])
    assert ds.mask.tolist() == [[True, True], [True, False]]
    np.testing.assert_allclose(ds.costs, [[0.001, 0.002], [0.003, np.nan]])
    np.testing.assert_array_equal(ds.output_tokens, [[4, 8], [2, np.nan]])
    # blended m1 price: (0.001 + 0.003) / ((2*3 + 4) + (2*2 + 2)) tokens * 1e6
    assert ds.prices["m1"][0] == pytest.approx(0.004 / 16 * 1e6)
    assert ds.prices["m2"][0] == pytest.approx(0.002 / 14 * 1e6)
    given = load_routerbench(path, prices={"m1": (1, 2), "m2": (3, 4)})
    assert given.prices == {"m1": (1.0, 2.0), "m2": (3.0, 4.0)}


def test_load_routerbench_pickle_and_errors(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(RB_ROWS, columns=RB_HEADER)
    frame["m1"] = frame["m1"].astype(float)
    frame["m2"] = pd.to_numeric(frame["m2"]).astype(float)
    frame["m1|total_cost"] = frame["m1|total_cost"].astype(float)
    frame["m2|total_cost"] = pd.to_numeric(frame["m2|total_cost"])
    frame.to_pickle(tmp_path / "rb.pkl")
    ds = load_routerbench(tmp_path / "rb.pkl")
    np.testing.assert_array_equal(ds.labels, [[1, 0], [0, np.nan]])
    np.testing.assert_allclose(ds.costs, [[0.001, 0.002], [0.003, np.nan]])
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,prompt,m1\ns,p,1\n")
    with pytest.raises(ValueError, match="lacks RouterBench columns \\['eval_name'\\]"):
        load_routerbench(bad)
    nocost = tmp_path / "nocost.csv"
    nocost.write_text("sample_id,prompt,eval_name,m1\ns,p,e,1\n")
    with pytest.raises(ValueError, match="--config.data.prices=prices.json"):
        load_routerbench(nocost)
    with pytest.raises(FileNotFoundError):
        load_routerbench(tmp_path / "missing.csv")


# ------------------------------------------------------------------------------ long format
LONG = [
    {"question": "q1", "model": "a", "is_correct": 1, "output_tokens": 10, "cost": 0.1, "task": "x", "split": "train"},
    {"question": "q1", "model": "b", "is_correct": 0, "output_tokens": 20, "cost": 0.2, "task": "x", "split": "train"},
    {"question": "q2", "model": "a", "is_correct": 0, "output_tokens": 30, "cost": 0.3, "task": "y", "split": "test"},
    {"question": "q1", "model": "a", "is_correct": 1, "output_tokens": 99, "cost": 9.9, "task": "x", "split": "train"},
]


def write_long(path, rows):
    if path.suffix == ".csv":
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_load_long_format_pivot(tmp_path, suffix):
    ds = load_long_format(write_long(tmp_path / f"runs{suffix}", LONG), prices=PRICES)
    assert ds.prompts == ["q1", "q2"] and ds.targets == ["a", "b"] and ds.tasks == ["x", "y"]
    np.testing.assert_array_equal(ds.labels, [[1, 0], [0, np.nan]])  # missing pair: NaN, never 0
    assert ds.mask.tolist() == [[True, True], [True, False]]
    np.testing.assert_array_equal(ds.output_tokens, [[10, 20], [30, np.nan]])  # duplicate kept its first row
    np.testing.assert_allclose(ds.costs, [[0.1, 0.2], [0.3, np.nan]])
    assert ds.split.tolist() == ["train", "test"] and ds.name == "runs"


def test_load_long_format_empty_label_does_not_conflict(tmp_path):
    rows = [dict(LONG[2], is_correct=""), dict(LONG[2]), dict(LONG[2], is_correct="", output_tokens=1)]
    ds = load_long_format(write_long(tmp_path / "r.csv", rows), prices=PRICES)
    assert ds.labels.tolist() == [[0.0]] and ds.output_tokens.tolist() == [[30.0]]


def test_load_long_format_derived_prices_and_defaults(tmp_path):
    rows = [{"question": "one two", "model": "a", "is_correct": "true", "output_tokens": 6, "cost": 1e-5},
            {"question": "three", "model": "a", "is_correct": "false", "output_tokens": "", "cost": ""}]
    ds = load_long_format(write_long(tmp_path / "r.csv", rows))
    assert ds.tasks == ["default", "default"] and ds.split.tolist() == ["", ""]
    assert ds.prices["a"][0] == pytest.approx(1e-5 / (4 + 6) * 1e6)
    assert math.isnan(ds.output_tokens[1, 0]) and ds.labels[:, 0].tolist() == [1, 0]


@pytest.mark.parametrize("change, match", [
    ({"is_correct": 0}, "1 \\(question, model\\) pairs appear with conflicting is_correct.*'q1', 'a'"),
    ({"task": "z"}, "conflicting task"),
    ({"split": "test"}, "conflicting split"),
    ({"is_correct": 0.5}, "is_correct must be 0/1"),
])
def test_load_long_format_conflicts(tmp_path, change, match):
    rows = [dict(r) for r in LONG]
    rows[3].update(change)
    with pytest.raises(ValueError, match=match):
        load_long_format(write_long(tmp_path / "r.jsonl", rows), prices=PRICES)


def test_load_long_format_bad_input(tmp_path):
    with pytest.raises(ValueError, match="lacks columns \\['output_tokens'\\]"):
        load_long_format(write_long(tmp_path / "a.csv", [{"question": "q", "model": "a", "is_correct": 1}]))
    no_cost = [{k: v for k, v in r.items() if k != "cost"} for r in LONG[:3]]
    with pytest.raises(ValueError, match="--config.data.prices=prices.json"):
        load_long_format(write_long(tmp_path / "b.csv", no_cost))
    with pytest.raises(ValueError, match="no price for targets \\['b'\\]"):
        load_long_format(write_long(tmp_path / "c.csv", LONG[:3]), prices={"a": (1, 1)})
    with pytest.raises(ValueError, match="unknown format"):
        load_long_format(write_long(tmp_path / "d.tsv", LONG))


# ------------------------------------------------------------------------------ files as users have them
def test_routerbench_csv_written_by_pandas(tmp_path):
    """RouterBench's wide table as published: DataFrame.to_csv (unnamed index column first), list-literal
    prompts, empty cells where a model has no result, a model column that is empty throughout."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({
        "sample_id": ["mmlu.a.0", "gsm8k.1", "mmlu.b.2"],
        "prompt": [str(["Question one?", "Answer:"]), "Plain prompt", str(["Only turn"])],
        "eval_name": ["mmlu-a", "gsm8k", "mmlu-b"],
        "gpt-4": [1.0, 0.0, 1.0], "mixtral": [0.0, np.nan, 1.0], "ghost": [np.nan, np.nan, np.nan],
        "gpt-4|model_response": ["w w", "w", "w w w"], "mixtral|model_response": ["w", np.nan, "w w"],
        "ghost|model_response": [np.nan] * 3,
        "gpt-4|total_cost": [0.003, 0.002, 0.004], "mixtral|total_cost": [0.0001, np.nan, 0.0002],
        "ghost|total_cost": [np.nan] * 3, "oracle_model_to_route_to": ["gpt-4", "gpt-4", "mixtral"]},
        index=[10, 11, 12])
    frame.to_csv(tmp_path / "rb.csv")
    assert open(tmp_path / "rb.csv").readline().startswith(",sample_id")  # pandas' unnamed index column
    ds = load_routerbench(tmp_path / "rb.csv")
    assert ds.targets == ["gpt-4", "mixtral"] and ds.meta["dropped_unlabelled"] == ["ghost"]
    assert ds.prompts == ["Question one?\nAnswer:", "Plain prompt", "Only turn"]
    np.testing.assert_array_equal(ds.labels, [[1, 0], [0, np.nan], [1, 1]])
    assert ds.mask.tolist() == [[True, True], [True, False], [True, True]]
    np.testing.assert_allclose(ds.costs, [[0.003, 0.0001], [0.002, np.nan], [0.004, 0.0002]])
    # mixtral's blended price from its two known rows: (1e-4 + 2e-4) $ / ((2*3 + 2*1) + (2*2 + 2*2)) tokens
    assert ds.prices["mixtral"][0] == pytest.approx(3e-4 / 16 * 1e6)
    # the same file read back by pandas and pickled gives the same dataset
    pd.read_csv(tmp_path / "rb.csv", index_col=0).to_pickle(tmp_path / "rb.pkl")
    again = load_routerbench(tmp_path / "rb.pkl")
    assert again.prompts == ds.prompts and again.targets == ds.targets
    np.testing.assert_array_equal(again.labels, ds.labels)


def test_routerbench_bad_input(tmp_path):
    pd = pytest.importorskip("pandas")
    base = {"sample_id": ["s0", "s1"], "prompt": ["p0", "p1"], "eval_name": ["e", "e"], "m1": [1.0, 0.0]}
    pd.DataFrame(base).to_csv(tmp_path / "nocost.csv")
    with pytest.raises(ValueError, match=r"no '<model>\|total_cost' columns.*--config.data.prices=prices.json"):
        load_routerbench(tmp_path / "nocost.csv")
    assert load_routerbench(tmp_path / "nocost.csv", prices={"m1": (1, 2)}).prices == {"m1": (1.0, 2.0)}
    pd.DataFrame({**base, "prompt": [3.5, "p1"]}).to_pickle(tmp_path / "numeric.pkl")
    with pytest.raises(ValueError, match=r"numeric.pkl row 0: prompt is float '3.5'.*must hold text"):
        load_routerbench(tmp_path / "numeric.pkl", prices={"m1": (1, 2)})
    pd.DataFrame({**base, "prompt": [None, "p1"]}).to_pickle(tmp_path / "none.pkl")
    with pytest.raises(ValueError, match="none.pkl row 0: prompt is missing"):
        load_routerbench(tmp_path / "none.pkl", prices={"m1": (1, 2)})
    pd.DataFrame({**base, "m1": [np.nan, np.nan]}).to_csv(tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="no model column holds a single result"):
        load_routerbench(tmp_path / "empty.csv", prices={"m1": (1, 2)})


def test_long_format_latin1_bom_and_missing_labels(tmp_path):
    header = "question,model,is_correct,output_tokens\n"
    latin = tmp_path / "latin.csv"
    latin.write_bytes((header + "q1,a,1,5\n").encode() + "caf\u00e9,a,0,5\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv line 3 is not UTF-8 .*column 4.*re-save the file as UTF-8"):
        load_long_format(latin, prices={"a": (1, 1)})
    bom = tmp_path / "excel.csv"  # Excel's "CSV UTF-8" export starts with a byte-order mark
    rows = ["q1,a,1,5", "q1,b,NaN,5", "q2,a,NA,5", "q2,b,,5", "q3,a,n/a,5", "q3,b,0,5"]
    bom.write_bytes(b"\xef\xbb\xbf" + (header + "\n".join(rows) + "\n").encode())
    ds = load_long_format(bom, prices={"a": (1, 1), "b": (2, 2)})
    assert ds.prompts == ["q1", "q2", "q3"]
    np.testing.assert_array_equal(ds.labels, [[1, np.nan], [np.nan, np.nan], [np.nan, 0]])
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "q1,a,maybe,5\n")
    with pytest.raises(ValueError, match=r"cannot read correctness 'maybe'.*empty cell, NA or NaN marks a missing"):
        load_long_format(bad, prices={"a": (1, 1)})
    with pytest.raises(ValueError, match=r"price of 'a' is 3.0; expected a pair \[input \$/M, output \$/M\]"):
        load_long_format(write_long(tmp_path / "s.csv", LONG[:3]), prices={"a": 3.0, "b": (1, 1)})


def test_price_file_errors(tmp_path):
    from prefill_router.data.costs import PriceTable
    (tmp_path / "p.json").write_text('{"a": [1, 2], "b": {"input_price": 3, "output_price": 4}}')
    assert PriceTable.from_json(tmp_path / "p.json").prices == {"a": (1.0, 2.0), "b": (3.0, 4.0)}
    (tmp_path / "scalar.json").write_text('{"a": 1.5}')
    with pytest.raises(ValueError, match="price of 'a' is 1.5; expected a pair"):
        PriceTable.from_json(tmp_path / "scalar.json")
    (tmp_path / "broken.json").write_text('{"a": [1, 2]')
    with pytest.raises(ValueError, match="is not valid JSON"):
        PriceTable.from_json(tmp_path / "broken.json")


def test_drop_targets():
    ds = make([[1, 0], [0, 0]])
    kept = ds.drop_targets(["b"])
    assert kept.targets == ["a"] and kept.meta["dropped_targets"] == ["b"] and "dropped_targets" not in ds.meta
    assert ds.drop_targets([]) is ds
    with pytest.raises(ValueError, match=r"data.drop_targets names \['c'\]"):
        ds.drop_targets(["c"])
    with pytest.raises(ValueError, match="drops every target"):
        ds.drop_targets(["a", "b"])


def test_derived_prices_recomputed_from_training_rows(tmp_path):
    from prefill_router.data import loaders
    rows = [{"question": "one two", "model": "a", "is_correct": 1, "output_tokens": 6, "cost": 1e-5},
            {"question": "three", "model": "a", "is_correct": 0, "output_tokens": 8, "cost": 9e-5}]
    ds = load_long_format(write_long(tmp_path / "r.csv", rows))
    assert ds.meta["prices_derived"]
    assert ds.prices["a"][0] == pytest.approx((1e-5 + 9e-5) / (4 + 6 + 2 + 8) * 1e6)
    train_only = loaders.prices_from_rows(ds, np.array([0]))  # the test row's realised cost is not used
    assert train_only.prices["a"] == pytest.approx((1e-5 / 10 * 1e6,) * 2)
    assert "on 1 training rows" in train_only.meta["prices"]
    given = load_long_format(write_long(tmp_path / "r.csv", rows), prices={"a": (5, 6)})
    assert loaders.prices_from_rows(given, np.array([0])) is given
