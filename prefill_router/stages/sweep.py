"""Layer-sweep stages: feature combinations, all trained in one program, and their leaderboard.

Combinations (``config.sweep``), each a shared feature block (concatenated sources -> StandardScaler ->
PCA to ``router.pca_dim``, fitted on training rows) feeding one SharedTrunkNet:
  - ``single``: every ``layer_stride``-th layer of every encoder, for each pooling in ``poolings``;
  - ``top{k}``: the union over targets of each target's k best (encoder, layer, pooling) by
    ``probe.criterion`` (the probe runs on training rows only), for each k in ``top_k``;
  - ``concat@{depth}``: the layer at relative depth ``depth`` of EVERY encoder, concatenated (needs > 1
    encoder), for each depth in ``depths``.
"""
import pathlib

import numpy as np
from absl import logging

from prefill_router import data as data_lib
from prefill_router import probes as probes_lib
from prefill_router import router as router_lib
from prefill_router.evaluation import leaderboard as leaderboard_lib
from prefill_router.evaluation import report as report_lib
from prefill_router.stages.data import Split
from prefill_router.stages.features import FeatureLookup
from prefill_router.stages.router import per_target_specs, train_config

RANK_BY = leaderboard_lib.DEFAULT_RANK_BY


def combinations(config, feats: dict, table) -> dict[str, tuple]:
    """name -> tuple of FeatureSource, in the order described in the module docstring."""
    sw = config.sweep
    if sw.layer_stride < 1:
        raise ValueError(f"sweep.layer_stride must be >= 1, got {sw.layer_stride}")
    combos = {}
    for enc, (fs, _) in feats.items():
        for pooling in sw.poolings:
            for layer in fs.layers[::sw.layer_stride]:
                combos[f"{enc}/L{int(layer)}/{pooling}"] = (router_lib.FeatureSource(enc, int(layer), pooling),)
    for k in sw.top_k:
        sources = [router_lib.FeatureSource(c.encoder, c.layer, c.pooling)
                   for t in table.targets for c in probes_lib.top_k(table, t, config.probe.criterion, k)]
        combos[f"{config.probe.criterion}-top{k}"] = tuple(dict.fromkeys(sources))
    if len(feats) > 1:
        for depth in sw.depths:
            combos[f"concat@{depth:g}/mean"] = tuple(
                router_lib.FeatureSource(enc, _nearest_layer(fs.layers, depth * n_layers), "mean")
                for enc, (fs, n_layers) in feats.items())
    return combos


def _nearest_layer(layers, target: float) -> int:
    layers = np.asarray(layers)
    return int(layers[np.argmin(np.abs(layers - target))])


def train_combinations(config, feats: dict, combos: dict, choices, split: Split) -> tuple[dict, dict]:
    """Trains every combination (all of one width x seeds in one program: `router.train_ensembles`) and the
    paper's per-target layout as the reference row. Returns (name -> P [N_test, K], name -> source strings)."""
    ds, train, test = split.ds, split.train, split.test
    lookup = FeatureLookup(feats)
    cfg = train_config(config)
    predictions, sources = {}, {}
    specs = {name: [router_lib.SharedBlockSpec(srcs, config.router.pca_dim)] for name, srcs in combos.items()}
    designs = {name: router_lib.build_design(lookup, s, train)[1] for name, s in specs.items()}
    by_width: dict[int, list[str]] = {}
    for name, X in designs.items():
        by_width.setdefault(X.shape[1], []).append(name)
    for width, names in by_width.items():
        logging.info("training %d combinations x %d seeds of width %d in one program",
                     len(names), len(cfg.seeds), width)
        xs = np.stack([designs[n][train] for n in names])
        for name, ens in zip(names, router_lib.train_ensembles(xs, ds.labels[train], ds.mask[train], cfg,
                                                               target_names=ds.targets)):
            predictions[name] = ens.predict(designs[name][test])
            sources[name] = [s.describe() for s in combos[name]]
    reference = f"per-target {config.probe.criterion} (paper)"
    _, X = router_lib.build_design(lookup, per_target_specs(choices, config.router.pca_dim), train)
    ens = router_lib.train_ensemble(X[train], ds.labels[train], ds.mask[train], cfg, target_names=ds.targets)
    predictions[reference] = ens.predict(X[test])
    sources[reference] = [f"{c.target}: {c.encoder}/L{c.layer}/{c.pooling}" for c in choices]
    return predictions, sources


def leaderboard(config, predictions: dict, sources: dict, split: Split, workdir: pathlib.Path) -> list[dict]:
    """One row per combination (headline metrics with CIs on the test rows), sorted by ``RANK_BY``
    (NaN last); writes workdir/leaderboard.{json,md,png}."""
    ds, train, test = split.ds, split.train, split.test
    best_single = ds.targets.index(data_lib.dataset_stats(ds, train)["best_single"]["target"])
    rows = []
    for name, P in predictions.items():
        result = report_lib.evaluate_router(
            P, ds.labels[test], ds.mask[test], split.costs[test], split.prices_in, ds.targets,
            n_boot=config.sweep.n_boot, seed=config.seed, best_single_index=best_single,
            operating_tolerance=config.routing.tolerance)
        rows.append({"name": name, "overrides": {"sources": sources[name]},
                     "headline": leaderboard_lib.headline(result)})
    rows = leaderboard_lib.rank_rows(rows, RANK_BY)
    leaderboard_lib.write_leaderboard(workdir, rows, RANK_BY)
    return rows
