"""Task-prior lookups on hand-computed examples: masked labels, unseen tasks, task x difficulty."""
import numpy as np
import pytest

from prefill_router.baselines.task_prior import fit_task_prior
from prefill_router.evaluation import metrics

NAN = np.nan
# 6 training rows x 2 targets; row 2 lacks target 1's label, task "b" has no label for target 1 at all.
TASKS = ["a", "a", "a", "b", "b", "c"]
DIFF = [1, 1, 2, 1, 2, 1]
Y = np.array([[1, 0], [0, 1], [1, NAN], [1, NAN], [0, NAN], [0, 0]])


def test_task_lookup_rates_mask_and_fallbacks():
    prior = fit_task_prior(TASKS, Y, ~np.isnan(Y))
    np.testing.assert_allclose(prior.global_rate, [3 / 6, 1 / 3])  # target 1: labels 0, 1, 0
    P, counts = prior.predict(["a", "b", "c", "z", "z"])
    # a: 2/3 and 1/2 (row 2's missing label is not a 0); b: .5 and the global 1/3; unseen z: global rates
    np.testing.assert_allclose(P, [[2 / 3, 1 / 2], [1 / 2, 1 / 3], [0, 0], [1 / 2, 1 / 3], [1 / 2, 1 / 3]])
    assert counts == {"task_unseen": 3, "difficulty_unseen": 0, "unseen_tasks": {"z": 2}}


def test_task_by_difficulty_lookup_falls_back_to_task_then_global():
    prior = fit_task_prior(TASKS, Y, ~np.isnan(Y), difficulty=DIFF)
    P, counts = prior.predict(["a", "a", "a", "b", "z"], difficulty=[1, 2, 3, 2, 1])
    np.testing.assert_allclose(P, [[1 / 2, 1 / 2],     # (a, 1): rows 0, 1
                                   [1, 1 / 2],         # (a, 2): row 2; target 1 unlabelled -> task a's 1/2
                                   [2 / 3, 1 / 2],     # (a, 3) unseen -> task a
                                   [0, 1 / 3],         # (b, 2): row 4; target 1 -> global
                                   [1 / 2, 1 / 3]])    # unseen task -> global
    assert counts["difficulty_unseen"] == 4 and counts["task_unseen"] == 2 and counts["unseen_tasks"] == {"z": 1}
    with pytest.raises(ValueError, match="needs the rows' difficulty"):
        prior.predict(["a"])


def test_task_lookup_within_task_auc_is_one_half():
    rng = np.random.default_rng(0)
    tasks = np.repeat(["x", "y", "z"], 40)
    Yr = (rng.random((120, 3)) < np.repeat([[0.2, 0.5, 0.7], [0.6, 0.4, 0.3], [0.5, 0.5, 0.5]], 40, 0)).astype(float)
    P, _ = fit_task_prior(tasks, Yr, np.ones_like(Yr, bool)).predict(tasks)
    np.testing.assert_allclose(metrics.within_task_auc(P, Yr, None, tasks)["auc"], 0.5)


def test_bad_input():
    with pytest.raises(ValueError, match="needs tasks"):
        fit_task_prior(["a"], Y, ~np.isnan(Y))
    with pytest.raises(ValueError, match="difficulty has 2 entries"):
        fit_task_prior(TASKS, Y, ~np.isnan(Y), difficulty=[1, 2])
