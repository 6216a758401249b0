"""The `layer_sweep` experiment: many encoder/layer/pooling combinations, trained together in one program.

Combinations (``config.sweep``; see `prefill_router.stages.sweep`): every ``layer_stride``-th single layer
per pooling, the probe's top-k sources, and concatenations across encoders at fixed relative depths.
Every combination has the same trunk input width, so all combinations x seeds train in ONE compiled
program (`router.train_ensembles`: vmap over combinations of the vmap over seeds). The paper's
per-target layout (each target its own block) is trained alongside as the reference row.

Selection uses validation rows only: ``sweep.val_fraction`` of the training rows (per task) are held out;
the probe and every combination are fitted on the rest and ranked on them. The winner is refitted on all
training rows and scored on the test rows once, with the pipeline's evaluation (task-lookup controls,
bootstrap CIs). Ranking on test and quoting the best would report a maximum over noisy test scores.

Outputs in the workdir: ``leaderboard.{json,md,png}`` (one row per combination, metrics on the VALIDATION
rows), metrics.json (``selected``: the winner and its test headline; ``controls``), report.md (the
winner on test), plots/, probes/, config.json.
"""
import pathlib

import jax
from absl import logging

from prefill_router import fileio, stages
from prefill_router.evaluation import leaderboard
from prefill_router.stages import sweep


def run(config, workdir: pathlib.Path) -> dict:
    timings = {}
    (workdir / "plots").mkdir(exist_ok=True)
    with stages.stage("data", timings):
        split = stages.load_split(config)
        stats = stages.data_stats(split, workdir)
        val_split = sweep.validation_split(config, split)
    with stages.stage("features", timings):
        feats = stages.extract_all(config, split.ds.prompts)
    if jax.process_index() != 0:
        return {}
    with stages.stage("probe", timings):
        table, choices = stages.probe(config, feats, split.ds, val_split.train, workdir / "probes")
    with stages.stage("router", timings):
        combos = sweep.combinations(config, feats, table)
        predictions, sources = sweep.train_combinations(config, feats, combos, choices, val_split)
    with stages.stage("select", timings):
        rows = sweep.leaderboard(config, predictions, sources, val_split, workdir)
        chosen = rows[0]["name"]
        logging.info("chosen on %d validation rows: %s (%s %.4f); refitting on all %d training rows",
                     len(val_split.test), chosen, sweep.RANK_BY, rows[0]["rank_value"], len(split.train))
        test_predictions = {"SharedTrunkNet": sweep.refit(config, feats, chosen, combos, choices, split)}
    with stages.stage("evaluate", timings):
        evaluation = stages.evaluate(config, test_predictions, split, stats, workdir / "plots")
    test_headline = {**leaderboard.headline(evaluation.router), **stages.control_headline(evaluation)}
    metrics = {"leaderboard": rows, "num_combinations": len(rows), "timings_s": timings,
               "selected": {"name": chosen, "sources": rows[0]["overrides"]["sources"], "selected_on":
                            f"validation ({len(val_split.test)} of {len(split.train)} training rows)",
                            "test": test_headline},
               "headline": test_headline, "controls": evaluation.controls, "comparison":
                   {k: v for k, v in evaluation.comparison.items() if k != "markdown"}}
    stages.write_report(workdir, config, split, stats, choices, evaluation, timings)
    report = (workdir / "report.md").read_text().split("\n", 1)
    fileio.atomic_write_text(workdir / "report.md", report[0] + (
        f"\n\nLayer sweep: the SharedTrunkNet below is the combination `{chosen}` ({len(rows)} ranked by "
        f"{sweep.RANK_BY} on {metrics['selected']['selected_on']}; `leaderboard.md`), refitted on all training "
        "rows and scored on test once. The 'Selected layers' table is the probe on the fit rows.") + "\n" + report[1])
    stages.write_json(workdir / "metrics.json", metrics)
    return metrics
