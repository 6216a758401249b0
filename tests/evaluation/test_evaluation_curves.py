"""Routing-rule sweeps and curve metrics (P-AUCCC family, AIQ, APGR/CPT) on hand-computed examples."""
import numpy as np
import pytest

from prefill_router.evaluation import curves


def _loop_reference(P, rank_costs, V, tols):
    """Per-τ loop (one choice vector per τ) for cross-checking the vectorised sweep."""
    rows = np.arange(P.shape[0])
    return np.array([V[rows, curves.tolerance_choices(P, rank_costs, t)].mean() for t in tols])


# ----------------------------------------------------------------------------- tolerance rule
def test_tolerance_choices_by_hand():
    P = np.array([[0.9, 0.8, 0.5]])
    prices = np.array([10.0, 2.0, 1.0])
    # gaps 0, 0.1, 0.4: τ=0 -> argmax 0; τ=0.1 -> {0, 1}, cheapest 1; τ=0.4 -> all, cheapest 2
    assert curves.tolerance_choices(P, prices, 0.0)[0] == 0
    assert curves.tolerance_choices(P, prices, 0.1)[0] == 1
    assert curves.tolerance_choices(P, prices, 0.4)[0] == 2
    assert curves.tolerance_choices(P, prices, 1.0)[0] == 2
    # equal cost among the eligible -> lowest index
    assert curves.tolerance_choices(np.array([[0.5, 0.5, 0.9]]), np.array([1.0, 1.0, 5.0]), 0.4)[0] == 0
    np.testing.assert_allclose(curves.tolerance_grid(P), [0.0, 0.9 - 0.8, 0.9 - 0.5])


def test_switch_on_tolerance_is_the_exact_float_threshold():
    rng = np.random.default_rng(2)
    P = np.r_[rng.random((20, 4)), rng.integers(0, 6, (20, 4)) / 5.0]
    tau = curves.switch_on_tolerance(P)
    pmax = P.max(axis=1, keepdims=True)
    assert np.all(pmax - tau <= P)  # eligible at τ*
    below = np.nextafter(tau, -np.inf)
    assert np.all((tau == 0) | ~(pmax - below <= P))  # not eligible one double below
    # by hand: fl(0.8 - 0.6) = 0.20000000000000007, yet 0.6 is already eligible at the smaller
    # τ = 0.20000000000000004 (fl(0.8 - τ) = 0.6), which is also a grid value (fl(1.0 - 0.8))
    t = curves.switch_on_tolerance(np.array([[0.8, 0.6]]))[0, 1]
    assert t == 0.20000000000000004 and t < 0.8 - 0.6 and 0.8 - t <= 0.6


@pytest.mark.parametrize("per_row_costs", [False, True])
def test_tolerance_sweep_equals_per_tau_loop(per_row_costs):
    rng = np.random.default_rng(3)
    N, K = 40, 4
    P = rng.integers(0, 6, (N, K)) / 5.0  # many ties in p and in gaps
    Y = (rng.random((N, K)) < 0.5).astype(float)
    prices = np.array([3.0, 1.0, 1.0, 0.5])  # a cost tie between targets 1 and 2
    rank = prices * rng.uniform(0.5, 2, (N, 1)) if per_row_costs else prices
    tols = curves.tolerance_grid(P)
    out = curves.tolerance_sweep(P, rank, {"acc": Y, "price": np.broadcast_to(prices, (N, K))})
    np.testing.assert_allclose(out["acc"], _loop_reference(P, rank, Y, tols), atol=1e-12)
    np.testing.assert_allclose(out["price"], _loop_reference(P, rank, np.broadcast_to(prices, (N, K)), tols),
                               atol=1e-12)
    # integer weights == repeating rows (the bootstrap path)
    w = rng.integers(0, 3, N)
    rep = np.repeat(np.arange(N), w)
    weighted = curves.tolerance_sweep(P, rank if not per_row_costs else rank, {"acc": Y}, tols, weights=w)
    repeated = curves.tolerance_sweep(P[rep], rank if not per_row_costs else rank[rep], {"acc": Y[rep]}, tols)
    np.testing.assert_allclose(weighted["acc"], repeated["acc"], atol=1e-12)


def test_utility_choices_by_hand():
    P = np.array([[0.9, 0.6]])
    costs = np.array([10.0, 0.0])  # ĉ = (1, 0)
    # λ=1: u = (0.9, 0.6) -> 0; λ=0.5: u = (0.45 - 0.5, 0.3) -> 1; λ=0: u = (-1, 0) -> 1
    np.testing.assert_array_equal(curves.utility_choices(P, costs, [1.0, 0.5, 0.0])[:, 0], [0, 1, 1])
    # tie in u at λ=1 -> the cheaper target (index 1), then lowest index for equal costs
    assert curves.utility_choices(np.array([[0.5, 0.5]]), np.array([3.0, 1.0]), [1.0])[0, 0] == 1
    assert curves.utility_choices(np.array([[0.5, 0.5]]), np.array([2.0, 2.0]), [0.3])[0, 0] == 0


# ----------------------------------------------------------------------------- P-AUCCC family
# models: cost (1, 5), accuracy (0.4, 0.8) -> c_min 1, c_max 5, floor 0.4
C_MIN, C_MAX, FLOOR = 1.0, 5.0, 0.4


def test_p_auccc_prepends_floor_when_first_point_above_cmin():
    # (1, .4) prepended; acc - floor = 0, .2, .4 at 1, 2, 5: (0+.2)/2*1 + (.2+.4)/2*3 = 1.0 -> /4
    assert curves.padded_auc([2.0, 5.0], [0.6, 0.8], C_MIN, C_MAX, FLOOR) == pytest.approx(0.25)


def test_p_auccc_appends_rightmost_when_last_point_below_cmax():
    # (5, .7) appended; 0, .3, .3 at 1, 3, 5: .3/2*2 + .3*2 = .9 -> /4
    assert curves.padded_auc([1.0, 3.0], [0.4, 0.7], C_MIN, C_MAX, FLOOR) == pytest.approx(0.225)


def test_p_auccc_drops_points_outside_range_toolkit_rule():
    # first raw cost 0.5 < c_min -> nothing prepended; last raw cost 6 > c_max -> nothing appended
    # (toolkit decides padding on the unfiltered curve); kept (1,.4), (3,.7): .3/2*2 = .3 -> /4
    got = curves.padded_auc([0.5, 1.0, 3.0, 6.0], [0.3, 0.4, 0.7, 0.9], C_MIN, C_MAX, FLOOR)
    assert got == pytest.approx(0.075)


def test_p_auccc_keeps_non_monotone_curve():
    # 0, .3, .1, .4 at 1, 2, 3, 5: .15 + .2 + .5 = .85 -> /4 (a monotone envelope would give more)
    assert curves.padded_auc([1.0, 2.0, 3.0, 5.0], [0.4, 0.7, 0.5, 0.8], C_MIN, C_MAX, FLOOR) == pytest.approx(0.2125)


def test_p_auccc_degenerate_cases():
    assert curves.padded_auc([1.0], [0.5], 2.0, 2.0, 0.4) == 0.0  # c_max <= c_min
    # empty curve: (c_min, floor) and (c_max, floor) -> 0
    assert curves.padded_auc([], [], C_MIN, C_MAX, FLOOR) == pytest.approx(0.0)
    # one point at c_max: (c_min, floor) prepended -> trapezoid (0 + 0.3) / 2 over the whole range
    assert curves.padded_auc([C_MAX], [FLOOR + 0.3], C_MIN, C_MAX, FLOOR) == pytest.approx(0.15)
    # both points a few ulps outside [c_min, c_max] (means of equal costs): kept, read at the ends
    lo, hi = np.nextafter(C_MIN, 0), np.nextafter(C_MAX, 10)
    assert curves.padded_auc([lo, hi], [0.5, 0.7], C_MIN, C_MAX, FLOOR) == pytest.approx(0.6 - FLOOR)
    # no point inside, one on each side: the line from (0, 0.5) to (8, 0.9) read at c_min=1 and c_max=5
    assert curves.padded_auc([0.0, 8.0], [0.5, 0.9], C_MIN, C_MAX, FLOOR) == pytest.approx(
        (0.55 + 0.75) / 2 - FLOOR)


def test_evaluate_router_with_constant_probabilities():
    """A router whose P(correct) does not vary across prompts (task lookup on one task): one operating point
    per cheap/strong choice, whose mean costs sit a round-off outside the model range; all metrics defined."""
    from prefill_router.evaluation import report
    rng = np.random.default_rng(0)
    Y = (rng.random((50, 2)) < [0.5, 0.8]).astype(np.float32)
    M = np.ones((50, 2), bool)
    costs = np.tile([0.2, 10.0], (50, 1))
    r = report.evaluate_router(np.tile([0.6, 0.85], (50, 1)), Y, M, costs, np.array([0.2, 10.0]), ["weak", "strong"],
                               n_boot=10, seed=0, best_single_index=1)
    acc = Y.mean(0)
    # the curve is the two single models: its area over the floor is the trapezoid between them
    assert r["headline"]["p_auccc"]["value"] == pytest.approx((acc[1] - acc[0]) / 2)


def test_dedup_sort_curve():
    c, a = curves.dedup_sort_curve([3.0, 1.0, 3.0, 2.0, 1.0], [0.5, 0.2, 0.5, 0.4, 0.2 + 1e-13])
    np.testing.assert_allclose(c, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(a, [0.2, 0.4, 0.5])


def test_pareto_mdp_pdp_family_by_hand():
    mc, ma = [1.0, 2.0, 3.0, 5.0], [0.4, 0.7, 0.6, 0.8]
    # frontier (1,.4), (2,.7), (5,.8) [(3,.6) dominated]: .3/2*1 + (.3+.4)/2*3 = 1.2 -> /4 = .3
    c, a = curves.pareto_frontier(mc, ma)
    np.testing.assert_allclose(c, [1.0, 2.0, 5.0])
    rc, ra = [1.0, 2.0, 3.0, 5.0, 2.0], [0.4, 0.6, 0.75, 0.8, 0.6]  # one duplicate point
    fam = curves.p_auccc_family(rc, ra, mc, ma, oracle=0.9)
    # router: 0, .2, .35, .4 at 1, 2, 3, 5: .1 + .275 + .75 = 1.125 -> /4 = .28125
    assert fam["p_auccc"] == pytest.approx(0.28125)
    assert fam["pareto_auccc"] == pytest.approx(0.3)
    assert fam["mdp_auccc"] == pytest.approx(0.28125 - 0.3)
    # frontier of models ∪ router: (1,.4), (2,.7), (3,.75), (5,.8): .15 + .325 + .75 = 1.225 -> /4 = .30625
    assert fam["pdp_auccc"] == pytest.approx(0.30625 - 0.28125)
    assert fam["p_auccc_norm"] == pytest.approx(0.28125 / (0.9 - 0.4))
    assert (fam["c_min"], fam["c_max"], fam["floor"]) == (1.0, 5.0, 0.4)


# ----------------------------------------------------------------------------- AIQ
def test_aiq_hull_removes_dominated_points_and_interpolates():
    cost, acc = [1, 2, 3, 4, 5], [0.4, 0.5, 0.8, 0.7, 0.85]
    # (2,.5) lies under the chord (1,.4)-(3,.8) (value .6 there); (4,.7) under (3,.8)-(5,.85) (.825)
    hx, hy = curves.nondecreasing_convex_hull(cost, acc)
    np.testing.assert_allclose(hx, [1, 3, 5])
    np.testing.assert_allclose(hy, [0.4, 0.8, 0.85])
    # ∫ = (.4+.8)/2*2 + (.8+.85)/2*2 = 2.85 -> /4
    assert curves.aiq(cost, acc, 1.0, 5.0) == pytest.approx(0.7125)


def test_aiq_drops_point_below_predecessor_and_extends_flat():
    # upper hull (1,.4), (2,.9), (5,.6); (5,.6) < .9 is dropped; flat .9 to c_max:
    # (.4+.9)/2*1 + .9*3 = 3.35 -> /4
    hx, hy = curves.nondecreasing_convex_hull([1, 2, 5], [0.4, 0.9, 0.6])
    np.testing.assert_allclose(hx, [1, 2])
    assert curves.aiq([1, 2, 5], [0.4, 0.9, 0.6], 1.0, 5.0) == pytest.approx(0.8375)


def test_aiq_interpolation_left_region_and_variants():
    # mixing (1,.4) and (3,.8): linear, mean over [1, 3] = .6
    assert curves.aiq([1, 3], [0.4, 0.8], 1.0, 3.0) == pytest.approx(0.6)
    # first operating point at 2 > c_min = 1: R̃ = 0 on [1, 2); ∫_2^4 = (.6+.8)/2*2 = 1.4 -> /3
    assert curves.aiq([2, 4], [0.6, 0.8], 1.0, 4.0) == pytest.approx(1.4 / 3)
    # 'zero_to_max': ∫_0^3 with 0 below the first vertex = 1.2 -> /3
    assert curves.aiq([1, 3], [0.4, 0.8], 1.0, 3.0, variant="zero_to_max") == pytest.approx(0.4)
    # equal-cost points: only the best counts
    np.testing.assert_allclose(curves.nondecreasing_convex_hull([1, 1, 2], [0.3, 0.5, 0.6])[1], [0.5, 0.6])
    with pytest.raises(ValueError, match="variant"):
        curves.aiq([1, 3], [0.4, 0.8], 1.0, 3.0, variant="other")


# ----------------------------------------------------------------------------- RouteLLM
def _routellm_example():
    # 10 prompts with scores 1..10; weak answers the 5 lowest-score prompts, strong answers all.
    s = np.arange(1, 11, dtype=float)
    y_weak = np.r_[np.ones(5), np.zeros(5)]
    y_strong = np.ones(10)
    return curves.routellm_curve(s, y_weak, y_strong)


def test_routellm_curve_apgr_cpt_by_hand():
    cur = _routellm_example()
    # edges 1 + 0.9 i -> strong = top-j prompts, j = 10..0 (last edge strict), x = 0, 10, ..., 100 %
    np.testing.assert_allclose(cur["strong_pct"], np.arange(0, 101, 10))
    # acc = (5 + j)/10 for j <= 5, then 1
    np.testing.assert_allclose(cur["accuracy"], [0.5, 0.6, 0.7, 0.8, 0.9, 1, 1, 1, 1, 1, 1])
    # AUC = .1*(.55+.65+.75+.85+.95) + 5*.1 = .875; APGR = (.875 - .5)/(1 - .5) = .75
    assert curves.apgr(cur) == pytest.approx(0.75)
    # CPT(50%): target .75, between (20, .7) and (30, .8) -> 25; CPT(20%): .6 at 10; CPT(80%): .9 at 40
    assert curves.cpt(cur, 0.5) == pytest.approx(25.0)
    assert curves.cpt(cur, 0.2) == pytest.approx(10.0)
    assert curves.cpt(cur, 0.8) == pytest.approx(40.0)


def test_routellm_random_scores_and_unreachable_cpt():
    rng = np.random.default_rng(0)
    yw = (rng.random(2000) < 0.5).astype(float)
    ys = (rng.random(2000) < 0.8).astype(float)
    cur = curves.routellm_curve(rng.random(2000), yw, ys)
    # a random router interpolates linearly between weak and strong: APGR ≈ 0.5
    assert curves.apgr(cur) == pytest.approx(0.5, abs=0.05)
    # a strong model that is never better -> NaN APGR
    assert np.isnan(curves.apgr(curves.routellm_curve(np.arange(4.0), np.ones(4), np.ones(4))))
    # weak .5, strong .75: CPT(300%) targets accuracy 1.25, above every point -> NaN
    cur2 = curves.routellm_curve(np.arange(4.0), np.array([1.0, 1, 0, 0]), np.array([0.0, 1, 1, 1]))
    assert np.isnan(curves.cpt(cur2, 3.0))


# ----------------------------------------------------------------------------- agreement with router.policies
def test_sweeps_agree_with_router_policies():
    policies = pytest.importorskip("prefill_router.router.policies")
    rng = np.random.default_rng(11)
    N, K = 60, 5
    prices = np.array([5.0, 1.0, 3.0, 0.5, 1.0])
    for P in (rng.random((N, K)), rng.integers(0, 6, (N, K)) / 5.0):
        for rank in (prices, prices * rng.uniform(0.5, 2.0, (N, 1))):
            grid = curves.tolerance_grid(P)
            for t in np.r_[grid, (grid[1:] + grid[:-1]) / 2, 1.0]:
                np.testing.assert_array_equal(curves.tolerance_choices(P, rank, t),
                                              policies.route_tolerance(P, rank, t))
            lams = np.linspace(0, 1, 21)
            ch = curves.utility_choices(P, rank, lams)
            for g, lam in enumerate(lams):
                np.testing.assert_array_equal(ch[g], policies.route_utility(P, rank, lam))
