"""Per-prompt feature store: keys, lookup rules (max_length / cap), gather, corruption, orphans, atomic writes."""
import errno
import json
import os
import subprocess
import time

import numpy as np
import pytest

from prefill_router.features import store as store_lib

KEY_ARGS = dict(encoder_identity={"name": "tiny", "weights_sha256": "ab" * 32}, template_kwargs={},
                layers=[0, 1, 2], dtype="float32")
L, D = 3, 5


def _store(tmp_path, key="k" * 64):
    st = store_lib.FeatureStore(tmp_path, store_lib.PoolSpec(key=key, layers=(0, 1, 2), dim=D,
                                                             poolings=("last", "mean"), info={}))
    st.create()
    return st


def _rows(n, seed):
    rng = np.random.default_rng(seed)
    return {p: rng.normal(size=(L, n, D)).astype(np.float32) for p in ("last", "mean")}


def _hashes(names):
    return [store_lib.prompt_hash(x) for x in names]


def test_keys_cover_settings_but_not_max_length_or_prompts():
    base = store_lib.pool_key(**KEY_ARGS)
    assert base == store_lib.pool_key(**KEY_ARGS)
    for change in [dict(template_kwargs={"enable_thinking": True}), dict(dtype="bfloat16"), dict(layers=[1, 2]),
                   dict(encoder_identity={"name": "tiny", "weights_sha256": "cd" * 32})]:
        assert base != store_lib.pool_key(**{**KEY_ARGS, **change}), change
    h = _hashes(["a", "b"])
    assert store_lib.request_key(base, 64, h) != store_lib.request_key(base, 64, h[::-1])
    assert store_lib.request_key(base, 64, h) != store_lib.request_key(base, 65, h)
    assert store_lib.prompt_hash("a") == store_lib.prompt_hash("a") != store_lib.prompt_hash("a ")


def test_shards_resolve_and_gather_in_any_order(tmp_path):
    st = _store(tmp_path)
    a, b = _rows(4, 0), _rows(3, 1)
    ha, hb = _hashes("abcd"), _hashes("xyz")
    sa = st.write_shard(a, ha, [5] * 4, [None] * 4)
    sb = st.write_shard(b, hb, [6] * 3, [None] * 3)
    want = [hb[2], ha[1], ha[3], hb[0], ha[1]]  # across shards, out of order, one prompt twice
    rows = st.resolve(want + [store_lib.prompt_hash("new")], max_length=8)
    assert rows[-1] is None and all(r is not None for r in rows[:-1])
    assert [(r.shard, r.row) for r in rows[:-1]] == [(sb, 2), (sa, 1), (sa, 3), (sb, 0), (sa, 1)]
    shards = (sa, sb)
    shard_of = np.asarray([shards.index(r.shard) for r in rows[:-1]])
    row_of = np.asarray([r.row for r in rows[:-1]])
    for p in ("last", "mean"):
        expected = np.stack([b[p][:, 2], a[p][:, 1], a[p][:, 3], b[p][:, 0], a[p][:, 1]], axis=1)
        np.testing.assert_array_equal(st.gather(shard_of, row_of, shards, p), expected)
        np.testing.assert_array_equal(st.gather(shard_of, row_of, shards, p, [2, 0]), expected[[2, 0]])
    st.write_set("req", shards, shard_of, row_of, {"n": 5})
    got = st.read_set("req")
    assert got[0] == shards and got[1].tolist() == shard_of.tolist() and got[3] == {"n": 5}
    assert not list(st.dir.rglob("*.tmp"))


def test_max_length_rules(tmp_path):
    """An untruncated row serves every max_length >= its length; a truncated one only its own cap."""
    st = _store(tmp_path)
    h = _hashes(["short", "long"])
    st.write_shard(_rows(2, 0), h, [10, 300], [None, 256])
    assert [r is not None for r in st.resolve(h, 256)] == [True, True]
    assert [r is not None for r in st.resolve(h, 512)] == [True, False]   # long must be recomputed whole
    assert [r is not None for r in st.resolve(h, 128)] == [True, False]   # ... or at the smaller cap
    assert [r is not None for r in st.resolve(h, 8)] == [False, False]    # short is 10 tokens: truncated at 8


def test_layer_subset_reads_only_those_slices(tmp_path):
    """Overwrite layer 0's bytes in the shard file: gathering layer 1 is unaffected (not read)."""
    st = _store(tmp_path)
    data = _rows(4, 0)
    s = st.write_shard(data, _hashes("abcd"), [3] * 4, [None] * 4)
    arr = np.load(st.data_path(s, "mean"), mmap_mode="r+")
    arr[0] = np.nan
    arr.flush()
    del arr
    idx = (np.zeros(4, int), np.arange(4), (s,))
    np.testing.assert_array_equal(st.gather(*idx, "mean", [1]), data["mean"][[1]])
    assert np.isnan(st.gather(*idx, "mean", [0])).all()


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "delete_data", "bad_sidecar", "reshape"])
def test_corrupt_shard_is_detected_and_removed(tmp_path, damage):
    st = _store(tmp_path)
    good = st.write_shard(_rows(2, 0), _hashes("ab"), [3, 3], [None, None])
    bad = st.write_shard(_rows(2, 1), _hashes("cd"), [3, 3], [None, None])
    path = st.data_path(bad, "last")
    if damage == "truncate":
        os.truncate(path, path.stat().st_size - 7)
    elif damage == "flip_byte":
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "delete_data":
        path.unlink()
    elif damage == "bad_sidecar":
        st.sidecar_path(bad).write_text("{not json")
    elif damage == "reshape":
        np.save(path, np.zeros((3, 3, 5), np.float32))
    assert st.check_shard(good) is None and st.check_shard(bad) is not None
    rows = st.resolve(_hashes("abcd"), 8)
    assert [r is not None for r in rows] == [True, True, False, False]
    assert not st.sidecar_path(bad).exists() and not st.data_path(bad, "mean").exists()
    assert st.shards() == [good]


def test_corrupt_or_foreign_meta_is_rewritten_and_shards_kept(tmp_path, caplog):
    st = _store(tmp_path)
    st.write_shard(_rows(1, 0), _hashes("a"), [3], [None])
    (st.dir / "meta.json").write_text('{"version": 2, "key": "kk')
    with pytest.raises(ValueError, match="meta.json is unreadable.*rerun extract_features"):
        store_lib.FeatureStore.open(st.dir)
    _store(tmp_path)  # what extract_features does: warns and rewrites
    assert "meta.json is unreadable" in caplog.text
    assert store_lib.FeatureStore.open(st.dir).spec == st.spec
    assert st.resolve(_hashes("a"), 8)[0] is not None
    (st.dir / "meta.json").write_text(json.dumps({**st.spec.to_json(), "dim": 7}))
    _store(tmp_path)
    assert "different configuration" in caplog.text and store_lib.FeatureStore.open(st.dir).spec.dim == D


def test_orphans_of_killed_writers_are_removed(tmp_path):
    st = _store(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    kept = st.write_shard(_rows(1, 0), _hashes("a"), [3], [None])
    files = {"old_dead": f"shard_x.last.npy.{dead.pid}.tmp", "young_dead": f"shard_y.last.npy.{dead.pid}.tmp",
             "old_live": f"shard_z.last.npy.{os.getpid()}.tmp", "ancient_live": f"meta.json.{os.getpid()}.tmp",
             "no_sidecar": "shard_w.mean.npy", "young_no_sidecar": "shard_v.mean.npy"}
    now = time.time()
    ages = {"old_dead": 120, "young_dead": 5, "old_live": 120, "ancient_live": 7200, "no_sidecar": 120,
            "young_no_sidecar": 5}
    for name, fname in files.items():
        (st.dir / fname).write_bytes(b"x")
        os.utime(st.dir / fname, (now - ages[name], now - ages[name]))
    removed = st.clean_orphans(now=now)
    assert sorted(removed) == sorted(files[k] for k in ("old_dead", "ancient_live", "no_sidecar"))
    assert st.check_shard(kept) is None
    st.create()  # create() cleans too; the fresh ones are still within the grace period
    assert (st.dir / files["young_dead"]).exists() and (st.dir / files["old_live"]).exists()


def test_disk_full_leaves_nothing_valid(tmp_path, monkeypatch):
    st = _store(tmp_path)

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_lib.fileio.os, "fsync", full_disk)
    with pytest.raises(store_lib.StoreWriteError, match="free disk space"):
        st.write_shard(_rows(2, 0), _hashes("ab"), [3, 3], [None, None])
    monkeypatch.undo()
    assert not list(st.dir.glob("*.tmp")) and st.shards() == []
    assert st.resolve(_hashes("ab"), 8) == [None, None]


def test_bad_input(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    spec = store_lib.PoolSpec("k", (0,), 2, ("last", "mean"), {})
    with pytest.raises(store_lib.StoreWriteError, match="store_dir"):
        store_lib.FeatureStore(blocker, spec).create()
    with pytest.raises(ValueError, match="poolings"):
        store_lib.FeatureStore(tmp_path, store_lib.PoolSpec("k", (0,), 2, ("max",), {}))
    with pytest.raises(FileNotFoundError, match="not a feature store"):
        store_lib.FeatureStore.open(tmp_path / "nope")
    st = _store(tmp_path)
    with pytest.raises(ValueError, match="shape"):
        st.write_shard({"last": np.zeros((3, 3, 5)), "mean": np.zeros((3, 3, 5))}, _hashes("ab"), [1, 1],
                       [None, None])
    with pytest.raises(FileNotFoundError, match="no prompt list"):
        st.read_set("nope")
