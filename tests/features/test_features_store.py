"""Chunked feature store: key, round trip, layer-subset reads, corruption detection, atomic writes."""
import errno
import json
import os

import numpy as np
import pytest

from prefill_router.features import store as store_lib

KEY_ARGS = dict(encoder_identity={"name": "tiny", "weights_sha256": "ab" * 32}, template_kwargs={},
                poolings=("last", "mean"), layers=[0, 1, 2], max_length=64, dtype="float32")


def _spec(n=10, chunk=4, layers=(0, 1, 2), dim=5, key="k" * 64):
    return store_lib.StoreSpec(key=key, num_prompts=n, chunk_size=chunk, layers=tuple(layers), dim=dim,
                               poolings=("last", "mean"), info={})


def _full(spec, seed=0):
    rng = np.random.default_rng(seed)
    shape = (len(spec.layers), spec.num_prompts, spec.dim)
    return {p: rng.normal(size=shape).astype(np.float32) for p in spec.poolings}


def _write_all(st, data):
    for i in range(st.num_chunks):
        a, b = st.chunk_range(i)
        st.write_chunk(i, {p: v[:, a:b] for p, v in data.items()}, {"n_truncated": 0, "real_tokens": b - a})


def test_store_key_is_order_sensitive_and_covers_settings():
    base = store_lib.store_key(prompts=["a", "b"], **KEY_ARGS)
    assert base == store_lib.store_key(prompts=["a", "b"], **KEY_ARGS)
    assert base != store_lib.store_key(prompts=["b", "a"], **KEY_ARGS)
    assert base != store_lib.store_key(prompts=["ab"], **KEY_ARGS)
    for change in [dict(template_kwargs={"enable_thinking": True}), dict(max_length=65), dict(dtype="bfloat16"),
                   dict(layers=[1, 2]), dict(encoder_identity={"name": "tiny", "weights_sha256": "cd" * 32})]:
        assert base != store_lib.store_key(prompts=["a", "b"], **{**KEY_ARGS, **change}), change


def test_round_trip_and_layer_subset(tmp_path):
    spec = _spec()
    st = store_lib.FeatureStore(tmp_path, spec)
    st.create()
    assert st.num_chunks == 3 and st.chunk_range(2) == (8, 10)
    assert st.missing_chunks() == [0, 1, 2]
    data = _full(spec)
    _write_all(st, data)
    assert st.missing_chunks() == []
    manifest = st.write_manifest()
    assert len(manifest["chunks"]) == 3 and (st.dir / "manifest.json").exists()
    reopened = store_lib.FeatureStore.open(st.dir)
    for p in spec.poolings:
        np.testing.assert_array_equal(reopened.read(p), data[p])
        np.testing.assert_array_equal(reopened.read(p, [2, 0]), data[p][[2, 0]])
    assert not list(st.dir.glob("*.tmp"))


def test_layer_subset_reads_only_those_slices(tmp_path):
    """Overwrite layer 0's bytes inside every chunk file: reading layer 1 is unaffected (not read)."""
    spec = _spec()
    st = store_lib.FeatureStore(tmp_path, spec)
    st.create()
    data = _full(spec)
    _write_all(st, data)
    for i in range(st.num_chunks):
        arr = np.load(st.data_path(i, "mean"), mmap_mode="r+")
        arr[0] = np.nan
        arr.flush()
        del arr
    np.testing.assert_array_equal(st.read("mean", [1]), data["mean"][[1]])
    assert np.isnan(st.read("mean", [0])).all()


@pytest.mark.parametrize("damage", ["truncate", "modify", "delete_data", "bad_sidecar", "reshape"])
def test_corrupt_chunk_is_detected(tmp_path, damage):
    spec = _spec()
    st = store_lib.FeatureStore(tmp_path, spec)
    st.create()
    _write_all(st, _full(spec))
    path = st.data_path(1, "last")
    if damage == "truncate":
        os.truncate(path, path.stat().st_size - 7)
    elif damage == "modify":
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "delete_data":
        path.unlink()
    elif damage == "bad_sidecar":
        st.sidecar_path(1).write_text("{not json")
    elif damage == "reshape":
        np.save(path, np.zeros((3, 3, 5), np.float32))
    assert st.check_chunk(1) is not None and st.check_chunk(0) is None
    assert st.missing_chunks() == [1]
    assert not st.sidecar_path(1).exists()  # invalidated: can never be reused
    with pytest.raises(RuntimeError, match="incomplete"):
        st.write_manifest()


def test_disk_full_leaves_nothing_valid(tmp_path, monkeypatch):
    spec = _spec()
    st = store_lib.FeatureStore(tmp_path, spec)
    st.create()
    data = _full(spec)

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_lib.os, "fsync", full_disk)
    with pytest.raises(store_lib.StoreWriteError, match="free disk space"):
        st.write_chunk(0, {p: v[:, :4] for p, v in data.items()}, {})
    monkeypatch.undo()
    assert not list(st.dir.glob("*.tmp"))
    assert st.missing_chunks() == [0, 1, 2]


def test_unwritable_store_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(store_lib.StoreWriteError, match="store_dir"):
        store_lib.FeatureStore(blocker, _spec()).create()


def test_meta_mismatch_and_bad_spec(tmp_path):
    store_lib.FeatureStore(tmp_path, _spec(chunk=4)).create()
    with pytest.raises(ValueError, match="different store"):
        store_lib.FeatureStore(tmp_path, _spec(chunk=5)).create()
    with pytest.raises(ValueError, match="poolings"):
        store_lib.FeatureStore(tmp_path, store_lib.StoreSpec("k", 1, 1, (0,), 2, ("max",), {}))
    with pytest.raises(FileNotFoundError):
        store_lib.FeatureStore.open(tmp_path / "nope")
    with pytest.raises(ValueError, match="shape"):
        st = store_lib.FeatureStore(tmp_path, _spec(chunk=4))
        st.write_chunk(0, {"last": np.zeros((3, 3, 5)), "mean": np.zeros((3, 3, 5))}, {})
    json.loads((tmp_path / ("k" * 64) / "meta.json").read_text())
