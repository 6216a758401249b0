"""Operating points on hand-computed cases: τ chosen on validation, metrics at a fixed τ."""
import numpy as np
import pytest

from prefill_router.evaluation import operating

PRICES = np.array([1.0, 10.0])  # target 0 cheap, target 1 the most expensive
# Gaps p_max − p_k: {0, 0.25, 0.375, 0.5}. Choices / accuracy / mean price per τ:
#   τ=0     -> 0,1,1,1  acc 0.75  price 7.75
#   τ=0.25  -> 0,1,0,1  acc 1.00  price 5.50
#   τ=0.375 -> 0,1,0,0  acc 1.00  price 3.25
#   τ=0.5   -> 0,0,0,0  acc 0.75  price 1.00
P = np.array([[0.75, 0.5], [0.25, 0.75], [0.5, 0.75], [0.5, 0.875]])
Y = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


def test_cheapest_point_reaching_best_single():
    out = operating.choose_point(P, Y, None, PRICES, best_single_index=1)  # best single acc 0.75
    assert out["reached"] and out["param"] == 0.5 and out["n_grid"] == 4
    assert out["acc"] == 0.75 and out["best_single_acc"] == 0.75 and out["mean_price"] == 1.0
    assert out["savings_price_pct"] == pytest.approx(90.0)


def test_higher_bar_and_given_grid():
    Y2 = Y.copy()
    Y2[3, 0] = 0.0  # τ=0.5 now scores 0.5 and τ=0.375 scores 0.75; target 1 still 0.75
    out = operating.choose_point(P, Y2, None, PRICES, best_single_index=1)
    assert out["reached"] and out["param"] == 0.375 and out["acc"] == 0.75 and out["mean_price"] == 3.25
    # an explicit grid: 0.3 routes like 0.25 (acc 1.0, price 5.5) and beats τ=0 on price
    out = operating.choose_point(P, Y, None, PRICES, best_single_index=1, grid=[0.3, 0.0])
    assert out["param"] == 0.3 and out["acc"] == 1.0 and out["mean_price"] == 5.5


def test_unreachable_falls_back_to_most_accurate_and_flags():
    P3 = np.array([[0.75, 0.5], [0.75, 0.5], [0.5, 0.75]])
    Y3 = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # best single (target 1) 2/3
    out = operating.choose_point(P3, Y3, None, PRICES, best_single_index=1)
    # τ=0 -> 0,0,1 acc 0; τ=0.25 -> 0,0,0 acc 1/3
    assert not out["reached"] and out["param"] == 0.25 and out["acc"] == pytest.approx(1 / 3)


def test_incomplete_rows_are_ignored():
    P4 = np.vstack([P, [[0.9, 0.1]]])
    Y4 = np.vstack([Y, [[np.nan, 0.0]]])
    out = operating.choose_point(P4, Y4, None, PRICES, best_single_index=1)
    assert out["n_rows"] == 4 and out["param"] == 0.5


def test_point_metrics_hand_computed():
    costs = np.array([[1.0, 4.0], [2.0, 4.0], [1.0, 8.0], [3.0, 4.0]])  # most expensive per query: target 1 (20 $)
    out = operating.point_metrics(P, Y, None, costs, PRICES, 0.25, best_single_index=1, n_boot=50, seed=0)
    assert out["router_acc"]["value"] == 1.0 and out["best_single_acc"]["value"] == 0.75
    assert out["acc_minus_best_single"]["value"] == pytest.approx(0.25)
    assert out["cost_savings_price_pct"]["value"] == pytest.approx(45.0)   # 1 − 22/40
    assert out["cost_savings_query_pct"]["value"] == pytest.approx(50.0)   # 1 − (1+4+1+4)/20
    for v in out.values():
        assert v["ci_low"] <= v["value"] + 1e-9 and v["value"] <= v["ci_high"] + 1e-9
    assert "cost_savings_query_pct" not in operating.point_metrics(P, Y, None, None, PRICES, 0.25, 1, n_boot=10)


def test_bad_input():
    with pytest.raises(ValueError, match="complete rows"):
        operating.choose_point(P, np.full_like(Y, np.nan), None, PRICES, 1)
    with pytest.raises(ValueError, match="prices must be"):
        operating.choose_point(P, Y, None, PRICES[:1], 1)
    with pytest.raises(ValueError, match="grid must"):
        operating.choose_point(P, Y, None, PRICES, 1, grid=[-0.1])


def test_utility_rule_hand_computed():
    # ĉ = [0, 1]; target 1 wins where λ > 1 / (1 + p1 − p0): row 1 above 2/3, row 3 above 8/11, row 2 above 0.8
    grid = [0.0, 0.7, 0.75, 0.9]  # acc / price: 0.75 / 1, 1.0 / 3.25, 1.0 / 5.5, 0.75 / 7.75
    out = operating.choose_point(P, Y, None, PRICES, 1, "utility", grid)
    assert out["reached"] and out["param"] == 0.0 and out["acc"] == 0.75 and out["mean_price"] == 1.0
    Y2 = Y.copy()
    Y2[3, 0] = 0.0  # λ=0 now scores 0.5; λ=0.7 (choices 0,1,0,0) scores 0.75
    out = operating.choose_point(P, Y2, None, PRICES, 1, "utility", grid)
    assert out["reached"] and out["param"] == 0.7 and out["mean_price"] == 3.25 and out["rule"] == "utility"
    m = operating.point_metrics(P, Y, None, None, PRICES, 0.75, 1, "utility", n_boot=10)
    assert m["router_acc"]["value"] == 1.0 and m["cost_savings_price_pct"]["value"] == pytest.approx(45.0)
    assert operating.choose_point(P, Y, None, PRICES, 1, "utility")["n_grid"] == 101
    with pytest.raises(ValueError, match="<= 1 for 'utility'"):
        operating.choose_point(P, Y, None, PRICES, 1, "utility", [0.5, 2.0])
    with pytest.raises(ValueError, match="unknown operating-point rule"):
        operating.choose_point(P, Y, None, PRICES, 1, "budget")
