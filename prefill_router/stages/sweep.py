"""Layer-sweep stages: feature combinations, all trained in one program, and their leaderboard.

Combinations (``config.sweep``), each a shared feature block (concatenated sources -> StandardScaler ->
PCA to ``router.pca_dim``, fitted on training rows) feeding one SharedTrunkNet:
  - ``single``: every ``layer_stride``-th layer of every encoder, for each pooling in ``poolings``;
  - ``top{k}``: the union over targets of each target's k best (encoder, layer, pooling) by
    ``probe.criterion`` (the probe runs on training rows only), for each k in ``top_k``;
  - ``concat@{depth}``: the layer at relative depth ``depth`` of EVERY encoder, concatenated (needs > 1
    encoder), for each depth in ``depths``.

Selection on validation only: `validation_split` carves ``sweep.val_fraction`` of the training rows (per
task); the probe, the combinations and the reference are fitted on the rest and ranked on those validation
rows; `refit` trains the winner on all training rows, and only it is scored on the test rows (once).
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


def validation_split(config, split: Split) -> Split:
    """``split`` with its training rows cut into fit rows (``train``) and validation rows (``test``): a seeded
    share ``sweep.val_fraction`` of each task's training rows; the real test rows are in neither."""
    carved = data_lib.carve_validation(split.ds, config.sweep.val_fraction, seed=config.seed,
                                       stratify_by=config.data.stratify_by or None)
    fit, val = carved.rows("train"), carved.rows("val")
    if len(fit) == 0 or len(val) == 0:
        raise ValueError(f"sweep.val_fraction={config.sweep.val_fraction} leaves {len(fit)} fit / {len(val)} "
                         "validation rows; both must be non-empty")
    return split._replace(ds=carved, train=fit, test=val)


def reference_name(config) -> str:
    return f"per-target {config.probe.criterion} (paper)"


def train_combinations(config, feats: dict, combos: dict, choices, split: Split) -> tuple[dict, dict]:
    """Trains every combination (all of one width x seeds in one program: `router.train_ensembles`) and the
    paper's per-target layout as the reference row on ``split.train``. Returns (name -> P on ``split.test``
    [N, K], name -> source strings)."""
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
    reference = reference_name(config)
    _, X = router_lib.build_design(lookup, per_target_specs(choices, config.router.pca_dim), train)
    ens = router_lib.train_ensemble(X[train], ds.labels[train], ds.mask[train], cfg, target_names=ds.targets)
    predictions[reference] = ens.predict(X[test])
    sources[reference] = [f"{c.target}: {c.encoder}/L{c.layer}/{c.pooling}" for c in choices]
    return predictions, sources


def refit(config, feats: dict, name: str, combos: dict, choices, split: Split):
    """The combination ``name`` (or the reference) trained on all of ``split.train``: P [N_test, K] on
    ``split.test``."""
    specs = (per_target_specs(choices, config.router.pca_dim) if name == reference_name(config) else
             [router_lib.SharedBlockSpec(combos[name], config.router.pca_dim)])
    _, X = router_lib.build_design(FeatureLookup(feats), specs, split.train)
    ds = split.ds
    ens = router_lib.train_ensemble(X[split.train], ds.labels[split.train], ds.mask[split.train],
                                    train_config(config), target_names=ds.targets)
    return ens.predict(X[split.test])


def leaderboard(config, predictions: dict, sources: dict, split: Split, workdir: pathlib.Path) -> list[dict]:
    """One row per combination (headline metrics with CIs on ``split.test``: the validation rows of
    `validation_split`), sorted by ``RANK_BY`` (NaN last); writes workdir/leaderboard.{json,md,png}."""
    ds, train, test = split.ds, split.train, split.test
    best_single = ds.targets.index(data_lib.dataset_stats(ds, train)["best_single"]["target"])
    rows = []
    for name, P in predictions.items():
        result = report_lib.evaluate_router(
            P, ds.labels[test], ds.mask[test], split.costs[test], split.prices_in, ds.targets,
            n_boot=config.sweep.n_boot, seed=config.seed, best_single_index=best_single,
            operating_tolerance=config.routing.tolerance, tasks=[ds.tasks[i] for i in test])
        rows.append({"name": name, "overrides": {"sources": sources[name]},
                     "headline": leaderboard_lib.headline(result)})
    rows = leaderboard_lib.rank_rows(rows, RANK_BY)
    leaderboard_lib.write_leaderboard(workdir, rows, RANK_BY)
    return rows
