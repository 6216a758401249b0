"""Label-collection stage (data.source = 'collect'): the configured generated items, cloze-scored by the
local target LLMs (`prefill_router.labels`), as a split RoutingDataset.

The targets run only for (items, target) pairs missing from the labels cache, so a second call (the data
stage's, after the pipeline's own `labels` stage) reads the cache without loading any model.
"""
from prefill_router.data import synthetic
from prefill_router.data.dataset import RoutingDataset
from prefill_router.labels import collect


def collect_dataset(config) -> RoutingDataset:
    """Items of `data.mix` / `data.num_items` / `data.item_seed`, labelled by `data.targets`."""
    d = config.data
    if d.source != "collect":
        raise ValueError(f"label collection needs data.source='collect', got {d.source!r}")
    mix, difficulties = synthetic.mix_preset(d.mix)
    items = synthetic.generate_items(d.num_items, seed=d.item_seed, mix=mix, difficulties=difficulties)
    return collect.collect_labels(list(d.targets), items, cache_dir=config.cache_dir or None,
                                  test_fraction=d.test_fraction, split_seed=config.seed)
