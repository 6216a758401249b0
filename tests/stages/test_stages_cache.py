"""Stage-product cache: content keys, hits bit-identical to a cold computation, misses on any changed input."""
import importlib

import ml_collections
import numpy as np
import pytest

from prefill_router.stages import cache


@pytest.fixture(autouse=True)
def _cache_on(monkeypatch):
    monkeypatch.delenv(cache.STAGE_CACHE_ENV, raising=False)


def test_content_key_is_exact_on_values_dtypes_shapes_and_structure():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = cache.content_key("x", a, {"k": 1, "j": [1.5, None]})
    assert base == cache.content_key("x", a.copy(), {"j": [1.5, None], "k": 1})  # dict order does not matter
    b = a.copy()
    b[1, 2] = np.nextafter(b[1, 2], np.float32(10))  # one ulp
    changed = [cache.content_key("x", b, {"k": 1, "j": [1.5, None]}),
               cache.content_key("x", a.astype(np.float64), {"k": 1, "j": [1.5, None]}),
               cache.content_key("x", a.reshape(3, 2), {"k": 1, "j": [1.5, None]}),
               cache.content_key("x", a, {"k": 1, "j": [1.5000000000000002, None]}),
               cache.content_key("x", a, {"k": True, "j": [1.5, None]}),
               cache.content_key("x", a, {"k": "1", "j": [1.5, None]}),
               cache.content_key("x", a, {"k": 1, "j": [[1.5], None]}),
               cache.content_key("y", a, {"k": 1, "j": [1.5, None]})]
    assert len({base, *changed}) == len(changed) + 1
    config = ml_collections.ConfigDict({"a": 1, "b": (2, 3)})
    assert cache.content_key(config) == cache.content_key({"b": [2, 3], "a": 1})
    with pytest.raises(TypeError, match="cannot hash"):
        cache.content_key(object())


def test_cached_arrays_hit_miss_off_switch_and_corrupt_entry(tmp_path, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return {"kNN (x)": np.array([[0.25, 1 / 3]]), "MF": np.array([0.1], np.float32)}

    first = cache.cached_arrays("ns", "k1", compute, tmp_path)
    again = cache.cached_arrays("ns", "k1", compute, tmp_path)
    assert len(calls) == 1 and list(again) == ["kNN (x)", "MF"]
    for name in first:
        assert again[name].dtype == first[name].dtype and again[name].tobytes() == first[name].tobytes()
    cache.cached_arrays("ns", "k2", compute, tmp_path)  # another key misses
    assert len(calls) == 2
    path = tmp_path / "stage_products" / "ns" / "k1.npz"
    path.write_bytes(b"truncated")
    assert cache.cached_arrays("ns", "k1", compute, tmp_path)["MF"].tobytes() == first["MF"].tobytes()
    assert len(calls) == 3 and np.load(path)["a1"].tobytes() == first["MF"].tobytes()  # rewritten
    monkeypatch.setenv(cache.STAGE_CACHE_ENV, "0")
    cache.cached_arrays("ns", "k1", compute, tmp_path)
    cache.cached_text("off", "k", lambda: "[]", tmp_path)
    assert len(calls) == 4 and not (tmp_path / "stage_products" / "off").exists()


class _Features:
    """The slice of FeatureSet the probe stage reads: get(pooling) -> [L, N, D], layers, dim."""

    def __init__(self, x):
        self.x, self.layers, self.dim = x, np.arange(x.shape[0]), x.shape[2]

    def get(self, pooling, layers=None):
        return self.x


def _probe_inputs(tmp_path):
    from configs import llmrouter_pool
    from prefill_router import data as data_lib

    config = llmrouter_pool.get_config("runlocal,encoders=toy")
    config.cache_dir = str(tmp_path)
    config.probe.poolings, config.probe.cv_pca_dims, config.probe.cv_folds = ("last",), (2,), 2
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(24, 2)).astype(np.float32)
    x = rng.normal(size=(2, 24, 4)).astype(np.float32)
    x[1, :, :2] += 2.0 * labels
    ds = data_lib.RoutingDataset(prompts=[f"p{i}" for i in range(24)], tasks=["t"] * 24, targets=["a", "b"],
                                 labels=labels, mask=None, split=["train"] * 24, prices={"a": (1, 1), "b": (2, 2)},
                                 row_meta={})
    return config, {"toy": (_Features(x), 2)}, ds


def test_probe_table_warm_equals_cold_and_direct_and_misses_on_changed_input(tmp_path, monkeypatch):
    from prefill_router import probes as probes_lib
    probe_stage = importlib.import_module("prefill_router.stages.probe")  # the package exports the function

    config, feats, ds = _probe_inputs(tmp_path)
    rows = np.arange(20)
    calls = []
    run_probes = probes_lib.run_probes
    monkeypatch.setattr(probes_lib, "run_probes", lambda *a, **k: calls.append(1) or run_probes(*a, **k))
    cold = probe_stage.probe_table(config, feats, ds, rows)
    warm = probe_stage.probe_table(config, feats, ds, rows)
    assert len(calls) == 1 and warm.to_json() == cold.to_json()
    monkeypatch.setenv(cache.STAGE_CACHE_ENV, "0")
    assert probe_stage.probe_table(config, feats, ds, rows).to_json() == cold.to_json()  # recomputed, equal
    assert len(calls) == 2
    monkeypatch.delenv(cache.STAGE_CACHE_ENV)
    assert probe_stage.choose_layers(config, feats, ds, rows) == probes_lib.select_layers(cold, "fisher")
    assert len(calls) == 3  # choose_layers leaves out CV-AUC (criterion fisher): another product

    ds.labels[3, 0] = 1 - ds.labels[3, 0]  # a training label
    probe_stage.probe_table(config, feats, ds, rows)
    feats["toy"][0].x[0, 5, 1] += 1e-3  # a feature value of a probed row
    probe_stage.probe_table(config, feats, ds, rows)
    probe_stage.probe_table(config, feats, ds, np.arange(19))  # the rows
    config.probe.shrink = 1e-2  # a probe setting
    probe_stage.probe_table(config, feats, ds, rows)
    assert len(calls) == 7
    feats["toy"][0].x[0, 22, 1] += 1.0  # a row outside the probed ones: still a hit
    probe_stage.probe_table(config, feats, ds, rows)
    assert len(calls) == 7


def test_baselines_warm_equal_cold_and_miss_on_changed_input(tmp_path, monkeypatch):
    from prefill_router.baselines import sentence
    baselines_stage = importlib.import_module("prefill_router.stages.baselines")
    from prefill_router.stages.data import Split

    config, _, ds = _probe_inputs(tmp_path)
    config.baselines.semantic, config.baselines.mf = True, False
    config.router.num_seeds, config.router.max_epochs = 1, 2
    emb = np.random.default_rng(1).normal(size=(24, 8)).astype(np.float32)
    monkeypatch.setattr(sentence, "embed_prompts", lambda name, prompts, cache_dir=None: emb)
    split = Split(ds, np.arange(18), np.arange(18, 24), np.ones((24, 2)), np.array([1.0, 2.0]))
    calls = []
    fit = baselines_stage._fit_predict
    monkeypatch.setattr(baselines_stage, "_fit_predict", lambda *a: calls.append(1) or fit(*a))
    cold = baselines_stage.baselines(config, split)
    warm = baselines_stage.baselines(config, split)
    assert len(calls) == 1 and list(warm) == list(cold) == ["kNN (tiny_bert)", "MLP (tiny_bert)"]
    for name in cold:
        assert warm[name].dtype == cold[name].dtype and warm[name].tobytes() == cold[name].tobytes()
    monkeypatch.setenv(cache.STAGE_CACHE_ENV, "off")
    direct = baselines_stage.baselines(config, split)
    assert all(direct[n].tobytes() == cold[n].tobytes() for n in cold) and len(calls) == 2
    monkeypatch.delenv(cache.STAGE_CACHE_ENV)
    ds.labels[0, 1] = 1 - ds.labels[0, 1]
    baselines_stage.baselines(config, split)
    config.router.max_epochs = 3
    baselines_stage.baselines(config, split)
    emb[2, 0] += 1e-3
    baselines_stage.baselines(config, split)
    assert len(calls) == 5
