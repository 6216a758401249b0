"""Router stage block specs with router.layers_per_target (issue #14.3d): top-k probe cells per target."""
import importlib

import numpy as np
import pytest

from configs import common
from prefill_router import probes as probes_lib
from prefill_router import router as router_lib
from prefill_router.stages import router as router_stage
from tests.stages.test_stages_cache import _probe_inputs

probe_stage = importlib.import_module("prefill_router.stages.probe")  # the package exports the function

# Hand-set Fisher J of 2 targets over 3 layers x 2 poolings of one 4-layer encoder (None: invalid score).
_J = {"a": {"last": [0.5, 3.0, 1.0], "mean": [2.0, None, 2.5]},
      "b": {"last": [0.1, 0.2, 0.9], "mean": [0.8, 0.3, 0.05]}}
# Hand-ranked (layer, pooling) by J: a -> 3.0, 2.5, 2.0, 1.0, 0.5; b -> 0.9, 0.8, 0.3, 0.2, 0.1, 0.05.
_TOP3 = {"a": [(1, "last"), (2, "mean"), (0, "mean")], "b": [(2, "last"), (0, "mean"), (1, "mean")]}


def _table():
    records = [{"encoder": "toy", "pooling": pooling, "layer": layer, "rel_depth": layer / 4, "target": t,
                "fisher_j": j, "cv_auc_by_pca": {"2": j, "3": None if j is None else j + 0.01}}
               for t, by_pooling in _J.items() for pooling, js in by_pooling.items() for layer, j in enumerate(js)]
    return probes_lib.ProbeTable(records=records, config={}, targets=["a", "b"])


def _config(k):
    c = common.base_config()
    c.router.layers_per_target, c.router.pca_dim = k, 7
    return c


def test_one_layer_per_target_is_the_argmax_block_of_each_target():
    choices = probe_stage.ranked_choices(_table(), "fisher", 1)
    assert choices == probes_lib.select_layers(_table(), "fisher")
    assert router_stage.block_specs(_config(1), choices) == [router_lib.BlockSpec("a", "toy", 1, "last", 7),
                                                             router_lib.BlockSpec("b", "toy", 2, "last", 7)]


@pytest.mark.parametrize("criterion", ["fisher", "cv_auc"])
def test_three_layers_per_target_are_the_top3_distinct_cells_in_one_block(criterion):
    choices = probe_stage.ranked_choices(_table(), criterion, 3)
    specs = router_stage.block_specs(_config(3), choices)
    assert [s.name for s in specs] == ["a", "b"] and all(s.pca_dim == 7 for s in specs)
    for spec in specs:  # cv_auc scores every cell at two widths: still 3 distinct cells, ranked as Fisher J
        assert [(s.layer, s.pooling) for s in spec.sources] == _TOP3[spec.name]
        assert {s.encoder for s in spec.sources} == {"toy"}
    # the block concatenates its cells' features, then scaler + PCA (fitted on the given rows)
    rng = np.random.default_rng(0)
    lookup = {("toy", layer, pooling): rng.normal(size=(12, 2 + layer))
              for layer in range(3) for pooling in ("last", "mean")}
    transforms, x = router_lib.build_design(lookup, specs, np.arange(10))
    assert [t.in_dim for t in transforms] == [3 + 4 + 2, 4 + 2 + 3] and x.shape == (12, 14)


@pytest.mark.parametrize("k, message", [(0, "router.layers_per_target must be an integer >= 1"),
                                        (6, "router.layers_per_target=6 exceeds the 5 scored")])
def test_invalid_layers_per_target_fails_naming_the_option(k, message):
    with pytest.raises(ValueError, match=message) as info:
        probe_stage.ranked_choices(_table(), "fisher", probe_stage.layers_per_target(_config(k)))
    assert "\n" not in str(info.value)


def test_probe_stage_ranks_cells_on_training_rows_only(tmp_path):
    config, feats, ds = _probe_inputs(tmp_path)  # 2 targets, 2 layers; both poolings read the same array
    config.probe.poolings, config.router.layers_per_target = ("last", "mean"), 3
    rows = np.arange(20)
    chosen = probe_stage.choose_layers(config, feats, ds, rows)
    table = probe_stage.probe_table(config, feats, ds, rows, cv_auc=False)
    for t in ds.targets:
        got = [c for c in chosen if c.target == t]
        assert got == probes_lib.top_k(table, t, "fisher", 3) and len({(c.layer, c.pooling) for c in got}) == 3
    feats["toy"][0].x[:, 20:] = 100.0  # test rows: no influence on the choice
    assert probe_stage.choose_layers(config, feats, ds, rows) == chosen
