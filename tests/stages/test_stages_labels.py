"""The label-collection stage: the config's items labelled by its targets; a second call reads the cache."""
import pytest

from configs import default
from prefill_router.labels import collect
from prefill_router.stages import labels


def test_collect_dataset_then_cache(tmp_path, monkeypatch):
    config = default.get_config("runlocal,items=12")
    config.cache_dir = str(tmp_path)
    config.data.targets = ("tiny_llama", "tiny_qwen3")
    ds = labels.collect_dataset(config)
    assert ds.num_rows == 12 and ds.targets == ["tiny_llama", "tiny_qwen3"] and ds.has_split
    assert set(ds.row_meta["difficulty"]) <= {1, 2, 3}

    def boom(*args, **kwargs):
        raise AssertionError("a target ran again")
    monkeypatch.setattr(collect, "score_items_raw", boom)
    again = labels.collect_dataset(config)
    assert again.prompts == ds.prompts and (again.labels == ds.labels).all()
    config.data.source = "llmrouter"
    with pytest.raises(ValueError, match="source='collect'"):
        labels.collect_dataset(config)
