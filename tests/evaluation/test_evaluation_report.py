"""evaluate_router / compare_routers end to end on small data; headline values cross-checked by hand."""
import numpy as np
import pytest

from prefill_router.evaluation import compare_routers, evaluate_router, markdown_report, metrics
from prefill_router.evaluation.report import format_ci, to_jsonable

# 6 prompts x 3 targets (prices 0.1, 1, 5 $/M in); row 5 lacks target 1's label.
Y = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 0, 1], [1, np.nan, 0]], dtype=float)
P = np.array([[0.9, 0.8, 0.7], [0.2, 0.6, 0.9], [0.1, 0.3, 0.8], [0.3, 0.2, 0.1], [0.7, 0.4, 0.6],
              [0.6, 0.5, 0.4]])
PRICES = np.array([0.1, 1.0, 5.0])
NAMES = ["cheap", "mid", "big"]


def test_evaluate_router_headline_by_hand():
    costs = PRICES[None, :] * np.arange(1, 7)[:, None] * 1e-3
    r = evaluate_router(P, Y, None, costs, PRICES, NAMES, n_boot=50, seed=0)
    h = r["headline"]
    assert r["counts"] == {"n_rows": 6, "n_complete": 5, "n_incomplete_dropped": 1, "n_disagree": 3}
    # complete rows 0..4; argmax choices 0, 2, 2, 0, 0 -> labels 1, 1, 1, 0, 1 -> 0.8
    assert h["router_acc"]["value"] == pytest.approx(0.8)
    # oracle: row maxima 1, 1, 1, 0, 1 -> 0.8; single accuracies .4, .4, .8 -> best = big (.8)
    assert h["oracle_acc"]["value"] == pytest.approx(0.8)
    assert h["best_single_acc"]["value"] == pytest.approx(0.8)
    assert r["best_single"] == {"index": 2, "name": "big", "selected_on": "eval"}
    # no headroom: gap captured NaN, flagged, no crash
    assert np.isnan(h["gap_captured_pct"]["value"]) and r["gap_captured_degenerate"]
    # price savings: chosen prices .1 + 5 + 5 + .1 + .1 = 10.3 vs 5*5 = 25 -> 1 - 10.3/25 = 58.8 %
    assert h["cost_savings_price_pct"]["value"] == pytest.approx(58.8)
    # per-query: rows q=1..5 scale 1e-3*q; chosen .1*1 + 5*2 + 5*3 + .1*4 + .1*5 = 26.0 vs 5*(1+..+5) = 75
    assert h["cost_savings_query_pct"]["value"] == pytest.approx(100 * (1 - 26.0 / 75))
    # per-target AUC on all labelled rows equals the metric function
    np.testing.assert_allclose([r["per_target"][n]["auc"] for n in NAMES], metrics.per_target_auc(P, Y))
    assert r["per_target"]["mid"]["n"] == 5
    for key in ("p_auccc", "pareto_auccc", "mdp_auccc", "pdp_auccc", "aiq", "aiq_zero", "p_auccc_query"):
        assert key in h and np.isfinite(h[key]["value"])
    for m in h.values():  # every CI brackets its estimate unless the estimate is undefined
        if np.isfinite(m["value"]) and np.isfinite(m["ci_low"]):
            assert m["ci_low"] - 1e-9 <= m["ci_high"]
    md = markdown_report(r)
    assert "| router accuracy (argmax) | 0.800 [" in md and "Gap captured is undefined" in md
    to_jsonable(r)  # serialisable


def test_best_single_from_training_and_gap_captured():
    # training picked "mid" (index 1): best = .4; gap = (.8 - .4)/(.8 - .4) = 100 %
    r = evaluate_router(P, Y, None, None, PRICES, NAMES, n_boot=20, best_single_index=1)
    assert r["best_single"]["selected_on"] == "given"
    assert r["headline"]["gap_captured_pct"]["value"] == pytest.approx(100.0)
    assert "cost_savings_query_pct" not in r["headline"]
    # disagreement zone: complete rows 1, 2, 4 (rows 0 all right, 3 all wrong); argmax 2, 2, 0 -> all right;
    # "mid" there: 1, 0, 0 -> 1/3; gap captured on the zone (1 - 1/3) / (1 - 1/3) = the overall 100 %
    h = r["headline"]
    assert h["disagree_router_acc"]["value"] == pytest.approx(1.0)
    assert h["disagree_best_single_acc"]["value"] == pytest.approx(1 / 3)
    assert "disagree_gap_captured_pct" not in h


def test_within_task_auc_in_headline_and_task_lookup_paired():
    tasks = ["a", "a", "a", "b", "b", "b"]
    r = evaluate_router(P, Y, None, None, PRICES, NAMES, n_boot=20, tasks=tasks)
    expected = metrics.within_task_auc(P, Y, None, tasks)
    np.testing.assert_allclose(r["headline"]["within_task_auc_mean"]["value"], np.nanmean(expected["auc"]))
    assert r["within_task"]["mid"]["tasks_used"] + r["within_task"]["mid"]["tasks_excluded"] == 2
    assert "within-task AUC (tasks used / excluded)" in markdown_report(r)
    lookup = np.where(np.array(tasks)[:, None] == "a", [0.3, 0.6, 0.9], [0.5, 0.2, 0.4])
    out = compare_routers({"trunk": P, "task lookup": lookup}, Y, None, None, PRICES, NAMES, n_boot=50,
                          tasks=tasks, reference="task lookup")
    assert out["rows"]["task lookup"]["within_task_auc_mean"]["value"] == pytest.approx(0.5)
    d = out["paired"]["trunk"]["within_task_auc_mean"]
    assert d["diff"] == pytest.approx(np.nanmean(expected["auc"]) - 0.5)
    assert "disagree_best_single_acc" not in out["paired"]["trunk"]  # router-independent
    assert "Δacc vs task lookup" in out["markdown"]
    with pytest.raises(ValueError, match="tasks has 2 entries"):
        evaluate_router(P, Y, None, None, PRICES, NAMES, n_boot=5, tasks=["a", "b"])


def test_evaluate_router_is_seed_reproducible():
    a = evaluate_router(P, Y, None, None, PRICES, NAMES, n_boot=30, seed=3)["headline"]
    b = evaluate_router(P, Y, None, None, PRICES, NAMES, n_boot=30, seed=3)["headline"]
    c = evaluate_router(P, Y, None, None, PRICES, NAMES, n_boot=30, seed=4)["headline"]
    assert to_jsonable(a) == to_jsonable(b)  # NaN -> None so equal structures compare equal
    assert to_jsonable(a) != to_jsonable(c)


def test_compare_routers_identical_router_p_one_and_choice_routers():
    rng = np.random.default_rng(0)
    N, K = 80, 3
    Yr = (rng.random((N, K)) < [0.3, 0.5, 0.7]).astype(float)
    Pr = np.clip(0.5 * Yr + 0.25 + 0.2 * rng.standard_normal((N, K)), 0, 1)
    out = compare_routers({"trunk": Pr, "copy": Pr.copy(), "always_big": np.full(N, 2)}, Yr, None, None, PRICES,
                          NAMES, n_boot=100, seed=1, best_single_index=2)
    for metric in ("router_acc", "auc_mean", "p_auccc", "gap_captured_pct"):
        assert out["paired"]["copy"][metric]["p_value"] == 1.0 and out["paired"]["copy"][metric]["diff"] == 0.0
    # a choices-only router is compared on the metrics it has
    assert "auc_mean" not in out["paired"]["always_big"] and "router_acc" in out["paired"]["always_big"]
    # always choosing the best single target captures 0 % of the gap
    assert out["rows"]["always_big"]["gap_captured_pct"]["value"] == pytest.approx(0.0)
    assert out["rows"]["always_big"]["router_acc"]["value"] == pytest.approx(Yr[:, 2].mean())
    assert "| trunk |" in out["markdown"] and "Oracle" in out["markdown"]
    with pytest.raises(ValueError, match="reference"):
        compare_routers({"a": Pr}, Yr, None, None, PRICES, NAMES, reference="b", n_boot=5)


def test_format_ci_and_input_errors():
    assert format_ci(0.7123, 0.69, 0.7351) == "0.712 [0.690, 0.735]"
    with pytest.raises(ValueError, match="prices_in"):
        evaluate_router(P, Y, None, None, PRICES[:2], NAMES, n_boot=5)
    with pytest.raises(ValueError, match="target_names"):
        evaluate_router(P, Y, None, None, PRICES, NAMES[:2], n_boot=5)


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from prefill_router.evaluation import plots
    r = evaluate_router(P, Y, None, PRICES[None, :] * np.ones((6, 1)) * 1e-3, PRICES, NAMES, n_boot=10)
    paths = plots.plot_result(r, tmp_path, prefix="t")
    assert len(paths) == 4
    other = evaluate_router(P[::-1], Y, None, PRICES[None, :] * np.ones((6, 1)) * 1e-3, PRICES, NAMES, n_boot=10)
    paths += plots.plot_comparison({"a": r, "b": other}, tmp_path)
    assert len(paths) == 7 and (tmp_path / "routers_cost_accuracy_price.png").is_file()
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
