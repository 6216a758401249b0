"""Bootstrap CIs and paired tests: coverage on a simple case, reproducibility, paired p-values."""
import numpy as np
import pytest

from prefill_router.evaluation import bootstrap


def test_ci_covers_the_mean_and_has_the_expected_width():
    v = np.r_[np.zeros(700), np.ones(300)]  # mean 0.3, se = sqrt(.3*.7/1000) ≈ 0.0145
    ci = bootstrap.bootstrap_mean_ci(v, n_boot=2000, seed=0)
    assert ci["estimate"] == pytest.approx(0.3)
    assert ci["low"] < 0.3 < ci["high"]
    # normal-theory width 2*1.96*0.0145 ≈ 0.0568
    assert ci["high"] - ci["low"] == pytest.approx(0.0568, abs=0.008)


def test_generic_and_vectorised_paths_share_resamples_and_are_reproducible():
    rng = np.random.default_rng(5)
    v = rng.random(200)
    a = bootstrap.bootstrap_ci(lambda r: v[r].mean(), 200, n_boot=300, seed=7)
    b = bootstrap.bootstrap_mean_ci(v, n_boot=300, seed=7)
    assert a["low"] == pytest.approx(b["low"], abs=1e-12) and a["high"] == pytest.approx(b["high"], abs=1e-12)
    again = bootstrap.bootstrap_ci(lambda r: v[r].mean(), 200, n_boot=300, seed=7)
    assert (again["low"], again["high"]) == (a["low"], a["high"])
    other = bootstrap.bootstrap_ci(lambda r: v[r].mean(), 200, n_boot=300, seed=8)
    assert (other["low"], other["high"]) != (a["low"], a["high"])


def test_vector_statistic_and_nan_replicates_are_counted():
    y = np.r_[np.zeros(9), 1.0]  # a resample without the single positive gives NaN
    stat = lambda r: np.array([y[r].mean(), np.nan if y[r].sum() == 0 else 1.0])  # noqa: E731
    ci = bootstrap.bootstrap_ci(stat, 10, n_boot=400, seed=0)
    assert ci["estimate"].shape == (2,)
    # P(no positive in 10 draws) = 0.9^10 ≈ 0.349 -> about 140 of 400 replicates are NaN
    assert 100 < ci["n_nan"][1] < 180 and ci["n_nan"][0] == 0


def test_paired_test_identical_routers_gives_p_one():
    y = (np.random.default_rng(0).random(300) < 0.6).astype(float)
    res = bootstrap.paired_bootstrap_test(lambda r: y[r].mean(), lambda r: y[r].mean(), 300, n_boot=200)
    assert res["diff"] == 0.0 and res["low"] == 0.0 and res["high"] == 0.0 and res["p_value"] == 1.0


def test_paired_test_detects_a_clear_difference_but_not_noise():
    rng = np.random.default_rng(1)
    a = (rng.random(500) < 0.8).astype(float)
    b = a.copy()
    b[:100] = 0.0  # b is wrong on 100 more prompts (a loses ~80 correct)
    res = bootstrap.paired_bootstrap_test(lambda r: a[r].mean(), lambda r: b[r].mean(), 500, n_boot=500, seed=0)
    assert res["diff"] > 0.1 and res["low"] > 0 and res["p_value"] < 0.01
    # a symmetric swap: 20 rows better, 20 rows worse -> difference 0, large p
    c = a.copy()
    flip_up = np.flatnonzero(a == 0)[:20]
    flip_down = np.flatnonzero(a == 1)[:20]
    c[flip_up], c[flip_down] = 1.0, 0.0
    res0 = bootstrap.paired_bootstrap_test(lambda r: a[r].mean(), lambda r: c[r].mean(), 500, n_boot=500, seed=0)
    assert res0["diff"] == pytest.approx(0.0) and res0["p_value"] > 0.5
    assert res0["low"] < 0 < res0["high"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap.resample_indices(10, 0, 0)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap.bootstrap_mean_ci(np.array([1.0, np.nan]))
