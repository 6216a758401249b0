"""Typed configs: dataclasses built straight from config subtrees with the same field names."""
import dataclasses

import ml_collections
import pytest

from configs import common, default
from prefill_router import probes, router
from prefill_router.stages import base
from prefill_router.stages import router as router_stage


@dataclasses.dataclass(frozen=True)
class _Opts:
    a: int = 1
    b: tuple = (2,)


def test_typed_takes_same_named_entries_skips_and_extras():
    sub = ml_collections.ConfigDict({"a": 5, "b": (3, 4), "other": "x"})
    assert base.typed(_Opts, sub, skip=("other",)) == _Opts(5, (3, 4))
    assert base.typed(_Opts, sub, skip=("other",), b=(9,)) == _Opts(5, (9,))  # extra overrides
    with pytest.raises(ValueError, match=r"\['other'\] are not fields of _Opts"):
        base.typed(_Opts, sub)


def test_probe_and_router_subtrees_match_their_dataclasses():
    c = common.base_config()
    cfg = base.typed(probes.ProbeConfig, c.probe, skip=("criterion", "poolings"))
    assert (cfg.shrink, cfg.shrinkage, cfg.pca_dim, cfg.cv_folds) == (c.probe.shrink, c.probe.shrinkage,
                                                                       c.probe.pca_dim, c.probe.cv_folds)
    t = router_stage.train_config(c)
    assert isinstance(t, router.TrainConfig) and t.hidden == tuple(c.router.hidden) and t.keep == c.router.keep
    assert t.seeds == tuple(range(42, 42 + c.router.num_seeds))  # config.seed = 0


def test_training_seeds_follow_config_seed():
    c = default.get_config("runlocal")
    c.seed = 3
    n = c.router.num_seeds
    assert router_stage.train_config(c).seeds == tuple(range(42 + 3 * n, 42 + 4 * n))
