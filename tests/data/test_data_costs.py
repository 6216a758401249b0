"""Price table and per-prompt cost model, against hand-computed values."""
import json
import logging

import numpy as np
import pytest

from prefill_router.data import (DEFAULT_OUTPUT_TOKENS, PriceTable, RoutingDataset, estimate_input_tokens,
                                 expected_output_tokens, per_prompt_costs)


def make(output_tokens=None, costs=None):
    return RoutingDataset(
            prompts=["one two three", "four five", "six"], tasks=["t"] * 3, targets=["a", "b"],
            labels=np.ones((3, 2), np.float32), mask=None, split=["train", "train", "test"],
            prices={"a": (1.0, 2.0), "b": (3.0, 5.0)}, output_tokens=output_tokens, costs=costs)


def test_price_table_sources_and_errors(tmp_path):
    table = PriceTable.from_dict({"a": (1, 2), "b": {"input_price": 0.2, "output_price": 0.4, "size": "7B"}})
    assert table["b"] == (0.2, 0.4) and table.names == ["a", "b"]
    p_in, p_out = table.per_token(["b", "a"])
    np.testing.assert_allclose(p_in, [0.2e-6, 1e-6])
    np.testing.assert_allclose(p_out, [0.4e-6, 2e-6])
    with pytest.raises(ValueError, match="no price for model 'c'; known models: \\['a', 'b'\\]"):
        table["c"]
    path = tmp_path / "llm.json"
    path.write_text(json.dumps({"m": {"input_price": 0.9, "output_price": 0.9}}))
    assert PriceTable.from_json(path)["m"] == (0.9, 0.9)
    with pytest.raises(FileNotFoundError):
        PriceTable.from_json(tmp_path / "none.json")
    with pytest.raises(ValueError, match="lacks input_price"):
        PriceTable.from_dict({"m": {"price": 1}})
    with pytest.raises(ValueError, match="expected a pair \\[input \\$/M, output \\$/M\\] of numbers >= 0"):
        PriceTable({"m": (-1, 1)})


def test_estimate_input_tokens():
    np.testing.assert_array_equal(estimate_input_tokens(["one two  three", "", "x\ny"]), [6, 0, 4])

    class Encoding:
        def __init__(self, ids):
            self.ids = ids

    class Tok:
        def encode(self, text):
            return Encoding(list(text))
    np.testing.assert_array_equal(estimate_input_tokens(["abc", "de"], Tok()), [3, 2])
    np.testing.assert_array_equal(estimate_input_tokens(["abc", "de"], lambda s: s.split("b")), [2, 1])


def test_expected_output_tokens_uses_training_rows_only():
    ds = make(output_tokens=[[10, np.nan], [30, np.nan], [1000, 7]])
    # target a: median of train rows {10, 30}; the test row's 1000 must not count
    out = expected_output_tokens(ds)
    assert out[0] == 20 and out[1] == DEFAULT_OUTPUT_TOKENS
    np.testing.assert_array_equal(expected_output_tokens(ds, train_rows=[0, 1, 2]), [30, 7])
    np.testing.assert_array_equal(expected_output_tokens(make(), default=5.0), [5, 5])


def test_expected_output_tokens_warns(caplog):
    with caplog.at_level(logging.WARNING):
        expected_output_tokens(make())
    assert "no observed output tokens" in caplog.text


def test_per_prompt_costs_formula():
    ds = make(output_tokens=[[10, 4], [30, 6], [np.nan, np.nan]])
    costs = per_prompt_costs(ds)
    n_in = np.array([6.0, 4.0, 2.0])
    expected = np.stack([n_in * 1e-6 + 20 * 2e-6, n_in * 3e-6 + 5 * 5e-6], axis=1)
    np.testing.assert_allclose(costs, expected, rtol=1e-12)
    cheaper = per_prompt_costs(ds, {"a": (0.0, 0.0), "b": (1.0, 0.0)})
    np.testing.assert_allclose(cheaper, np.stack([np.zeros(3), n_in * 1e-6], axis=1))
    with pytest.raises(ValueError, match="known models"):
        per_prompt_costs(ds, {"a": (1, 1)})


def test_per_prompt_costs_real_costs_override():
    real = [[0.5, np.nan], [np.nan, np.nan], [0.25, 0.125]]
    ds = make(output_tokens=[[10, 4], [30, 6], [np.nan, np.nan]], costs=real)
    est = per_prompt_costs(ds, use_real_costs=False)
    mixed = per_prompt_costs(ds)
    known = ~np.isnan(np.array(real))
    np.testing.assert_allclose(mixed[known], np.array(real)[known])
    np.testing.assert_allclose(mixed[~known], est[~known])


def test_per_prompt_costs_needs_train_rows():
    ds = make()
    ds = ds.with_split(["test"] * 3)
    with pytest.raises(ValueError, match="no train rows"):
        per_prompt_costs(ds)
    assert per_prompt_costs(ds, train_rows=[0]).shape == (3, 2)
