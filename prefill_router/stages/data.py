"""Data stage: the configured routing dataset, de-duplicated, split and subsampled; its statistics."""
import dataclasses
import pathlib
from typing import NamedTuple

import numpy as np
from absl import logging

from prefill_router import data as data_lib
from prefill_router import paths, validation
from prefill_router.data import loaders

SOURCES = ("collect", "llmrouter", "routellm", "routerbench", "long")


class Split(NamedTuple):
    """A split dataset. train, test: row indices; costs [N, K] $ per prompt; prices_in [K] $/M input tokens."""
    ds: data_lib.RoutingDataset
    train: np.ndarray
    test: np.ndarray
    costs: np.ndarray
    prices_in: np.ndarray


def load_routing_data(config) -> data_lib.RoutingDataset:
    """The configured dataset, de-duplicated and split (train/test; the trunk carves its own val).

    ``data.prices`` (a JSON price file) replaces or supplies prices; ``data.drop_targets`` removes targets;
    prices a loader derived from realised costs are recomputed from training rows only.
    """
    d = config.data
    data_dir = paths.data_dir(config.data_dir or None)
    prices = validation.prices_from_config(config)
    if d.source not in SOURCES:
        raise ValueError(f"unknown data.source {d.source!r}; choose one of {', '.join(SOURCES)}")
    if d.source == "collect":
        from prefill_router.stages import labels as labels_stage
        ds = labels_stage.collect_dataset(config)
    elif d.source == "llmrouter":
        ds = data_lib.load_llmrouter(data_dir, threshold=d.threshold)
    elif d.source == "routellm":
        ds = data_lib.load_routellm(data_dir, subset=d.subset)
    elif d.source == "routerbench":
        ds = data_lib.load_routerbench(_required_path(d.path), threshold=d.threshold, prices=prices)
    else:
        ds = data_lib.load_long_format(_required_path(d.path), prices=prices)
    if prices is not None and d.source not in ("routerbench", "long"):
        ds = dataclasses.replace(ds, prices={**ds.prices, **prices})
    ds = ds.drop_targets(list(d.get("drop_targets", ())))
    ds = data_lib.assign_splits(ds, test_fraction=d.test_fraction, seed=config.seed,
                                stratify_by=d.stratify_by or None)
    ds = subsample(ds, d.max_train, d.max_test, config.seed)
    data_lib.check_no_leak(ds)
    return loaders.prices_from_rows(ds, ds.rows("train"))


def _required_path(path: str) -> pathlib.Path:
    if not path:
        raise ValueError("this data.source reads a file: set --config.data.path=FILE")
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"data.path {p} does not exist")
    return p


def subsample(ds, max_train: int, max_test: int, seed: int):
    """Seeded subsample of each split (0 = keep all); order of kept rows preserved."""
    rng = np.random.default_rng(seed)
    keep = []
    for split, cap in (("train", max_train), ("val", 0), ("test", max_test)):
        rows = ds.rows(split)
        if cap and len(rows) > cap:
            rows = np.sort(rng.choice(rows, cap, replace=False))
        keep.append(rows)
    rows = np.sort(np.concatenate(keep))
    return ds if len(rows) == ds.num_rows else ds.subset(rows)


def load_split(config) -> Split:
    """The dataset with its train/test rows (both non-empty), per-prompt costs and input prices."""
    ds = load_routing_data(config)
    train, test = ds.rows("train"), ds.rows("test")
    validation.check_split(ds, train, test, config)  # before any expensive stage
    prices_in = np.array([ds.prices[t][0] for t in ds.targets], np.float64)
    return Split(ds, train, test, data_lib.per_prompt_costs(ds, train_rows=train), prices_in)


def data_stats(split: Split, workdir: pathlib.Path) -> dict:
    """Statistics of all / train / test rows; writes workdir/data_stats.{json,md} (all rows)."""
    ds, train, test = split.ds, split.train, split.test
    stats = {"all": data_lib.dataset_stats(ds), "train": data_lib.dataset_stats(ds, train),
             "test": data_lib.dataset_stats(ds, test)}
    data_lib.write_stats(stats["all"], workdir / "data_stats")
    logging.info("dataset %s: %d prompts x %d targets; %d train / %d test", ds.name, ds.num_rows,
                 ds.num_targets, len(train), len(test))
    return stats
