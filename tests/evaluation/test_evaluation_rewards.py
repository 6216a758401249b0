"""Reward-curve metrics (AIQ, P-AUCCC, savings at ≥ best single, λ-stability) on a hand-computed pool."""
import numpy as np
import pytest

from prefill_router.evaluation import rewards

# 4 prompts, 2 targets: target 0 costs 3 and is right on prompts 0-2, target 1 costs 1 and is right on 0, 3.
Y = np.array([[1, 1], [1, 0], [1, 0], [0, 1]], float)
C = np.array([[3.0, 1.0]] * 4)
# A perfect router (P = Y, clipped) pays for target 0 only where target 1 fails: prompts 1, 2.
P_GOOD = np.clip(Y, 0.1, 0.9)


def test_perfect_router_curve_by_hand():
    out = rewards.compare_rewards({"good": (P_GOOD, C)}, Y, None, C, n_boot=20, forms=("linear",))
    r = out["rows"]["good"]["linear"]
    # choices: cheapest everywhere (acc 0.5, cost 1) → oracle choice (acc 1, cost (1+3+3+1)/4 = 2)
    cur = out["curves"]["good"]["linear"]
    assert cur["acc"][0] == 0.5 and cur["cost"][0] == 1.0
    assert cur["acc"][-1] == 1.0 and cur["cost"][-1] == 2.0
    # models: (1, 0.5), (3, 0.75); hull over [1, 3]: 0.5 → 1 on [1, 2], flat 1 on [2, 3]: AIQ = (0.75 + 1)/2
    assert r["aiq"]["value"] == pytest.approx(0.875)
    # P-AUCCC: floor 0.5 (cheapest model); area of (acc − 0.5) = 0.25 + 0.5 over width 2
    assert r["p_auccc"]["value"] == pytest.approx(0.375)
    # best single = target 0 (0.75 at cost 3); cheapest point with acc ≥ 0.75 is the oracle point (cost 2)
    assert out["best_single"]["index"] == 0
    assert r["operating_acc"]["value"] == 1.0
    assert r["savings_pct"]["value"] == pytest.approx(100 * (1 - 2 / 3))


def test_paired_difference_and_unreachable_best_single():
    bad = np.full_like(P_GOOD, 0.5)  # all ties → cheapest target always: never reaches best single
    out = rewards.compare_rewards({"good": (P_GOOD, C), "flat": (bad, C)}, Y, None, C, n_boot=50)
    flat = out["rows"]["flat"]["exponential"]
    assert np.isnan(flat["savings_pct"]["value"])
    assert flat["aiq"]["value"] == pytest.approx(0.5)  # one point at the cheapest model, flat to c_max
    d = out["paired"]["flat"]["linear"]["aiq"]
    assert d["diff"] == pytest.approx(0.5 - 0.875)
    assert "| flat | exponential | 0.500 [" in out["markdown"]
    # resamples where the cheapest target (flat's only choice) is at least as accurate as target 0
    reach = sum(Y[i, 1].mean() >= Y[i, 0].mean() for i in rewards.resample_indices(4, 50, 0))
    assert 0 < reach < 50 and flat["savings_pct"]["n_nan"] == 50 - reach
    assert f"| not reached ({reach}/50 resamples reach) | — | — | — |" in out["markdown"]  # no NaN point estimate


def test_lambda_stability_counts_changed_choices():
    # prompt 0 switches to the pricier, correct target at λ = 1/0.8 = 1.25, prompt 1 at λ = 1/0.01 = 100
    # (where it is wrong either way). λ* = first grid point above 1.25; within [λ*/2, 2λ*] only prompt 0
    # changes: 50 % of choices, Δacc = 0.5, cost 1 → 1.5.
    p = np.array([[0.9, 0.1], [0.02, 0.01]])
    y = np.array([[1, 0], [0, 0]], float)
    c = np.array([[2.0, 1.0], [2.0, 1.0]])
    r = rewards.compare_rewards({"r": (p, c)}, y, None, c, n_boot=10, forms=("linear",))["rows"]["r"]["linear"]
    assert r["change_pct"]["value"] == 50.0 and r["acc_span"]["value"] == 0.5
    assert r["cost_ratio"]["value"] == pytest.approx(1.5)


def test_errors():
    with pytest.raises(ValueError, match="reward form"):
        rewards.compare_rewards({"a": (P_GOOD, C)}, Y, None, C, forms=("cubic",))
    with pytest.raises(ValueError, match="measure_costs"):
        rewards.compare_rewards({"a": (P_GOOD, C)}, Y, None, None)
