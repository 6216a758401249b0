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

    def fake(config, feats, split_, fit, val):
        seen.update(fit=fit, val=val)
        return {op.ROUTER: P_val, controls.TASK_LOOKUP: P_val[:, ::-1]}, []

    monkeypatch.setattr(op, "_validation_predictions", fake)
    config = ml_collections.ConfigDict({"seed": 0, "routing": {"operating_val_fraction": 0.2}, "eval": {"n_boot": 20}})
    P_test = rng.uniform(size=(4, 2))
    lookup = rng.uniform(size=(4, 2))  # the evaluation's task lookup: used as given, not refitted
    stats = {"train": {"best_single": {"target": "b"}}}
    out = op.operating_point(config, {}, split, stats, {op.ROUTER: P_test, controls.TASK_LOOKUP: lookup})
    fit, val = seen["fit"], seen["val"]
    assert val.size == 2 and np.array_equal(np.sort(np.concatenate([fit, val])), np.arange(10))
    assert (out["n_fit"], out["n_val"], out["best_single"], out["most_expensive_price"]) == (8, 2, "b", "b")
    for rule in ("tolerance", "utility"):
        want = operating.choose_point(P_val, labels[val], None, [1.0, 2.0], 1, rule)
        assert out["routers"][op.ROUTER][rule]["validation"] == want
        test = operating.point_metrics(P_test, labels[10:], None, split.costs[10:], [1.0, 2.0], want["param"], 1,
                                       rule, n_boot=20, seed=0)
        assert out["routers"][op.ROUTER][rule]["test"] == test
        param = out["routers"][controls.TASK_LOOKUP][rule]["validation"]["param"]
        assert out["routers"][controls.TASK_LOOKUP][rule]["test"] == operating.point_metrics(
            lookup, labels[10:], None, split.costs[10:], [1.0, 2.0], param, 1, rule, n_boot=20, seed=0)
    with pytest.raises(ValueError, match="test predictions of .*task lookup"):
        op.operating_point(config, {}, split, stats, {op.ROUTER: P_test})


class _Features:
    """The slice of FeatureSet the probe and the router blocks read: get(pooling, layers) -> [L', N, D]."""

    def __init__(self, x):
        self.x, self.layers, self.dim = x, np.arange(x.shape[0]), x.shape[2]

    def get(self, pooling, layers=None):
        return self.x if layers is None else self.x[list(layers)]


def test_refit_layer_choice_never_sees_the_validation_labels(tmp_path):
    """Layer 0 carries the fit rows' labels; layer 1 separates whatever labels the validation rows hold. A
    choice on all training rows follows the validation labels (layer 1 for labels made to match it); the
    refit's choice stays on layer 0 whatever the validation labels are (permuted or adversarial)."""
    from configs import llmrouter_pool
    from prefill_router import data as data_lib
    from prefill_router.stages import controls
    from prefill_router.stages.data import Split
    from prefill_router.stages.probe import choose_layers, probe

    config = llmrouter_pool.get_config("runlocal,encoders=toy")
    config.probe.poolings, config.probe.cv_auc, config.eval.n_boot = ("last",), False, 10
    config.router.max_epochs, config.routing.operating_val_fraction = 2, 0.5
    rng = np.random.default_rng(0)
    n_train, n_test = 60, 10
    train = np.arange(n_train)
    fit, val = op.validation_rows(train, 0.5, config.seed)
    labels = rng.integers(0, 2, size=(n_train + n_test, 2)).astype(np.float32)
    labels[fit[:2]], labels[fit[2:4]] = 0, 1  # both classes of both targets among the fit rows
    x = rng.normal(size=(2, n_train + n_test, 4))
    x[0, fit, :2] += 1.5 * labels[fit]  # layer 0: the fit rows' labels, one dim per target
    side = rng.integers(0, 2, size=val.size)
    x[1, val, :2] += 20.0 * side[:, None]  # layer 1: one side of the validation rows far from the other

    def run(val_labels):
        y = labels.copy()
        y[val] = val_labels
        ds = data_lib.RoutingDataset(prompts=[f"p{i}" for i in range(n_train + n_test)], tasks=["t"] * len(y),
                                     targets=["a", "b"], labels=y, mask=None,
                                     split=["train"] * n_train + ["test"] * n_test,
                                     prices={"a": (1, 1), "b": (2, 2)}, row_meta={})
        split = Split(ds, ds.rows("train"), ds.rows("test"), np.ones(y.shape), np.array([1.0, 2.0]))
        feats = {"toy": (_Features(x), 2)}
        leaky = choose_layers(config, feats, ds, train)
        assert leaky == probe(config, feats, ds, train, tmp_path)[1]  # the probe stage's choice, without a report
        leaky = [(c.encoder, c.layer) for c in leaky]
        test_P = {op.ROUTER: np.full((n_test, 2), 0.5), controls.TASK_LOOKUP: np.full((n_test, 2), 0.5)}
        out = op.operating_point(config, feats, split, {"train": {"best_single": {"target": "b"}}}, test_P)
        return leaky, [(c["encoder"], c["layer"]) for c in out["fit_layer_choices"]]

    leaky, refit = run(labels[val])
    adversarial_leaky, adversarial = run(np.repeat(side[:, None], 2, 1).astype(np.float32))
    assert refit == [("toy", 0), ("toy", 0)] and leaky == refit
    assert adversarial_leaky == [("toy", 1), ("toy", 1)]  # the labels of the validation rows do move a leaky choice
    assert adversarial == refit
    assert run(labels[val][rng.permutation(val.size)])[1] == refit
