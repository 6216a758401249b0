"""Adding a target to a trained router: old predictions unchanged (head, readout), the new column is the fitted
logistic regression (hand-checked against scikit-learn), fine-tune drift reported, checkpoint round trip, errors."""
import jax
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from prefill_router.router import add_target as add_lib
from prefill_router.router import blocks, ensemble, model
from prefill_router.router import checkpoint as checkpointing
from tests.router.conftest import random_ensemble

TARGETS = ("alpha", "beta")
pytestmark = pytest.mark.usefixtures("fast_compile")  # tests/router/conftest.py


def _lookup(n, seed):
    return {("enc", 2, "mean"): np.random.default_rng(seed).normal(size=(n, 9))}


def _bundle():
    specs = [blocks.BlockSpec("alpha", "enc", 2, "mean", 4), blocks.BlockSpec("beta", "enc", 2, "mean", 3)]
    transforms, _ = blocks.build_design(_lookup(30, 0), specs, np.arange(30))
    cfg = model.TrunkConfig(d_in=7, n_targets=2, hidden=(6, 5), dropout=(0.1, 0.1))
    ens = random_ensemble(cfg, (42, 43, 44), [0.5, 0.6, 0.7], TARGETS)
    return ensemble.RouterBundle(
        targets=TARGETS, blocks=specs, transforms=transforms, ensemble=ens,
        prices={"alpha": (3.0, 15.0), "beta": (0.1, 0.4)},
        cost_table={"alpha": {"output_tokens_median": 500.0}, "beta": {"output_tokens_median": 900.0}},
        train_split=ensemble.split_record(0, ["q1", "q2"]))


def _labels(x):
    return (x[:, 0] - 0.5 * x[:, 1] + np.random.default_rng(1).normal(scale=0.5, size=len(x)) > 0).astype(float)


def _sklearn_logit(z, y, zq):
    """scikit-learn's StandardScaler -> LogisticRegression(C=1) logits on zq."""
    sc = StandardScaler().fit(z)
    lr = LogisticRegression(C=1.0, tol=1e-10, max_iter=1000).fit(sc.transform(z), y)
    return lr.decision_function(sc.transform(zq))


@pytest.mark.parametrize("mode", ["head", "readout"])
def test_new_column_is_the_logistic_fit_and_old_columns_are_unchanged(tmp_path, mode):
    bundle = _bundle()
    prompts = [f"p{i}" for i in range(40)]
    x = bundle.features(_lookup(40, 3))
    y = _labels(x)
    new, report = add_lib.add_target(bundle, "gamma", x, y, add_lib.AddConfig(mode=mode), prompts=prompts,
                                     price=(1.0, 2.0), output_tokens_median=300.0)
    query = _lookup(17, 9)
    old_p, new_p = bundle.predict_from_features(query), new.predict_from_features(query)
    assert new.targets == ("alpha", "beta", "gamma") and new_p.shape == (17, 3)
    if mode == "head":  # the old columns of the last layer are untouched: bit-identical
        np.testing.assert_array_equal(new_p[:, :2], old_p)
    else:  # two more (zero-weight) terms in the second layer's sums: float32 rounding only
        np.testing.assert_allclose(new_p[:, :2], old_p, rtol=0, atol=5e-7)
    assert report["drift_old_max"] <= 5e-7 and report["n_labels"] == 40 and report["n_correct"] == int(y.sum())
    xq = new.features(query)
    if mode == "readout":   # one regression on the trunk input, carried exactly through the ReLU trunk
        expected = 1 / (1 + np.exp(-_sklearn_logit(x, y, xq)))
    else:                   # the mean over members of sigmoid(member's own regression on its hidden layer)
        h, hq = add_lib.penultimate(bundle.ensemble, x), add_lib.penultimate(bundle.ensemble, xq)
        expected = np.mean([1 / (1 + np.exp(-_sklearn_logit(h[s], y, hq[s]))) for s in range(3)], axis=0)
    np.testing.assert_allclose(new_p[:, 2], expected, atol=2e-4)
    # a self-contained checkpoint: round trip, costs of the new target, training split grows by the new prompts
    loaded = checkpointing.load_router(checkpointing.save_router(tmp_path / "r", new))
    np.testing.assert_array_equal(loaded.predict_from_features(query), new_p)
    np.testing.assert_allclose(loaded.expected_costs([100.0])[0, 2], 100 * 1e-6 + 300 * 2e-6)
    assert loaded.trained_on(["q1", "p5", "other"]).tolist() == [True, True, False]
    assert loaded.extra["added_targets"][0]["mode"] == mode


def test_finetune_learns_the_new_target_and_reports_drift():
    bundle = _bundle()
    x = bundle.features(_lookup(60, 4))
    y = _labels(x)
    head, _ = add_lib.add_target(bundle, "gamma", x, y, add_lib.AddConfig(), prompts=[str(i) for i in range(60)],
                                 price=(1, 1), output_tokens_median=1)
    tuned, report = add_lib.add_target(bundle, "gamma", x, y,
                                       add_lib.AddConfig(mode="finetune", finetune_steps=200, finetune_lr=1e-2),
                                       prompts=[str(i) for i in range(60)], price=(1, 1), output_tokens_median=1)
    first, last = np.array(report["finetune_loss"]["first"]), np.array(report["finetune_loss"]["last"])
    assert (last < first).all()  # every member's loss went down
    assert report["drift_old_max"] > 0  # the trunk moved, so the old targets moved (reported)
    np.testing.assert_allclose(report["drift_old_max"], np.abs(tuned.ensemble.predict(x)[:, :2]
                                                               - bundle.ensemble.predict(x)).max(), rtol=1e-6)
    assert tuned.ensemble.config == head.ensemble.config


def test_errors_name_the_problem():
    bundle = _bundle()
    x = bundle.features(_lookup(10, 3))
    kw = dict(prompts=[str(i) for i in range(10)], price=(1, 1), output_tokens_median=1)
    with pytest.raises(ValueError, match="'beta' already exists"):
        add_lib.add_target(bundle, "beta", x, np.tile([0.0, 1.0], 5), add_lib.AddConfig(), **kw)
    with pytest.raises(ValueError, match="1 correct, 9 incorrect.*two-class fit needs"):
        add_lib.add_target(bundle, "gamma", x, np.eye(10)[0], add_lib.AddConfig(), **kw)
    with pytest.raises(ValueError, match="4 labelled prompts"):
        add_lib.check_labels([0, 1, 0, 1], "gamma")
    with pytest.raises(ValueError, match="unknown add-target mode 'lora'"):
        add_lib.AddConfig(mode="lora")
