"""evaluate_router reusing compare_routers' bootstrap headline gives the same result as bootstrapping again."""
import json

import numpy as np
import pytest

from prefill_router.evaluation import report
from prefill_router.fileio import to_jsonable


def test_headline_from_compare_routers_equals_own_bootstrap():
    rng = np.random.default_rng(0)
    Y = rng.integers(0, 2, (30, 3)).astype(float)
    Y[2, 1] = np.nan
    routers = {name: rng.uniform(size=(30, 3)) for name in ("a", "b")}
    args = dict(Y=Y, M=None, costs=rng.uniform(1, 2, (30, 3)), prices_in=[1.0, 2.0, 3.0], target_names=list("xyz"),
                n_boot=40, seed=3, best_single_index=1, tasks=[f"t{i % 3}" for i in range(30)])
    rows = report.compare_routers(routers, reference="a", **args)["rows"]
    for name, P in routers.items():
        own = json.dumps(to_jsonable(report.evaluate_router(P, **args)), sort_keys=True)
        reused = report.evaluate_router(P, **args, headline=rows[name])
        assert json.dumps(to_jsonable(reused), sort_keys=True) == own
        reused["headline"]["auc_mean"]["value"] = -1.0  # a copy: the comparison's rows stay as they were
        assert rows[name]["auc_mean"]["value"] != -1.0
    with pytest.raises(ValueError, match="other predictions"):
        report.evaluate_router(routers["a"], **args, headline=rows["b"])
