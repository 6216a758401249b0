"""Per-target and routing metrics on hand-computed examples (expected numbers derived by hand)."""
import numpy as np
import pytest

from prefill_router.evaluation import calibration, metrics

# 4 prompts x 3 targets; row sums 1, 2, 0, 2.
Y4 = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=float)


def test_roc_auc_with_ties_by_hand():
    # pos scores {0.4, 0.8}, neg {0.1, 0.4}: pairs 1 + 0.5 (tie) + 1 + 1 = 3.5 of 4 -> 0.875
    assert metrics.roc_auc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]) == pytest.approx(0.875, abs=1e-15)
    # all scores tied -> 0.5; one class -> NaN
    assert metrics.roc_auc([0.3, 0.3, 0.3], [0, 1, 1]) == pytest.approx(0.5)
    assert np.isnan(metrics.roc_auc([0.1, 0.2], [1, 1]))


def test_roc_auc_matches_sklearn_with_many_ties():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    s = rng.integers(0, 7, 300) / 6.0  # heavy ties
    y = (rng.random(300) < 0.2 + 0.6 * s).astype(float)
    assert metrics.roc_auc(s, y) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)


def test_per_target_auc_uses_only_labelled_rows():
    P = np.array([[0.1, 0.9], [0.4, 0.2], [0.4, 0.5], [0.8, 0.7]])
    Y = np.array([[0, 1], [0, np.nan], [1, 0], [1, 1]])
    # target 0: the tie example above -> 0.875; target 1: rows 0,2,3: pos {0.9, 0.7} vs neg {0.5} -> 1.0
    np.testing.assert_allclose(metrics.per_target_auc(P, Y), [0.875, 1.0])


def test_brier_by_hand_and_vs_sklearn():
    # (0.1^2 + 0.2^2 + 0.6^2) / 3 = 0.41 / 3
    assert metrics.brier_score([0.9, 0.2, 0.6], [1, 0, 0]) == pytest.approx(0.41 / 3, abs=1e-15)
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    p, y = rng.random(50), (rng.random(50) < 0.5).astype(float)
    assert metrics.brier_score(p, y) == pytest.approx(sk.brier_score_loss(y, p), abs=1e-14)


def test_ece_equal_width_and_equal_mass_by_hand():
    p, y = [0.1, 0.2, 0.3, 0.9], [0, 0, 1, 1]
    # width, 2 bins: {0.1,0.2,0.3}: conf 0.2, acc 1/3 -> 0.75*(2/15) = 0.1; {0.9}: 0.25*0.1 = 0.025 -> 0.125
    assert calibration.expected_calibration_error(p, y, 2, "uniform") == pytest.approx(0.125, abs=1e-12)
    # mass, 2 bins: {0.1,0.2}: conf 0.15, acc 0 -> 0.5*0.15; {0.3,0.9}: conf 0.6, acc 1 -> 0.5*0.4 -> 0.275
    assert calibration.expected_calibration_error(p, y, 2, "quantile") == pytest.approx(0.275, abs=1e-12)
    # p = 1 falls in the last equal-width bin; a perfectly calibrated bin gives 0
    assert calibration.expected_calibration_error([1.0, 1.0], [1, 1], 10) == pytest.approx(0.0)
    r = calibration.reliability_bins(np.array(p), np.array(y), 2, "uniform")
    np.testing.assert_allclose(r["count"], [3, 1])
    np.testing.assert_allclose(r["confidence"], [0.2, 0.9])
    with pytest.raises(ValueError, match="unknown binning"):
        calibration.bin_assignments(np.array(p), 2, "log")


def test_routing_accuracies_and_gap_captured_by_hand():
    choices = np.array([0, 2, 1, 1])
    # chosen labels 1, 1, 0, 1 -> 0.75; oracle = mean(1, 1, 0, 1) = 0.75
    assert metrics.router_accuracy(Y4, None, choices) == pytest.approx(0.75)
    assert metrics.oracle_accuracy(Y4) == pytest.approx(0.75)
    # column means 0.5, 0.5, 0.25 -> best single index 0 (tie -> lowest index), 0.5; random = 5/12
    assert metrics.best_single(Y4) == (pytest.approx(0.5), 0)
    assert metrics.best_single(Y4, index=2) == (pytest.approx(0.25), 2)
    assert metrics.random_accuracy(Y4) == pytest.approx(5 / 12)
    # (0.75 - 0.5) / (0.75 - 0.5) * 100 = 100 ; router 0.5 -> 0
    assert metrics.gap_captured(0.75, 0.5, 0.75) == pytest.approx(100.0)
    assert metrics.gap_captured(0.5, 0.5, 0.75) == pytest.approx(0.0)
    assert metrics.gap_captured(0.6, 0.5, 0.7) == pytest.approx(50.0)


def test_gap_captured_no_headroom_is_nan_not_error():
    assert np.isnan(metrics.gap_captured(0.8, 0.9, 0.9))


def test_router_accuracy_excludes_missing_chosen_label_and_counts_it():
    Y = Y4.copy()
    Y[1, 2] = np.nan
    M = ~np.isnan(Y)
    choices = np.array([0, 2, 1, 1])
    # row 1 excluded: chosen labels 1, 0, 1 -> 2/3
    assert metrics.router_accuracy(Y, M, choices) == pytest.approx(2 / 3)
    assert metrics.n_missing_chosen(M, choices) == 1
    with pytest.raises(ValueError, match="complete_rows"):
        metrics.oracle_accuracy(Y)


def test_cost_savings_both_axes_by_hand():
    choices = np.array([0, 2, 1, 1])
    # price axis, prices (1, 2, 10): chosen 1 + 10 + 2 + 2 = 15 vs 4 * 10 = 40 -> 1 - 15/40 = 0.625
    assert metrics.cost_savings(np.array([1.0, 2.0, 10.0]), choices) == pytest.approx(0.625)
    # per-query: chosen 1 + 4 + 4 + 4 = 13; most expensive column sum 4 + 4 + 8 + 8 = 24 -> 11/24
    C = np.array([[1, 2, 4], [1, 2, 4], [2, 4, 8], [2, 4, 8]], dtype=float)
    assert metrics.cost_savings(C, choices) == pytest.approx(11 / 24)
    # explicit reference target 1 (sum 12): 1 - 13/12
    assert metrics.cost_savings(C, choices, reference_index=1) == pytest.approx(-1 / 12)


def test_agreement_zones_near_misses_win_rates_by_hand():
    choices = np.array([0, 2, 1, 1])
    z = metrics.agreement_zones(Y4, choices)
    # row sums 1, 2, 0, 2 of K=3: no all-correct, 3 disagree, 1 all-wrong
    assert z["all_correct"]["n"] == 0 and z["disagree"]["n"] == 3 and z["all_wrong"]["n"] == 1
    assert z["disagree"]["fraction"] == pytest.approx(0.75)
    assert z["disagree"]["router_accuracy"] == pytest.approx(1.0)  # rows 0, 1, 3 all chosen right
    P = np.array([[0.5, 0.52, 0.1], [0.2, 0.3, 0.9], [0.3, 0.3, 0.3], [0.1, 0.2, 0.9]])
    ch = np.argmax(P, axis=1)  # 1, 2, 0, 2
    nm = metrics.near_misses(P, Y4, ch)
    # disagree rows 0, 1, 3; wrong: row 0 (chose 1, gap 0.52 - 0.5 = 0.02 < 0.05, flippable),
    # row 3 (chose 2, gap 0.9 - 0.2 = 0.7)
    assert nm["n_disagree"] == 3 and nm["n_wrong"] == 2 and nm["n_flippable"] == 1
    assert nm["mean_gap"] == pytest.approx((0.02 + 0.7) / 2)
    W = metrics.pairwise_win_rates(P, Y4)
    # target 0 correct & target 1 wrong: row 0 only; 0.5 > 0.52 is False -> 0.0
    assert W[0, 1] == pytest.approx(0.0)
    # target 1 correct & 0 wrong: row 1 (0.3 > 0.2) -> 1.0; target 2 correct & 0 wrong: row 1 (0.9 > 0.2) -> 1.0
    assert W[1, 0] == pytest.approx(1.0) and W[2, 0] == pytest.approx(1.0)
    assert np.isnan(W[0, 0])
    # unique solvers: row 0 -> target 0 (routed to 1: miss) -> recall 0; targets 1, 2 never unique -> NaN
    r = metrics.unique_solver_recall(Y4, ch)
    assert r[0] == 0.0 and np.isnan(r[1]) and np.isnan(r[2])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="0/1 labels"):
        metrics.check_inputs(Y=np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="M disagrees"):
        metrics.check_inputs(Y=Y4, M=np.ones_like(Y4, dtype=bool) & False)
    with pytest.raises(ValueError, match="choices"):
        metrics.check_inputs(Y=Y4, choices=np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="bool mask"):
        metrics.check_inputs(Y=Y4, M=np.ones_like(Y4))


# ----------------------------------------------------------------------------- controls
def test_within_task_auc_by_hand():
    tasks = ["a", "a", "a", "b", "b", "c"]
    Y = np.array([[1, 1], [0, np.nan], [1, 0], [1, 0], [0, 1], [1, 1]])
    P = np.array([[.9, .5], [.2, .1], [.4, .5], [.3, .2], [.6, .7], [.5, .3]])
    w = metrics.within_task_auc(P, Y, None, tasks)
    # target 0: a -> pos {.9, .4} > neg {.2}: 1.0 (3 rows); b -> pos .3 < neg .6: 0.0 (2 rows); c one class
    # target 1: a -> rows 0, 2 (row 1 missing) tie .5/.5: 0.5; b -> 1.0; c excluded
    np.testing.assert_allclose(w["auc"], [(3 * 1.0 + 2 * 0.0) / 5, (2 * 0.5 + 2 * 1.0) / 4])
    assert w["tasks_used"].tolist() == [2, 2] and w["tasks_excluded"].tolist() == [1, 1]
    assert w["excluded"] == [["c"], ["c"]]
    one_class = metrics.within_task_auc(P[5:], Y[5:], None, tasks[5:])
    assert np.isnan(one_class["auc"]).all() and one_class["tasks_excluded"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="tasks has 2 entries for N=6"):
        metrics.within_task_auc(P, Y, None, ["a", "b"])


def test_disagreement_rows_by_hand():
    Y = np.array([[1, 1, 1], [0, 1, 0], [0, 0, 0], [1, 0, 1]])
    assert metrics.disagreement_rows(Y).tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match="needs every label"):
        metrics.disagreement_rows([[1, np.nan]])


def test_grouped_auc_matches_per_group_roc_auc_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, G = int(rng.integers(1, 60)), int(rng.integers(1, 6))
        s, y, g = rng.integers(0, 4, n).astype(float), rng.integers(0, 2, n), rng.integers(0, G, n)
        expected = [metrics.roc_auc(s[g == j], y[g == j]) for j in range(G)]
        np.testing.assert_allclose(metrics.grouped_auc(s, y, g, G), expected)
