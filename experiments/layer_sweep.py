"""The `layer_sweep` experiment: many encoder/layer/pooling combinations, trained together in one program.

Combinations (``config.sweep``; see `prefill_router.stages.sweep`): every ``layer_stride``-th single layer
per pooling, the probe's top-k sources, and concatenations across encoders at fixed relative depths.
Every combination has the same trunk input width, so all combinations x seeds train in ONE compiled
program (`router.train_ensembles`: vmap over combinations of the vmap over seeds). The paper's
per-target layout (each target its own block) is trained alongside as the reference row.

Outputs in the workdir: ``leaderboard.{json,md,png}`` (one row per combination: mean AUC, router accuracy,
gap captured, savings, P-AUCCC, AIQ with bootstrap CIs on the test split), probes/, config.json.
"""
import pathlib

import jax
from absl import logging

from prefill_router import stages
from prefill_router.stages import sweep


def run(config, workdir: pathlib.Path) -> dict:
    timings = {}
    with stages.stage("data", timings):
        split = stages.load_split(config)
    with stages.stage("features", timings):
        feats = stages.extract_all(config, split.ds.prompts)
    if jax.process_index() != 0:
        return {}
    with stages.stage("probe", timings):
        table, choices = stages.probe(config, feats, split.ds, split.train, workdir / "probes")
    with stages.stage("router", timings):
        combos = sweep.combinations(config, feats, table)
        predictions, sources = sweep.train_combinations(config, feats, combos, choices, split)
    with stages.stage("evaluate", timings):
        rows = sweep.leaderboard(config, predictions, sources, split, workdir)
    best = rows[0]
    logging.info("best combination %s: mean AUC %.4f; leaderboard in %s", best["name"], best["rank_value"],
                 workdir / "leaderboard.md")
    metrics = {"leaderboard": rows, "timings_s": timings, "num_combinations": len(rows)}
    stages.write_json(workdir / "metrics.json", metrics)
    return metrics
