"""The `pipeline` experiment: data -> features -> probes -> router -> baselines -> evaluation -> report.

Everything fitted (layer choice, scalers, PCA, the trunk, kNN's k, MF) sees training rows only; the
test split is scored once, at the end. Expensive products are cached outside the workdir (labels
collected from local targets, encoder features, sentence embeddings), so a rerun, or a run
interrupted mid-extraction, resumes instead of recomputing. The stages live in `prefill_router.stages`.

Workdir layout: config.json, data_stats.{json,md}, probes/ (table + heat maps), router/ (orbax
checkpoint of the whole router), metrics.json, report.md, plots/.
"""
import dataclasses
import pathlib

import jax
from absl import logging

from prefill_router import stages
from prefill_router.stages import labels as labels_stage
from prefill_router.stages import cross_attention as ca_stage
from prefill_router.stages import operating_point as op_stage
from prefill_router.evaluation import leaderboard


def run(config, workdir: pathlib.Path) -> dict:
    timings = {}
    (workdir / "plots").mkdir(exist_ok=True)

    if config.data.source == "collect":  # the target models run here; the data stage reads their labels
        with stages.stage("labels", timings):
            labels_stage.collect_dataset(config)
    with stages.stage("data", timings):
        split = stages.load_split(config)
        stats = stages.data_stats(split, workdir)

    with stages.stage("features", timings):
        feats = stages.extract_all(config, split.ds.prompts)
    if jax.process_index() != 0:  # multi-host: every host extracted its chunks; host 0 does the rest
        logging.info("process %d: features done; probing, training and reporting run on process 0",
                     jax.process_index())
        return {}

    with stages.stage("probe", timings):
        _, choices = stages.probe(config, feats, split.ds, split.train, workdir / "probes")

    with stages.stage("router", timings):
        ensemble, X = stages.fit_router(config, feats, choices, split, workdir)
        predictions = {"SharedTrunkNet": ensemble.predict(X[split.test])}

    heads, emb = {}, None  # emb: sentence embeddings (cached; the baselines stage reads them again)
    if config.router.kind == "cross_attention":  # issue #20: cross-attention routers (prefill / sentence query)
        with stages.stage("cross_attention", timings):
            ca_predictions, heads, emb = ca_stage.fit_routers(config, split, workdir, X)
            predictions.update(ca_predictions)

    if config.baselines.semantic or config.baselines.mf:
        with stages.stage("baselines", timings):
            predictions.update(stages.baselines(config, split))

    with stages.stage("evaluate", timings):
        evaluation = stages.evaluate(config, predictions, split, stats, workdir / "plots")

    operating = None
    if config.routing.operating_val_fraction > 0:  # #14.4: τ reaching the best single chosen on validation rows
        with stages.stage("operating_point", timings):
            test_predictions = {**evaluation.lookups, "SharedTrunkNet": predictions["SharedTrunkNet"]}
            operating = op_stage.operating_point(config, feats, split, stats, test_predictions)

    costs = None
    if config.router.kind == "cross_attention":  # per-query length prediction and reward curves of every router
        with stages.stage("costs_rewards", timings):
            routers = {**predictions, **evaluation.lookups}
            query = [X] + ([emb] if emb is not None else [])
            costs = ca_stage.costs_and_rewards(config, split, stats, routers, query, heads,
                                               ca_stage.router_name(config.cross_attention.queries[0]))

    repeats = None
    if config.get("repeats", 1) > 1:
        with stages.stage("repeats", timings):
            repeats = stages.run_repeats(config, workdir, split, evaluation.comparison, feats, choices)

    metrics = {
        "headline": {**leaderboard.headline(evaluation.router), **stages.control_headline(evaluation)},
        "controls": evaluation.controls, "repeats": repeats, "router": evaluation.router,
        "comparison": {k: v for k, v in evaluation.comparison.items() if k != "markdown"},
        "layer_choices": [dataclasses.asdict(c) for c in choices], "data": stats, "timings_s": timings,
        "plots": evaluation.plots, "routellm": evaluation.routellm, "cross_attention": costs,
        "operating_point": operating,
    }
    stages.write_report(workdir, config, split, stats, choices, evaluation, timings, repeats)
    if costs is not None:
        ca_stage.append_report(workdir, costs)
    if operating is not None:
        op_stage.append_report(workdir, operating)
    stages.write_json(workdir / "metrics.json", metrics)  # last: marks a complete run (launch.sweep skips it)
    return metrics
