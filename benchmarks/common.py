"""Real inputs for the benchmarks: a pipeline config's dataset and its cached encoder features.

``training_data("configs/default.py")`` loads the config's dataset (de-duplicated, split) and the first
encoder's features from the feature cache (extracting them if missing, as the pipeline would), and returns
the training rows only, so a benchmark never sees test rows.
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(spec: str):
    """``path/to/config.py[:args]`` -> the ml_collections config of its get_config(args)."""
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("benchmark_config", path)
    if module_spec is None or not pathlib.Path(path).is_file():
        raise SystemExit(f"config file {path} not found")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def training_data(spec: str) -> types.SimpleNamespace:
    """Training rows of a config: features (FeatureSet of the first encoder), n_layers, Y [N, K] (0 where
    missing), M [N, K], targets, name; plus ``rows`` (their indices in the dataset)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # configs/ is not part of the installed package
    from prefill_router import stages

    config = load_config(spec)
    config.encoders = tuple(config.encoders)[:1]
    ds = stages.load_routing_data(config)
    rows = ds.rows("train")
    ((fs, n_layers),) = stages.extract_all(config, ds.prompts).values()
    mask = ds.mask[rows]
    print(f"{spec}: {ds.name}, encoder {config.encoders[0]}, {len(rows)} training rows, targets {ds.targets}")
    return types.SimpleNamespace(features=fs, n_layers=n_layers, Y=np.where(mask, ds.labels[rows], 0.0), M=mask,
                                 rows=rows, targets=list(ds.targets), name=ds.name, config=config)
