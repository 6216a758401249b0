"""The `layer_sweep` experiment: many encoder/layer/pooling combinations, trained together in one program.

Combinations (``config.sweep``), each a shared feature block (concatenated sources -> StandardScaler ->
PCA to ``router.pca_dim``, fitted on training rows) feeding one SharedTrunkNet:
  - ``single``: every ``layer_stride``-th layer of every encoder, for each pooling in ``poolings``;
  - ``top{k}``: the union over targets of each target's k best (encoder, layer, pooling) by
    ``probe.criterion`` (the probe runs on training rows only), for each k in ``top_k``;
  - ``concat@{depth}``: the layer at relative depth ``depth`` of EVERY encoder, concatenated (needs > 1
    encoder), for each depth in ``depths``.
Every combination has the same trunk input width, so all combinations x seeds train in ONE compiled
program (`router.train_ensembles`: vmap over combinations of the vmap over seeds). The paper's
per-target layout (each target its own block) is trained alongside as the reference row.

Outputs in the workdir: ``leaderboard.{json,md,png}`` (one row per combination: mean AUC, router accuracy,
gap captured, savings, P-AUCCC, AIQ with bootstrap CIs on the test split), probes/, config.json.
"""
import pathlib

import jax
import numpy as np
from absl import logging

from experiments import pipeline
from prefill_router import data as data_lib
from prefill_router import probes as probes_lib
from prefill_router import router as router_lib
from prefill_router.evaluation import leaderboard as leaderboard_lib
from prefill_router.evaluation import report as report_lib

RANK_BY = "auc_mean"


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


def run(config, workdir: pathlib.Path) -> dict:
    timings = {}
    with pipeline.stage("data", timings):
        ds, train, test, costs_query, prices_in = pipeline.load_split(config)
    with pipeline.stage("features", timings):
        feats = pipeline.extract_all(config, ds.prompts)
    if jax.process_index() != 0:
        return {}
    with pipeline.stage("probe", timings):
        table, choices = pipeline.probe(config, feats, ds, train, workdir / "probes")

    lookup = pipeline.FeatureLookup(feats)
    cfg = pipeline.train_config(config)
    predictions, sources = {}, {}
    with pipeline.stage("router", timings):
        combos = combinations(config, feats, table)
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
        _, X = router_lib.build_design(lookup, pipeline.per_target_specs(choices, config.router.pca_dim), train)
        ens = router_lib.train_ensemble(X[train], ds.labels[train], ds.mask[train], cfg, target_names=ds.targets)
        predictions[reference] = ens.predict(X[test])
        sources[reference] = [f"{c.target}: {c.encoder}/L{c.layer}/{c.pooling}" for c in choices]

    with pipeline.stage("evaluate", timings):
        best_single = ds.targets.index(data_lib.dataset_stats(ds, train)["best_single"]["target"])
        rows = []
        for name, P in predictions.items():
            result = report_lib.evaluate_router(
                P, ds.labels[test], ds.mask[test], costs_query[test], prices_in, ds.targets,
                n_boot=config.sweep.n_boot, seed=config.seed, best_single_index=best_single,
                operating_tolerance=config.routing.tolerance)
            headline = {k: result["headline"][k] for k in pipeline.HEADLINE if k in result["headline"]}
            rows.append({"name": name, "overrides": {"sources": sources[name]}, "headline": headline,
                         "rank_value": headline[RANK_BY]["value"]})
        rows.sort(key=lambda r: -r["rank_value"] if np.isfinite(r["rank_value"]) else np.inf)
        leaderboard_lib.write_leaderboard(workdir, rows, RANK_BY)
    best = rows[0]
    logging.info("best combination %s: mean AUC %.4f; leaderboard in %s", best["name"], best["rank_value"],
                 workdir / "leaderboard.md")
    metrics = {"leaderboard": rows, "timings_s": timings, "num_combinations": len(rows)}
    pipeline.write_json(workdir / "metrics.json", metrics)
    return metrics
