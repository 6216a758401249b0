"""Operating-point stage: the validation split carved from training rows and the report section."""
import numpy as np
import pytest

from prefill_router.stages import operating_point as op


def test_validation_rows_partition_training_rows_seeded():
    train = np.arange(3, 23)  # 20 training rows
    fit, val = op.validation_rows(train, 0.2, seed=0)
    assert val.size == 4 and fit.size == 16
    assert np.array_equal(np.sort(np.concatenate([fit, val])), train)
    assert np.all(np.diff(fit) > 0) and np.all(np.diff(val) > 0)
    again = op.validation_rows(train, 0.2, seed=0)
    assert np.array_equal(again[1], val)
    assert any(not np.array_equal(op.validation_rows(train, 0.2, seed=s)[1], val) for s in (1, 2, 3))


@pytest.mark.parametrize("fraction, train", [(0.0, np.arange(10)), (1.0, np.arange(10)), (0.01, np.arange(10)),
                                             (0.99, np.arange(10))])
def test_validation_rows_bad_fraction(fraction, train):
    with pytest.raises(ValueError, match="operating_val_fraction"):
        op.validation_rows(train, fraction, seed=0)


def test_report_lines():
    ci = lambda v: {"value": v, "ci_low": v - 0.1, "ci_high": v + 0.1}  # noqa: E731
    result = {"n_val": 40, "n_fit": 160, "best_single": "big", "most_expensive_price": "big", "routers": {
        "SharedTrunkNet": {"utility": {
            "validation": {"param": 0.125, "reached": True, "acc": 0.8, "best_single_acc": 0.75},
            "test": {"router_acc": ci(0.7), "acc_minus_best_single": ci(0.02), "cost_savings_price_pct": ci(60.0)}}}}}
    text = "\n".join(op.report_lines(result))
    assert "| SharedTrunkNet | λ = 0.125 | yes | 0.800 / 0.750 | 0.700 [0.600, 0.800] | 0.020 [-0.080, 0.120] | " \
           "60.000 [59.900, 60.100] | – |" in text
    assert "40 validation rows" in text and "other 160" in text


def test_operating_point_chooses_on_validation_rows_and_scores_test(monkeypatch):
    import ml_collections
    from prefill_router import data as data_lib
    from prefill_router.evaluation import operating
    from prefill_router.stages import controls
    from prefill_router.stages.data import Split

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(14, 2)).astype(np.float32)
    ds = data_lib.RoutingDataset(prompts=[f"p{i}" for i in range(14)], tasks=["x", "y"] * 7, targets=["a", "b"],
                                 labels=labels, mask=None, split=["train"] * 10 + ["test"] * 4,
                                 prices={"a": (1, 1), "b": (2, 2)}, row_meta={})
    split = Split(ds, ds.rows("train"), ds.rows("test"), rng.uniform(1, 2, (14, 2)), np.array([1.0, 2.0]))
    P_val = np.array([[0.9, 0.5], [0.25, 0.75]])
    seen = {}

    def fake(config, feats, choices, split_, fit, val):
        seen.update(fit=fit, val=val)
        return {op.ROUTER: P_val, controls.TASK_LOOKUP: P_val[:, ::-1]}

    monkeypatch.setattr(op, "_validation_predictions", fake)
    config = ml_collections.ConfigDict({"seed": 0, "routing": {"operating_val_fraction": 0.2}, "eval": {"n_boot": 20}})
    P_test = rng.uniform(size=(4, 2))
    out = op.operating_point(config, {}, [], split, {"train": {"best_single": {"target": "b"}}}, P_test)
    fit, val = seen["fit"], seen["val"]
    assert val.size == 2 and np.array_equal(np.sort(np.concatenate([fit, val])), np.arange(10))
    assert (out["n_fit"], out["n_val"], out["best_single"], out["most_expensive_price"]) == (8, 2, "b", "b")
    lookup = controls.task_priors(split)[0][controls.TASK_LOOKUP]  # fitted on all training rows
    for rule in ("tolerance", "utility"):
        want = operating.choose_point(P_val, labels[val], None, [1.0, 2.0], 1, rule)
        assert out["routers"][op.ROUTER][rule]["validation"] == want
        test = operating.point_metrics(P_test, labels[10:], None, split.costs[10:], [1.0, 2.0], want["param"], 1,
                                       rule, n_boot=20, seed=0)
        assert out["routers"][op.ROUTER][rule]["test"] == test
        param = out["routers"][controls.TASK_LOOKUP][rule]["validation"]["param"]
        assert out["routers"][controls.TASK_LOOKUP][rule]["test"] == operating.point_metrics(
            lookup, labels[10:], None, split.costs[10:], [1.0, 2.0], param, 1, rule, n_boot=20, seed=0)
