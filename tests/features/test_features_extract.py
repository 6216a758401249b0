"""extract_features: bucketing/padding invariance, sharding, per-prompt reuse, resume (also after kill -9),
corruption, truncation, input errors."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefill_router.features import distributed, extract
from prefill_router.features import store as store_lib
from prefill_router.features.store import FeatureStore

MAX_LEN = 64  # fixture `enc`: tests/features/conftest.py (tiny_llama + byte-level tokenizer)
PROMPTS = [("q%d " % i) + "x" * (i * 7 % 40) for i in range(13)]
KW = dict(max_length=MAX_LEN, progress=False, chunk_size=4, length_grid=[64])  # one T: few compiles


def _reference(enc, prompts):
    """Each prompt alone, unpadded, through the model's own __call__: [L+1, n, D] per pooling."""
    outs = []
    for p in prompts:
        ids, _ = enc.tokenizer.encode_batch([enc.tokenizer.render(p, {})])
        ids = np.asarray(ids, np.int32)
        out = enc.model(ids, np.ones_like(ids))
        outs.append((np.asarray(out.last), np.asarray(out.mean)))
    return np.concatenate([o[0] for o in outs], 1), np.concatenate([o[1] for o in outs], 1)


def test_features_match_unpadded_reference_for_any_batching(enc, tmp_path):
    some = [0, 6, 12]  # unpadded reference for a few lengths (each new length compiles)
    ref_last, ref_mean = _reference(enc, [PROMPTS[i] for i in some])
    runs = [dict(batch_size=4), dict(batch_tokens=128, padding_side="left"),
            dict(batch_tokens=128, length_grid=[32, 64])]
    for i, cfg in enumerate(runs):
        fs = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / str(i), **{**KW, **cfg})
        np.testing.assert_allclose(fs.get("last")[:, some], ref_last, atol=1e-5, err_msg=str(cfg))
        np.testing.assert_allclose(fs.get("mean")[:, some], ref_mean, atol=1e-5, err_msg=str(cfg))
        if i:
            for p in ("last", "mean"):
                np.testing.assert_allclose(fs.get(p), first.get(p), atol=1e-5, err_msg=str(cfg))
        else:
            first = fs
        assert fs.num_prompts == 13 and fs.layers.tolist() == [0, 1, 2, 3] and fs.dim == 44
        assert fs.stats["prompts_computed"] == 13 and 0 < fs.stats["padding_efficiency"] <= 1


def test_one_vs_two_devices_and_sharded_params(enc, tmp_path):
    assert len(jax.devices()) >= 2
    one = distributed.local_data_mesh(jax.devices()[:1])
    two = distributed.local_data_mesh(jax.devices()[:2])
    a = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "a", batch_size=4, mesh=one, **KW)
    b = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "b", batch_size=4, mesh=two, **KW)
    c = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "c", batch_size=4, mesh=two,
                                 shard_params=True, **KW)
    assert a.key == b.key == c.key
    for p in ("last", "mean"):
        np.testing.assert_allclose(b.get(p), a.get(p), atol=1e-5)
        np.testing.assert_allclose(c.get(p), a.get(p), atol=1e-5)


def test_param_sharding_rule():
    mesh = distributed.local_data_mesh(jax.devices()[:2])
    spec = lambda shape: extract._param_sharding(mesh, jnp.zeros(shape), True).spec
    assert spec((6, 10)) == jax.sharding.PartitionSpec(None, "data")
    assert spec((7, 3)) == jax.sharding.PartitionSpec()
    assert spec((8, 3)) == jax.sharding.PartitionSpec("data", None)
    assert extract._param_sharding(mesh, jnp.zeros((6, 10)), False).spec == jax.sharding.PartitionSpec()


def test_batch_runner_generic_forward():
    """Any forward(state, *batch): batch split over 2 devices, outputs sharded on out_batch_axis, one program
    per distinct batch shapes."""
    mesh = distributed.local_data_mesh(jax.devices()[:2])
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    runner = extract.BatchRunner(lambda st, x, m: (st["w"].T @ x.T * m[None], x.sum(1)), {"w": w}, mesh=mesh,
                                 shard_params=True, out_batch_axis=1)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    m = np.asarray([1, 0, 1, 1], np.float32)
    y, tot = runner(x, m)
    np.testing.assert_allclose(np.asarray(y), w.T @ x.T * m[None])
    np.testing.assert_allclose(np.asarray(tot), x.sum(1))
    assert y.sharding.spec == jax.sharding.PartitionSpec(None, "data") and runner.compile_s > 0
    runner(x + 1, m)
    runner(np.ones((2, 3), np.float32), np.ones(2, np.float32))
    assert len(runner._compiled) == 2


def test_resume_after_crash_computes_only_missing_prompts(enc, tmp_path, monkeypatch):
    full = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "full", batch_size=4, **KW)
    real_write = FeatureStore.write_shard
    written = []

    def crashing_write(self, *args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt("simulated crash")
        written.append(real_write(self, *args, **kwargs))
        return written[-1]

    monkeypatch.setattr(FeatureStore, "write_shard", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "r", batch_size=4, **KW)
    monkeypatch.setattr(FeatureStore, "write_shard", real_write)
    resumed = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "r", batch_size=4, **KW)
    assert resumed.stats["prompts_computed"] == 13 - 4 * len(written) and resumed.stats["prompts_reused"] == 8
    assert set(written) < set(resumed.shards)
    for p in ("last", "mean"):
        np.testing.assert_allclose(resumed.get(p), full.get(p), atol=1e-6)
    again = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "r", batch_size=4, **KW)
    assert again.stats["prompts_computed"] == 0 and again.stats["shards_written"] == []
    assert again.key == resumed.key and again.stats["num_prompts"] == 13


KILL_WORKER = textwrap.dedent('''
    import importlib.util, json, os, signal, sys
    os.environ["JAX_PLATFORMS"] = "cpu"
    from prefill_router import fileio
    from prefill_router.features import extract
    args = json.loads(sys.argv[1])
    spec = importlib.util.spec_from_file_location("features_conftest", args["conftest"])
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    real_fsync, calls = os.fsync, []

    def fsync(fd):  # meta.json, then 3 files per shard (2 data + sidecar): die in the 2nd shard's 1st file
        calls.append(fd)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        real_fsync(fd)

    fileio.os.fsync = fsync
    extract.extract_features(helpers.tiny_encoder(), args["prompts"], store_dir=args["store"], **args["kw"])
''')


def test_kill_9_mid_extraction_resumes_and_cleans_up(enc, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(KILL_WORKER)
    kw = dict(KW, batch_size=4)
    args = json.dumps({"prompts": PROMPTS, "store": str(tmp_path / "s"), "kw": kw,
                       "conftest": str(pathlib.Path(__file__).with_name("conftest.py"))})
    proc = subprocess.run([sys.executable, str(script), args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    (pool,) = [d for d in (tmp_path / "s").iterdir()]
    orphans = list(pool.glob("*.tmp"))
    assert len(orphans) == 1 and len(list(pool.glob("shard_*.json"))) == 1
    old = time.time() - 2 * store_lib.ORPHAN_GRACE_S  # the grace period protects live writers on other hosts
    os.utime(orphans[0], (old, old))
    fs = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "s", **kw)
    assert fs.stats["prompts_reused"] == 4 and fs.stats["prompts_computed"] == 9
    assert not list(pool.glob("*.tmp"))
    ref = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "ref", **kw)
    np.testing.assert_allclose(fs.get("mean"), ref.get("mean"), atol=1e-6)


def test_corrupt_shard_is_recomputed(enc, tmp_path):
    fs = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, **KW)
    expected = fs.get("mean")
    store = FeatureStore.open(fs.store_dir)
    path = store.data_path(fs.shards[1], "mean")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x55
    path.write_bytes(bytes(raw))
    n_rows = int((fs.shard_of == 1).sum())
    again = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, **KW)
    assert again.stats["prompts_computed"] == n_rows and fs.shards[1] not in again.shards
    # recomputed in other batches: equal up to float reassociation, not bitwise
    np.testing.assert_allclose(again.get("mean"), expected, atol=1e-6)
    path = store.data_path(again.shards[0], "last")
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="invalid.*rerun extract_features"):  # reopening verifies too
        extract.FeatureSet.open(fs.store_dir, fs.key)


def test_subsets_supersets_and_max_length_reuse_stored_prompts(enc, tmp_path):
    a = extract.extract_features(enc, PROMPTS[:8], store_dir=tmp_path, batch_size=4, **KW)
    assert a.stats["prompts_computed"] == 8
    union = PROMPTS[::-1] + PROMPTS[:3]  # A u B, another order, duplicates
    ab = extract.extract_features(enc, union, store_dir=tmp_path, batch_size=4, **KW)
    assert ab.stats["prompts_computed"] == 5 and ab.num_prompts == 16
    sub = extract.extract_features(enc, PROMPTS[5:11], store_dir=tmp_path, batch_size=4, **KW)
    assert sub.stats["prompts_computed"] == 0 and sub.stats["total_tokens"] > 0
    fresh = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "fresh", batch_size=4, **KW)
    for p in ("last", "mean"):
        np.testing.assert_allclose(ab.get(p), fresh.get(p)[:, list(range(12, -1, -1)) + [0, 1, 2]], atol=1e-6)
        np.testing.assert_allclose(sub.get(p, [1, 3]), fresh.get(p, [1, 3])[:, 5:11], atol=1e-6)
    # a smaller max_length reuses the prompts that fit whole and recomputes (truncated) the others
    ids, _ = enc.tokenizer.encode_batch([enc.tokenizer.render(p, {}) for p in PROMPTS])
    lengths = np.asarray([len(t) for t in ids])
    short = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4,
                                     **{**KW, "max_length": 40, "length_grid": [40]})
    assert short.stats["prompts_computed"] == short.stats["num_truncated"] == int((lengths > 40).sum()) > 0
    fits = lengths <= 40
    np.testing.assert_allclose(short.get("mean")[:, fits], fresh.get("mean")[:, fits], atol=1e-6)


def test_layer_subset_and_prompt_order(enc, tmp_path):
    full = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, **KW)
    sub = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, layers=[3, 1], **KW)
    assert sub.key != full.key and sub.layers.tolist() == [3, 1]
    np.testing.assert_allclose(sub.get("last", layers=[1]), full.get("last", layers=[1]), atol=1e-6)
    np.testing.assert_array_equal(full.get("last", layers=[2, 0]), full.get("last")[[2, 0]])
    with pytest.raises(ValueError, match="not in this feature set"):
        sub.get("last", layers=[0])
    rev = extract.extract_features(enc, PROMPTS[::-1], store_dir=tmp_path, batch_size=4, **KW)
    assert rev.key != full.key and rev.stats["prompts_computed"] == 0
    np.testing.assert_array_equal(rev.get("mean")[:, ::-1], full.get("mean"))
    kw = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4,
                                  template_kwargs={"add_generation_prompt": False}, **KW)
    assert kw.key != full.key and kw.stats["prompts_computed"] == 13
    reopened = extract.FeatureSet.open(full.store_dir, full.key)
    np.testing.assert_array_equal(reopened.get("mean"), full.get("mean"))
    assert reopened.stats["num_prompts"] == 13


def test_truncation_warn_and_error(enc, tmp_path):
    prompts = ["short", "y" * 100, "z" * 80]
    fs = extract.extract_features(enc, prompts, store_dir=tmp_path, batch_size=2, **KW)
    assert fs.stats["num_truncated"] == 2
    with pytest.raises(ValueError, match="2 prompts exceed max_length=64"):
        extract.extract_features(enc, prompts, store_dir=tmp_path / "e", batch_size=2, truncate="error", **KW)
    assert not list((tmp_path / "e").rglob("shard_*"))
    with pytest.raises(ValueError, match="exceed max_length"):  # cached truncated rows also fail 'error'
        extract.extract_features(enc, prompts, store_dir=tmp_path, batch_size=2, truncate="error", **KW)


@pytest.mark.parametrize("prompts, err, match", [
    ([], ValueError, "empty"),
    (["ok", ""], ValueError, "prompt 1 is empty"),
    (["ok", "   "], ValueError, "prompt 1 is empty"),
    ([b"bytes"], TypeError, "prompt 0 is bytes"),
    (["ok", "bad \ud800 surrogate"], ValueError, "prompt 1 is not valid UTF-8"),
    ("a string", TypeError, "list of strings"),
])
def test_bad_prompts(enc, tmp_path, prompts, err, match):
    with pytest.raises(err, match=match):
        extract.extract_features(enc, prompts, store_dir=tmp_path, batch_size=2, **KW)


def test_bad_options(enc, tmp_path):
    with pytest.raises(ValueError, match="truncate"):
        extract.extract_features(enc, PROMPTS, store_dir=tmp_path, truncate="drop", **KW)
    with pytest.raises(ValueError, match="dtype"):
        extract.extract_features(enc, PROMPTS, store_dir=tmp_path, dtype="float16", **KW)
    with pytest.raises(ValueError, match="layers"):
        extract.extract_features(enc, PROMPTS, store_dir=tmp_path, layers=[4], **KW)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        extract.extract_features(enc, PROMPTS, store_dir=tmp_path, **{**KW, "max_length": 8192})


def test_bfloat16_close_to_float32(enc, tmp_path):
    a = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, **KW)
    b = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, dtype="bfloat16", **KW)
    assert a.key != b.key
    got = b.get("mean")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a.get("mean"), atol=0.1)
