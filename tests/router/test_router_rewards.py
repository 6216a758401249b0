"""Reward routing (linear λ·p − c, exponential p·exp(−c/λ)) on hand-computed points."""
import numpy as np
import pytest

from prefill_router.router import policies

P2 = np.array([[0.9, 0.6]])
C2 = np.array([2.0, 1.0])  # target 0: better and pricier


def test_reward_values_by_hand():
    np.testing.assert_allclose(policies.reward(P2, C2, 5.0, "linear"), [[2.5, 2.0]])      # 4.5 − 2, 3 − 1
    np.testing.assert_allclose(policies.reward(P2, C2, 2.0, "linear"), [[-0.2, 0.2]])
    np.testing.assert_allclose(policies.reward(P2, C2, 5.0, "exponential"),
                               [[0.9 * np.exp(-0.4), 0.6 * np.exp(-0.2)]])                # 0.6033, 0.4912
    np.testing.assert_allclose(policies.reward(P2, C2, 1.0, "exponential"), [[0.9 * np.exp(-2), 0.6 * np.exp(-1)]])


def test_route_reward_switches_at_the_hand_computed_breakpoint():
    # linear: 0.9λ − 2 = 0.6λ − 1 at λ = 1/0.3; exponential: ln(0.9/0.6) = 1/λ at λ = 1/ln 1.5
    lin, exp_ = 1 / 0.3, 1 / np.log(1.5)
    assert policies.route_reward(P2, C2, lin * 0.99, "linear")[0] == 1
    assert policies.route_reward(P2, C2, lin * 1.01, "linear")[0] == 0
    assert policies.route_reward(P2, C2, exp_ * 0.99, "exponential")[0] == 1
    assert policies.route_reward(P2, C2, exp_ * 1.01, "exponential")[0] == 0
    np.testing.assert_allclose(policies.reward_breakpoints(P2, C2, "linear"), [lin])
    np.testing.assert_allclose(policies.reward_breakpoints(P2, C2, "exponential"), [exp_])
    # exact tie → cheaper target
    assert policies.route_reward(P2, C2, lin, "linear")[0] == 1


def test_dominated_targets_give_no_breakpoint_and_grid_spans_the_curve():
    p = np.array([[0.9, 0.6], [0.5, 0.8]])  # row 1: the cheaper target is also better (never a trade-off)
    c = np.array([[2.0, 1.0], [2.0, 1.0]])
    for form in policies.REWARD_FORMS:
        assert policies.reward_breakpoints(p, c, form).size == 1
        grid = policies.reward_lambda_grid(p, c, form, n=11)
        ch = policies.reward_choices(p, c, grid, form)
        assert ch.shape == (11, 2)
        np.testing.assert_array_equal(ch[0], [1, 1])   # smallest λ: cheapest
        np.testing.assert_array_equal(ch[-1], [0, 1])  # largest λ: argmax p
    np.testing.assert_array_equal(policies.reward_lambda_grid(p[1:], c[1:], "linear"), [1.0])


def test_reward_errors():
    with pytest.raises(ValueError, match="reward form"):
        policies.route_reward(P2, C2, 1.0, "quadratic")
    with pytest.raises(ValueError, match="lam must be > 0"):
        policies.route_reward(P2, C2, 0.0, "exponential")
    with pytest.raises(ValueError, match="costs must be"):
        policies.route_reward(P2, np.ones(3), 1.0)
