"""Controls and repeat-mode aggregation on hand-computed examples (the pipeline run is in tests/experiments)."""
import numpy as np
import pytest

from prefill_router import data as data_lib
from prefill_router.evaluation import report as report_lib
from prefill_router.stages import controls, repeats
from prefill_router.stages.data import Split


def _split(tasks, labels, split, row_meta=None):
    labels = np.asarray(labels, np.float32)
    ds = data_lib.RoutingDataset(prompts=[f"p{i}" for i in range(len(tasks))], tasks=tasks, targets=["a", "b"],
                                 labels=labels, mask=None, split=split, prices={"a": (1, 1), "b": (2, 2)},
                                 row_meta=row_meta or {})
    return Split(ds, ds.rows("train"), ds.rows("test"), np.ones(labels.shape), np.array([1.0, 2.0]))


def test_task_priors_fallback_and_no_task_field():
    s = _split(["x", "x", "y", "y", "x", "z"], [[1, 0], [0, 0], [1, 1], [1, 0], [1, 1], [0, 1]],
               ["train"] * 4 + ["test"] * 2)
    preds, info = controls.task_priors(s)
    np.testing.assert_allclose(preds[controls.TASK_LOOKUP], [[0.5, 0], [0.75, 0.25]])  # z unseen -> global
    assert info["has_task_field"] and not info["has_difficulty"]
    assert info["task_lookup"]["unseen_tasks"] == {"z": 1} and info["task_lookup"]["task_unseen"] == 1
    one = _split(["t"] * 6, [[1, 0], [0, 0], [1, 1], [1, 0], [1, 1], [0, 1]], ["train"] * 4 + ["test"] * 2,
                 row_meta={"difficulty": np.array([1, 2, 1, 2, 1, 3])})
    preds, info = controls.task_priors(one)
    assert not info["has_task_field"] and info["has_difficulty"]
    # (t, 1): rows 0, 2 -> [1, .5]; (t, 3) unseen -> task t = global [.75, .25]
    np.testing.assert_allclose(preds[controls.TASK_DIFFICULTY_LOOKUP], [[1, 0.5], [0.75, 0.25]])
    assert info["task_difficulty_lookup"]["difficulty_unseen"] == 1


def test_versus_lookup_flips_a_reversed_comparison():
    rng = np.random.default_rng(0)
    Y = (rng.random((60, 2)) < 0.5).astype(float)
    P = np.clip(Y * 0.4 + rng.random((60, 2)) * 0.6, 0, 1)
    lookup = np.full((60, 2), 0.5) + rng.random((60, 2)) * 1e-3
    kw = dict(Y=Y, M=None, costs=None, prices_in=[1.0, 2.0], target_names=["a", "b"], n_boot=50, seed=0,
              tasks=["x"] * 30 + ["y"] * 30)
    ref_lookup = report_lib.compare_routers({"SharedTrunkNet": P, controls.TASK_LOOKUP: lookup},
                                            reference=controls.TASK_LOOKUP, **kw)
    ref_router = report_lib.compare_routers({"SharedTrunkNet": P, controls.TASK_LOOKUP: lookup}, **kw)
    a, b = controls.versus_lookup(ref_lookup), controls.versus_lookup(ref_router)
    for k in ("router_acc", "auc_mean", "within_task_auc_mean"):
        assert a[k]["diff"] == pytest.approx(b[k]["diff"]) and a[k]["p_value"] == pytest.approx(b[k]["p_value"])
        assert a[k]["low"] == pytest.approx(b[k]["low"]) and a[k]["high"] == pytest.approx(b[k]["high"])
    assert a["auc_mean"]["diff"] > 0 and "above" in controls.verdict(a)


def test_repeat_interval_by_hand():
    out = repeats.interval([1.0, 2.0, 3.0, None, float("nan")])
    # mean 2, sd 1, t_{.975, 2} = 4.302653 -> half width 4.302653 / sqrt(3)
    assert out["n"] == 3 and out["mean"] == 2.0 and out["sd"] == pytest.approx(1.0)
    assert out["ci_high"] - 2.0 == pytest.approx(4.302653 / np.sqrt(3), rel=1e-6)
    assert repeats.interval([0.5])["n"] == 1 and np.isnan(repeats.interval([0.5])["ci_low"])
    assert repeats.interval([])["n"] == 0


def test_repeat_aggregate_counts_significant_runs():
    def run(seed, acc, diff, low, high):
        return {"seed": seed, "rows": {"SharedTrunkNet": {"router_acc": acc}, "task lookup": {"router_acc": 0.5}},
                "vs_task_lookup": {"router_acc": {"diff": diff, "low": low, "high": high, "p_value": 0.5}}}
    agg = repeats.aggregate([run(0, 0.6, 0.1, 0.01, 0.2), run(1, 0.7, 0.2, -0.1, 0.3), run(2, 0.5, -0.2, -0.3, -0.1)])
    assert agg["routers"]["SharedTrunkNet"]["router_acc"]["mean"] == pytest.approx(0.6)
    assert agg["routers"]["task lookup"]["router_acc"]["sd"] == 0.0
    vs = agg["vs_task_lookup"]["router_acc"]
    assert vs["mean"] == pytest.approx(0.1 / 3) and vs["n_significant_above"] == 1 and vs["n_significant_below"] == 1
    md = "\n".join(repeats.repeats_markdown({"R": 3, "seeds": [0, 1, 2], "varied": "seeds", **agg}))
    assert "| SharedTrunkNet | 0.600 [" in md and "| router accuracy |" in md and "1 / 1 of 3" in md


def test_cv_auc_choice_keeps_its_pca_width_and_trunk_seeds_follow_the_seed():
    from configs import common
    from prefill_router.probes.select import LayerChoice
    from prefill_router.stages import router as router_stage
    choices = [LayerChoice("a", "enc", "mean", 3, 0.5, "cv_auc", 0.7, pca_dim=50),
               LayerChoice("b", "enc", "last", 2, 0.4, "cv_auc", 0.6, pca_dim=None),
               LayerChoice("c", "enc", "last", 2, 0.4, "fisher", 1.2)]
    assert [s.pca_dim for s in router_stage.per_target_specs(choices, 100)] == [50, 100, 100]
    c = common.base_config()
    c.router.num_seeds, c.router.keep = 3, 2
    assert router_stage.train_config(c).seeds == (42, 43, 44)
    c.seed = 2
    assert router_stage.train_config(c).seeds == (48, 49, 50)
