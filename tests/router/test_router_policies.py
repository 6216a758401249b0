"""Routing rules on small hand-made examples."""
import numpy as np
import pytest

from prefill_router.router import policies

P = np.array([[0.90, 0.85, 0.30],
              [0.20, 0.50, 0.45],
              [0.60, 0.60, 0.60],
              [0.10, 0.20, 0.95]])
PRICE = np.array([10.0, 2.0, 1.0])  # target 0 expensive, 2 cheapest


def test_argmax_ties_to_lowest_index():
    np.testing.assert_array_equal(policies.route_argmax(P), [0, 1, 0, 2])


def test_tolerance_rule():
    np.testing.assert_array_equal(policies.route_tolerance(P, PRICE, 0.0), [0, 1, 2, 2])  # exact tie → cheapest
    np.testing.assert_array_equal(policies.route_tolerance(P, PRICE, 0.05), [1, 2, 2, 2])
    np.testing.assert_array_equal(policies.route_tolerance(P, PRICE, 0.04), [0, 1, 2, 2])
    np.testing.assert_array_equal(policies.route_tolerance(P, PRICE, 1.0), [2, 2, 2, 2])
    # equal costs → lowest index among the eligible
    np.testing.assert_array_equal(policies.route_tolerance(P, np.ones(3), 0.1), [0, 1, 0, 2])
    # per-prompt costs [N, K]: row 0 makes target 1 the most expensive
    c = np.tile(PRICE, (4, 1))
    c[0] = [1.0, 5.0, 0.5]
    np.testing.assert_array_equal(policies.route_tolerance(P, c, 0.1), [0, 2, 2, 2])
    np.testing.assert_allclose(policies.tolerance_grid(P[:1]), [0.0, 0.05, 0.6])


def test_utility_rule():
    # ĉ = [1, 1/9, 0]; λ=0.5: row 0 u = [-.05, .3694, .15] → 1; row 1 u = [-.4, .1944, .225] → 2
    np.testing.assert_array_equal(policies.route_utility(P, PRICE, 0.5), [1, 2, 2, 2])
    np.testing.assert_array_equal(policies.route_utility(P, PRICE, 1.0), [0, 1, 2, 2])  # ties → cheaper
    np.testing.assert_array_equal(policies.route_utility(P, PRICE, 0.0), [2, 2, 2, 2])
    # two models, hand-computed crossover: p = [0.8, 0.5], ĉ = [1, 0]: strong iff 0.8λ − (1−λ) > 0.5λ ⇔ λ > 10/13
    p2 = np.array([[0.8, 0.5]])
    assert policies.route_utility(p2, [3.0, 1.0], 0.76)[0] == 1
    assert policies.route_utility(p2, [3.0, 1.0], 0.78)[0] == 0
    assert policies.route_utility(p2, [3.0, 1.0], 10 / 13)[0] == 1  # exact tie → cheaper


def test_budget_rule():
    costs = np.array([10.0, 2.0, 1.0])
    choices, lam = policies.route_budget(P, costs, budget=100.0)
    assert lam == 1.0 and policies.mean_cost(choices, costs) == pytest.approx(14 / 4)  # choices [0, 1, 2, 2]
    choices, lam = policies.route_budget(P, costs, budget=1.0)
    np.testing.assert_array_equal(choices, [2, 2, 2, 2])
    for budget in (1.3, 1.5, 2.0, 3.0):
        choices, lam = policies.route_budget(P, costs, budget)
        spent = policies.mean_cost(choices, costs)
        assert spent <= budget
        # a slightly larger λ would overspend (λ is maximal)
        assert lam == 1.0 or policies.mean_cost(policies.route_utility(P, costs, min(1.0, lam + 1e-9)), costs) > budget
    with pytest.raises(ValueError, match="below the cheapest"):
        policies.route_budget(P, costs, budget=0.5)


def test_fallback_and_errors():
    ch = policies.route_argmax(P)
    np.testing.assert_array_equal(policies.apply_fallback(P, ch, 0.55, fallback=0), [0, 0, 0, 2])
    with pytest.raises(ValueError, match="costs must be"):
        policies.route_tolerance(P, np.ones(4), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        policies.route_argmax(np.array([[np.nan, 0.1]]))
    with pytest.raises(ValueError, match="fallback index"):
        policies.apply_fallback(P, ch, 0.5, fallback=3)
