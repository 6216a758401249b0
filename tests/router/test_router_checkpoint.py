"""Router checkpoints: save -> load gives identical predictions without training data; checksums; clear errors."""
import json

import jax
import numpy as np
import pytest

import prefill_router
from prefill_router import checkpointing as ckpt_lib
from prefill_router.router import blocks, ensemble, model
from prefill_router.router import checkpoint as checkpointing
from tests.router.conftest import random_ensemble

TARGETS = ("alpha", "beta")
pytestmark = pytest.mark.usefixtures("fast_compile")  # tests/router/conftest.py


def _lookup(n=23, seed=0):
    rng = np.random.default_rng(seed)
    return {("enc", 2, "mean"): rng.normal(size=(n, 9)),
            blocks.FeatureSource("enc", 3, "last", {"enable_thinking": True}): rng.normal(size=(n, 6))}


def _bundle():
    specs = [blocks.BlockSpec("alpha", "enc", 2, "mean", 4),
             blocks.BlockSpec("beta", "enc", 3, "last", 3, {"enable_thinking": True})]
    transforms, _ = blocks.build_design(_lookup(), specs, np.arange(18))
    cfg = model.TrunkConfig(d_in=7, n_targets=2, hidden=(5,), dropout=(0.1,))
    ens = random_ensemble(cfg, (42, 44, 43), [0.5, 0.6, 0.7], TARGETS)
    return ensemble.RouterBundle(
        targets=TARGETS, blocks=specs, transforms=transforms, ensemble=ens,
        prices={"alpha": (3.0, 15.0), "beta": (0.1, 0.4)},
        cost_table={"alpha": {"output_tokens_median": 500.0}, "beta": {"output_tokens_median": 900.0}},
        encoders={"enc": {"registry": "tiny_llama", "weights_sha256": "ab" * 32}},
        train_config={"batch_size": 512}, train_split=ensemble.split_record(3, ["q1", "q2", "q1"]))


def test_save_load_roundtrip_identical_predictions(tmp_path):
    bundle = _bundle()
    test = _lookup(n=11, seed=5)
    p = bundle.predict_from_features(test)
    path = checkpointing.save_router(tmp_path / "router", bundle)
    assert path.is_absolute() and not list(tmp_path.glob("*.tmp-*"))
    loaded = checkpointing.load_router(tmp_path / "router")
    np.testing.assert_array_equal(loaded.predict_from_features(test), p)
    assert loaded.targets == TARGETS and loaded.blocks == bundle.blocks
    assert loaded.prices == bundle.prices and loaded.encoders == bundle.encoders
    assert loaded.package_version == prefill_router.__version__ and loaded.ensemble.seeds == (42, 44, 43)
    assert loaded.train_split["seed"] == 3 and loaded.train_split["n_train"] == 3
    np.testing.assert_array_equal(loaded.trained_on(["q2", "q3", "q1"]), [True, False, True])
    for a, b in zip(loaded.transforms, bundle.transforms):
        np.testing.assert_array_equal(a.components, b.components)
    # per-query cost = n_in * price_in / 1e6 + median_out * price_out / 1e6
    np.testing.assert_allclose(loaded.expected_costs([100.0]),
                               [[100 * 3e-6 + 500 * 15e-6, 100 * 0.1e-6 + 900 * 0.4e-6]])
    with pytest.raises(FileExistsError):
        checkpointing.save_router(tmp_path / "router", bundle)
    checkpointing.save_router(tmp_path / "router", bundle, overwrite=True)


def test_load_errors(tmp_path):
    bundle = _bundle()
    path = checkpointing.save_router(tmp_path / "r", bundle)
    meta = json.loads((path / "router.json").read_text())
    meta["format_version"] = 999
    (path / "router.json").write_text(json.dumps(meta))
    (path / "checksums.json").unlink()  # a consistent checkpoint of another format version
    (path / "checksums.json").write_text(json.dumps(ckpt_lib.file_digests(path)))
    with pytest.raises(ValueError, match="format version 999"):
        checkpointing.load_router(path)
    with pytest.raises(FileNotFoundError, match="not a router checkpoint"):
        checkpointing.load_router(tmp_path / "missing")
    wrong = _lookup()
    wrong[("enc", 2, "mean")] = wrong[("enc", 2, "mean")][:, :8]
    with pytest.raises(ValueError, match=r"block 'alpha'.*expects \[N, 9\]"):
        bundle.predict_from_features(wrong)
    with pytest.raises(ValueError, match="targets"):
        ensemble.RouterBundle(("alpha",), bundle.blocks, bundle.transforms, bundle.ensemble)
    with pytest.raises(ValueError, match="ordered"):
        ensemble.RouterBundle(("beta", "alpha"), bundle.blocks, bundle.transforms, bundle.ensemble)


@pytest.mark.parametrize("damage", ["flip_array_bytes", "truncate_router_json", "truncate_checksums", "drop_array_file"])
def test_damaged_checkpoint_is_refused_naming_the_file(tmp_path, damage):
    path = checkpointing.save_router(tmp_path / "r", _bundle())
    arrays = sorted(p for p in (path / "arrays").rglob("*") if p.is_file() and p.parent.name == "d")
    victim = {"flip_array_bytes": arrays[-1], "drop_array_file": arrays[-1], "truncate_router_json": path / "router.json",
              "truncate_checksums": path / "checksums.json"}[damage]
    data = victim.read_bytes()
    if damage == "flip_array_bytes":  # 64 bytes in the middle of an orbax array file
        mid = len(data) // 2
        victim.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64]) + data[mid + 64:])
    elif damage == "drop_array_file":
        victim.unlink()
    else:
        victim.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="re-save the router") as err:
        checkpointing.load_router(path)
    assert str(victim) in str(err.value) and "\n" not in str(err.value)


def test_restore_tree_checks_the_structure(tmp_path):
    tree = {"a": {"0": np.arange(3.0)}, "b": np.ones((2, 2), np.float64)}
    ckpt_lib.save_tree(tmp_path / "t", tree)
    out = ckpt_lib.restore_tree(tmp_path / "t", like=tree)
    assert out["b"].dtype == np.float64 and isinstance(out["a"]["0"], np.ndarray)
    np.testing.assert_array_equal(out["a"]["0"], tree["a"]["0"])
    with pytest.raises(ValueError, match=r"missing \['c'\], unexpected \['b'\]"):
        ckpt_lib.restore_tree(tmp_path / "t", like={"a": {"0": 0}, "c": 0})
    # container types come back from the `like` tree: tuples, int dict keys
    like = {"opt": (np.zeros(2), {"mu": np.zeros(1)}), "layers": {0: np.zeros(1)}}
    pure = ckpt_lib.to_pure_dict(like)
    assert set(pure["opt"]) == {"0", "1"} and set(pure["layers"]) == {"0"}
    back = ckpt_lib.from_pure_dict(like, pure, "t")
    assert isinstance(back["opt"], tuple) and 0 in back["layers"]
