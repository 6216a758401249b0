"""extract_features: bucketing/padding invariance, sharding, resume, corruption, truncation, input errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefill_router.features import distributed, extract
from prefill_router.features.store import FeatureStore

MAX_LEN = 64  # fixture `enc`: tests/features/conftest.py (tiny llama + byte tokenizer)
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


def test_resume_after_crash_computes_only_missing_chunks(enc, tmp_path, monkeypatch):
    full = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "full", batch_size=4, **KW)
    real_write = FeatureStore.write_chunk
    written = []

    def crashing_write(self, i, arrays, stats):
        if len(written) == 2:
            raise KeyboardInterrupt("simulated crash")
        real_write(self, i, arrays, stats)
        written.append(i)

    monkeypatch.setattr(FeatureStore, "write_chunk", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "r", batch_size=4, window_prompts=4, **KW)
    monkeypatch.setattr(FeatureStore, "write_chunk", real_write)
    resumed = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "r", batch_size=4, **KW)
    assert sorted(resumed.stats["chunks_computed"]) == sorted(set(range(4)) - set(written))
    assert resumed.stats["prompts_computed"] == 13 - 4 * len(written)
    for p in ("last", "mean"):
        np.testing.assert_allclose(resumed.get(p), full.get(p), atol=1e-6)
    again = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "r", batch_size=4, **KW)
    assert again.stats["chunks_computed"] == [] and again.stats["num_prompts"] == 13


def test_corrupt_chunk_is_recomputed(enc, tmp_path):
    fs = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, **KW)
    expected = fs.get("mean")
    path = FeatureStore.open(fs.store_dir).data_path(2, "mean")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x55
    path.write_bytes(bytes(raw))
    again = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, **KW)
    assert again.stats["chunks_computed"] == [2]
    # recomputed in a smaller batch: equal up to float reassociation, not bitwise
    np.testing.assert_allclose(again.get("mean"), expected, atol=1e-6)


def test_layer_subset_and_prompt_order(enc, tmp_path):
    full = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, **KW)
    sub = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, layers=[3, 1], **KW)
    assert sub.key != full.key and sub.layers.tolist() == [3, 1]
    np.testing.assert_allclose(sub.get("last", layers=[1]), full.get("last", layers=[1]), atol=1e-6)
    np.testing.assert_array_equal(full.get("last", layers=[2, 0]), full.get("last")[[2, 0]])
    with pytest.raises(ValueError, match="not in this feature set"):
        sub.get("last", layers=[0])
    rev = extract.extract_features(enc, PROMPTS[::-1], store_dir=tmp_path, batch_size=4, **KW)
    assert rev.key != full.key
    np.testing.assert_allclose(rev.get("mean")[:, ::-1], full.get("mean"), atol=1e-5)
    kw = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, template_kwargs={"think": True},
                                  **KW)
    assert kw.key != full.key
    reopened = extract.FeatureSet.open(full.store_dir)
    np.testing.assert_array_equal(reopened.get("mean"), full.get("mean"))


def test_truncation_warn_and_error(enc, tmp_path):
    prompts = ["short", "y" * 100, "z" * 80]
    fs = extract.extract_features(enc, prompts, store_dir=tmp_path, batch_size=2, **KW)
    assert fs.stats["num_truncated"] == 2
    with pytest.raises(ValueError, match="2 prompts exceed max_length=64"):
        extract.extract_features(enc, prompts, store_dir=tmp_path / "e", batch_size=2, truncate="error", **KW)
    assert not list((tmp_path / "e").rglob("chunk_*"))
    with pytest.raises(ValueError, match="exceed max_length"):  # cached truncated chunks also fail 'error'
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
        extract.extract_features(enc, PROMPTS, store_dir=tmp_path, **{**KW, "max_length": 4096})


def test_bfloat16_close_to_float32(enc, tmp_path):
    a = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, **KW)
    b = extract.extract_features(enc, PROMPTS, store_dir=tmp_path, batch_size=4, dtype="bfloat16", **KW)
    assert a.key != b.key
    got = b.get("mean")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a.get("mean"), atol=0.1)
