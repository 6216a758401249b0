"""Cross-attention stage: length prediction and reward curves on a small synthetic split (the runlocal
pipeline with router.kind=cross_attention is configs/cross_attention.py:runlocal)."""
import numpy as np
import pytest

from configs import cross_attention as cfg_mod
from prefill_router import data as data_lib
from prefill_router.stages import cross_attention as ca_stage
from prefill_router.stages.data import Split


def _split(with_tokens: bool):
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=(n, 3))
    labels = np.stack([x[:, 0] > 0, np.ones(n)], 1).astype(np.float32)  # target 1 always right, pricier
    labels[0, 1] = 0  # both classes on training rows
    tokens = np.stack([np.exp(3 + x[:, 1]), np.full(n, 40.0)], 1) if with_tokens else None
    ds = data_lib.RoutingDataset(prompts=[f"q {i}" for i in range(n)], tasks=["t"] * n, targets=["a", "b"],
                                 labels=labels, mask=None, split=["train"] * 90 + ["test"] * 30,
                                 prices={"a": (1.0, 1.0), "b": (10.0, 30.0)}, output_tokens=tokens)
    train, test = ds.rows("train"), ds.rows("test")
    return Split(ds, train, test, data_lib.per_prompt_costs(ds, train_rows=train), np.array([1.0, 10.0])), x


@pytest.mark.parametrize("with_tokens", [True, False])
def test_costs_and_rewards(with_tokens):
    config = cfg_mod.get_config("runlocal")
    config.eval.n_boot = 20
    split, x = _split(with_tokens)
    stats = {"train": data_lib.dataset_stats(split.ds, split.train)}
    p = np.clip(np.stack([(x[split.test, 0] > 0) * 0.8 + 0.1, np.full(30, 0.95)], 1), 0, 1)
    out = ca_stage.costs_and_rewards(config, split, stats, {"r": p}, [x], {}, "r")
    rows = out["rewards"]["rows"]
    assert set(rows["r"]) == set(config.routing.reward_forms)
    if with_tokens:
        assert set(rows) == {"r", "r (median length)"}
        ridge = out["lengths"]["ridge, validated per target (used for routing)"]["per_target"]["a"]
        assert out["length_sources"]["a"] == "ridge" and ridge["mae_pred"] < 0.5 * ridge["mae_median"]
        assert out["measured_cost_fallback_share"] == 0.0
    else:
        assert out["lengths"] is None and set(rows) == {"r"} and out["measured_cost_fallback_share"] == 1.0
    text = "\n".join(ca_stage.report_lines(out))
    assert "Reward routing" in text and "| r | exponential |" in text


def test_unknown_query_kind_is_refused(tmp_path):
    config = cfg_mod.get_config("runlocal,queries=bogus")
    split, x = _split(False)
    with pytest.raises(ValueError, match="cross_attention.queries"):
        ca_stage.fit_routers(config, split, tmp_path, x.astype(np.float32))


def test_versus_trunk_is_the_paired_difference_of_argmax_accuracy():
    config = cfg_mod.get_config("runlocal")
    config.eval.n_boot = 50
    split, x = _split(False)
    stats = {"train": data_lib.dataset_stats(split.ds, split.train)}
    y = split.ds.labels[split.test]
    good = np.clip(np.stack([(x[split.test, 0] > 0) * 0.8 + 0.1, np.full(30, 0.5)], 1), 0, 1)
    cheap = np.stack([np.full(30, 0.9), np.full(30, 0.1)], 1)  # always target 0
    preds = {"SharedTrunkNet": cheap, ca_stage.router_name("prefill"): good, "other": good}
    vs = ca_stage.versus_trunk(config, split, stats, preds)
    assert list(vs) == [ca_stage.router_name("prefill")]  # only cross-attention routers, against the trunk
    acc = lambda p: y[np.arange(30), p.argmax(1)].mean()
    d = vs[ca_stage.router_name("prefill")]["router_acc"]
    assert d["diff"] == pytest.approx(acc(good) - acc(cheap)) and d["low"] <= d["diff"] <= d["high"]
    assert ca_stage.versus_trunk(config, split, stats, {"SharedTrunkNet": cheap}) is None
    text = "\n".join(ca_stage.report_lines({**ca_stage.costs_and_rewards(config, split, stats, preds, [x], {},
                                                                          "other"), "versus_trunk": vs}))
    assert "Cross-attention routers vs SharedTrunkNet" in text and f"| {ca_stage.router_name('prefill')} |" in text
